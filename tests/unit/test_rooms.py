"""The live room map: registration, subscriptions, presence transitions. No I/O, no server."""

from __future__ import annotations

import pytest

from chat.rooms import RoomRegistry


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def test_first_connection_brings_user_online_and_last_takes_them_offline() -> None:
    """add() is True only for a user's first connection, remove() only for the last."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    a1, a2 = Conn("a1"), Conn("a2")
    assert reg.add(a1, "alice", "s1") is True
    assert reg.add(a2, "alice", "s2") is False
    assert reg.is_online("alice")
    assert reg.remove(a1) is False
    assert reg.is_online("alice")
    assert reg.remove(a2) is True
    assert not reg.is_online("alice")
    assert reg.remove(a2) is False  # twice is harmless


def test_subscribers_is_a_copy_in_join_order() -> None:
    """Sending may yield, so subscribers() returns a list the registry will not mutate."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    conns = [Conn(f"c{i}") for i in range(3)]
    for i, c in enumerate(conns):
        reg.add(c, f"user{i}", f"s{i}")
        reg.subscribe("r", c)
    subs = reg.subscribers("r")
    reg.unsubscribe("r", conns[0])
    assert subs == conns
    assert reg.subscribers("r") == conns[1:]


def test_remove_drops_every_subscription() -> None:
    """A closed connection disappears from every room it followed."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    c = Conn("c")
    reg.add(c, "alice", "s")
    reg.subscribe("r1", c)
    reg.subscribe("r2", c)
    reg.remove(c)
    assert reg.subscribers("r1") == [] and reg.subscribers("r2") == []
    assert len(reg) == 0


def test_unsubscribe_user_and_drop_room() -> None:
    """Leaving drops all of a user's connections from a room; deleting drops everyone."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    a1, a2, b = Conn("a1"), Conn("a2"), Conn("b")
    reg.add(a1, "alice", "s1")
    reg.add(a2, "alice", "s1")
    reg.add(b, "bob", "s2")
    for c in (a1, a2, b):
        reg.subscribe("r", c)
    assert sorted(reg.unsubscribe_user("r", "alice"), key=repr) == [a1, a2]
    assert reg.subscribers("r") == [b]
    assert reg.drop_room("r") == [b]
    assert reg.follows(b) == set()


def test_sessions_index_tracks_live_tokens() -> None:
    """Logout finds a session's sockets; the sweeper spares sessions with a live one."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    a1, a2 = Conn("a1"), Conn("a2")
    reg.add(a1, "alice", "s1")
    reg.add(a2, "alice", "s1")
    assert sorted(reg.connections_of_session("s1"), key=repr) == [a1, a2]
    assert reg.live_sessions() == {"s1"}
    reg.remove(a1)
    reg.remove(a2)
    assert reg.live_sessions() == set()


def test_subscribe_requires_registration() -> None:
    """Only registered (authenticated) connections can follow rooms."""
    reg: RoomRegistry[Conn] = RoomRegistry()
    with pytest.raises(KeyError):
        reg.subscribe("r", Conn("stranger"))
