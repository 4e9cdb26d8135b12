"""The under-attack scenario's bookkeeping: the attackers' frames, the paired summary and its
verdict, the before/after rows, the ABBA order and `greenroom@PATH` targets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.attack import flood_stream, ping_stream
from bench.scenarios import Result
from bench.targets import Greenroom, target_for
from bench.underattack import AttackRecord, alternate, before_after, misses, summarize
from bench.wsclient import frame as masked_frame

MASK = b"\x11\x22\x33\x44"


def parse(stream: bytes) -> list[tuple[int, bool, bytes]]:
    """(opcode, masked, unmasked payload) of each frame in a client byte stream."""
    out, pos = [], 0
    while pos < len(stream):
        b0, b1 = stream[pos], stream[pos + 1]
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(stream[pos : pos + 2], "big"), pos + 2
        key, pos = stream[pos : pos + 4], pos + 4
        body = bytes(b ^ key[i % 4] for i, b in enumerate(stream[pos : pos + n]))
        out.append((b0 & 0x0F, bool(b1 & 0x80), body))
        assert b0 & 0x80, "every frame is final"
        pos += n
    return out


def test_masked_frame_round_trips_short_and_medium_payloads() -> None:
    """A client frame has the mask bit and key, and unmasking gives the payload back."""
    for payload in (b"ping", b"x" * 125, b"y" * 300):
        frame = masked_frame(payload, 0x1, MASK)
        assert parse(frame) == [(0x1, True, payload)]


def test_flood_stream_mixes_pings_text_and_binary_and_counts_its_frames() -> None:
    """The unauthenticated flooder writes ping, text ping and binary frames, all masked."""
    data, frames = flood_stream(MASK, size=1000)
    parsed = parse(data)
    assert len(parsed) == frames and len(data) >= 1000
    assert {op for op, _, _ in parsed} == {0x9, 0x1, 0x2}
    assert all(masked for _, masked, _ in parsed)
    assert (0x1, True, b'{"type":"ping"}') in parsed


def test_ping_stream_is_only_full_size_pings() -> None:
    """The ping flooder writes masked ping control frames of the largest allowed payload."""
    data, frames = ping_stream(MASK, size=500)
    parsed = parse(data)
    assert len(parsed) == frames
    assert all(op == 0x9 and masked and len(body) == 125 for op, masked, body in parsed)


def test_alternate_is_abba() -> None:
    """Repeats alternate the order, so a drifting neighbour weighs on both sides alike."""
    assert [alternate("ab", i) for i in range(4)] == [
        ["a", "b"],
        ["b", "a"],
        ["a", "b"],
        ["b", "a"],
    ]


def result(scenario: str, p99: float, cpu: float, lost: int = 0, delivered: int = 100) -> Result:
    return Result("g", scenario, 1000, 1000, 10, delivered, 100, 1.0, 100.0, 1.0, p99, p99,
                  lost, 0, 0, cpu, 50.0, 0, 0, math.nan, 50.0, False)  # fmt: skip


def record(calm: Result, hit: Result, repeat: int = 0, server: str = "g") -> AttackRecord:
    return AttackRecord(server, repeat, repeat % 2 == 1, calm, hit, 100 << 10, 120 << 10,
                        110 << 10, 1.0, True,
                        {"unauthenticated": {"connections": 3, "bytes": 2_000_000},
                         "ping": {"connections": 1, "bytes": 1_000_000}}, 12.0, 0)  # fmt: skip


def test_summary_uses_medians_and_meets_the_target_within_one_and_a_half() -> None:
    """Ratios are attacked/calm medians; within 1.5x and nothing lost is met."""
    recs = [
        record(result("c", 10, 40), result("a", 12, 50), 0),
        record(result("c", 20, 44), result("a", 14, 60), 1),
        record(result("c", 30, 50), result("a", 90, 55), 2),
    ]
    s = summarize(recs)["g"]
    assert (s["p99_ms_calm"], s["p99_ms_attacked"]) == (20, 14)
    assert s["p99_ms_ratio"] == pytest.approx(0.7)
    assert s["cpu_us_ratio"] == pytest.approx(55 / 44)
    assert s["p99_ms_paired_ratios"] == [1.2, 0.7, 3.0]
    assert s["met"] and s["misses"] == []
    assert s["attack_connections"] == {"unauthenticated": 9, "ping": 3}
    assert s["rss_before_mib"] == 100 and s["rss_end_mib"] == 120


def test_summary_misses_on_loss_on_ratio_and_on_a_frozen_server() -> None:
    """Any loss, a ratio over 1.5x, or nothing delivered at all is reported as a miss."""
    slow = summarize([record(result("c", 10, 40), result("a", 16, 40))])["g"]
    assert not slow["met"] and slow["misses"] == ["p99 1.60x (limit 1.5x)"]
    lossy = summarize([record(result("c", 10, 40), result("a", 10, 40, lost=1))])["g"]
    assert not lossy["met"] and "lost 1" in lossy["misses"][0]
    nan = math.nan
    frozen = summarize([record(result("c", 10, 40), result("a", nan, nan, 100, 0))])["g"]
    assert "nothing delivered under attack" in frozen["misses"]
    assert "p99 not measurable (limit 1.5x)" in misses(frozen)


def test_before_after_pairs_each_scenario_of_the_two_checkouts() -> None:
    """greenroom@PATH is the before, greenroom the after; the ratio is after/before CPU."""
    rows = before_after(
        [
            Result(
                "greenroom@/old",
                "fan-out 50k/s",
                100,
                500,
                1,
                1,
                1,
                1.0,
                1.0,
                1.0,
                9.0,
                9.0,
                0,
                0,
                0,
                8.0,
                50.0,
                0,
                0,
                math.nan,
                50.0,
                False,
            ),
            Result(
                "greenroom",
                "fan-out 50k/s",
                100,
                500,
                1,
                1,
                1,
                1.0,
                1.0,
                1.0,
                5.0,
                5.0,
                0,
                0,
                0,
                6.0,
                50.0,
                0,
                0,
                math.nan,
                50.0,
                False,
            ),
            Result(
                "greenroom",
                "many rooms",
                1000,
                1000,
                1,
                1,
                1,
                1.0,
                1.0,
                1.0,
                5.0,
                5.0,
                0,
                0,
                0,
                40.0,
                50.0,
                0,
                0,
                math.nan,
                50.0,
                False,
            ),
        ]  # fmt: skip
    )
    assert len(rows) == 1
    assert rows[0]["scenario"] == "fan-out 50k/s" and rows[0]["cpu_ratio"] == 0.75
    assert (rows[0]["before"], rows[0]["p99_ms_before"], rows[0]["p99_ms_after"]) == (
        "greenroom@/old",
        9.0,
        5.0,
    )


def test_target_for_runs_greenroom_from_another_checkout(tmp_path: Path) -> None:
    """greenroom@PATH is Greenroom from PATH's Procfile; anything else at a path is refused."""
    (tmp_path / "Procfile").write_text("web: gunicorn -w 1 app:app\n")
    (tmp_path / "app.py").write_text("")
    target = target_for(f"greenroom@{tmp_path}")
    assert isinstance(target, Greenroom)
    assert target.name == f"greenroom@{tmp_path}" and target.root == tmp_path.resolve()
    assert target.command()[-1] == "exec gunicorn -w 1 app:app"
    assert target_for("greenroom").name == "greenroom"
    for bad in ("nope", "websockets@/tmp", f"greenroom@{tmp_path / 'missing'}", "greenroom@"):
        with pytest.raises(ValueError):
            target_for(bad)


def test_server_env_overrides_win_over_the_benchmarks_own_settings() -> None:
    """--server-env values replace what the target's env() would set, and add new names."""
    from bench.cli import _with_env

    env = _with_env(lambda: {"A": "1", "B": "2"}, {"B": "3", "C": "4"})
    assert env() == {"A": "1", "B": "3", "C": "4"}
