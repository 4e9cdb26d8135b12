"""The benchmark's own bookkeeping: counting loss, duplicates and order by seq; picking results;
the scale-out comparison's rate search, connection split, /proc parsing and summaries."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import pytest

from bench.procstat import cpu_delta, parse_cpu_times, parse_tcp_table
from bench.report import ratios, saturation_max
from bench.scaleout import (
    backend_state,
    backends_by_state,
    best_step,
    connection_split,
    derived,
    log_problems,
    next_rate,
    paired_all,
    summaries,
)
from bench.scenarios import Receiver, Result, percentile
from bench.targets import NODE_WS, TARGETS, Greenroom, NodeWsBaseline, target_for, with_workers
from bench.underattack import before_after


def message(seq: int) -> bytes:
    return b'{"type":"message","room":"r","seq":%d,"user":"u","body":"%d"}' % (
        seq,
        time.perf_counter_ns(),
    )


def test_receiver_counts_in_order_messages_and_flags_repeats_and_gaps() -> None:
    """A repeat is a duplicate, a skipped seq is counted as out of order, other frames are ignored."""
    rec = Receiver(last=10)
    for seq in (11, 12, 12, 14):
        rec.on_text(message(seq))
    rec.on_text(b'{"type":"ack","room":"r","client_msg_id":"c","seq":99}')
    assert (rec.count, rec.dups, rec.gaps, rec.last) == (3, 1, 1, 14)
    assert len(rec.latencies) == 3 and all(x >= 0 for x in rec.latencies)


def test_receiver_reads_baseline_json_with_spaces() -> None:
    """The websockets baseline's json.dumps puts spaces after colons; the parser still finds seq."""
    rec = Receiver()
    rec.on_text(
        b'{"type": "message", "room": "r", "seq": 1, "body": "%d"}' % time.perf_counter_ns()
    )
    assert rec.count == 1


def test_percentile_in_ms() -> None:
    """Percentiles come from sorted nanoseconds and are reported in milliseconds."""
    values = sorted(i * 1_000_000 for i in range(101))
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.99) == 99.0


def result(server: str, scenario: str, rate: float, p99: float, lost: int = 0) -> Result:
    nan = float("nan")
    return Result(server, scenario, rate, 500, 1, 1, 1, 1.0, rate * 500, 1.0, p99, p99, lost, 0, 0,
                  1.0, 50.0, 0, 0, nan, 50.0, False)  # fmt: skip


def test_saturation_is_the_best_clean_step_under_200_ms() -> None:
    """The highest delivered rate counts only if nothing was lost and p99 stayed under 200 ms."""
    runs = [
        result("g", "fan-out 50k/s", 100, 10),
        result("g", "saturation", 400, 150),
        result("g", "saturation", 700, 250),
        result("g", "saturation", 1000, 100, lost=5),
    ]
    best = saturation_max(runs, "g")
    assert best is not None and best.offered_msgs_per_s == 400
    assert saturation_max([result("s", "saturation", 200, 900)], "s") is None


# ---- the scale-out comparison (bench/scaleout.py) ------------------------------------


def test_with_workers_sets_the_procfile_worker_count() -> None:
    """The Procfile's -w value, literal or ${WEB_CONCURRENCY:-1}, becomes the wanted count."""
    assert with_workers("gunicorn -k gevent -w 1 --bind x 'app:create_app()'", 2) == (
        "gunicorn -k gevent -w 2 --bind x 'app:create_app()'"
    )
    assert with_workers("gunicorn -w ${WEB_CONCURRENCY:-1} --worker-connections 9", 3) == (
        "gunicorn -w 3 --worker-connections 9"
    )
    with pytest.raises(ValueError):
        with_workers("gunicorn --worker-connections 9", 2)


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0
   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 202 1 0
   3: 0100007F:1F90 0100007F:C351 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0
"""


def test_tcp_table_maps_the_servers_accepted_sockets_to_client_ports() -> None:
    """Only established sockets whose local port is the server's (8080) count; keyed by inode."""
    assert parse_tcp_table(TCP, 8080) == {201: 50000}
    assert parse_tcp_table(TCP, 50000) == {202: 8080}


