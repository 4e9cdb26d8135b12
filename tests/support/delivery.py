"""Live delivery over /ws, read the way the delivery tests need: pipelined sends with their acks, a ping as a barrier.

The server answers the frames of one connection in order, so the pong to a ping comes
after everything queued to that connection before it: `until_pong` waits on that,
never on the clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from tests.support.clients import WS, Api, User
from tests.support.servers import ServerProcess

NOTICES = ("presence", "typing", "member_joined", "member_left")


def until_pong(ws: WS) -> list[dict[str, Any]]:
    """Send a ping and return every frame that arrives before its pong.

    The server answers frames of one connection in order, so anything queued to this
    connection before the ping was read (for example a message published before another
    client's ack) arrives before the pong.
    """
    ws.send({"type": "ping"})
    frames = []
    while True:
        frame = ws.recv()
        if frame["type"] == "pong":
            return frames
        frames.append(frame)


def of_type(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["seq"] for m in messages]


def say(
    ws: WS, room: str, body: str, cmid: str | None = None, inbox: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Send one message and wait for its ack; message frames read meanwhile go to `inbox`."""
    return send_many(ws, room, [body], cmid or secrets.token_hex(6), inbox, exact_ids=True)[0]


def send_many(
    ws: WS,
    room: str,
    bodies: list[str],
    prefix: str,
    inbox: list[dict[str, Any]] | None = None,
    exact_ids: bool = False,
) -> list[dict[str, Any]]:
    """Pipeline sends without waiting, then read until each has its ack; returns the acks in send order.

    Message frames read meanwhile are appended to `inbox` (the sender gets its own messages too).
    """
    cmids = [prefix] if exact_ids else [f"{prefix}-{i}" for i in range(len(bodies))]
    for cmid, body in zip(cmids, bodies, strict=True):
        ws.send({"type": "send", "room": room, "body": body, "client_msg_id": cmid})
    acks: dict[str, dict[str, Any]] = {}
    while len(acks) < len(cmids):
        frame = ws.recv()
        if frame["type"] == "ack" and frame["client_msg_id"] in cmids:
            acks[frame["client_msg_id"]] = frame
        elif frame["type"] == "message":
            if inbox is not None:
                inbox.append(frame)
        elif frame["type"] not in NOTICES:
            raise AssertionError(f"expected acks, got {frame}")
    return [acks[c] for c in cmids]


def rest_messages(api: Api, user: User, room: str, **params: Any) -> dict[str, Any]:
    r = api.get(f"/api/rooms/{room}/messages", user.token, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def dedicated(make_server: Callable[..., ServerProcess], **env: str) -> Api:
    return Api(make_server("ws", **env))
