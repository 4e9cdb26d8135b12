"""Live delivery over /ws against a real server: chat, notices, idempotency, limits, many senders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

from tests.support import Api, ServerProcess, User
from tests.support.delivery import (
    NOTICES,
    dedicated,
    of_type,
    rest_messages,
    say,
    send_many,
    seqs,
    until_pong,
)

# ---- live chat and notices ------------------------------------------------------------------


def test_two_users_chat_both_ways(api: Api, alice: User, bob: User) -> None:
    """Two members chatting live each get every message, their own included, once and in seq order."""
    room = api.create_room(alice, "chat")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        inbox_a: list[dict[str, Any]] = []
        inbox_b: list[dict[str, Any]] = []
        assert say(a, room, "hi bob", "a-1", inbox_a)["seq"] == 1
        assert say(b, room, "hi alice", "b-1", inbox_b)["seq"] == 2
        assert say(a, room, "how are you?", "a-2", inbox_a)["seq"] == 3
        expected = [
            (1, alice.name, "hi bob", "a-1"),
            (2, bob.name, "hi alice", "b-1"),
            (3, alice.name, "how are you?", "a-2"),
        ]
        for ws, inbox in ((a, inbox_a), (b, inbox_b)):
            got = inbox + of_type(until_pong(ws), "message")
            assert [(m["seq"], m["user"], m["body"], m["client_msg_id"]) for m in got] == expected
            assert all(m["room"] == room and m["ts"].endswith("Z") for m in got)


def test_rest_post_reaches_ws_members(api: Api, alice: User, bob: User) -> None:
    """A message posted over REST is delivered live to WebSocket members like any other."""
    room = api.create_room(alice, "rest-post")["id"]
    assert bob.join(room).status_code == 200
    with bob.ws() as b:
        b.join(room)
        r = api.post(f"/api/rooms/{room}/messages", alice.token, json={"body": "from curl"})
        assert r.status_code == 201, r.text
        got = b.expect("message")
        assert (got["seq"], got["user"], got["body"]) == (1, alice.name, "from curl")


def test_rest_join_and_leave_notify_live_members(api: Api, alice: User, bob: User) -> None:
    """A REST join and leave send member_joined and member_left to live members, and the leaver's socket stops following the room."""
    room = api.create_room(alice, "notices-rest")["id"]
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        assert bob.join(room).status_code == 200
        assert a.expect("member_joined", skip=("presence",)) == {
            "type": "member_joined",
            "room": room,
            "user": bob.name,
        }
        b.join(room)
        assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
        assert a.expect("member_left", skip=("presence",)) == {
            "type": "member_left",
            "room": room,
            "user": bob.name,
        }
        # Bob's connection no longer follows the room: sends are refused, messages not delivered.
        b.send({"type": "send", "room": room, "body": "still here?", "client_msg_id": "b-x"})
        err = b.expect("error", skip=NOTICES)
        assert (err["code"], err["room"], err["client_msg_id"]) == ("not_joined", room, "b-x")
        a.say(room, "bob is gone")
        assert of_type(until_pong(b), "message") == []


def test_ws_join_and_leave_notify_live_members(api: Api, alice: User, bob: User) -> None:
    """Joining and leaving over /ws send member_joined and member_left to the other live members."""
    room = api.create_room(alice, "notices-ws")["id"]
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        joined = b.join(room)
        assert {m["username"] for m in joined["members"]} == {alice.name, bob.name}
        assert a.expect("member_joined", skip=("presence",))["user"] == bob.name
        b.send({"type": "leave", "room": room})
        assert a.expect("member_left", skip=("presence",)) == {
            "type": "member_left",
            "room": room,
            "user": bob.name,
        }
        a.say(room, "after bob left")
        assert of_type(until_pong(b), "message") == []
        r = api.get(f"/api/rooms/{room}/members", alice.token)
        assert [m["username"] for m in r.json()["members"]] == [alice.name]


def test_typing_reaches_others_not_sender(api: Api, alice: User, bob: User) -> None:
    """A typing frame reaches the other members of the room but not the sender."""
    room = api.create_room(alice, "typing")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        a.send({"type": "typing", "room": room})
        assert b.expect("typing", skip=("presence",)) == {
            "type": "typing",
            "room": room,
            "user": alice.name,
        }
        assert of_type(until_pong(a), "typing") == []


