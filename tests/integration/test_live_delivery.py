"""The send path in process: Live.send -> writer -> store -> Publisher -> every member, then the ack."""

from __future__ import annotations

import pytest

from core.errors import ChatError
from tests.integration.conftest import Rig
from tests.support.fakes import FakeSocket


def two_in_a_room(rig: Rig) -> tuple[str, FakeSocket, FakeSocket]:
    alice, alice_session = rig.user("alice")
    bob, bob_session = rig.user("bob")
    room = rig.gr.rooms.create_room(alice, "lounge", None, None).id
    rig.gr.rooms.join(bob, room)
    a = rig.connect(alice, alice_session)
    b = rig.connect(bob, bob_session)
    # Presence frames come from presence's own greenlet: wait for bob's before going on.
    assert a.next_of("presence") == {"type": "presence", "user": "bob", "status": "online"}
    rig.gr.live.join(a, room, None)  # type: ignore[arg-type]
    rig.gr.live.join(b, room, None)  # type: ignore[arg-type]
    a.next_of("joined")
    b.next_of("joined")
    a.drain()
    b.drain()
    return room, a, b


def test_a_message_reaches_every_member_and_then_its_ack(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    rig.gr.live.send(a, room, "hello", "c1")  # type: ignore[arg-type]

    message = {
        "type": "message",
        "room": room,
        "seq": 1,
        "user": "alice",
        "body": "hello",
        "ts": b.next_of("message")["ts"],
        "client_msg_id": "c1",
    }
    assert a.next() == message  # the sender sees its message before its ack
    assert a.next() == {"type": "ack", "room": room, "client_msg_id": "c1", "seq": 1}
    page = rig.gr.rooms.history("bob", room, None, None, None)
    assert [(m.seq, m.body, m.ts) for m in page.messages] == [(1, "hello", rig.clock.time())]


def test_a_retry_is_acked_again_and_stored_once(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    for _ in range(2):
        rig.gr.live.send(a, room, "once", "same-id")  # type: ignore[arg-type]
        assert a.next_of("ack")["seq"] == 1
    assert b.next_of("message")["seq"] == 1
    assert b.drain() == []
    assert rig.gr.rooms.history("bob", room, None, None, None).last_seq == 1


def test_a_rest_post_and_a_socket_send_share_one_order(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    message, retry = rig.gr.rooms.post("bob", room, "from curl", None)
    rig.gr.live.send(a, room, "from the socket", "c2")  # type: ignore[arg-type]
    assert (message.seq, retry) == (1, False)
    assert [b.next_of("message")["body"] for _ in range(2)] == ["from curl", "from the socket"]


def test_rejoining_with_since_replays_only_what_was_missed(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    for i in range(3):
        rig.gr.rooms.post("alice", room, f"m{i}", None)
    again = rig.connect("bob", rig.gr.auth.authenticate(rig.token("bob")).token_hash)
    rig.gr.live.join(again, room, 1)  # type: ignore[arg-type]
    joined = again.next_of("joined")
    assert [m["seq"] for m in joined["history"]] == [2, 3]  # type: ignore[index]
    assert (joined["last_seq"], joined["truncated"]) == (3, False)


def test_typing_is_forwarded_at_most_once_per_interval(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    for _ in range(3):
        rig.gr.live.typing(a, room)  # type: ignore[arg-type]
    rig.clock.advance(rig.settings.TYPING_INTERVAL_S)
    rig.gr.live.typing(a, room)  # type: ignore[arg-type]
    typing = {"type": "typing", "room": room, "user": "alice"}
    assert b.drain() == [typing, typing]
    assert a.drain() == []  # nobody is told they are typing themselves


def test_sending_to_a_room_not_joined_on_this_connection_is_refused(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    other = rig.connect("alice", rig.gr.auth.authenticate(rig.token("alice")).token_hash)
    with pytest.raises(ChatError) as refused:
        rig.gr.live.send(other, room, "hi", "c3")  # type: ignore[arg-type]
    assert (refused.value.code, refused.value.extra) == (
        "not_joined",
        {"room": room, "client_msg_id": "c3"},
    )


def test_leaving_and_deleting_reach_the_connections(rig: Rig) -> None:
    room, a, b = two_in_a_room(rig)
    rig.gr.live.leave(b, room)  # type: ignore[arg-type]
    member_left = {"type": "member_left", "room": room, "user": "bob"}
    assert b.drain() == [member_left, {"type": "left", "room": room}]
    assert a.next() == member_left
    rig.gr.rooms.delete_room("alice", room)
    assert a.next() == {"type": "room_deleted", "room": room}
    assert b.drain() == []  # bob no longer follows the room
