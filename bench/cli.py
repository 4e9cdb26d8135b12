"""The `make bench` / `python -m bench` command: runs every scenario against every server."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click
import gevent

from bench import report
from bench import scaleout as scaleout_mod
from bench.procstat import rss_kib
from bench.scenarios import Result, close_rooms, drive, open_rooms
from bench.targets import TARGETS, Target, raise_nofile

LOADGEN_CPU = 1
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
    help="Comma-separated servers to measure.",
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
    idle_conns: int | None,
    repeats: int | None,
    out: Path,
    scaleout: bool,
    variants: str,
    postgres_url: str,
    redis_url: str,
) -> None:
    """Benchmark Greenroom against Flask-SocketIO and a plain websockets broadcast server.

    Each server runs as its own process pinned to CPU 0; this load generator runs on
    CPU 1. Reports delivered messages/s, latency p50/p99/max, lost and duplicated
    messages, server CPU µs per delivery, RSS per connection, and ratios to the baselines.

    With --scaleout, only the scale-out comparison runs instead (bench/scaleout.py):
    Greenroom on 1 worker against 2 workers sharing rooms through PostgreSQL and the
    Redis backplane; the 2 workers may use both CPUs.

    \b
    Examples:
      make bench
      python -m bench --quick
      python -m bench --servers greenroom --idle 20000
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
    unknown = set(names) - set(TARGETS)
    if unknown:
        raise click.UsageError(f"unknown servers: {', '.join(sorted(unknown))}")
    repeats = repeats or (1 if quick else 3)
    # 20,000 is the target; a machine whose hard open-files limit is lower (this
    # sandbox's is 20,000, and root may not raise it) gets as many as fit, said in the report.
    idle_conns = idle_conns or (2000 if quick else min(20000, raise_nofile() - 500))
    step_s = 2.0 if quick else 5.0
    config = {"quick": quick, "repeats": repeats, "idle": idle_conns, "step_s": step_s}
    results: list[Result] = []
    started = time.monotonic()
    for name in names:
        target = TARGETS[name]()
        say(f"== {name}")
        target.start()
        try:
            results += run_all(target, repeats, idle_conns, step_s)
        finally:
            target.stop()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out / f"bench-{stamp}.json"
    png_path = out / f"bench-{stamp}.png"
    report.write_json(json_path, results, config)
    report.chart(png_path, results)
    click.echo(report.table(results))
    click.echo("")
    click.echo(report.ratios(results))
    click.echo(f"\nmachine: {report.machine()}")
    click.echo(f"wrote {json_path} and {png_path} in {time.monotonic() - started:.0f} s")


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


def run_all(target: Target, repeats: int, idle_conns: int, step_s: float) -> list[Result]:
    results: list[Result] = []
    # Idle first, on a fresh process, so RSS per connection is not muddied by earlier load.
    target.prepare(min(idle_conns, 2000))
    gevent.sleep(0.5)
    base_rss = rss_kib(target.pid)[0]
    say(f"idle: opening {idle_conns} connections in rooms of 100")
    rooms = []
    per_room = min(100, idle_conns)
    for _ in range(max(1, idle_conns // per_room)):
        try:
            rooms += open_rooms(target, 1, per_room, lambda _: None)
        except (OSError, TimeoutError, ConnectionError) as exc:
            # A server that runs out (file descriptors, memory) holds what it holds.
            say(
                f"  {target.name} stopped accepting after {len(rooms) * per_room} connections: {exc}"
            )
            break
    say(f"  {target.name}: {len(rooms) * per_room} connections open")
    gevent.sleep(1.0)
    idle = drive(target, "idle", rooms, rate=len(rooms), seconds=1.0, conn_baseline_rss=base_rss)
    # One probe per room on average; what matters is that every probe arrives.
    results.append(idle)
    say(f"  idle: {idle.rss_per_conn_kib} KiB/conn, delivered {idle.delivered}/{idle.expected}")
    close_rooms(rooms)
    gevent.sleep(1.0)

    say("fan-out: 1 room x 500 members, 1 sender")
    rooms = open_rooms(target, 1, 500, say)
    for rate, label in ((20, "fan-out 10k/s"), (100, "fan-out 50k/s")):
        runs = [drive(target, label, rooms, rate=rate, seconds=step_s * 2) for _ in range(repeats)]
        best = report.median_result(runs)
        results.append(best)
        say(
            f"  {label}: {best.cpu_us_per_delivery} µs/delivery, p99 {best.p99_ms} ms, lost {best.lost}"
        )
    say("saturation: raising the fan-out rate until p99 > 200 ms or any loss")
    for rate in (200, 400, 700, 1000, 1500, 2000, 3000, 4000):
        r = drive(target, "saturation", rooms, rate=rate, seconds=step_s)
        results.append(r)
        say(
            f"  {rate} msg/s: {r.delivered_per_s:,.0f} deliveries/s, p99 {r.p99_ms} ms, lost {r.lost}, dup {r.duplicated}"
        )
        if not r.clean or r.p99_ms > 200:
            break
    close_rooms(rooms)
    gevent.sleep(1.0)

    say("many rooms: 100 rooms x 10 members, each member 1 message/s")
    rooms = open_rooms(target, 100, 10, say)
    runs = [
        drive(target, "many rooms", rooms, rate=1000, seconds=step_s * 2) for _ in range(repeats)
    ]
    best = report.median_result(runs)
    results.append(best)
    say(
        f"  many rooms: {best.cpu_us_per_delivery} µs/delivery, p99 {best.p99_ms} ms, lost {best.lost}"
    )
    close_rooms(rooms)
    return results


if __name__ == "__main__":
    sys.exit(main())