def test_every_connection_of_a_user_gets_the_messages(api: Api, alice: User, bob: User) -> None:
    """Each joined connection gets every message, including two connections of the same user."""
    room = api.create_room(alice, "two-tabs")["id"]
    assert bob.join(room).status_code == 200
    with bob.ws() as b1, bob.ws() as b2, alice.ws() as a:
        for ws in (b1, b2, a):
            ws.join(room)
        send_many(a, room, ["one", "two", "three"], "tabs")
        for ws in (b1, b2):
            got = of_type(until_pong(ws), "message")
            assert [(m["seq"], m["body"]) for m in got] == [(1, "one"), (2, "two"), (3, "three")]


# ---- idempotent send ------------------------------------------------------------------------


def test_send_is_idempotent_per_client_msg_id(api: Api, alice: User, bob: User) -> None:
    """Sending the same client_msg_id again returns the same ack and stores and delivers the message once."""
    room = api.create_room(alice, "idem")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        inbox: list[dict[str, Any]] = []
        frame = {"type": "send", "room": room, "body": "only once", "client_msg_id": "dup-1"}
        a.send(frame)
        a.send(frame)  # a retry before the first ack arrived
        acks = []
        while len(acks) < 2:
            got = a.recv()
            if got["type"] == "ack":
                acks.append(got)
            elif got["type"] == "message":
                inbox.append(got)
            else:
                assert got["type"] in NOTICES, got
        third = say(a, room, "only once", "dup-1", inbox)  # a retry after the ack
        assert acks[0] == acks[1] == third
        assert third == {"type": "ack", "room": room, "client_msg_id": "dup-1", "seq": 1}
        assert say(a, room, "next one", "after-dup", inbox)["seq"] == 2
        for ws, box in ((a, inbox), (b, [])):
            got = box + of_type(until_pong(ws), "message")
            assert [(m["seq"], m["client_msg_id"]) for m in got] == [(1, "dup-1"), (2, "after-dup")]
    stored = rest_messages(api, alice, room)["messages"]
    assert [(m["seq"], m["body"], m["client_msg_id"]) for m in stored] == [
        (1, "only once", "dup-1"),
        (2, "next one", "after-dup"),
    ]


def test_retry_after_reconnect_returns_the_same_ack(api: Api, alice: User, bob: User) -> None:
    """A send retried on a new connection with the same client_msg_id gets the original ack and is not stored or delivered again."""
    room = api.create_room(alice, "retry")["id"]
    assert bob.join(room).status_code == 200
    with bob.ws() as b:
        b.join(room)
        with alice.ws() as a:
            a.join(room)
            original = a.say(room, "did this arrive?", "retry-1")
        with alice.ws() as a:
            a.join(room, since=original["seq"])
            assert a.say(room, "did this arrive?", "retry-1") == original
            assert say(a, room, "next", "retry-2")["seq"] == original["seq"] + 1
        got = of_type(until_pong(b), "message")
        assert [(m["seq"], m["client_msg_id"]) for m in got] == [(1, "retry-1"), (2, "retry-2")]


def test_same_client_msg_id_from_two_users_is_two_messages(
    api: Api, alice: User, bob: User
) -> None:
    """Idempotency is per user: two users sending the same client_msg_id get two messages."""
    room = api.create_room(alice, "per-user")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        assert a.say(room, "from alice", "shared-id")["seq"] == 1
        assert b.say(room, "from bob", "shared-id")["seq"] == 2
    stored = rest_messages(api, alice, room)["messages"]
    assert [(m["user"], m["client_msg_id"]) for m in stored] == [
        (alice.name, "shared-id"),
        (bob.name, "shared-id"),
    ]


# ---- limits (dedicated servers) --------------------------------------------------------------


