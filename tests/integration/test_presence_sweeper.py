"""Presence and the sweeper, in process over a FakeClock: timeouts pass without anyone sleeping.

The real default timeouts apply (PRESENCE_TIMEOUT_S 60, PING_INTERVAL_S 20,
SESSION_IDLE_TIMEOUT_S a week); the clock jumps past them.
"""

from __future__ import annotations

import pytest

from core.errors import ChatError
from core.wire import CLOSE_TIMEOUT, CLOSE_UNAUTHORIZED, iso
from tests.integration.conftest import Rig


def room_of(rig: Rig, owner: str, *members: str) -> str:
    room = rig.gr.rooms.create_room(owner, "lounge", None, None).id
    for name in members:
        rig.gr.rooms.join(name, room)
    return room


def test_a_silent_connection_is_swept_offline_and_room_mates_are_told(rig: Rig) -> None:
    alice, alice_session = rig.user("alice")
    bob, bob_session = rig.user("bob")
    room_of(rig, alice, bob)
    a = rig.connect(alice, alice_session)
    b = rig.connect(bob, bob_session)
    assert a.next_of("presence") == {"type": "presence", "user": "bob", "status": "online"}
    assert rig.gr.presence.is_online("bob")

    rig.clock.advance(rig.settings.PRESENCE_TIMEOUT_S - 1)
    a.heard()
    assert rig.sweep()[0] == 0  # nobody is silent for longer than the timeout yet
    rig.clock.advance(2)
    closed, _, _ = rig.sweep()

    assert (closed, b.close_code, a.open) == (1, CLOSE_TIMEOUT, True)
    assert not rig.gr.presence.is_online("bob")
    assert a.next_of("presence") == {"type": "presence", "user": "bob", "status": "offline"}
    # last_seen is the fake wall time of the sweep, not the machine's.
    assert rig.gr.presence.user("bob") == {
        "username": "bob",
        "status": "offline",
        "last_seen": iso(rig.clock.time()),
    }


def test_server_pings_keep_a_quiet_client_online(rig: Rig) -> None:
    """A client that only answers pings stays online for ten presence timeouts."""
    alice, session = rig.user("alice")
    conn = rig.connect(alice, session)
    s = rig.settings
    for _ in range(int(10 * s.PRESENCE_TIMEOUT_S / s.PING_INTERVAL_S)):
        rig.clock.advance(s.PING_INTERVAL_S)
        closed, pinged, _ = rig.sweep()
        assert (closed, pinged) == (0, 1)
        conn.heard()  # its pong
    assert conn.open and conn.pings == 30
    assert rig.gr.presence.is_online("alice")


def test_a_ping_is_not_repeated_within_the_interval(rig: Rig) -> None:
    alice, session = rig.user("alice")
    conn = rig.connect(alice, session)
    rig.clock.advance(rig.settings.PING_INTERVAL_S)
    assert rig.sweep()[1] == 1
    rig.clock.advance(rig.settings.PING_INTERVAL_S / 2)
    assert rig.sweep()[1] == 0
    assert conn.pings == 1


def test_an_idle_session_expires_unless_a_socket_holds_it(rig: Rig) -> None:
    rig.user("alice")
    idle_token = rig.token("alice")
    held_token = rig.token("alice")
    held = rig.gr.auth.authenticate(held_token)
    conn = rig.connect(held.username, held.token_hash)

    rig.clock.advance(rig.settings.SESSION_IDLE_TIMEOUT_S + 1)
    conn.heard()
    assert rig.sweep()[2] >= 1
    with pytest.raises(ChatError) as refused:
        rig.gr.auth.authenticate(idle_token)
    assert refused.value.code == "unauthorized"
    assert rig.gr.auth.authenticate(held_token).username == "alice"

    # The socket closes: the session's idle clock starts then, not at its last request.
    rig.gr.live.disconnect(conn)  # type: ignore[arg-type]
    rig.clock.advance(rig.settings.SESSION_IDLE_TIMEOUT_S - 1)
    rig.sweep()
    assert rig.gr.auth.authenticate(held_token).username == "alice"
    rig.clock.advance(rig.settings.SESSION_IDLE_TIMEOUT_S + 1)
    rig.sweep()
    with pytest.raises(ChatError):
        rig.gr.auth.authenticate(held_token)


def test_logout_closes_that_sessions_sockets_only(rig: Rig) -> None:
    alice, _ = rig.user("alice")
    token = rig.token("alice")
    session = rig.gr.auth.authenticate(token)
    other = rig.gr.auth.authenticate(rig.token("alice"))
    mine = rig.connect(alice, session.token_hash)
    theirs = rig.connect(alice, other.token_hash)

    rig.gr.auth.logout(session)

    assert mine.next_of("error") == {
        "type": "error",
        "code": "unauthorized",
        "message": "Logged out.",
    }
    assert (mine.close_code, theirs.open) == (CLOSE_UNAUTHORIZED, True)


def test_a_second_connection_keeps_the_user_online(rig: Rig) -> None:
    alice, session = rig.user("alice")
    bob, bob_session = rig.user("bob")
    room_of(rig, bob, alice)
    watcher = rig.connect(bob, bob_session)
    first = rig.connect(alice, session)
    second = rig.connect(alice, session)
    assert watcher.next_of("presence")["status"] == "online"

    rig.gr.live.disconnect(first)  # type: ignore[arg-type]
    assert rig.gr.presence.is_online("alice")
    rig.gr.live.disconnect(second)  # type: ignore[arg-type]
    assert not rig.gr.presence.is_online("alice")
    assert watcher.next_of("presence") == {"type": "presence", "user": "alice", "status": "offline"}
    assert watcher.drain() == []  # one offline, not one per connection
