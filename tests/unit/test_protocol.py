"""Parsing client frames and encoding server frames, without a socket."""

from __future__ import annotations

import json

import pytest

from chat.protocol import parse_frame
from core.errors import ChatError
from core.wire import encode_text, iso


def parse(obj: object) -> object:
    return parse_frame(json.dumps(obj), max_message_chars=10)


def error_of(text: str | bytes) -> ChatError:
    with pytest.raises(ChatError) as info:
        parse_frame(text, max_message_chars=10)
    return info.value


def test_valid_frames_parse() -> None:
    """Each client frame type parses into its fields."""
    assert parse({"type": "ping"}).type == "ping"
    join = parse({"type": "join", "room": "r1", "since": 4})
    assert (join.room, join.since) == ("r1", 4)
    send = parse({"type": "send", "room": "r", "body": "hi", "client_msg_id": "c1"})
    assert (send.body, send.client_msg_id) == ("hi", "c1")
    read = parse({"type": "read", "room": "r", "seq": 0})
    assert (read.room, read.seq) == ("r", 0)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "invalid_frame"),
        (b"\x00binary", "invalid_frame"),
        ("[1, 2]", "invalid_frame"),
        ('{"room": "r"}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "join"}', "invalid_frame"),
        ('{"type": "join", "room": "r", "since": "3"}', "invalid_frame"),
        ('{"type": "join", "room": "r", "since": true}', "invalid_frame"),
        ('{"type": "join", "room": "r", "since": -1}', "invalid_frame"),
        ('{"type": "send", "room": "r", "body": 5, "client_msg_id": "c"}', "invalid_frame"),
        ('{"type": "send", "room": "r", "body": "   ", "client_msg_id": "c"}', "invalid_message"),
        (
            '{"type": "send", "room": "r", "body": "12345678901", "client_msg_id": "c"}',
            "invalid_message",
        ),
        ('{"type": "send", "room": "r", "body": "ok", "client_msg_id": ""}', "invalid_message"),
        ('{"type": "read", "room": "r"}', "invalid_frame"),
        ('{"type": "read", "room": "r", "seq": -1}', "invalid_frame"),
        ('{"type": "read", "room": "r", "seq": "3"}', "invalid_frame"),
        ('{"type": "read", "room": "r", "seq": 2.5}', "invalid_frame"),
        ('{"type": "read", "room": "r", "seq": false}', "invalid_frame"),
        ('{"type": "read", "seq": 3}', "invalid_frame"),
    ],
)
def test_bad_frames_raise_the_documented_code(text: str | bytes, code: str) -> None:
    """Every malformed frame maps to one documented error code."""
    assert error_of(text).code == code


def test_errors_echo_room_and_client_msg_id() -> None:
    """An error caused by a frame repeats its room and client_msg_id."""
    err = error_of('{"type": "send", "room": "r9", "body": "", "client_msg_id": "c7"}')
    assert err.to_dict()["room"] == "r9" and err.to_dict()["client_msg_id"] == "c7"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_encode_text_lengths(size: int) -> None:
    """Server frames use the 7-bit, 16-bit and 64-bit length forms of RFC 6455, unmasked."""
    frame = encode_text(b"x" * size)
    assert frame[0] == 0x81 and frame[1] & 0x80 == 0
    header = {True: 2, False: 4 if size < 65536 else 10}[size < 126]
    assert len(frame) == header + size


def test_iso_is_utc_with_millis() -> None:
    """Timestamps are ISO-8601 UTC with milliseconds and a Z."""
    assert iso(0.5) == "1970-01-01T00:00:00.500Z"
