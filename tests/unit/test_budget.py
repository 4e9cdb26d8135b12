"""The inbound budget and the frame counter, with a fake clock (plain numbers for `now`)."""

from __future__ import annotations

import struct

from chat.budget import FrameCounter, InboundBudget


def frame(payload: bytes, opcode: int = 0x1, masked: bool = True) -> bytes:
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def test_reads_are_free_within_the_burst() -> None:
    """A client inside both bursts never waits."""
    b = InboundBudget(10, 20, 1000, 5000, now=0.0)
    for _ in range(20):
        assert b.wait_s(0.0) == 0
        b.charge(0.0, 1, 100)
    assert b.held_s(0.0) == 0


def test_frames_over_the_burst_wait_for_the_rate() -> None:
    """Past the frame burst, the reader waits until the debt is paid at the frame rate."""
    b = InboundBudget(10, 20, 1e9, 10**9, now=0.0)
    b.charge(0.0, 25, 0)
    assert b.wait_s(0.0) == 0.5  # 5 frames of debt at 10 per second
    assert b.wait_s(0.25) == 0.25
    assert b.wait_s(0.5) == 0


def test_bytes_over_the_burst_wait_for_the_byte_rate() -> None:
    """The byte bucket holds the reader back on its own, and the longer wait wins."""
    b = InboundBudget(1000, 1000, 100, 100, now=0.0)
    b.charge(0.0, 1, 300)
    assert b.wait_s(0.0) == 2.0


def test_buckets_refill_up_to_the_burst_only() -> None:
    """A quiet minute does not buy more than one burst."""
    b = InboundBudget(10, 20, 1e9, 10**9, now=0.0)
    b.wait_s(60.0)
    b.charge(60.0, 21, 0)
    assert b.wait_s(60.0) == 0.1


def test_held_time_grows_while_every_read_waits_and_resets_after_a_free_read() -> None:
    """held_s counts how long the client has stayed over budget, without a break."""
    b = InboundBudget(10, 10, 1e9, 10**9, now=0.0)
    now = 0.0
    b.charge(now, 10, 0)
    for _ in range(30):  # the reader's loop against a client that always has 5 frames waiting
        wait = b.wait_s(now)
        if wait > 0:
            now += wait  # it sleeps instead of reading
        else:
            b.charge(now, 5, 0)
    assert b.held_s(now) >= 5.0
    later = now + 10  # the client paused long enough to refill the buckets
    assert b.wait_s(later) == 0
    assert b.held_s(later) > 0, "the first read after a wait still counts as held"
    b.charge(later, 1, 0)
    assert b.wait_s(later + 0.5) == 0
    assert b.held_s(later + 0.5) == 0


def test_counter_counts_every_kind_of_frame() -> None:
    """Text, binary, ping, pong, close and continuation frames all count."""
    data = b"".join(frame(b"x", op) for op in (0x1, 0x2, 0x9, 0xA, 0x8, 0x0))
    assert FrameCounter().feed(data) == 6


def test_counter_follows_frames_split_anywhere() -> None:
    """Headers and payloads split across reads (even byte by byte) are counted once each."""
    frames = [frame(b"a" * n) for n in (0, 5, 125, 126, 300, 65535, 65536, 70000)]
    data = b"".join(frames) + frame(b"u", masked=False)
    for step in (1, 2, 3, 7, 4096, len(data)):
        counter = FrameCounter()
        total = sum(counter.feed(data[i : i + step]) for i in range(0, len(data), step))
        assert total == len(frames) + 1, step
