"""The backplane's wire format (encode/decode round trips, malformed input) and LocalBackplane.

No Redis here: these are the pure parts of core.backplane.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import pytest

from core import events
from core.backplane import LocalBackplane, decode, encode_event, encode_messages
from core.events import (
    Goodbye,
    Heartbeat,
    Hello,
    MemberJoined,
    MemberLeft,
    Messages,
    PresenceChanged,
    ReadMarked,
    Resubscribed,
    RoomDeleted,
    SessionClosed,
    SessionIdle,
    StateWanted,
    Tick,
    Typing,
    UserOffline,
    UserOnline,
    WorkerState,
)
from tests.support.fakes import FakeClock

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


def test_local_backplane_emits_to_its_own_handlers_only() -> None:
    """emit() and local() run the handlers of that event type here; publish* send nothing."""
    bp = LocalBackplane(FakeClock())
    assert bp.clustered is False and bp.connected is True
    assert len(bp.worker_id) == 12 and int(bp.worker_id, 16) >= 0
    assert LocalBackplane(FakeClock()).worker_id != bp.worker_id
    bp.emit(Typing("room", "nobody"))  # no handler yet: harmless

    typing: list[tuple[str, Typing]] = []
    other: list[object] = []
    bp.subscribe(Typing, lambda origin, event: typing.append((origin, event)))
    bp.subscribe(UserOnline, lambda origin, event: other.append(event))
    bp.subscribe(Messages, lambda origin, event: other.append(event))
    bp.start()
    bp.emit(Typing("room", "alice"))
    bp.local(Typing("room", "bob"))
    bp.publish(UserOnline("alice"))
    bp.publish_messages([("room", 1, b"frame")])
    bp.stop()
    assert typing == [
        (bp.worker_id, Typing("room", "alice")),
        (bp.worker_id, Typing("room", "bob")),
    ]
    assert other == []


# ---- typed events --------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        MemberJoined("r", "alice"),
        MemberLeft("r", "alice"),
        RoomDeleted("r"),
        ReadMarked("alice", "r", 7, 2),
        Typing("r", "alice"),
        SessionClosed("abc", "Logged out."),
        UserOnline("alice"),
        UserOffline("alice"),
        Heartbeat(3),
        Hello(),
        StateWanted("w1"),
        WorkerState(("alice", "bob")),
        Goodbye(),
    ],
)
def test_every_wire_event_round_trips(event: events.Event) -> None:
    """Each event crosses as {"k": name, short keys...} and comes back equal, through the bytes too."""
    obj = events.encode(event)
    assert obj["k"] == event.WIRE
    assert events.decode(obj) == event
    kind, origin, body = decode(encode_event(ORIGIN, obj))
    assert isinstance(body, dict)
    assert (kind, origin, events.decode(body)) == ("E", ORIGIN, event)


def test_the_wire_form_is_unchanged() -> None:
    """Workers of the previous release read these keys: the form must not drift."""
    assert events.encode(MemberJoined("r", "u")) == {"k": "joined", "r": "r", "u": "u"}
    assert events.encode(SessionClosed("s", "why")) == {"k": "logout", "s": "s", "why": "why"}
    assert events.encode(WorkerState(("a",))) == {"k": "state", "u": ["a"]}
    assert events.encode(Heartbeat(2)) == {"k": "hb", "n": 2}


@pytest.mark.parametrize(
    "obj",
    [
        {"k": "nope"},
        {"k": 5},
        {"k": []},
        {"k": {"k": "joined"}},
        {},
        {"k": "joined", "r": "room"},  # no u
        {"k": "joined", "r": 1, "u": "x"},
        {"k": "hb", "n": "3"},
        {"k": "hb", "n": True},
        {"k": "state", "u": ["a", 1]},
        {"k": "state", "u": "a"},
    ],
)
def test_a_malformed_event_is_refused(obj: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        events.decode(obj)


def test_local_events_never_cross() -> None:
    """Events without a wire name stay in the process: encoding one is a bug, not a message."""
    for event in (SessionIdle("s"), PresenceChanged("u", "online"), Resubscribed(), Tick(1.0)):
        with pytest.raises(ValueError):
            events.encode(event)
