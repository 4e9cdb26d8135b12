"""Live chat over /ws between real clients."""

from __future__ import annotations

from tests.support import Api, User


def test_two_users_chat_live(api: Api, alice: User, bob: User) -> None:
    """A message one member sends reaches every member at once, with an ack to the sender."""
    room = api.create_room(alice, "general")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        assert a.join(room)["last_seq"] == 0
        b.join(room)
        ack = a.say(room, "hello bob", "m-1")
        assert ack == {"type": "ack", "room": room, "client_msg_id": "m-1", "seq": 1}
        got = b.expect("message")
        assert (got["room"], got["seq"], got["user"], got["body"]) == (
            room,
            1,
            alice.name,
            "hello bob",
        )
        assert got["client_msg_id"] == "m-1" and got["ts"].endswith("Z")
