"""The "under attack" scenario and the paired comparisons around it.

Many rooms (100 rooms x 10 members, 1,000 messages/s) is run twice per repeat on the
same connections: once calm, once with bench/attack.py's two hostile clients connected
beside it (an unauthenticated flooder and a never-reading ping flooder), in alternating
order. The target: nothing lost, and p99 latency and server CPU per delivery under
attack within 1.5x of the calm step (ratio of the medians). The server's RSS is read
before the attack, at the end of the measured step and after the attackers left.

Also here: the repeat order that alternates servers (ABBA), and the before/after table
of CPU per delivery between two Greenroom checkouts measured in one run.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gevent

from bench.attack import KINDS, Attackers
from bench.procstat import rss_kib
from bench.report import median_result
from bench.scenarios import Result, Room, drive
from bench.targets import Greenroom, Target

CALM = "many rooms"
ATTACKED = "many rooms under attack"
LIMIT = 1.5  # the bound on p99 and CPU per delivery, attacked / calm
RAMP_S = 0.5  # the attackers are in full swing before measuring starts
T = TypeVar("T")


@dataclasses.dataclass
class AttackRecord:
    """One attacked step and the calm step it is paired with (same repeat, same connections)."""

    server: str
    repeat: int
    attacked_first: bool
    calm: Result
    attacked: Result
    rss_before_kib: int
    rss_end_kib: int  # at the end of the measured step, attackers still connected
    rss_after_kib: int  # after the attackers left and the server settled
    settled_s: float  # how long the server stayed busy after the attackers left (bounded)
    settled: bool
    attackers: dict[str, Any]
    wall_s: float  # the attacked step from starting the attackers to settled
    late: int  # deliveries of the attacked step that arrived after its drain, while settling

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["calm"], d["attacked"] = self.calm.as_dict(), self.attacked.as_dict()
        return d


# ---- pure bookkeeping ---------------------------------------------------------------


def alternate(items: Sequence[T], repeat: int) -> list[T]:
    """items in order on even repeats, reversed on odd ones (ABBA), so drift hurts both alike."""
    return list(items) if repeat % 2 == 0 else list(reversed(items))


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den) or den <= 0:
        return float("nan")
    return num / den


def summarize(records: list[AttackRecord], limit: float = LIMIT) -> dict[str, dict[str, Any]]:
    """Per server: medians calm and attacked, their ratios, loss, RSS, and the verdict.

    The verdict is met only if every attacked step lost, duplicated and reordered
    nothing, delivered something, and both ratios of medians are at most `limit`.
    """
    out: dict[str, dict[str, Any]] = {}
    for server in dict.fromkeys(r.server for r in records):
        rs = [r for r in records if r.server == server]
        s: dict[str, Any] = {"repeats": len(rs)}
        for key, field in (("p99_ms", "p99_ms"), ("cpu_us", "cpu_us_per_delivery")):
            calm = _median([getattr(r.calm, field) for r in rs])
            hit = _median([getattr(r.attacked, field) for r in rs])
            s[f"{key}_calm"], s[f"{key}_attacked"] = calm, hit
            s[f"{key}_ratio"] = _ratio(hit, calm)
            s[f"{key}_paired_ratios"] = [
                round(_ratio(getattr(r.attacked, field), getattr(r.calm, field)), 2) for r in rs
            ]
        s["lost_attacked"] = sum(r.attacked.lost for r in rs)
        s["dup_attacked"] = sum(r.attacked.duplicated for r in rs)
        s["out_of_order_attacked"] = sum(r.attacked.out_of_order for r in rs)
        s["lost_calm"] = sum(r.calm.lost + r.calm.duplicated + r.calm.out_of_order for r in rs)
        s["delivered_attacked"] = sum(r.attacked.delivered for r in rs)
        s["late_attacked"] = sum(r.late for r in rs)
        s["expected_attacked"] = sum(r.attacked.expected for r in rs)
        s["rss_before_mib"] = _median([r.rss_before_kib / 1024 for r in rs])
        s["rss_end_mib"] = _median([r.rss_end_kib / 1024 for r in rs])
        s["rss_after_mib"] = _median([r.rss_after_kib / 1024 for r in rs])
        s["rss_end_max_mib"] = max(r.rss_end_kib for r in rs) / 1024
        s["unsettled"] = sum(not r.settled for r in rs)
        s["attacked_wall_s"] = round(sum(r.wall_s for r in rs), 1)
        s["attack_connections"] = {
            kind: sum(r.attackers.get(kind, {}).get("connections", 0) for r in rs)
            for kind in ("unauthenticated", "ping")
        }
        s["attack_mb_sent"] = {
            kind: round(sum(r.attackers.get(kind, {}).get("bytes", 0) for r in rs) / 1e6, 1)
            for kind in ("unauthenticated", "ping")
        }
        s["misses"] = misses(s, limit)
        s["met"] = not s["misses"]
        out[server] = s
    return out


def misses(s: dict[str, Any], limit: float = LIMIT) -> list[str]:
    """Why a server's summary misses the target (empty: met)."""
    out = []
    if s["lost_attacked"] or s["dup_attacked"] or s["out_of_order_attacked"]:
        out.append(
            f"lost {s['lost_attacked']}, duplicated {s['dup_attacked']}, "
            f"out of order {s['out_of_order_attacked']} under attack"
        )
    if not s["delivered_attacked"]:
        out.append("nothing delivered under attack")
    for key, what in (("p99_ms", "p99"), ("cpu_us", "CPU per delivery")):
        ratio = s[f"{key}_ratio"]
        if math.isnan(ratio) or ratio > limit:
            out.append(f"{what} {_x(ratio)} (limit {limit}x)")
    return out


