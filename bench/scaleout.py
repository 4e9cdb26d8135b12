"""The scale-out comparison: one worker on SQLite, one on PostgreSQL + Redis, two on PostgreSQL + Redis.

All variants run the same scenario in the same run, interleaved repeat by repeat (a, b,
c, a, b, c, ...) so a noisy neighbour hurts them alike: many rooms (100 rooms x 10
members by default), every member a sender, first at a fixed rate every variant
sustains, then a rate search (geometric steps, then bisection) for the highest rate
delivered without loss and with p99 under the limit.

  (a) the Procfile's gunicorn, -w 1, SQLite, no Redis, pinned to CPU 0 (today's default);
  (p) the same with DATABASE_URL=postgresql://..., no Redis: PostgreSQL's share of (b);
  (b) the same with DATABASE_URL=postgresql://... and REDIS_URL: the backplane's cost;
  (c) -w 2 with PostgreSQL + Redis, not pinned (both cores), members spread over both
      workers by gunicorn's accept balancing; the split is read from /proc.

The load generator stays on CPU 1, so in (c) it competes with a worker, and Redis and
PostgreSQL run wherever the kernel puts them. Server CPU is the whole gunicorn tree
(master and workers); Redis's CPU is the system redis-server's (shared with anyone
else using it), and PostgreSQL's is that of the backends this run's server opened
(found by application_name). Every PostgreSQL run gets its own schema and every
Redis run its own backplane channel; the schema is dropped afterwards.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent

from bench.procstat import cpu_by_pid, cpu_delta, cpu_seconds, listening_pid, machine_cpu_times
from bench.scenarios import Result, Room, close_rooms, drive, open_rooms
from bench.targets import SERVER_CPU, ClusterGreenroom

SCENARIO = "many rooms, senders on every worker"


@dataclasses.dataclass(frozen=True)
class Variant:
    key: str
    label: str
    workers: int
    postgres: bool  # else SQLite
    redis: bool  # the Redis backplane
    cpus: frozenset[int] | None  # None: not pinned

    @property
    def pinning(self) -> str:
        if self.cpus is None:
            return "not pinned (CPUs 0-1)"
        return f"pinned to CPU {','.join(map(str, sorted(self.cpus)))}"


VARIANTS = {
    v.key: v
    for v in (
        Variant("a", "1 worker, SQLite, no Redis", 1, False, False, frozenset({SERVER_CPU})),
        # Splits (b) - (a) into PostgreSQL's share and the backplane's.
        Variant("p", "1 worker, PostgreSQL, no Redis", 1, True, False, frozenset({SERVER_CPU})),
        Variant("b", "1 worker, PostgreSQL + Redis", 1, True, True, frozenset({SERVER_CPU})),
        Variant("c", "2 workers, PostgreSQL + Redis", 2, True, True, None),
    )
}


@dataclasses.dataclass
class Config:
    postgres_url: str
    redis_url: str
    repeats: int = 3
    rooms: int = 100
    members: int = 10
    # messages/s (x members deliveries/s): low enough for every variant, PostgreSQL too
    fixed_rate: float = 250.0
    step_s: float = 5.0
    factor: float = 1.5
    max_rate: float = 16000.0
    refine: int = 2  # bisection steps after the first failing rate
    p99_limit_ms: float = 200.0
    variants: tuple[str, ...] = ("a", "p", "b", "c")


# ---- pure bookkeeping ---------------------------------------------------------------


def passed(result: Result, p99_limit_ms: float) -> bool:
    """A step counts when nothing was lost, duplicated or reordered and p99 stayed under the limit."""
    return result.clean and result.p99_ms < p99_limit_ms


def next_rate(
    history: list[tuple[float, bool]],
    factor: float,
    max_rate: float,
    refine: int,
    min_rate: float = 50.0,
) -> float | None:
    """The next offered rate to try given (rate, passed) so far, or None when the search is done.

    Up by `factor` from the best pass while every step passes (up to `max_rate`); down
    by `factor` from the lowest failure while none passes (down to `min_rate`); once a
    pass and a failure bracket the limit, `refine` bisections between the best pass and
    the lowest failure above it. Rates are rounded to 50 msg/s.
    """
    if not history:
        raise ValueError("the search starts from a measured rate")
    passes = [r for r, ok in history if ok]
    fails = [r for r, ok in history if not ok]
    if not fails:
        lo = max(passes)
        return None if lo >= max_rate else min(max_rate, _round(lo * factor))
    if not passes:
        down = _round(min(fails) / factor)
        return None if down < min_rate or down >= min(fails) else down
    bracketed = next(
        i
        for i in range(len(history))
        if any(ok for _, ok in history[: i + 1]) and not all(ok for _, ok in history[: i + 1])
    )
    lo = max(passes)
    hi = min((r for r in fails if r > lo), default=None)
    if hi is None or len(history) - 1 - bracketed >= refine:
        return None
    mid = _round((lo + hi) / 2)
    return mid if lo < mid < hi else None


def _round(rate: float) -> float:
    """To the nearest 50 msg/s, halves up, at least 50."""
    return float(max(50, math.floor(rate / 50 + 0.5) * 50))


def best_step(steps: list[Result], p99_limit_ms: float) -> Result | None:
    """The passing step with the highest delivered rate."""
    ok = [r for r in steps if passed(r, p99_limit_ms)]
    return max(ok, key=lambda r: r.delivered_per_s) if ok else None


def connection_split(owners: list[list[int | None]]) -> dict[str, Any]:
    """Per-room lists of the worker pid holding each member -> how the connections spread.

    Workers are named w1, w2, ... in pid order; rooms_on_all_workers counts the rooms
    with members on every worker seen (those need the backplane for every message).
    """
    pids = sorted({p for room in owners for p in room if p is not None})
    names = {pid: f"w{i + 1}" for i, pid in enumerate(pids)}
    counts = Counter(names[p] for room in owners for p in room if p is not None)
    return {
        "workers": {names[p]: p for p in pids},
        "connections": {names[p]: counts[names[p]] for p in pids},
        "unknown": sum(1 for room in owners for p in room if p is None),
        "rooms": len(owners),
        "rooms_on_all_workers": sum(1 for room in owners if set(room) >= set(pids) and pids),
    }


PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|\[(ERROR|CRITICAL|WARNING)\]")


def log_problems(text: str) -> list[str]:
    """The server log's warning, error and traceback lines."""
    return [line for line in text.splitlines() if PROBLEM.search(line)]


