"""The `make bench` / `python -m bench` command: runs every scenario against every server."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import gevent

from bench import report, underattack
from bench import scaleout as scaleout_mod
from bench.attack import KINDS
from bench.procstat import rss_kib
from bench.scenarios import FANOUT_SENDERS, Result, Room, close_rooms, drive, open_rooms
from bench.targets import TARGETS, Greenroom, Target, raise_nofile, target_for

LOADGEN_CPU = 1
SCENARIOS = ("idle", "fan-out", "saturation", "many-rooms", "under-attack")
FIXED_RATE = ("fan-out", "many-rooms", "under-attack")  # what --interleave can run
ATTACKERS: list[str] = list(KINDS)  # --attackers
EVERY_REPEAT: list[Result] = []  # every fan-out repeat, in run order, for the JSON
RESULTS = Path(__file__).resolve().parent / "results"


def say(text: str) -> None:
    click.echo(text, err=True)


def _setup_loadgen() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {LOADGEN_CPU})
    raise_nofile()


@click.command()
@click.option(
    "--quick", is_flag=True, help="One short repeat of each scenario (under a minute per server)."
)
@click.option(
    "--servers",
    default=",".join(TARGETS),
    show_default=True,
    help="Comma-separated servers to measure; greenroom@PATH runs Greenroom from the "
    "checkout at PATH (e.g. an older commit, to compare before and after in one run); "
    "greenroom+NAME=VALUE (also after @PATH, repeatable) gives that server a setting of "
    "its own, e.g. greenroom,greenroom+GREENROOM_METRICS=0 for metrics on and off.",
)
@click.option(
    "--scenarios",
    default=",".join(SCENARIOS),
    show_default=True,
    help="Comma-separated scenarios to run. under-attack (Greenroom only) runs many rooms "
    "calm and attacked, alternating, in every repeat.",
)
@click.option(
    "--attackers",
    default="unauthenticated,ping",
    show_default=True,
    help="With under-attack: which attackers run (to tell their costs apart).",
)
@click.option(
    "--server-env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an environment variable of every Greenroom server, over the benchmark's own "
    "settings (e.g. GREENROOM_INBOUND_FRAMES_PER_S=100 to measure a default it lifts); "
    "repeatable.",
)
@click.option(
    "--interleave",
    is_flag=True,
    help="Start every server at once and run the fixed-rate scenarios (fan-out, many-rooms, "
    "under-attack) repeat by repeat across servers (A B, B A, ...) instead of one server "
    "after the other; idle and saturation are not run.",
)
@click.option(
    "--idle", "idle_conns", type=int, help="Idle connections (default 20000, 2000 with --quick)."
)
@click.option(
    "--repeats",
    type=int,
    help="Repeats per fixed-rate scenario; the median is reported (default 3, 1 with --quick).",
)
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
@click.option(
    "--scaleout",
    is_flag=True,
    help="Run only the scale-out comparison instead: (a) 1 worker on SQLite, (p) 1 worker on "
    "PostgreSQL, (b) 1 worker on PostgreSQL + Redis, (c) 2 workers on PostgreSQL + Redis, on "
    "the same many-rooms scenario (--quick: one repeat, shorter steps).",
)
@click.option(
    "--variants",
    default="a,p,b,c",
    show_default=True,
    help="With --scaleout: which variants to run (p: 1 worker on PostgreSQL without Redis, "
    "which splits the backplane's cost into PostgreSQL's and Redis's).",
)
@click.option(
    "--postgres-url",
    envvar="BENCH_POSTGRES_URL",
    default="postgresql://postgres@127.0.0.1:5432/test",
    show_default=True,
    help="With --scaleout: the database in which each run gets its own schema (dropped after).",
)
@click.option(
    "--redis-url",
    envvar="BENCH_REDIS_URL",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="With --scaleout: the Redis for the backplane (each run gets its own channel).",
)
def main(
    quick: bool,
    servers: str,
    scenarios: str,
    attackers: str,
    server_env: tuple[str, ...],
    interleave: bool,
    idle_conns: int | None,
    repeats: int | None,
    out: Path,
    scaleout: bool,
    variants: str,
    postgres_url: str,
    redis_url: str,
) -> None:
    """Benchmark Greenroom against Flask-SocketIO, a plain websockets broadcast server and
    the same chat on Node's ws (skipped with a note where Node or its node_modules is missing).

    Each server runs as its own process pinned to CPU 0; this load generator runs on
    CPU 1. Reports delivered messages/s, latency p50/p99/max, lost and duplicated
    messages, server CPU µs per delivery, RSS per connection, and ratios to the baselines.

    under-attack (Greenroom only, bench/underattack.py) runs many rooms calm and with an
    unauthenticated flooder and a never-reading ping flooder beside it (bench/attack.py,
    their own process on the load generator's CPU), alternating, and checks that nothing
    is lost and p99 and CPU per delivery stay within 1.5x.

    With --scaleout, only the scale-out comparison runs instead (bench/scaleout.py):
    Greenroom on 1 worker against 2 workers sharing rooms through PostgreSQL and the
    Redis backplane; the 2 workers may use both CPUs.

    \b
    Examples:
      make bench
      python -m bench --quick
      python -m bench --servers greenroom --idle 20000
      python -m bench --servers greenroom@/tmp/before,greenroom --interleave \\
          --scenarios fan-out,many-rooms,under-attack
      python -m bench --scaleout [--quick]
    """
    _setup_loadgen()
    if scaleout:
        keys = tuple(v.strip() for v in variants.split(",") if v.strip())
        unknown_variants = set(keys) - set(scaleout_mod.VARIANTS)
        if unknown_variants or not keys:
            raise click.UsageError(f"unknown variants: {', '.join(sorted(unknown_variants))}")
        run_scaleout(quick, repeats, out, keys, postgres_url, redis_url)
        return
    names = [s.strip() for s in servers.split(",") if s.strip()]
    try:
        targets = [target_for(name) for name in names]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # A baseline that cannot run here (node-ws without Node) is left out with a one-line note.
    skipped = [t.skip_note() for t in targets if t.skip_note()]
    targets = [t for t in targets if not t.skip_note()]
    for note in skipped:
        say(note)
    if not targets:
        raise click.UsageError("no server left to measure")
    overrides = dict(item.split("=", 1) for item in server_env if "=" in item)
    if len(overrides) != len(server_env):
        raise click.UsageError("--server-env takes NAME=VALUE")
    for target in targets:
        if isinstance(target, Greenroom) and overrides:
            # A server's own +NAME=VALUE settings win over --server-env's.
            mine = {**overrides, **target.settings}
            target.env = _with_env(target.env, mine)  # type: ignore[method-assign]
    picked = {s.strip() for s in scenarios.split(",") if s.strip()}
    if picked - set(SCENARIOS) or not picked:
        raise click.UsageError(f"unknown scenarios: {', '.join(sorted(picked - set(SCENARIOS)))}")
    if interleave and not picked & set(FIXED_RATE):
        raise click.UsageError(f"--interleave runs only {', '.join(FIXED_RATE)}")
    kinds = tuple(k.strip() for k in attackers.split(",") if k.strip())
    if set(kinds) - set(KINDS) or not kinds:
        raise click.UsageError(f"--attackers takes {', '.join(KINDS)}")
    ATTACKERS[:] = kinds
    repeats = repeats or (1 if quick else 3)
    # 20,000 is the target; a machine whose hard open-files limit is lower (this
    # sandbox's is 20,000, and root may not raise it) gets as many as fit, said in the report.
    idle_conns = idle_conns or (2000 if quick else min(20000, raise_nofile() - 500))
    step_s = 2.0 if quick else 5.0
    settle_s = 15.0 if quick else 30.0
    versions = {t.name: t.versions() for t in targets if t.versions()}
    config = {
        "quick": quick,
        "repeats": repeats,
        "idle": idle_conns,
        "step_s": step_s,
        "scenarios": sorted(picked),
        "interleave": interleave,
        "attackers": kinds,
        "server_env": overrides,
        "sources": {t.name: report.source(t.root) for t in targets},
        "versions": versions,
        "skipped": skipped,
    }
    results: list[Result] = []
    records: list[underattack.AttackRecord] = []
    started = time.monotonic()
    if interleave:
        say(f"== {', '.join(t.name for t in targets)}, interleaved")
        try:
            for target in targets:
                target.start()
            results, records = run_fixed(targets, picked, repeats, step_s, settle_s)
        finally:
            for target in targets:
                target.stop()
    else:
        for target in targets:
            say(f"== {target.name}")
            target.start()
            try:
                r, a = run_all(target, picked, repeats, idle_conns, step_s, settle_s)
                results += r
                records += a
            finally:
                target.stop()
    elapsed = {"total_s": round(time.monotonic() - started)}
    summary = underattack.summarize(records)
    rows = underattack.before_after(results)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out / f"bench-{stamp}.json"
    png_path = out / f"bench-{stamp}.png"
    report.write_json(
        json_path,
        results,
        {**config, **elapsed},
        {
            "under_attack": {"summary": summary, "pairs": [r.as_dict() for r in records]},
            "before_after": rows,
            "fan_out_repeats": [r.as_dict() for r in EVERY_REPEAT],
        },
    )
    charted = report.chart(png_path, results)
    click.echo(report.table(results))
    click.echo("")
    click.echo(report.ratios(results))
    if costs := report.connect_costs(results):
        click.echo(costs)
    if summary:
        click.echo(
            "\nUnder attack (many rooms + 1 unauthenticated flooder + 1 never-reading ping flooder):"
        )
        click.echo(underattack.attack_table(summary))
        click.echo(underattack.attack_notes(summary))
    if rows:
        click.echo("")
        click.echo(underattack.before_after_table(rows))
    click.echo(f"\nmachine: {report.machine()}")
    for name, version in versions.items():
        click.echo(f"{name}: {version}")
    for note in skipped:
        click.echo(note)
    written = f"{json_path} and {png_path}" if charted else str(json_path)
    click.echo(f"wrote {written} in {time.monotonic() - started:.0f} s")


def _with_env(
    env: Callable[[], dict[str, str]], extra: dict[str, str]
) -> Callable[[], dict[str, str]]:
    return lambda: {**env(), **extra}


def run_scaleout(
    quick: bool,
    repeats: int | None,
    out: Path,
    variants: tuple[str, ...],
    postgres_url: str,
    redis_url: str,
) -> None:
    """The scale-out comparison (bench/scaleout.py): run, print the tables, write the JSON."""
    config = scaleout_mod.Config(
        postgres_url=postgres_url,
        redis_url=redis_url,
        repeats=repeats or (1 if quick else 3),
        step_s=2.0 if quick else 5.0,
        refine=1 if quick else 2,
        variants=variants,
    )
    started = time.monotonic()
    runs = scaleout_mod.run(config, say)
    summary = scaleout_mod.summaries(runs, variants)
    ratios = scaleout_mod.derived(summary)
    json_path = out / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    scaleout_mod.write_json(json_path, config, runs, summary, ratios, report.machine())
    click.echo(scaleout_mod.report_text(config, runs, summary, ratios, report.machine()))
    click.echo(f"wrote {json_path} in {time.monotonic() - started:.0f} s")


def run_fixed(
    targets: list[Target], picked: set[str], repeats: int, step_s: float, settle_s: float
) -> tuple[list[Result], list[underattack.AttackRecord]]:
    """The fixed-rate scenarios on every target, repeat by repeat across targets (ABBA)."""
    results: list[Result] = []
    records: list[underattack.AttackRecord] = []
    if "fan-out" in picked:
        say(f"fan-out: 1 room x 500 members, {FANOUT_SENDERS} senders in turn")
        runs = [(t, open_rooms(t, 1, 500, say)) for t in targets]
        results += fanout_steps(runs, repeats, step_s)
        for _, rooms in runs:
            close_rooms(rooms)
        gevent.sleep(1.0)
    if picked & {"many-rooms", "under-attack"}:
        results_m, records = many_rooms(targets, picked, repeats, step_s, settle_s)
        results += results_m
    return results, records


def fanout_steps(
    runs: list[tuple[Target, list[Room]]], repeats: int, step_s: float
) -> list[Result]:
    results = []
    for rate, label in ((20, "fan-out 10k/s"), (100, "fan-out 50k/s")):
        per: dict[str, list[Result]] = {t.name: [] for t, _ in runs}
        for i in range(repeats):
            for target, rooms in underattack.alternate(runs, i):
                r = drive(target, label, rooms, rate=rate, seconds=step_s * 2)
                per[target.name].append(r)
                EVERY_REPEAT.append(r)
        for target, _ in runs:
            best = report.median_result(per[target.name])
            results.append(best)
            say(
                f"  {target.name} {label}: {best.cpu_us_per_delivery} µs/delivery, "
                f"p99 {best.p99_ms} ms, lost {best.lost}"
            )
    return results


def many_rooms(
    targets: list[Target], picked: set[str], repeats: int, step_s: float, settle_s: float
) -> tuple[list[Result], list[underattack.AttackRecord]]:
    attack = "under-attack" in picked
    say(
        "many rooms: 100 rooms x 10 members, each member 1 message/s"
        + (" (calm and under attack, alternating)" if attack else "")
    )
    runs = [(t, open_rooms(t, 100, 10, say)) for t in targets]
    try:
        results, records = underattack.many_rooms_steps(
            runs, repeats, step_s * 2, attack, LOADGEN_CPU, settle_s, say, tuple(ATTACKERS)
        )
    finally:
        for _, rooms in runs:
            close_rooms(rooms)
    return results, records


def run_all(
    target: Target, picked: set[str], repeats: int, idle_conns: int, step_s: float, settle_s: float
) -> tuple[list[Result], list[underattack.AttackRecord]]:
    results: list[Result] = []
    if "idle" in picked:
        results.append(run_idle(target, idle_conns))
        if picked - {"idle"}:
            # Idle takes a server to its limits (Flask-SocketIO runs out of file
            # descriptors and was seen still refusing connections a minute later):
            # the other scenarios start on a fresh process, as idle did.
            target.stop()
            target.start()
    if "fan-out" in picked or "saturation" in picked:
        say(f"fan-out: 1 room x 500 members, {FANOUT_SENDERS} senders in turn")
        rooms = open_rooms(target, 1, 500, say)
        if "fan-out" in picked:
            results += fanout_steps([(target, rooms)], repeats, step_s)
        if "saturation" in picked:
            results += run_saturation(target, rooms, step_s)
        close_rooms(rooms)
        gevent.sleep(1.0)
    records: list[underattack.AttackRecord] = []
    if picked & {"many-rooms", "under-attack"} and (
        "many-rooms" in picked or isinstance(target, Greenroom)
    ):
        results_m, records = many_rooms([target], picked, repeats, step_s, settle_s)
        results += results_m
    return results, records


def run_idle(target: Target, idle_conns: int) -> Result:
    # Idle first, on a fresh process, so RSS per connection is not muddied by earlier load.
    target.prepare(min(idle_conns, 2000))
    gevent.sleep(0.5)
    base_rss = rss_kib(target.pid)[0]
    say(f"idle: opening {idle_conns} connections in rooms of 100")
    rooms = []
    per_room = min(100, idle_conns)
    connect_cpu = 0.0
    for _ in range(max(1, idle_conns // per_room)):
        try:
            room_id = target.new_room()  # made apart: only connecting and joining are timed
            cpu0 = target.cpu_seconds()
            rooms += open_rooms(target, 1, per_room, lambda _: None, room_ids=[room_id])
            connect_cpu += target.cpu_seconds() - cpu0
        except (OSError, TimeoutError, ConnectionError) as exc:
            # A server that runs out (file descriptors, memory) holds what it holds.
            say(
                f"  {target.name} stopped accepting after {len(rooms) * per_room} connections: {exc}"
            )
            break
    say(f"  {target.name}: {len(rooms) * per_room} connections open")
    gevent.sleep(1.0)
    idle = drive(target, "idle", rooms, rate=len(rooms), seconds=1.0, conn_baseline_rss=base_rss)
    opened = len(rooms) * per_room
    idle = dataclasses.replace(
        idle, connect_cpu_us_per_conn=round(connect_cpu * 1e6 / opened, 1) if opened else math.nan
    )
    say(f"  idle: connecting and joining took {idle.connect_cpu_us_per_conn} µs of server CPU each")
    # One probe per room on average; what matters is that every probe arrives.
    say(f"  idle: {idle.rss_per_conn_kib} KiB/conn, delivered {idle.delivered}/{idle.expected}")
    close_rooms(rooms)
    gevent.sleep(1.0)
    return idle


def run_saturation(target: Target, rooms: list[Room], step_s: float) -> list[Result]:
    results = []
    say("saturation: raising the fan-out rate until p99 > 200 ms or any loss")
    for rate in (200, 400, 700, 1000, 1500, 2000, 3000, 4000):
        r = drive(target, "saturation", rooms, rate=rate, seconds=step_s)
        results.append(r)
        say(
            f"  {rate} msg/s: {r.delivered_per_s:,.0f} deliveries/s, p99 {r.p99_ms} ms, lost {r.lost}, dup {r.duplicated}"
        )
        if not r.clean or r.p99_ms > 200:
            break
    return results


if __name__ == "__main__":
    sys.exit(main())
