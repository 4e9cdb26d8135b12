"""Every kind of server frame, provoked on a real server, fits docs/ws-frames.schema.json (WS.recv checks each)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import WS, Api, User
from tests.support.clients import FRAME_SCHEMA, checked_frame


def _until(ws: WS, kind: str, seen: set[str]) -> dict[str, Any]:
    """Read (each frame checked by WS.recv) until a frame of `kind`; note every type seen."""
    while True:
        frame = ws.recv()
        seen.add(frame["type"])
        if frame["type"] == kind:
            return frame


def test_each_kind_of_server_frame_fits_the_schema(api: Api, alice: User, bob: User) -> None:
    """ready, joined, message, ack, member_joined/left, presence, typing, read, room_deleted, left, pong, error.

    Every kind of client frame is sent on the way: auth, join, typing, send, read, ping, leave.
    """
    seen: set[str] = set()
    room = api.create_room(alice, "frames")["id"]
    with WS.open(api.server.ws_url) as late:  # no header: the auth frame instead
        late.send({"type": "auth", "token": alice.token})
        _until(late, "ready", seen)
    with alice.ws() as a:
        a.send({"type": "join", "room": room})
        _until(a, "joined", seen)
        assert bob.join(room).status_code == 200
        _until(a, "member_joined", seen)
        with bob.ws() as b:
            _until(a, "presence", seen)
            b.send({"type": "join", "room": room})
            _until(b, "joined", seen)
            b.send({"type": "typing", "room": room})
            _until(a, "typing", seen)
            b.send({"type": "send", "room": room, "body": "hello", "client_msg_id": "f-1"})
            _until(b, "ack", seen)
            _until(a, "message", seen)
            a.send({"type": "read", "room": room, "seq": 1})
            _until(a, "read", seen)
            a.send({"type": "ping"})
            _until(a, "pong", seen)
            b.send({"type": "send", "room": "not-joined", "body": "x", "client_msg_id": "f-2"})
            error = _until(b, "error", seen)
            assert error["client_msg_id"] == "f-2"
            b.send({"type": "leave", "room": room})
            _until(b, "left", seen)
            _until(a, "member_left", seen)
        assert api.delete(f"/api/rooms/{room}", alice.token).status_code == 204
        _until(a, "room_deleted", seen)
    assert seen == set(FRAME_SCHEMA["$defs"]["ServerFrame"]["properties"]["type"]["enum"])


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ready", "username": "bob", "admin": True},
        {"type": "ack", "room": "r", "client_msg_id": "c", "seq": "1"},
        {"type": "whisper", "room": "r"},
    ],
)
def test_the_clients_refuse_a_frame_that_breaks_the_schema(frame: dict[str, Any]) -> None:
    """The check every e2e receive runs fails on an extra field, a wrong type or an unknown kind."""
    with pytest.raises(AssertionError, match="ws-frames.schema.json"):
        checked_frame(json.dumps(frame))
