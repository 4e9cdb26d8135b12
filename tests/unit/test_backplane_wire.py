"""The backplane's wire format (encode/decode round trips, malformed input) and LocalBackplane.

No Redis here: these are the pure parts of core.backplane.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import pytest

from core.backplane import LocalBackplane, decode, encode_event, encode_messages

ORIGIN = "a1b2c3d4e5f6"


class Hung(Exception):
    """decode() was still running after its CPU budget."""


def decode_within(data: bytes, cpu_s: float = 0.2) -> tuple[str, str, Any]:
    """decode(data), or Hung if it spins; a CPU-time timer leaves pytest-timeout's SIGALRM alone."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"decode({data!r}) did not return")

    old = signal.signal(signal.SIGVTALRM, stop)
    signal.setitimer(signal.ITIMER_VIRTUAL, cpu_s)
    try:
        return decode(data)
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, old)


# ---- round trips --------------------------------------------------------------


@pytest.mark.parametrize(
    "items",
    [
        [],
        [("room1", 1, b'{"type":"message"}')],
        [("r", 7, b"")],
        [("r", 1, b"line one\nline two\n"), ("r", 2, b" spaced  out ")],
        [("r", 3, b"\n"), ("r", 4, b" "), ("r", 5, b"\n \n")],
        [("r", 9, bytes(range(256)))],
        [("r", 10, b"r 11 5\nfake!")],  # a frame that looks like a header
        [("a", 1, b"x"), ("b", 2**40, b"y"), ("a", 2, b"z")],
        [("big", 1, b"\x81\x7e" + b"\n" * 300_000 + b"end")],
    ],
    ids=[
        "empty",
        "one",
        "empty-frame",
        "newlines",
        "only-separators",
        "all-bytes",
        "header-lookalike",
        "rooms",
        "large",
    ],
)
def test_messages_round_trip(items: list[tuple[str, int, bytes]]) -> None:
    """Every frame comes back byte for byte, in order, with its room and seq."""
    data = encode_messages(ORIGIN, items)
    assert data.startswith(b"M" + ORIGIN.encode() + b"\n")
    assert decode(data) == ("M", ORIGIN, items)


def test_many_messages_round_trip() -> None:
    """A batch of a thousand messages decodes to the same thousand."""
    items = [(f"room{i % 7}", i, f"frame {i}\n".encode() * (i % 5)) for i in range(1, 1001)]
    assert decode(encode_messages(ORIGIN, items)) == ("M", ORIGIN, items)


def test_event_round_trip() -> None:
    """Events are compact JSON objects with a string k; non-ASCII survives."""
    event = {"k": "online", "u": "zoë", "n": [1, 2.5, None], "nested": {"a": True}}
    data = encode_event(ORIGIN, event)
    assert data.startswith(b"E" + ORIGIN.encode() + b"\n{")
    assert b" " not in data  # compact separators
    assert decode(data) == ("E", ORIGIN, event)


def test_an_event_body_may_contain_newlines() -> None:
    """Only the first newline ends the header."""
    event = {"k": "logout", "why": "line\nbreak"}
    assert decode(encode_event(ORIGIN, event)) == ("E", ORIGIN, event)


# ---- malformed input ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"M",
        b"Mworker",  # no newline
        b"\nbody",  # no kind
        b"M\n",  # no origin
        b"Xworker\n",  # unknown kind
        b"mworker\n",
        b"Mw\nr 1 3",  # header without its newline
        b"Mw\nr 1\nabc",  # two fields
        b"Mw\nr 1 3 4\nabc",  # four fields
        b"Mw\nr x 3\nabc",  # seq not a number
        b"Mw\nr 1 three\nabc",  # size not a number
        b"Mw\nr 1 10\nabc",  # frame runs past the end
        b"Mw\nr 1 1\nxtrailing",  # garbage after the last frame
        b"Mw\n\n",  # empty header
        b"M\xff\xfe\n",  # origin not UTF-8
        b"Mw\n\xff 1 1\nx",  # room not UTF-8
        b"Ew\n",  # no JSON
        b"Ew\n{not json",
        b"Ew\n[1, 2]",  # not an object
        b'Ew\n"k"',
        b'Ew\n{"u": "x"}',  # no k
        b'Ew\n{"k": 5}',  # k not a string
        b"Ew\n\xff",
    ],
)
def test_malformed_input_raises_value_error(data: bytes) -> None:
    """Whatever arrives on the channel, decode() either decodes it or raises ValueError."""
    with pytest.raises(ValueError):
        decode_within(data)


def test_a_negative_frame_length_raises_value_error() -> None:
    """b'r 1 -7' sends the read position back to the same header; that must be refused."""
    with pytest.raises(ValueError):
        decode_within(b"Mw\nr 1 -7\n")


# ---- LocalBackplane -----------------------------------------------------------


def test_local_backplane_emits_to_its_own_handler_only() -> None:
    """emit() calls the handler with this worker's id; publish and publish_messages do nothing."""
    bp = LocalBackplane()
    assert bp.clustered is False and bp.connected is True
    assert len(bp.worker_id) == 12 and int(bp.worker_id, 16) >= 0
    assert LocalBackplane().worker_id != bp.worker_id
    bp.emit({"k": "ignored before start"})  # no handler yet: harmless

    events: list[tuple[str, dict[str, Any]]] = []
    other: list[object] = []
    bp.start(
        on_messages=other.append,
        on_event=lambda origin, event: events.append((origin, event)),
        on_connected=lambda: other.append("connected"),
        on_tick=other.append,
    )
    bp.emit({"k": "typing", "r": "room", "u": "alice"})
    bp.publish({"k": "online", "u": "alice"})
    bp.publish_messages([("room", 1, b"frame")])
    bp.stop()
    assert events == [(bp.worker_id, {"k": "typing", "r": "room", "u": "alice"})]
    assert other == []