def test_send_rate_limited_over_ws(make_server: Callable[..., ServerProcess]) -> None:
    """Sends beyond the burst get a rate_limited error frame repeating room and client_msg_id, and the connection stays open."""
    api = dedicated(make_server, GREENROOM_SEND_BURST="3", GREENROOM_SEND_RATE_PER_S="0.05")
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "limited")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        assert seqs(send_many(a, room, ["1", "2", "3"], "ok")) == [1, 2, 3]
        a.send({"type": "send", "room": room, "body": "4", "client_msg_id": "over-1"})
        err = a.expect("error", skip=(*NOTICES, "message"))
        assert (err["code"], err["room"], err["client_msg_id"]) == ("rate_limited", room, "over-1")
        assert isinstance(err["message"], str) and err["message"]
        assert isinstance(err["retry_after_s"], int) and err["retry_after_s"] >= 1, err
        a.send({"type": "ping"})
        assert a.expect("pong", skip=(*NOTICES, "message"))["type"] == "pong"
        assert seqs(of_type(until_pong(b), "message")) == [1, 2, 3]
        # Other users have their own budget.
        assert b.say(room, "bob is fine", "b-1")["seq"] == 4
    assert seqs(rest_messages(api, alice, room)["messages"]) == [1, 2, 3, 4]


def test_retention_limit_truncates_history(make_server: Callable[..., ServerProcess]) -> None:
    """With GREENROOM_ROOM_HISTORY_LIMIT=5, a join with since=0 gets truncated=true and only the kept messages, as does REST."""
    api = dedicated(make_server, GREENROOM_ROOM_HISTORY_LIMIT="5")
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "short-memory")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        assert seqs(send_many(a, room, [f"m{i}" for i in range(1, 9)], "ret")) == list(range(1, 9))
    with bob.ws() as b:
        joined = b.join(room, since=0)
        assert joined["truncated"] is True
        assert joined["last_seq"] == 8
        assert [(m["seq"], m["body"]) for m in joined["history"]] == [
            (s, f"m{s}") for s in range(4, 9)
        ]
    with bob.ws() as b:
        joined = b.join(room, since=3)  # everything asked for is still kept
        assert joined["truncated"] is False
        assert seqs(joined["history"]) == [4, 5, 6, 7, 8]
    assert seqs(rest_messages(api, bob, room)["messages"]) == [4, 5, 6, 7, 8]
    page = rest_messages(api, bob, room, after=0)
    assert seqs(page["messages"]) == [4, 5, 6, 7, 8]
    assert page["has_more"] is False


# ---- many senders ---------------------------------------------------------------------------


def test_concurrent_senders_everyone_gets_everything_once_in_order(api: Api) -> None:
    """With several members sending at once, every member receives every message exactly once in strictly increasing seq with no gaps."""
    senders = [api.new_user("s") for _ in range(4)]
    listener = api.new_user("l")
    per_sender = 30
    total = per_sender * len(senders)
    room = api.create_room(senders[0], "busy")["id"]
    for user in (*senders[1:], listener):
        assert user.join(room).status_code == 200

    with ExitStack() as stack:
        conns = [stack.enter_context(u.ws()) for u in (*senders, listener)]
        for ws in conns:
            ws.join(room)
        start = threading.Barrier(len(conns))

        def run(index: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            ws = conns[index]
            sending = index < len(senders)
            start.wait(timeout=10)
            if sending:
                for i in range(per_sender):
                    ws.send(
                        {
                            "type": "send",
                            "room": room,
                            "body": f"sender {index} message {i}",
                            "client_msg_id": f"c{index}-{i}",
                        }
                    )
            messages: list[dict[str, Any]] = []
            acks: list[dict[str, Any]] = []
            while len(messages) < total or (sending and len(acks) < per_sender):
                frame = ws.recv(timeout=10)
                if frame["type"] == "message":
                    messages.append(frame)
                elif frame["type"] == "ack":
                    acks.append(frame)
                else:
                    assert frame["type"] in NOTICES, frame
            messages += of_type(until_pong(ws), "message")  # nothing extra may follow
            return messages, acks

        with ThreadPoolExecutor(len(conns)) as pool:
            results = [f.result() for f in [pool.submit(run, i) for i in range(len(conns))]]

    reference = results[0][0]
    assert seqs(reference) == list(range(1, total + 1))
    assert {(m["user"], m["client_msg_id"]) for m in reference} == {
        (senders[i].name, f"c{i}-{j}") for i in range(len(senders)) for j in range(per_sender)
    }
    for messages, _ in results:
        assert messages == reference
    for i, (_, acks) in enumerate(results[: len(senders)]):
        by_cmid = {m["client_msg_id"]: m["seq"] for m in reference if m["user"] == senders[i].name}
        assert {a["client_msg_id"]: a["seq"] for a in acks} == by_cmid
