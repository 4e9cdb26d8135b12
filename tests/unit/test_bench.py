"""The benchmark's own bookkeeping: counting loss, duplicates and order by seq; picking results."""

from __future__ import annotations

import time

from bench.report import saturation_max
from bench.scenarios import Receiver, Result, percentile


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