def _x(ratio: float) -> str:
    return "not measurable" if math.isnan(ratio) else f"{ratio:.2f}x"


def _f(value: float, fmt: str = ".1f") -> str:
    return "-" if isinstance(value, float) and math.isnan(value) else format(value, fmt)


def attack_table(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| server | p99 ms calm | p99 ms attacked | ratio | CPU µs/delivery calm | attacked | ratio "
        "| lost/dup attacked | RSS MiB before → end → after | target (≤ 1.5×, nothing lost) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server, s in summary.items():
        verdict = "met" if s["met"] else "MISSED: " + "; ".join(s["misses"])
        lines.append(
            f"| {server} | {_f(s['p99_ms_calm'])} | {_f(s['p99_ms_attacked'])} | {_x(s['p99_ms_ratio'])} "
            f"| {_f(s['cpu_us_calm'])} | {_f(s['cpu_us_attacked'])} | {_x(s['cpu_us_ratio'])} "
            f"| {s['lost_attacked']}/{s['dup_attacked']} "
            f"| {s['rss_before_mib']:.0f} → {s['rss_end_mib']:.0f} → {s['rss_after_mib']:.0f} | {verdict} |"
        )
    return "\n".join(lines)


def attack_notes(summary: dict[str, dict[str, Any]]) -> str:
    out = []
    for server, s in summary.items():
        out.append(
            f"{server}: {s['repeats']} pairs; paired ratios p99 {s['p99_ms_paired_ratios']}, "
            f"CPU {s['cpu_us_paired_ratios']}; delivered {s['delivered_attacked']:,}/"
            f"{s['expected_attacked']:,} under attack within the drain "
            f"(+{s['late_attacked']:,} later, while settling); attacker connections "
            f"{s['attack_connections']}, MB written {s['attack_mb_sent']}; peak RSS at the "
            f"end of a step {s['rss_end_max_mib']:.0f} MiB; the attacked steps took "
            f"{s['attacked_wall_s']:.0f} s in all"
            + (
                f"; still busy after the settle bound in {s['unsettled']} pairs"
                if s["unsettled"]
                else ""
            )
        )
    return "\n".join(out)


BEFORE_AFTER_SCENARIOS = ("fan-out 10k/s", "fan-out 50k/s", CALM, ATTACKED)


def before_after(results: list[Result]) -> list[dict[str, Any]]:
    """For each `greenroom@PATH` or `greenroom+NAME=VALUE` measured beside `greenroom`: CPU per
    delivery and p99, both, per scenario, and the ratio greenroom / the other (below 1: this
    checkout, with its default settings, is cheaper)."""
    rows = []
    now = {r.scenario: r for r in results if r.server == "greenroom"}
    variants = ("greenroom@", "greenroom+")
    for other in dict.fromkeys(r.server for r in results if r.server.startswith(variants)):
        then = {r.scenario: r for r in results if r.server == other}
        for scenario in BEFORE_AFTER_SCENARIOS:
            if scenario in now and scenario in then:
                a, b = then[scenario], now[scenario]
                rows.append(
                    {
                        "scenario": scenario,
                        "before": other,
                        "cpu_us_before": a.cpu_us_per_delivery,
                        "cpu_us_after": b.cpu_us_per_delivery,
                        "cpu_ratio": round(_ratio(b.cpu_us_per_delivery, a.cpu_us_per_delivery), 2),
                        "p99_ms_before": a.p99_ms,
                        "p99_ms_after": b.p99_ms,
                        "lost_before": a.lost,
                        "lost_after": b.lost,
                    }
                )
    return rows


def before_after_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        f"Before ({rows[0]['before']}) and after (greenroom, this checkout), medians:",
        "| scenario | CPU µs/delivery before | after | after/before | p99 ms before | after | lost before | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {_f(r['cpu_us_before'])} | {_f(r['cpu_us_after'])} | {_x(r['cpu_ratio'])} "
            f"| {_f(r['p99_ms_before'])} | {_f(r['p99_ms_after'])} | {r['lost_before']} | {r['lost_after']} |"
        )
    return "\n".join(lines)


# ---- the measured step --------------------------------------------------------------


