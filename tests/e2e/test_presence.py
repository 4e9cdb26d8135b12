"""Presence and sessions against a live server: online/offline, the sweeper, logout, idle expiry."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support import Api, RawClient, ServerProcess, User


def status_of(api: Api, viewer: User, name: str) -> str:
    return api.get(f"/api/users/{name}", viewer.token).json()["status"]


def test_presence_is_pushed_to_room_mates(api: Api, alice: User, bob: User) -> None:
    """When a user connects and disconnects, users sharing a room get presence frames."""
    room = api.create_room(alice, "presence")["id"]
    bob.join(room)
    with bob.ws() as b:
        assert status_of(api, bob, alice.name) == "offline"
        a = alice.ws()
        assert b.expect("presence") == {"type": "presence", "user": alice.name, "status": "online"}
        assert status_of(api, bob, alice.name) == "online"
        members = api.get(f"/api/rooms/{room}/members", bob.token).json()["members"]
        assert {"username": alice.name, "status": "online"} in members
        a.close()
        assert b.expect("presence") == {"type": "presence", "user": alice.name, "status": "offline"}
    user = api.get(f"/api/users/{alice.name}", bob.token).json()
    assert user["status"] == "offline" and user["last_seen"].endswith("Z")


def test_second_connection_keeps_user_online(api: Api, alice: User, bob: User) -> None:
    """A user stays online while any one of their connections is alive."""
    room = api.create_room(alice, "two-tabs")["id"]
    bob.join(room)
    with bob.ws() as b:
        tab1 = alice.ws()
        b.expect("presence")
        tab2 = alice.ws()
        tab1.close()
        # Prove the server processed tab1's close before we look: tab2 still works.
        tab2.send({"type": "ping"})
        assert tab2.expect("pong")["type"] == "pong"
        assert status_of(api, bob, alice.name) == "online"
        tab2.close()
        assert b.expect("presence")["status"] == "offline"


def test_silent_client_is_swept_offline(make_server: Callable[..., ServerProcess]) -> None:
    """A client that completes the handshake and never answers pings is closed and marked offline."""
    srv = make_server(
        GREENROOM_PING_INTERVAL_S="0.3",
        GREENROOM_PRESENCE_TIMEOUT_S="1.5",
        GREENROOM_SWEEP_INTERVAL_S="0.1",
        GREENROOM_CLOSE_TIMEOUT_S="0.5",
    )
    api = Api(srv)
    mute, watcher = api.new_user("mute"), api.new_user("watch")
    room = api.create_room(mute, "r")["id"]
    watcher.join(room)
    with watcher.ws() as w:
        mute_client = RawClient(srv, mute.token)
        assert w.expect("presence")["status"] == "online"
        started = time.monotonic()
        frame = w.expect("presence", timeout=10)
        assert frame == {"type": "presence", "user": mute.name, "status": "offline"}
        assert time.monotonic() - started < 1.5 + 3
        assert status_of(api, watcher, mute.name) == "offline"
    mute_client.close()


def test_logout_closes_that_sessions_sockets(api: Api, alice: User) -> None:
    """Logout kills the token and closes its WebSockets with 4001 within a second."""
    other_session = api.login(alice.name).json()["token"]
    ws = alice.ws()
    keep = User(alice.name, other_session, api).ws()
    assert api.post("/api/auth/logout", alice.token).status_code == 204
    started = time.monotonic()
    err = ws.expect("error", timeout=2)
    assert err["code"] == "unauthorized"
    assert ws.expect_closed(timeout=2) == 4001
    assert time.monotonic() - started < 1.0
    assert api.get("/api/auth/me", alice.token).status_code == 401
    # The user's other session is untouched.
    keep.send({"type": "ping"})
    assert keep.expect("pong")["type"] == "pong"
    keep.close()


def test_idle_session_expires(make_server: Callable[..., ServerProcess]) -> None:
    """A session with no live connection and no request for the idle timeout must log in again."""
    srv = make_server(GREENROOM_SESSION_IDLE_TIMEOUT_S="1", GREENROOM_SWEEP_INTERVAL_S="0.1")
    api = Api(srv)
    idle, live = api.new_user("idle"), api.new_user("live")
    with live.ws() as ws:
        # Real time has to pass for an idle timeout; nothing else orders this.
        time.sleep(1.6)
        assert api.get("/api/auth/me", idle.token).status_code == 401
        assert api.get("/api/auth/me", live.token).status_code == 200, "a live socket keeps it"
        ws.send({"type": "ping"})
        assert ws.expect("pong")["type"] == "pong"
    r = api.get("/api/auth/me", idle.token)
    assert r.json()["error"]["code"] == "unauthorized"


def test_server_pings_keep_a_quiet_client_online(make_server: Callable[..., ServerProcess]) -> None:
    """A client that answers pings stays online past the presence timeout without sending a frame."""
    srv = make_server(
        GREENROOM_PING_INTERVAL_S="0.2",
        GREENROOM_PRESENCE_TIMEOUT_S="0.8",
        GREENROOM_SWEEP_INTERVAL_S="0.1",
    )
    api = Api(srv)
    quiet, viewer = api.new_user("quiet"), api.new_user("viewer")
    # websockets answers pings from its own thread; its own keepalive is off here.
    with quiet.ws(ping_interval=None) as ws:
        time.sleep(2.0)
        assert status_of(api, viewer, quiet.name) == "online"
        ws.send({"type": "ping"})
        assert ws.expect("pong")["type"] == "pong"