def test_cpu_delta_counts_new_processes_from_zero() -> None:
    """A backend born during the window counts whole; one that exited is not readable any more."""
    assert cpu_delta({1: 1.0, 2: 5.0}, {1: 1.5, 3: 0.25}) == 0.75


def test_machine_cpu_times_split_busy_steal_and_idle() -> None:
    """user+nice+system+irq+softirq are busy; idle and iowait are not; steal is apart."""
    text = "cpu  100 5 20 800 10 1 2 7 3 0\ncpu0 50 2 10 400 5 0 1 3 0 0\n"
    assert parse_cpu_times(text) == (128, 7, 945)


def h(*steps: tuple[float, bool]) -> list[tuple[float, bool]]:
    return list(steps)


def test_rate_search_goes_up_until_a_failure_then_bisects() -> None:
    """×1.5 from the best pass; after a failure, `refine` bisections; rates rounded to 50."""
    nxt = lambda history: next_rate(history, factor=1.5, max_rate=5000, refine=2)  # noqa: E731
    assert nxt(h((250, True))) == 400  # 375: halves round up
    assert nxt(h((1000, True))) == 1500
    assert nxt(h((1000, True), (1500, False))) == 1250
    assert nxt(h((1000, True), (1500, False), (1250, True))) == 1400  # 1375 -> 1400
    assert nxt(h((1000, True), (1500, False), (1250, True), (1400, False))) is None
    assert nxt(h((4000, True))) == 5000  # capped at max_rate
    assert nxt(h((4000, True), (5000, True))) is None


def test_rate_search_goes_down_when_the_first_rate_fails() -> None:
    """Nothing passed yet: ÷1.5 until a pass, then the bisections between it and the failure."""
    nxt = lambda history: next_rate(history, factor=1.5, max_rate=5000, refine=1)  # noqa: E731
    assert nxt(h((1000, False))) == 650  # 666.7 -> 650
    assert nxt(h((1000, False), (650, False))) == 450  # 433 -> 450
    assert nxt(h((1000, False), (650, True))) == 850  # 825 -> 850
    assert nxt(h((1000, False), (650, True), (850, True))) is None
    assert nxt(h((50, False))) is None  # nothing below min_rate


def test_best_step_is_the_fastest_clean_one_under_the_limit() -> None:
    steps = [
        result("v", "s", 250, 10),
        result("v", "s", 400, 150),
        result("v", "s", 600, 250),
        result("v", "s", 500, 50, lost=3),
    ]
    best = best_step(steps, 200)
    assert best is not None and best.offered_msgs_per_s == 400
    assert best_step([result("v", "s", 250, 300)], 200) is None


def test_connection_split_counts_per_worker_and_rooms_on_both() -> None:
    """Workers are named by pid order; a room counts when it has members on every worker."""
    split = connection_split([[11, 12, 11], [11, 11, 11], [12, 12, None]])
    assert split["workers"] == {"w1": 11, "w2": 12}
    assert split["connections"] == {"w1": 5, "w2": 3}
    assert split["unknown"] == 1
    assert (split["rooms"], split["rooms_on_all_workers"]) == (3, 1)
    one = connection_split([[7, 7], [7]])
    assert one["connections"] == {"w1": 3} and one["rooms_on_all_workers"] == 2


def test_log_problems_keeps_warnings_errors_and_tracebacks() -> None:
    log = "\n".join(
        [
            "[2026-01-01 00:00:00 +0000] [10] [INFO] Booting worker with pid: 11",
            "2026-01-01 00:00:01,000 WARNING core.ratelimit: rate limits: Redis unreachable",
            "[2026-01-01 00:00:02 +0000] [10] [CRITICAL] WORKER TIMEOUT (pid:11)",
            "Traceback (most recent call last):",
            "2026-01-01 00:00:03,000 INFO greenroom: ready",
        ]
    )
    lines = log.splitlines()
    assert log_problems(log) == [lines[1], lines[2], lines[3]]


