"""REST messages against the real server: posting, idempotent retries, rate limits and history paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support import ISO_UTC, NOT_AN_OBJECT, Api, ServerProcess, User, assert_error, raw_post

MESSAGE_FIELDS = {"room", "seq", "user", "body", "ts", "client_msg_id"}
MISSING_ROOM = "nosuchroom"


def post(
    api: Api, user: User, room: str, body: Any, client_msg_id: Any = None
) -> requests.Response:
    fields: dict[str, Any] = {"body": body}
    if client_msg_id is not None:
        fields["client_msg_id"] = client_msg_id
    return api.post(f"/api/rooms/{room}/messages", user.token, json=fields)


def history(api: Api, user: User, room: str, **params: Any) -> dict[str, Any]:
    r = api.get(f"/api/rooms/{room}/messages", user.token, params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    assert isinstance(page["messages"], list) and isinstance(page["has_more"], bool), page
    return page


def seqs(page: dict[str, Any]) -> list[int]:
    return [m["seq"] for m in page["messages"]]


def room_with_messages(api: Api, user: User, count: int) -> str:
    room = api.create_room(user, "history")["id"]
    for i in range(1, count + 1):
        r = post(api, user, room, f"message {i}")
        assert r.status_code == 201, r.text
    return room


# ---- post -----------------------------------------------------------------------


def test_post_message_returns_stored_message(api: Api, alice: User) -> None:
    """Posting answers 201 with the stored message: room, seq 1, user, body, ISO UTC ts and client_msg_id."""
    room = api.create_room(alice, "post")["id"]
    r = post(api, alice, room, "hello, world", "first-1")
    assert r.status_code == 201, r.text
    message = r.json()
    assert set(message) >= MESSAGE_FIELDS, message
    assert (message["room"], message["seq"], message["user"]) == (room, 1, alice.name)
    assert (message["body"], message["client_msg_id"]) == ("hello, world", "first-1")
    assert ISO_UTC.fullmatch(message["ts"]), message["ts"]
    assert history(api, alice, room)["messages"] == [message]


def test_post_message_without_client_msg_id(api: Api, alice: User) -> None:
    """client_msg_id is optional: a post without it is stored with client_msg_id null."""
    room = api.create_room(alice, "plain")["id"]
    r = post(api, alice, room, "no id")
    assert r.status_code == 201, r.text
    assert r.json()["client_msg_id"] is None
    assert r.json()["seq"] == 1


def test_post_messages_get_consecutive_seqs(api: Api, alice: User, bob: User) -> None:
    """Messages from several members get seq 1, 2, 3, ... in the order stored, with no gaps."""
    room = api.create_room(alice, "seq")["id"]
    assert bob.join(room).status_code == 200
    got = [post(api, u, room, f"n{i}").json()["seq"] for i, u in enumerate([alice, bob] * 3)]
    assert got == [1, 2, 3, 4, 5, 6]
    page = history(api, alice, room)
    assert seqs(page) == [1, 2, 3, 4, 5, 6]
    assert [m["user"] for m in page["messages"]] == [alice.name, bob.name] * 3


def test_post_keeps_body_exactly(api: Api, alice: User) -> None:
    """A body with unicode, newlines and surrounding spaces comes back unchanged."""
    room = api.create_room(alice, "exact")["id"]
    body = "  héllo\n\twörld 🎉 <b>&amp;</b>  "
    r = post(api, alice, room, body)
    assert r.status_code == 201, r.text
    assert r.json()["body"] == body
    assert history(api, alice, room)["messages"][0]["body"] == body


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"body": ""}, id="empty"),
        pytest.param({"body": "   "}, id="spaces"),
        pytest.param({"body": "\n\t \r\n"}, id="whitespace"),
        pytest.param({}, id="missing"),
        pytest.param({"body": None}, id="null"),
        pytest.param({"body": 42}, id="number"),
        pytest.param({"body": ["hi"]}, id="list"),
        pytest.param({"body": {"text": "hi"}}, id="object"),
        pytest.param({"body": True}, id="bool"),
        pytest.param({"body": "hi \ud800 there"}, id="lone-surrogate"),
        pytest.param({"body": "hi", "client_msg_id": 5}, id="number-client-msg-id"),
        pytest.param({"body": "hi", "client_msg_id": ""}, id="empty-client-msg-id"),
        pytest.param({"body": "hi", "client_msg_id": "x" * 1000}, id="huge-client-msg-id"),
    ],
)
def test_post_rejects_invalid_message(api: Api, alice: User, fields: dict[str, Any]) -> None:
    """An empty, blank or non-text body, or a bad client_msg_id, is refused with 400 invalid_message and nothing is stored."""
    room = api.create_room(alice, "invalid")["id"]
    r = api.post(f"/api/rooms/{room}/messages", alice.token, json=fields)
    assert_error(r, 400, "invalid_message")
    page = history(api, alice, room)
    assert page["messages"] == []
    assert post(api, alice, room, "after").json()["seq"] == 1  # no seq was used up


@pytest.mark.parametrize("data", NOT_AN_OBJECT)
def test_post_rejects_non_object_body(api: Api, alice: User, data: bytes) -> None:
    """A message body that is not a JSON object is refused with 400 bad_request."""
    room = api.create_room(alice, "raw")["id"]
    assert_error(
        raw_post(api, f"/api/rooms/{room}/messages", data, alice.token), 400, "bad_request"
    )


def test_post_message_length_limit(make_server: Callable[..., ServerProcess]) -> None:
    """A body of GREENROOM_MAX_MESSAGE_CHARS characters is accepted, one more is 400 invalid_message."""
    api = Api(make_server("len", GREENROOM_MAX_MESSAGE_CHARS="10"))
    user = api.new_user("len")
    room = api.create_room(user, "len")["id"]
    assert post(api, user, room, "x" * 10).status_code == 201
    assert post(api, user, room, "é" * 10).status_code == 201  # characters, not bytes
    assert_error(post(api, user, room, "x" * 11), 400, "invalid_message")
    assert_error(post(api, user, room, "é" * 11), 400, "invalid_message")
    assert seqs(history(api, user, room)) == [1, 2]


def test_post_by_non_member_refused(api: Api, alice: User, bob: User) -> None:
    """Posting to a room you are not in is refused with 403 not_a_member; after joining it works."""
    room = api.create_room(alice, "members-only")["id"]
    assert_error(post(api, bob, room, "let me in"), 403, "not_a_member")
    assert bob.join(room).status_code == 200
    r = post(api, bob, room, "in")
    assert r.status_code == 201, r.text
    assert r.json()["seq"] == 1  # the refused post used no seq


def test_post_after_leave_refused(api: Api, alice: User, bob: User) -> None:
    """Once you leave a room, posting to it is refused with 403 not_a_member."""
    room = api.create_room(alice, "left")["id"]
    assert bob.join(room).status_code == 200
    assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
    assert_error(post(api, bob, room, "still here?"), 403, "not_a_member")


def test_post_to_missing_room_not_found(api: Api, alice: User) -> None:
    """Posting to a room that does not exist is refused with 404 room_not_found."""
    assert_error(post(api, alice, MISSING_ROOM, "anyone?"), 404, "room_not_found")


def test_post_rate_limited(make_server: Callable[..., ServerProcess]) -> None:
    """Past GREENROOM_SEND_BURST posts, a fast sender gets 429 rate_limited with Retry-After; others still post."""
    srv = make_server("rate", GREENROOM_SEND_BURST="3", GREENROOM_SEND_RATE_PER_S="0.05")
    api = Api(srv)
    alice, bob = api.new_user("fast"), api.new_user("calm")
    room = api.create_room(alice, "rate")["id"]
    assert bob.join(room).status_code == 200
    for i in range(3):
        assert post(api, alice, room, f"burst {i}").status_code == 201
    r = post(api, alice, room, "one too many")
    assert_error(r, 429, "rate_limited")
    retry_after = r.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert_error(post(api, alice, room, "and another"), 429, "rate_limited")

    assert post(api, bob, room, "my own bucket").status_code == 201
    page = history(api, alice, room)
    assert [m["body"] for m in page["messages"]] == [
        "burst 0",
        "burst 1",
        "burst 2",
        "my own bucket",
    ]


def test_post_retry_with_same_client_msg_id_is_stored_once(api: Api, alice: User) -> None:
    """Re-posting with the same client_msg_id answers 200 with the same message and seq and stores nothing twice."""
    room = api.create_room(alice, "idem")["id"]
    first = post(api, alice, room, "exactly once", "idem-1")
    assert first.status_code == 201, first.text
    retry = post(api, alice, room, "exactly once", "idem-1")
    assert retry.status_code == 200, retry.text  # documented: 200 on a retry
    assert retry.json() == first.json()
    assert post(api, alice, room, "next", "idem-2").json()["seq"] == first.json()["seq"] + 1
    page = history(api, alice, room)
    assert [(m["seq"], m["client_msg_id"]) for m in page["messages"]] == [
        (1, "idem-1"),
        (2, "idem-2"),
    ]


def test_client_msg_id_is_per_user(api: Api, alice: User, bob: User) -> None:
    """Two users using the same client_msg_id in one room post two distinct messages."""
    room = api.create_room(alice, "per-user")["id"]
    assert bob.join(room).status_code == 200
    a = post(api, alice, room, "from alice", "shared-id")
    b = post(api, bob, room, "from bob", "shared-id")
    assert (a.status_code, b.status_code) == (201, 201), (a.text, b.text)
    assert (a.json()["seq"], b.json()["seq"]) == (1, 2)
    assert [m["user"] for m in history(api, alice, room)["messages"]] == [alice.name, bob.name]


def test_client_msg_id_reused_in_other_room_is_an_error(api: Api, alice: User) -> None:
    """Reusing a client_msg_id in another room is refused with 409 client_msg_id_reused and stores nothing there."""
    first = api.create_room(alice, "one")["id"]
    second = api.create_room(alice, "two")["id"]
    assert post(api, alice, first, "here", "moved-id").status_code == 201
    r = post(api, alice, second, "there", "moved-id")
    assert_error(r, 409, "client_msg_id_reused")
    assert history(api, alice, second)["messages"] == []


def test_rest_post_reaches_websocket_members(api: Api, alice: User, bob: User) -> None:
    """A message posted over REST arrives live as a message frame on every joined WebSocket, once."""
    room = api.create_room(alice, "bridge")["id"]
    assert bob.join(room).status_code == 200
    with bob.ws() as b, alice.ws() as a:
        b.join(room)
        a.join(room)
        r = post(api, alice, room, "over http", "rest-1")
        assert r.status_code == 201, r.text
        assert b.expect("message") == {"type": "message", **r.json()}
        assert a.expect("message") == {"type": "message", **r.json()}

        # A retry is not delivered again: the next frame is the next message.
        assert post(api, alice, room, "over http", "rest-1").json()["seq"] == 1
        nxt = post(api, bob, room, "reply", "rest-2").json()
        assert b.expect("message")["seq"] == nxt["seq"] == 2
        assert a.expect("message")["seq"] == 2


# ---- history --------------------------------------------------------------------


def test_history_of_empty_room(api: Api, alice: User) -> None:
    """A room without messages has an empty history and has_more false."""
    room = api.create_room(alice, "quiet")["id"]
    page = history(api, alice, room)
    assert (page["messages"], page["has_more"]) == ([], False)


def test_history_default_is_newest_page_oldest_first(api: Api, alice: User) -> None:
    """Without parameters history returns the newest page, oldest first, with has_more when older ones exist."""
    room = room_with_messages(api, alice, 60)
    page = history(api, alice, room)
    got = seqs(page)
    assert got and got[-1] == 60, got
    assert got == list(range(got[0], 61)), got
    assert len(got) < 60 and page["has_more"] is True
    for m in page["messages"]:
        assert set(m) >= MESSAGE_FIELDS
        assert (m["room"], m["user"], m["body"]) == (room, alice.name, f"message {m['seq']}")


@pytest.mark.parametrize(
    ("params", "want", "has_more"),
    [
        pytest.param({"limit": 3}, [5, 6, 7], True, id="newest-3"),
        pytest.param({"limit": 7}, [1, 2, 3, 4, 5, 6, 7], False, id="all-7"),
        pytest.param({"limit": 100}, [1, 2, 3, 4, 5, 6, 7], False, id="more-than-all"),
        pytest.param({"before": 5, "limit": 3}, [2, 3, 4], True, id="before-5"),
        pytest.param({"before": 4, "limit": 3}, [1, 2, 3], False, id="before-4-exact"),
        pytest.param({"before": 2, "limit": 3}, [1], False, id="before-2"),
        pytest.param({"before": 1}, [], False, id="before-1"),
        pytest.param({"before": 1000, "limit": 2}, [6, 7], True, id="before-past-end"),
        pytest.param({"after": 0, "limit": 3}, [1, 2, 3], True, id="after-0"),
        pytest.param({"after": 3, "limit": 3}, [4, 5, 6], True, id="after-3"),
        pytest.param({"after": 4, "limit": 3}, [5, 6, 7], False, id="after-4-exact"),
        pytest.param({"after": 5}, [6, 7], False, id="after-5"),
        pytest.param({"after": 7}, [], False, id="after-last"),
        pytest.param({"after": 2, "before": 6}, [3, 4, 5], False, id="between"),
    ],
)
def test_history_paging(
    api: Api, alice: User, params: dict[str, int], want: list[int], has_more: bool
) -> None:
    """History honours before, after and limit, oldest first, and says has_more when the page was cut."""
    room = room_with_messages(api, alice, 7)
    page = history(api, alice, room, **params)
    assert seqs(page) == want
    assert page["has_more"] is has_more


def test_history_walk_back_sees_every_message_once(api: Api, alice: User) -> None:
    """Paging back with before= until has_more is false yields every message exactly once, in order."""
    room = room_with_messages(api, alice, 11)
    page = history(api, alice, room, limit=4)
    collected = seqs(page)
    while page["has_more"]:
        page = history(api, alice, room, limit=4, before=collected[0])
        assert page["messages"], "has_more promised older messages"
        collected = seqs(page) + collected
    assert collected == list(range(1, 12))


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=abc",
        "limit=-1",
        "limit=1.5",
        "limit=1e3",
        "before=-1",
        "before=abc",
        "before=2.0",
        "after=-1",
        "after=x",
        "after=99999999999999999999999999",
        "limit=%00",
        "before=%C2%B2",  # a superscript two: str.isdigit() says yes, int() says no
        "limit=%E2%91%A0",  # a circled one
    ],
)
def test_history_rejects_bad_parameters(api: Api, alice: User, query: str) -> None:
    """A limit, before or after that is not a valid whole number is refused with a 400 JSON error."""
    room = room_with_messages(api, alice, 1)
    assert_error(api.get(f"/api/rooms/{room}/messages?{query}", alice.token), 400)


def test_history_refused_to_non_member(api: Api, alice: User, bob: User) -> None:
    """Someone outside the room cannot read its history: 403 not_a_member, even for a public room."""
    room = room_with_messages(api, alice, 2)
    assert_error(api.get(f"/api/rooms/{room}/messages", bob.token), 403, "not_a_member")
    assert bob.join(room).status_code == 200
    assert seqs(history(api, bob, room)) == [1, 2]
    assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
    assert_error(api.get(f"/api/rooms/{room}/messages", bob.token), 403, "not_a_member")


def test_history_of_missing_room_not_found(api: Api, alice: User) -> None:
    """History of a room that does not exist is refused with 404 room_not_found."""
    r = api.get(f"/api/rooms/{MISSING_ROOM}/messages", alice.token)
    assert_error(r, 404, "room_not_found")
