"""Read markers and unread counts against a real server: the REST route, the `read` frame,
the fields on rooms and `joined`, and the `read` event every connection of the user gets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import WS, Api, User


def marker(api: Api, user: User, room: str) -> tuple[int, int]:
    """(last_read_seq, unread) as GET /api/rooms/<id> tells the user."""
    body = api.get(f"/api/rooms/{room}", user.token).json()
    return body["last_read_seq"], body["unread"]


def post(api: Api, user: User, room: str, *bodies: str) -> None:
    for body in bodies:
        assert api.post(f"/api/rooms/{room}/messages", user.token, json={"body": body}).ok


def mark(api: Api, user: User, room: str, body: Any) -> Any:
    return api.post(f"/api/rooms/{room}/read", user.token, json=body)


def quiet(ws: WS) -> None:
    """Nothing but the answer to a ping is waiting: a `read` frame sent by mistake would fail here."""
    ws.send({"type": "ping"})
    assert ws.expect("pong", skip=("presence",))["type"] == "pong"


def test_the_marker_moves_forward_only_and_counts_only_others_messages(
    api: Api, alice: User, bob: User
) -> None:
    """A new member starts at the room's last seq; own messages never count; the marker never
    moves back nor past last_seq; rooms you are not in carry no marker."""
    room = api.create_room(alice, "reading")["id"]
    assert marker(api, alice, room) == (0, 0)
    post(api, alice, room, "one", "two")
    joined = bob.join(room).json()
    assert (joined["last_read_seq"], joined["unread"]) == (2, 0)  # joined after: nothing unread
    post(api, bob, room, "three")
    post(api, alice, room, "four", "five")
    assert marker(api, alice, room) == (0, 1)  # only bob's seq 3: alice's own count as read
    assert marker(api, bob, room) == (2, 2)

    other = api.create_room(alice, "not bob's")["id"]
    listed = {r["id"]: r for r in api.list_all("/api/rooms", bob.token, "rooms")}
    assert (listed[room]["last_read_seq"], listed[room]["unread"]) == (2, 2)
    assert "last_read_seq" not in listed[other] and "unread" not in listed[other]

    r = mark(api, bob, room, {"seq": 4})
    assert r.status_code == 200 and r.json() == {"room": room, "last_read_seq": 4, "unread": 1}
    assert mark(api, bob, room, {"seq": 1}).json()["last_read_seq"] == 4  # never backwards
    assert mark(api, bob, room, {"seq": 10**12}).json() == {
        "room": room,
        "last_read_seq": 5,
        "unread": 0,
    }
    # Leaving ends the marker with the membership; joining again starts afresh.
    assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
    post(api, alice, room, "six")
    assert bob.join(room).json()["last_read_seq"] == 6


@pytest.mark.parametrize(
    "body",
    [{}, {"seq": -1}, {"seq": "3"}, {"seq": True}, {"seq": 1.5}, {"seq": None}, [3], "3"],
)
def test_a_bad_seq_is_refused_with_bad_request(api: Api, alice: User, body: Any) -> None:
    room = api.create_room(alice, "bad seq")["id"]
    r = mark(api, alice, room, body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", r.text


def test_only_members_have_markers(api: Api, alice: User, bob: User) -> None:
    room = api.create_room(alice, "members only")["id"]
    r = mark(api, bob, room, {"seq": 0})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_member"
    r = mark(api, bob, "nosuchroom", {"seq": 0})
    assert r.status_code == 404 and r.json()["error"]["code"] == "room_not_found"
    r = api.post(f"/api/rooms/{room}/read", json={"seq": 0})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_a_read_frame_tells_every_connection_of_the_user_and_no_one_else(
    api: Api, alice: User, bob: User
) -> None:
    """Two connections of bob (one never joined the room) agree on the marker, whether it moved
    by a frame or by REST; a frame that does not move it is answered to its own connection only."""
    room = api.create_room(alice, "two tabs")["id"]
    bob.join(room)
    with bob.ws() as b1, bob.ws() as b2, alice.ws() as a:
        first = b1.join(room)
        assert (first["last_read_seq"], first["unread"]) == (0, 0)
        a.join(room)
        a.say(room, "hi bob")
        a.say(room, "are you there?")
        assert [b1.expect("message")["seq"] for _ in range(2)] == [1, 2]

        b1.send({"type": "read", "room": room, "seq": 2})
        expected = {"type": "read", "room": room, "last_read_seq": 2, "unread": 0}
        assert b1.expect("read") == expected
        assert b2.expect("read") == expected  # b2 never joined the room
        quiet(a)

        b2.send({"type": "read", "room": room, "seq": 1})  # behind the marker: nothing moves
        assert b2.expect("read") == expected
        quiet(b1)

        a.say(room, "still there?")
        assert b1.expect("message")["seq"] == 3
        assert mark(api, bob, room, {"seq": 3}).json()["last_read_seq"] == 3
        for ws in (b1, b2):
            assert ws.expect("read", skip=("message",))["last_read_seq"] == 3
        a.say(room, "one more")
        rejoined = b2.join(room)
        assert (rejoined["last_read_seq"], rejoined["unread"]) == (3, 1)

        # A room bob is not in: an error frame for that room, and the connection goes on.
        other = api.create_room(alice, "not bob's")["id"]
        b2.send({"type": "read", "room": other, "seq": 0})
        err = b2.expect("error", skip=("message",))
        assert (err["code"], err["room"]) == ("not_a_member", other)
        quiet(b2)