def attack_token(target: Greenroom) -> str:
    """The ping flooder's session (one account of its own, logged in once per server)."""
    token = getattr(target, "_attack_token", "")
    if not token:
        token = target.account("attacker")
        target._attack_token = token  # type: ignore[attr-defined]
    return token


def settle(target: Target, rooms: list[Room], timeout_s: float) -> tuple[bool, float]:
    """Wait (at most timeout_s) until the server's CPU is quiet, then restart seq counting
    where the receivers got to, so late or lost messages of this step don't count in the next.

    Returns (quiet, seconds waited).
    """
    started = time.monotonic()
    deadline = started + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        c0 = target.cpu_seconds()
        gevent.sleep(0.5)
        quiet = quiet + 1 if target.cpu_seconds() - c0 < 0.05 else 0
    for room in rooms:
        room.sent = max(rec.last for rec in room.receivers)
    return quiet >= 2, round(time.monotonic() - started, 1)


def attacked_step(
    target: Greenroom,
    rooms: list[Room],
    rate: float,
    seconds: float,
    cpu: int | None,
    settle_s: float,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[Result, dict[str, Any]]:
    """The many-rooms step with the two attackers connected for the whole of it."""
    started = time.monotonic()
    token = attack_token(target)
    rss_before = rss_kib(target.pid)[0]
    attackers = Attackers(target.port, token, max_s=seconds + 30 + RAMP_S, cpu=cpu, kinds=kinds)
    attackers.start()
    try:
        gevent.sleep(RAMP_S)
        result = drive(target, ATTACKED, rooms, rate=rate, seconds=seconds)
        rss_end = rss_kib(target.pid)[0]
    finally:
        counts = attackers.stop()
    quiet, waited = settle(target, rooms, settle_s)
    # Receivers keep counting after the drain: what arrived while settling was late, not lost.
    late = sum(rec.count for room in rooms for rec in room.receivers) - result.delivered
    extra = {
        "late": late,
        "rss_before_kib": rss_before,
        "rss_end_kib": rss_end,
        "rss_after_kib": rss_kib(target.pid)[0],
        "settled": quiet,
        "settled_s": waited,
        "attackers": counts,
        "wall_s": round(time.monotonic() - started, 1),
    }
    return result, extra


def many_rooms_steps(
    runs: list[tuple[Target, list[Room]]],
    repeats: int,
    seconds: float,
    attack: bool,
    cpu: int | None,
    settle_s: float,
    say: Callable[[str], None],
    kinds: tuple[str, ...] = KINDS,
) -> tuple[list[Result], list[AttackRecord]]:
    """Many rooms on every (target, rooms), repeats interleaved across targets; with `attack`,
    each Greenroom target also runs the attacked step in every repeat, calm and attacked
    in alternating order. Returns the median results and the attack records."""
    calm: dict[str, list[Result]] = {t.name: [] for t, _ in runs}
    hit: dict[str, list[Result]] = {t.name: [] for t, _ in runs}
    records: list[AttackRecord] = []
    for i in range(repeats):
        for target, rooms in alternate(runs, i):
            attacked = attack and isinstance(target, Greenroom)
            pair: dict[str, Any] = {}
            for kind in alternate(["calm", "attacked"] if attacked else ["calm"], i):
                if kind == "calm":
                    r = drive(target, CALM, rooms, rate=1000, seconds=seconds)
                    if not r.clean:
                        settle(target, rooms, settle_s)  # late messages must not count next time
                    calm[target.name].append(r)
                    pair["calm"] = r
                else:
                    assert isinstance(target, Greenroom)
                    r, extra = attacked_step(target, rooms, 1000, seconds, cpu, settle_s, kinds)
                    hit[target.name].append(r)
                    pair["attacked"], pair["extra"] = r, extra
                say(
                    f"  {target.name} {r.scenario}: {r.cpu_us_per_delivery} µs/delivery, "
                    f"p99 {r.p99_ms} ms, lost {r.lost}, dup {r.duplicated}"
                    + (
                        f", RSS {pair['extra']['rss_before_kib'] // 1024}→"
                        f"{pair['extra']['rss_end_kib'] // 1024}→{pair['extra']['rss_after_kib'] // 1024} MiB"
                        if kind == "attacked"
                        else ""
                    )
                )
            if attacked:
                e = pair["extra"]
                records.append(
                    AttackRecord(
                        server=target.name,
                        repeat=i,
                        attacked_first=i % 2 == 1,
                        calm=pair["calm"],
                        attacked=pair["attacked"],
                        rss_before_kib=e["rss_before_kib"],
                        rss_end_kib=e["rss_end_kib"],
                        rss_after_kib=e["rss_after_kib"],
                        settled_s=e["settled_s"],
                        settled=e["settled"],
                        attackers=e["attackers"],
                        wall_s=e["wall_s"],
                        late=e["late"],
                    )
                )
    results = []
    for target, _ in runs:
        results.append(median_result(calm[target.name]))
        if hit[target.name]:
            results.append(median_result(hit[target.name]))
    return results, records