def backend_state(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """One pg_stat_activity row as one label: what the backend waits on, or its state.

    "idle in transaction" means the backend waits for the server's next statement (a
    round trip); "Lock:..." for another transaction's lock; "active" is running SQL.
    """
    if state == "active" and wait_type:
        return f"{wait_type}:{wait_event}"
    if state in ("idle", "idle in transaction") and wait_type == "Client":
        return state
    return state or "unknown"


def backends_by_state(counts: Counter[str], samples: int) -> dict[str, float]:
    """Counts of backend states over `samples` samples -> the average number of backends in
    each state, largest first: 0.7 "Lock:transactionid" means that on average 0.7 backends
    were waiting for another transaction's lock."""
    return {k: round(n / samples, 2) for k, n in counts.most_common()} if samples else {}


def median(values: list[float]) -> float:
    clean = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Medians over one variant's repeats: the fixed-rate figures and the best search step.

    A run that failed (its record has "error" and no figures) is counted, not measured;
    None when no run of the variant succeeded.
    """
    failed = [r for r in runs if "fixed" not in r]
    runs = [r for r in runs if "fixed" in r]
    if not runs:
        return None
    fixed = [r["fixed"] for r in runs]
    best = [r["best"] for r in runs if r["best"] is not None]
    keys = (
        "delivered_per_s",
        "p50_ms",
        "p99_ms",
        "cpu_us_per_delivery",
        "redis_cpu_us_per_delivery",
        "pg_cpu_us_per_delivery",
        "total_cpu_us_per_delivery",
        "server_cpu_pct",
        "redis_cpu_pct",
        "loadgen_cpu_pct",
        "machine_busy_pct",
        "others_cpu_pct",
        "steal_pct",
    )
    out: dict[str, Any] = {
        "repeats": len(runs),
        "failed_runs": len(failed),
        "fixed": {k: median([f[k] for f in fixed]) for k in keys},
        "fixed_lost": sum(f["lost"] for f in fixed),
        "fixed_duplicated": sum(f["duplicated"] for f in fixed),
        "fixed_out_of_order": sum(f["out_of_order"] for f in fixed),
        "fixed_loadgen_bound": sum(1 for f in fixed if f["loadgen_bound"]),
        "best": {k: median([b[k] for b in best]) for k in keys} if best else None,
        "best_offered": median([b["offered_msgs_per_s"] for b in best]) if best else float("nan"),
        "best_per_repeat": [b["delivered_per_s"] if b else None for b in (r["best"] for r in runs)],
        "best_loadgen_bound": sum(1 for b in best if b["loadgen_bound"]),
        "searches_without_pass": len(runs) - len(best),
        "log_problems": sum(len(r["log_problems"]) for r in runs),
        "worker_restarts": sum(len(r["restarts"]) for r in runs),
    }
    return out


def summaries(runs: list[dict[str, Any]], variants: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """summarize() per variant, in the given order, leaving out variants with no successful run."""
    out = {}
    for key in variants:
        s = summarize([r for r in runs if r["variant"] == key])
        if s is not None:
            out[key] = s
    return out


def _ratio(num: float, den: float) -> float:
    if den is None or num is None or math.isnan(den) or math.isnan(num) or den == 0:
        return float("nan")
    return num / den


def derived(summary: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Backplane cost, (b) - (a) per delivery, and the 2-worker / 1-worker ratios, (c) / (b)."""
    out: dict[str, float] = {}
    a, p, b, c = (summary.get(k) for k in "apbc")
    for lo, hi, what in ((a, b, "backplane"), (a, p, "postgres"), (p, b, "redis")):
        if lo and hi:
            for key, kind in (
                ("cpu_us_per_delivery", "server"),
                ("total_cpu_us_per_delivery", "total"),
            ):
                out[f"{what}_{kind}_cpu_us_per_delivery"] = hi["fixed"][key] - lo["fixed"][key]
    for one, tag in ((b, "b"), (a, "a")):
        if not (c and one):
            continue
        out[f"c/{tag} fixed p99"] = _ratio(c["fixed"]["p99_ms"], one["fixed"]["p99_ms"])
        out[f"c/{tag} fixed delivered/s"] = _ratio(
            c["fixed"]["delivered_per_s"], one["fixed"]["delivered_per_s"]
        )
        out[f"c/{tag} fixed server CPU/delivery"] = _ratio(
            c["fixed"]["cpu_us_per_delivery"], one["fixed"]["cpu_us_per_delivery"]
        )
        if c["best"] and one["best"]:
            out[f"c/{tag} max delivered/s"] = _ratio(
                c["best"]["delivered_per_s"], one["best"]["delivered_per_s"]
            )
            out[f"c/{tag} p99 at max"] = _ratio(c["best"]["p99_ms"], one["best"]["p99_ms"])
    return out


def paired(
    runs: list[dict[str, Any]],
    num: str,
    den: str,
    part: str,
    key: str,
    op: Callable[[float, float], float],
) -> list[float]:
    """op(num's figure, den's figure) for each repeat in which both variants have one.

    Variants run back to back within a repeat, so a pair shares the machine's mood of
    the moment: the spread of these says more than a ratio of medians does.
    """
    by = {(r["variant"], r["repeat"]): r for r in runs if "fixed" in r}
    out = []
    for (variant, repeat), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        other = by.get((den, repeat))
        if variant != num or other is None or r.get(part) is None or other.get(part) is None:
            continue
        a, b = r[part][key], other[part][key]
        if a is None or b is None:
            continue
        out.append(op(a, b))
    return out


PAIRS = (
    ("c/b max delivered/s", "c", "b", "best", "delivered_per_s", "ratio"),
    ("c/b fixed p99", "c", "b", "fixed", "p99_ms", "ratio"),
    ("c/b fixed server CPU/delivery", "c", "b", "fixed", "cpu_us_per_delivery", "ratio"),
    ("c/a max delivered/s", "c", "a", "best", "delivered_per_s", "ratio"),
    ("b-a server µs/delivery", "b", "a", "fixed", "cpu_us_per_delivery", "difference"),
    ("b-a total µs/delivery", "b", "a", "fixed", "total_cpu_us_per_delivery", "difference"),
    ("p-a server µs/delivery", "p", "a", "fixed", "cpu_us_per_delivery", "difference"),
    ("b-p server µs/delivery", "b", "p", "fixed", "cpu_us_per_delivery", "difference"),
)


def paired_all(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every PAIRS figure, per repeat, where both variants ran."""
    ops: dict[str, Callable[[float, float], float]] = {
        "ratio": lambda x, y: _ratio(x, y),
        "difference": lambda x, y: x - y,
    }
    out = {}
    for name, num, den, part, key, op in PAIRS:
        values = paired(runs, num, den, part, key, ops[op])
        if values:
            out[name] = [round(v, 3) for v in values]
    return out


def paired_lines(pairs: dict[str, list[float]]) -> str:
    lines = []
    for name, values in pairs.items():
        unit = "×" if "/" in name.split()[0] else " µs"
        lines.append(
            f"{name}: median {_f(median(values), '.2f')}{unit} over {len(values)} repeats "
            f"(each: {', '.join(_f(v, '.2f') for v in values)})"
        )
    return "\n".join(lines)


# ---- the run ------------------------------------------------------------------------


class ExternalCpu:
    """CPU of the processes outside the server that serve it: redis-server and our PG backends."""

    def __init__(self, redis_pid: int | None, pg_url: str, app_name: str) -> None:
        self.redis_pid = redis_pid
        self.app_name = app_name
        self._pg = self._pg_waits = None
        self._sampler: gevent.Greenlet | None = None
        self._stopping = False
        self._waits: Counter[str] = Counter()
        self._samples = 0
        if app_name:
            import psycopg

            self._pg = psycopg.connect(pg_url, autocommit=True)
            # The sampler has its own connection: two greenlets must not share one.
            self._pg_waits = psycopg.connect(pg_url, autocommit=True)

    def sample(self) -> tuple[float, dict[int, float]]:
        redis = float("nan")
        if self.redis_pid:
            try:
                redis = cpu_seconds(self.redis_pid)
            except OSError:
                pass
        backends: dict[int, float] = {}
        if self._pg is not None:
            rows = self._pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app_name,)
            ).fetchall()
            backends = cpu_by_pid([row[0] for row in rows])
        return redis, backends

    def start_waits(self, interval_s: float = 0.05) -> None:
        """Sample what this server's PostgreSQL backends are doing, until stop_waits()."""
        self._waits = Counter()
        self._samples = 0
        self._stopping = False
        if self._pg_waits is not None:
            self._sampler = gevent.spawn(self._sample_waits, interval_s)

    def stop_waits(self) -> dict[str, float]:
        """Average backends per state, e.g. {"idle": 7.2, "idle in transaction": 1.0, "Lock:tuple": 0.3}."""
        self._stopping = True
        if self._sampler is not None:
            self._sampler.join(5)  # not kill(): a query cut short would leave the connection busy
            self._sampler = None
        return backends_by_state(self._waits, self._samples)

    def _sample_waits(self, interval_s: float) -> None:
        assert self._pg_waits is not None
        while not self._stopping:
            rows = self._pg_waits.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE application_name = %s",
                (self.app_name,),
            ).fetchall()
            self._waits.update(backend_state(*row) for row in rows)
            self._samples += 1
            gevent.sleep(interval_s)

    def close(self) -> None:
        for conn in (self._pg, self._pg_waits):
            if conn is not None:
                conn.close()


def measured(
    target: ClusterGreenroom, rooms: list[Room], rate: float, seconds: float, ext: ExternalCpu
) -> dict[str, Any]:
    """drive() plus Redis's and PostgreSQL's CPU over the same window."""
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    redis0, pg0 = ext.sample()
    workers0, machine0 = cpu_by_pid(target.worker_pids), machine_cpu_times()
    ext.start_waits()
    t0 = time.perf_counter()
    r = drive(target, SCENARIO, rooms, rate=rate, seconds=seconds)
    waits = ext.stop_waits()
    redis1, pg1 = ext.sample()
    workers1, machine1 = cpu_by_pid(target.worker_pids), machine_cpu_times()
    elapsed = time.perf_counter() - t0
    redis = redis1 - redis0
    pg = cpu_delta(pg0, pg1)
    out = r.as_dict()
    per = 1e6 / r.delivered if r.delivered else float("nan")
    out["redis_cpu_us_per_delivery"] = round(redis * per, 2)
    out["pg_cpu_us_per_delivery"] = round(pg * per, 2)
    out["redis_cpu_pct"] = round(100 * redis / elapsed, 1)
    out["pg_cpu_pct"] = round(100 * pg / elapsed, 1)
    out["total_cpu_us_per_delivery"] = round(
        r.cpu_us_per_delivery + (0 if math.isnan(redis) else redis * per) + pg * per, 2
    )
    out["pg_backend_states"] = waits
    out["worker_cpu_pct"] = [
        round(100 * (workers1[pid] - workers0[pid]) / elapsed, 1) if pid in workers1 else None
        for pid in target.worker_pids
        if pid in workers0
    ]
    cores = os.cpu_count() or 1
    busy, steal, total = (after - before for before, after in zip(machine0, machine1, strict=True))
    # In cores' worth of percent (200 = both cores of a 2-core machine busy), every process counted.
    out["machine_busy_pct"] = round(100 * cores * busy / total, 1) if total else float("nan")
    out["steal_pct"] = round(100 * cores * steal / total, 1) if total else float("nan")
    # What neither this server, its PostgreSQL backends, Redis nor the load generator used:
    # other users of the machine (Redis's figure includes their use of Redis).
    ours = r.server_cpu_pct + r.loadgen_cpu_pct + out["pg_cpu_pct"]
    ours += 0 if math.isnan(out["redis_cpu_pct"]) else out["redis_cpu_pct"]
    out["others_cpu_pct"] = round(out["machine_busy_pct"] - ours, 1)
    out["started_at"] = started_at  # to match server log lines to the step
    out["_result"] = r
    return out


def quiesce(target: ClusterGreenroom, rooms: list[Room], timeout_s: float = 30.0) -> int:
    """After a failed step: wait until the server is idle, then restart seq counting where
    the receivers got to. Returns the deliveries still missing then (late beyond the drain)."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        c0 = target.cpu_seconds()
        gevent.sleep(0.5)
        quiet = quiet + 1 if target.cpu_seconds() - c0 < 0.05 else 0
    missing = 0
    for room in rooms:
        top = max(rec.last for rec in room.receivers)
        missing += sum(top - rec.last for rec in room.receivers)
        room.sent = top
    return missing


def run_variant(
    variant: Variant, config: Config, repeat: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Start the variant's server, open the rooms, run the fixed rate and the search, stop."""
    token = secrets.token_hex(4)
    schema = f"gr_bench_{token}"
    app_name = f"gr_bench_{token}"
    database_url = ""
    channel = ""
    redis_url = ""
    if variant.postgres:
        sep = "&" if "?" in config.postgres_url else "?"
        database_url = f"{config.postgres_url}{sep}options=-csearch_path%3D{schema}&application_name={app_name}"
    if variant.redis:
        redis_url = config.redis_url
        channel = f"greenroom-bench-{token}"
    target = ClusterGreenroom(
        f"{variant.key}: {variant.label}",
        variant.workers,
        database_url=database_url,
        redis_url=redis_url,
        channel=channel,
        cpus=variant.cpus,
    )
    record: dict[str, Any] = {
        "variant": variant.key,
        "repeat": repeat,
        "label": variant.label,
        "workers": variant.workers,
        "pinning": variant.pinning,
        "schema": schema if variant.postgres else None,
        "channel": channel or None,
        "source": source_state(),  # the server code can change between runs of a long benchmark
    }
    ext: ExternalCpu | None = None
    try:
        if variant.postgres:
            _pg_execute(config.postgres_url, f'CREATE SCHEMA "{schema}"')
        ext = ExternalCpu(
            listening_pid(urlsplit(config.redis_url).port or 6379),
            config.postgres_url,
            app_name if variant.postgres else "",
        )
        record["redis_pid"] = ext.redis_pid
        target.start()
        record["worker_pids"] = target.worker_pids
        record["healthz"] = target.healthz_workers(20)
        rooms = open_rooms(target, config.rooms, config.members, lambda _: None)
        owners = [target.worker_of(room.conns) for room in rooms]
        record["split"] = connection_split(owners)
        say(f"  {variant.key} #{repeat}: connections per worker {record['split']['connections']}")
        drive(target, "warm-up", rooms, rate=min(500.0, config.fixed_rate), seconds=1.0)
        gevent.sleep(0.5)
        fixed = measured(target, rooms, config.fixed_rate, config.step_s * 2, ext)
        say(_line(f"  {variant.key} #{repeat} fixed", fixed))
        steps = [fixed]
        history = [(config.fixed_rate, passed(fixed["_result"], config.p99_limit_ms))]
        record["missing_after_quiesce"] = 0 if history[-1][1] else quiesce(target, rooms)
        while (
            rate := next_rate(history, config.factor, config.max_rate, config.refine)
        ) is not None:
            step = measured(target, rooms, rate, config.step_s, ext)
            ok = passed(step["_result"], config.p99_limit_ms)
            say(_line(f"  {variant.key} #{repeat} {rate:g} msg/s", step) + ("" if ok else "  FAIL"))
            steps.append(step)
            history.append((rate, ok))
            if not ok:
                record["missing_after_quiesce"] += quiesce(target, rooms)
        best = best_step([s["_result"] for s in steps], config.p99_limit_ms)
        record["steps"] = [_public(s) for s in steps]
        record["best"] = _public(next(s for s in steps if s["_result"] is best)) if best else None
        record["restarts"] = target.restarts()
        record["fixed"] = _public(fixed)  # last: a record with "fixed" is a complete one
        close_rooms(rooms)
    except Exception as exc:  # reported with the server's log; the other runs still count
        record["error"] = repr(exc)
        say(f"  {variant.key} #{repeat} failed: {exc!r}")
    finally:
        target.stop()
        if ext is not None:
            ext.close()
        if variant.postgres:
            _pg_execute(config.postgres_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        log = target.log_text()
        shutil.rmtree(target.workdir, ignore_errors=True)
    record["log_problems"] = log_problems(log)
    record["worker_boots"] = log.count("Booting worker")
    if "error" in record:
        record["log_tail"] = log.splitlines()[-30:]
    for line in record["log_problems"][:10]:
        say(f"  {variant.key} #{repeat} server log: {line}")
    return record


def _pg_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _public(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if not k.startswith("_")}


def _line(prefix: str, s: dict[str, Any]) -> str:
    return (
        f"{prefix}: {s['delivered_per_s']:,.0f} deliveries/s, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
        f"lost {s['lost']} dup {s['duplicated']} ooo {s['out_of_order']}, server {s['cpu_us_per_delivery']} "
        f"+ redis {s['redis_cpu_us_per_delivery']} + pg {s['pg_cpu_us_per_delivery']} µs/delivery, "
        f"loadgen {s['loadgen_cpu_pct']}%, workers {s['worker_cpu_pct']}%, machine {s['machine_busy_pct']}% (others {s['others_cpu_pct']}%, steal {s['steal_pct']}%)"
        + (
            "; PG backends on average: "
            + ", ".join(f"{k} {v:g}" for k, v in list(s["pg_backend_states"].items())[:4])
            if s.get("pg_backend_states")
            else ""
        )
    )


def run(config: Config, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every variant, interleaved repeat by repeat."""
    runs = []
    for repeat in range(1, config.repeats + 1):
        for key in config.variants:
            say(f"== scale-out {key}: {VARIANTS[key].label} (repeat {repeat}/{config.repeats})")
            try:
                runs.append(run_variant(VARIANTS[key], config, repeat, say))
            except Exception as exc:  # one broken run is reported; the others still count
                say(f"  {key} #{repeat} failed: {exc!r}")
                runs.append({"variant": key, "repeat": repeat, "error": repr(exc)})
    return runs


# ---- the report ---------------------------------------------------------------------


def _f(value: float | None, fmt: str = ",.1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(value, fmt)


def table(config: Config, summary: dict[str, dict[str, Any]]) -> str:
    rate = config.fixed_rate
    deliveries = rate * config.members
    lines = [
        f"Fixed rate: {rate:g} msg/s into {config.rooms} rooms x {config.members} members "
        f"(= {deliveries:,.0f} deliveries/s offered); medians of {config.repeats} repeat(s)",
        "",
        "| variant | server CPUs | delivered/s | p50 ms | p99 ms | lost | dup | out of order | "
        "server µs/delivery | Redis µs/delivery | PG µs/delivery | total µs/delivery | server CPU % | loadgen CPU % | machine CPU % | others' CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summary.items():
        f = s["fixed"]
        lines.append(
            f"| {key}: {VARIANTS[key].label} | {VARIANTS[key].pinning} | {_f(f['delivered_per_s'], ',.0f')} | "
            f"{_f(f['p50_ms'])} | {_f(f['p99_ms'])} | {s['fixed_lost']} | {s['fixed_duplicated']} | "
            f"{s['fixed_out_of_order']} | {_f(f['cpu_us_per_delivery'])} | {_f(f['redis_cpu_us_per_delivery'])} | "
            f"{_f(f['pg_cpu_us_per_delivery'])} | {_f(f['total_cpu_us_per_delivery'])} | "
            f"{_f(f['server_cpu_pct'], '.0f')} | {_f(f['loadgen_cpu_pct'], '.0f')} | {_f(f['machine_busy_pct'], '.0f')} | {_f(f['others_cpu_pct'], '.0f')} |"
        )
    lines += [
        "",
        f"Rate search: highest delivered rate with nothing lost and p99 < {config.p99_limit_ms:g} ms "
        "(median over repeats of each repeat's best step)",
        "",
        "| variant | max delivered/s | per repeat | offered msg/s | p50 ms | p99 ms | "
        "server µs/delivery | Redis µs/delivery | PG µs/delivery | server CPU % | loadgen CPU % | machine CPU % | others' CPU % | loadgen bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summary.items():
        b = s["best"]
        per = ", ".join(_f(x, ",.0f") for x in s["best_per_repeat"])
        if b is None:
            lines.append(f"| {key}: {VARIANTS[key].label} | no passing step | {per} |" + " |" * 11)
            continue
        lines.append(
            f"| {key}: {VARIANTS[key].label} | {_f(b['delivered_per_s'], ',.0f')} | {per} | "
            f"{_f(s['best_offered'], ',.0f')} | {_f(b['p50_ms'])} | {_f(b['p99_ms'])} | "
            f"{_f(b['cpu_us_per_delivery'])} | {_f(b['redis_cpu_us_per_delivery'])} | "
            f"{_f(b['pg_cpu_us_per_delivery'])} | {_f(b['server_cpu_pct'], '.0f')} | "
            f"{_f(b['loadgen_cpu_pct'], '.0f')} | {_f(b['machine_busy_pct'], '.0f')} | "
            f"{_f(b['others_cpu_pct'], '.0f')} | "
            f"{s['best_loadgen_bound']}/{len(s['best_per_repeat'])} |"
        )
    return "\n".join(lines)


def splits(runs: list[dict[str, Any]]) -> str:
    out = []
    for r in runs:
        if r.get("split") is None:
            continue
        sp = r["split"]
        conns = ", ".join(f"{w} (pid {sp['workers'][w]}) {n}" for w, n in sp["connections"].items())
        out.append(
            f"{r['variant']} #{r['repeat']}: {conns}"
            + (f", unknown {sp['unknown']}" if sp["unknown"] else "")
            + f"; rooms with members on every worker {sp['rooms_on_all_workers']}/{sp['rooms']}"
            + f"; /healthz x20 answered by {sorted(r['healthz'].values(), reverse=True)}"
        )
    return "\n".join(out)


def ratio_lines(d: dict[str, float]) -> str:
    out = []
    for what, title in (
        ("backplane", "backplane CPU per delivery, (b) - (a), PostgreSQL + Redis against SQLite"),
        ("postgres", "of which PostgreSQL instead of SQLite, (p) - (a)"),
        ("redis", "of which the Redis backplane, (b) - (p)"),
    ):
        if f"{what}_server_cpu_us_per_delivery" in d:
            out.append(
                f"{title}: server {d[f'{what}_server_cpu_us_per_delivery']:+.1f} µs; "
                f"server + Redis + PG {d[f'{what}_total_cpu_us_per_delivery']:+.1f} µs"
            )
    for k, v in d.items():
        if "/" in k:
            out.append(f"{k}: {_f(v, '.2f')}×")
    return "\n".join(out)


def lock_waiters(states: dict[str, float]) -> float:
    """Average PostgreSQL backends waiting on a lock (a row another transaction holds)."""
    return round(sum(v for k, v in states.items() if k.startswith("Lock:")), 2)


def failures(runs: list[dict[str, Any]], config: Config) -> str:
    """Per run, the first step that failed and what was busy or waiting then."""
    lines = []
    for r in runs:
        failed = [s for s in r.get("steps", []) if not _step_passed(s, config.p99_limit_ms)]
        if not failed:
            continue
        s = min(failed, key=lambda s: s["offered_msgs_per_s"])
        states = s.get("pg_backend_states") or {}
        pg = (
            f"; PG backends: {lock_waiters(states)} waiting on locks, "
            f"{states.get('idle in transaction', 0)} in a transaction waiting for the server"
            if states
            else ""
        )
        lines.append(
            f"{r['variant']} #{r['repeat']} at {s['offered_msgs_per_s']:g} msg/s: p99 {s['p99_ms']:,.0f} ms, "
            f"lost {s['lost']}; workers {s['worker_cpu_pct']}% CPU, machine {s['machine_busy_pct']:.0f}% "
            f"(others {s['others_cpu_pct']:.0f}%){pg}"
        )
    return "\n".join(lines)


def _step_passed(step: dict[str, Any], p99_limit_ms: float) -> bool:
    return (
        not (step["lost"] or step["duplicated"] or step["out_of_order"])
        and step["p99_ms"] < p99_limit_ms
    )


def report_text(
    config: Config,
    runs: list[dict[str, Any]],
    summary: dict[str, dict[str, Any]],
    ratios: dict[str, float],
    machine: dict[str, Any],
) -> str:
    """Everything printed after a run: tables, ratios, worker split, anomalies, caveats."""
    out = [table(config, summary), "", "From the medians above:", ratio_lines(ratios)]
    out += ["", "Paired by repeat (variants run back to back):", paired_lines(paired_all(runs))]
    out += ["", "What each search ran into (its first failed step):", failures(runs, config)]
    out += ["", "connections per worker:"]
    out.append(splits(runs))
    problems = [(r, line) for r in runs for line in r.get("log_problems", [])]
    out.append(f"\nserver log: {len(problems)} warning/error lines")
    out += [f"  {r['variant']} #{r['repeat']}: {line}" for r, line in problems[:30]]
    for r in runs:
        if "error" in r:
            out.append(f"run {r['variant']} #{r['repeat']} failed: {r['error']}")
        for s in r.get("steps", []):
            if s["duplicated"] or s["out_of_order"] or s["lost"]:
                out.append(
                    f"run {r['variant']} #{r['repeat']} at {s['offered_msgs_per_s']:g} msg/s: "
                    f"lost {s['lost']} (not delivered within the drain time), duplicated "
                    f"{s['duplicated']}, out of order {s['out_of_order']}"
                )
        if r.get("missing_after_quiesce"):
            out.append(
                f"run {r['variant']} #{r['repeat']}: {r['missing_after_quiesce']} deliveries "
                "still missing after a failed step had settled"
            )
        if r.get("restarts"):
            out.append(f"run {r['variant']} #{r['repeat']}: workers restarted {r['restarts']}")
    out += ["", CAVEATS, f"machine: {machine}"]
    return "\n".join(out)


def load(path: Path) -> tuple[Config, list[dict[str, Any]]]:
    """An earlier run's Config and run records, from its JSON file."""
    import json

    data = json.loads(path.read_text())
    fields = {f.name for f in dataclasses.fields(Config)}
    cfg = {k: v for k, v in data["config"].items() if k in fields}
    cfg["variants"] = tuple(cfg["variants"])
    return Config(**cfg), data["runs"]


CAVEATS = (
    "Machine CPU % counts every process on the machine (200 = both cores busy); others' CPU % "
    "is what is left after this server, its PostgreSQL backends, Redis and the load generator: "
    "other agents' work. Both are rough: /proc/stat's machine-wide times are sampled on timer "
    "ticks and undercount a bursty load on a mostly idle machine (others' CPU then goes below "
    "zero); they are trustworthy when the machine is busy. Per-process CPU times (server, Redis, "
    "PostgreSQL backends, load generator) are exact. "
    "This machine has 2 cores. The load generator is pinned to CPU 1; (a) and (b) run the "
    "server on CPU 0, (c) lets its two workers use both CPUs, so in (c) the load generator "
    "competes with a worker for CPU 1, and Redis and PostgreSQL (not pinned) compete with "
    "everything. Other agents use the same CPUs, Redis and PostgreSQL: Redis's CPU includes "
    "theirs (see its figure under (a), which does not use Redis)."
)


def write_json(
    path: Path,
    config: Config,
    runs: list[dict[str, Any]],
    summary: dict[str, Any],
    ratios: dict[str, float],
    machine: dict[str, Any],
) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("postgres_url",)}
    cfg["postgres_url"] = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", config.postgres_url)
    cfg["scenario"] = SCENARIO
    cfg["source"] = source_state()
    cfg["variants"] = {
        k: {**dataclasses.asdict(VARIANTS[k]), "pinning": VARIANTS[k].pinning}
        for k in config.variants
    }
    path.write_text(
        json.dumps(
            _clean(
                {
                    "machine": machine,
                    "config": cfg,
                    "caveats": CAVEATS,
                    "summary": summary,
                    "ratios": ratios,
                    "paired_by_repeat": paired_all(runs),
                    "runs": runs,
                }
            ),
            indent=1,
            allow_nan=False,
        )
    )


def source_state() -> dict[str, Any]:
    """The commit measured, and the files changed outside bench/ (the server measured may differ)."""
    import subprocess

    from bench.targets import ROOT

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [
        line[3:]
        for line in git("status", "--porcelain").splitlines()
        if not line[3:].startswith(("bench/", "tests/"))
    ]
    return {"commit": git("rev-parse", "HEAD"), "changed_outside_bench_and_tests": changed}


def _clean(obj: Any) -> Any:
    """JSON-ready: NaN becomes null, sets become sorted lists."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj) if isinstance(obj, set | frozenset) else obj
        return [_clean(v) for v in items]
    return obj


if __name__ == "__main__":
    # `python -m bench.scaleout bench/results/scaleout-*.json`: print a run's report again.
    import sys

    from bench.report import machine as _machine

    for name in sys.argv[1:]:
        cfg, recorded = load(Path(name))
        summary = summaries(recorded, cfg.variants)
        data_machine = __import__("json").loads(Path(name).read_text())["machine"]
        print(report_text(cfg, recorded, summary, derived(summary), data_machine or _machine()))