def test_backend_states_and_shares() -> None:
    """A waiting backend is labelled by its wait event; states are averaged over samples."""
    assert backend_state("active", "Lock", "transactionid") == "Lock:transactionid"
    assert backend_state("idle in transaction", "Client", "ClientRead") == "idle in transaction"
    assert backend_state("active", None, None) == "active"
    # 4 samples of 2 backends: one always idle, the other waiting for a lock half the time.
    counts = Counter({"idle": 4, "Lock:tuple": 2, "idle in transaction": 2})
    assert backends_by_state(counts, 4) == {
        "idle": 1.0,
        "Lock:tuple": 0.5,
        "idle in transaction": 0.5,
    }
    assert backends_by_state(Counter(), 0) == {}


def step(rate: float, delivered_per_s: float, p99: float, cpu: float, lost: int = 0) -> dict:
    return {
        "offered_msgs_per_s": rate,
        "delivered_per_s": delivered_per_s,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "lost": lost,
        "duplicated": 0,
        "out_of_order": 0,
        "loadgen_bound": False,
        "cpu_us_per_delivery": cpu,
        "redis_cpu_us_per_delivery": 1.0,
        "pg_cpu_us_per_delivery": 2.0,
        "total_cpu_us_per_delivery": cpu + 3.0,
        "server_cpu_pct": 50.0,
        "redis_cpu_pct": 1.0,
        "loadgen_cpu_pct": 10.0,
        "machine_busy_pct": 100.0,
        "others_cpu_pct": 30.0,
        "steal_pct": 0.0,
    }


def run_record(variant: str, fixed_p99: float, cpu: float, best: float | None) -> dict:
    return {
        "variant": variant,
        "fixed": step(250, 2500, fixed_p99, cpu),
        "best": step(best / 10, best, 100, cpu) if best else None,
        "log_problems": [],
        "restarts": [],
    }


def test_summaries_take_medians_and_derive_backplane_cost_and_ratios() -> None:
    """Per variant, the median of each figure over repeats; (b)-(a) and (c)/(b) from those."""
    runs = [
        run_record("a", 6, 40, 20000),
        run_record("a", 8, 50, 24000),
        run_record("a", 7, 45, 22000),
        run_record("b", 60, 100, 4000),
        run_record("b", 40, 120, 5000),
        {"variant": "b", "repeat": 3, "error": "RuntimeError()"},
        run_record("c", 20, 130, 8000),
        run_record("c", 30, 110, None),
    ]
    summary = summaries(runs, ("a", "p", "b", "c"))
    assert list(summary) == ["a", "b", "c"]  # p was not run
    assert summary["a"]["fixed"]["cpu_us_per_delivery"] == 45
    assert summary["b"]["fixed"]["p99_ms"] == 50 and summary["b"]["failed_runs"] == 1
    assert summary["c"]["best"]["delivered_per_s"] == 8000
    assert summary["c"]["searches_without_pass"] == 1
    d = derived(summary)
    assert d["backplane_server_cpu_us_per_delivery"] == 110 - 45
    assert d["backplane_total_cpu_us_per_delivery"] == 113 - 48
    assert "postgres_server_cpu_us_per_delivery" not in d
    assert d["c/b max delivered/s"] == 8000 / 4500
    assert d["c/b fixed p99"] == 25 / 50


def test_paired_figures_compare_variants_within_each_repeat() -> None:
    """c/b per repeat, only where both ran; a failed run or a search with no pass drops the pair."""
    runs = [
        {**run_record("a", 6, 40, 20000), "repeat": 1},
        {**run_record("b", 60, 100, 4000), "repeat": 1},
        {**run_record("c", 30, 120, 2000), "repeat": 1},
        {**run_record("a", 6, 50, 20000), "repeat": 2},
        {"variant": "b", "repeat": 2, "error": "RuntimeError()"},
        {**run_record("c", 30, 120, 6000), "repeat": 2},
        {**run_record("b", 10, 100, None), "repeat": 3},
        {**run_record("c", 30, 150, 3000), "repeat": 3},
    ]
    pairs = paired_all(runs)
    assert pairs["c/b max delivered/s"] == [0.5]
    assert pairs["c/b fixed p99"] == [0.5, 3.0]
    assert pairs["b-a server µs/delivery"] == [60.0]
    assert pairs["c/a max delivered/s"] == [0.1, 0.3]
    assert "p-a server µs/delivery" not in pairs


