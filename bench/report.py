"""Turning results into the printed table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path
from typing import Any

from bench.scenarios import Result

BASELINES = ("flask-socketio", "websockets", "node-ws")


def median_result(results: list[Result]) -> Result:
    """The repeat whose server CPU per delivery is the median (so one run's figures stay together)."""
    ordered = sorted(
        results, key=lambda r: (math.isnan(r.cpu_us_per_delivery), r.cpu_us_per_delivery)
    )
    return ordered[(len(ordered) - 1) // 2]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def saturation_max(results: list[Result], server: str) -> Result | None:
    """The highest clean delivered rate with p99 < 200 ms, over the fan-out and saturation steps."""
    steps = ("fan-out 10k/s", "fan-out 50k/s", "saturation")
    ok = [
        r
        for r in results
        if r.server == server and r.scenario in steps and r.clean and r.p99_ms < 200
    ]
    return max(ok, key=lambda r: r.delivered_per_s) if ok else None


def table(results: list[Result]) -> str:
    servers = list(dict.fromkeys(r.server for r in results))
    lines = [
        "| server | scenario | offered msg/s | delivered/s | p50 ms | p99 ms | max ms | lost | dup | CPU µs/delivery | RSS/conn KiB | loadgen bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.scenario == "saturation":
            continue
        lines.append(
            f"| {r.server} | {r.scenario} | {r.offered_msgs_per_s:g} | {r.delivered_per_s:,.0f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.max_ms:.1f} | {r.lost} | {r.duplicated} | {r.cpu_us_per_delivery:.1f} | "
            f"{'' if math.isnan(r.rss_per_conn_kib) else f'{r.rss_per_conn_kib:.1f}'} | {'yes' if r.loadgen_bound else 'no'} |"
        )
    steps = ("fan-out 10k/s", "fan-out 50k/s", "saturation")
    for s in servers:
        if not any(r.server == s and r.scenario in steps for r in results):
            continue  # neither fan-out nor saturation was run
        best = saturation_max(results, s)
        lines.append(
            f"| {s} | saturation: highest lossless rate with p99 < 200 ms ({best.scenario}) | "
            f"{best.offered_msgs_per_s:g} | {best.delivered_per_s:,.0f} | {best.p50_ms:.1f} | {best.p99_ms:.1f} | {best.max_ms:.1f} | 0 | 0 | {best.cpu_us_per_delivery:.1f} |  | {'yes' if best.loadgen_bound else 'no'} |"
            if best
            else f"| {s} | saturation | no clean step | | | | | | | | | |"
        )
    return "\n".join(lines)


def connect_costs(results: list[Result]) -> str:
    """Each server's CPU per connection to connect, authenticate and join (the idle scenario)."""
    costs = [
        f"{r.server} {r.connect_cpu_us_per_conn:,.0f} µs"
        for r in results
        if r.scenario == "idle" and not math.isnan(r.connect_cpu_us_per_conn)
    ]
    return "Connecting and joining, server CPU per connection: " + ", ".join(costs) if costs else ""


def ratios(results: list[Result]) -> str:
    """Greenroom against each baseline, per scenario (below 1 is better for CPU and memory)."""
    out = []

    def pick(server: str, scenario: str) -> Result | None:
        rs = [r for r in results if r.server == server and r.scenario == scenario]
        return rs[-1] if rs else None

    for base in BASELINES:
        for scenario, field, better in (
            ("fan-out 50k/s", "cpu_us_per_delivery", "CPU per delivery"),
            ("many rooms", "cpu_us_per_delivery", "CPU per delivery"),
            ("idle", "rss_per_conn_kib", "RSS per connection"),
            ("idle", "connect_cpu_us_per_conn", "CPU to connect and join"),
        ):
            g, b = pick("greenroom", scenario), pick(base, scenario)
            if g and b and getattr(b, field) and not math.isnan(getattr(b, field)):
                out.append(
                    f"{scenario}: Greenroom {better} = {getattr(g, field) / getattr(b, field):.2f}× {base}"
                )
        g, b = saturation_max(results, "greenroom"), saturation_max(results, base)
        if g and b:
            out.append(
                f"saturation: Greenroom highest lossless rate = {g.delivered_per_s / b.delivered_per_s:.2f}× {base}"
            )
    return "\n".join(out)


def source(root: Path) -> dict[str, Any]:
    """Which code a server ran: the checkout's commit and how many files differ from it."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "root": str(root),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines()),
    }


def write_json(
    path: Path, results: list[Result], config: dict[str, Any], extra: dict[str, Any] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "machine": machine(),
                "config": config,
                "results": [r.as_dict() for r in results],
                **(extra or {}),
            },
            indent=1,
            default=lambda x: None if isinstance(x, float) and math.isnan(x) else x,
        )
    )


def chart(path: Path, results: list[Result]) -> bool:
    """The fan-out chart; False (and no file) when no fan-out step was run, or without
    matplotlib (bench/requirements.txt, which `make bench` installs): the table and the
    JSON file matter more than the picture."""
    if not any(r.scenario in ("saturation", "fan-out 50k/s") for r in results):
        return False
    try:
        import matplotlib
    except ImportError:
        print("no chart: matplotlib is not installed (pip install -r bench/requirements.txt)")
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for server in dict.fromkeys(r.server for r in results):
        pts = sorted(
            (r.delivered_per_s, r.p99_ms, r.clean)
            for r in results
            if r.server == server and r.scenario in ("saturation", "fan-out 50k/s")
        )
        if not pts:
            continue
        pts = [p for p in pts if p[0] > 0 and p[1] > 0]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, marker="o", label=server)
        for x, y, clean in pts:
            if not clean:
                ax.plot([x], [y], marker="x", color="black")
    ax.axhline(200, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("delivered messages per second (1 room × 500 members)")
    ax.set_ylabel("p99 latency, ms (x: lost or duplicated)")
    ax.set_title("Fan-out latency against delivered rate, one server process")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True


def summary_stats(values: list[float]) -> float:
    return statistics.median(values)