# ---- the node-ws baseline (bench/baselines/node_ws) ------------------------------------


def test_node_ws_runs_server_js_under_node_or_is_skipped_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """node from PATH runs the baseline's server.js; no node, or no node_modules, gives a
    one-line skip note instead of a start that would fail. No node process is started."""
    bin_dir, folder = tmp_path / "bin", tmp_path / "node_ws"
    bin_dir.mkdir()
    (bin_dir / "node").write_text("#!/bin/sh\n")
    (bin_dir / "node").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert NodeWsBaseline().command() == [str(bin_dir / "node"), str(NODE_WS / "server.js")]
    assert (NODE_WS / "server.js").is_file()
    assert "node_modules" in NodeWsBaseline(folder).skip_note()
    (folder / "node_modules" / "ws").mkdir(parents=True)
    (folder / "node_modules" / "ws" / "package.json").write_text('{"version": "8.0.0"}')
    assert NodeWsBaseline(folder).skip_note() == ""

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    note = NodeWsBaseline(folder).skip_note()
    assert note.startswith("node-ws skipped") and "node" in note and "\n" not in note
    assert list(TARGETS) == ["greenroom", "flask-socketio", "websockets", "node-ws"]


def test_ratios_name_node_ws_as_a_baseline() -> None:
    """Greenroom's figures are set against node-ws as against the Python baselines."""
    runs = [result("greenroom", "many rooms", 100, 5), result("node-ws", "many rooms", 100, 5)]
    runs[0].cpu_us_per_delivery, runs[1].cpu_us_per_delivery = 30.0, 15.0
    assert "many rooms: Greenroom CPU per delivery = 2.00× node-ws" in ratios(runs)


def test_server_specs_give_a_greenroom_settings_of_its_own(tmp_path: Path) -> None:
    """greenroom+NAME=VALUE is a second Greenroom differing in that setting, with @PATH too;
    its row in the before/after table compares it with plain greenroom."""
    off = target_for("greenroom+GREENROOM_METRICS=0")
    assert isinstance(off, Greenroom)
    assert off.name == "greenroom+GREENROOM_METRICS=0"
    assert off.env()["GREENROOM_METRICS"] == "0"
    assert "GREENROOM_METRICS" not in target_for("greenroom").env()

    checkout = tmp_path / "c+1"  # a + in a path is not a setting
    checkout.mkdir()
    (checkout / "Procfile").write_text("web: gunicorn 'app:build_app()'\n")
    (checkout / "app.py").write_text("")
    old = target_for(f"greenroom@{checkout}+A=1+B=x=y")
    assert isinstance(old, Greenroom)
    assert old.root == checkout.resolve()
    assert old.settings == {"A": "1", "B": "x=y"}
    assert old.name == f"greenroom@{checkout}+A=1+B=x=y"
    assert isinstance(target_for(f"greenroom@{checkout}"), Greenroom)
    with pytest.raises(ValueError):
        target_for("websockets+A=1")

    def many_rooms(server: str, cpu: float) -> Result:
        return Result(server, "many rooms", 1000, 10, 1, 1, 1, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 0,
                      cpu, 50.0, 0, 0, math.nan, 50.0, False)  # fmt: skip

    rows = before_after(
        [many_rooms("greenroom", 10.5), many_rooms("greenroom+GREENROOM_METRICS=0", 10)]
    )
    assert [(r["before"], r["cpu_ratio"]) for r in rows] == [
        ("greenroom+GREENROOM_METRICS=0", 1.05)
    ]
