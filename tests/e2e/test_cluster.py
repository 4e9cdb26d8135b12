"""Scale-out, end to end: users on different server processes see one chat.

Each test starts its own `Cluster` of `python app.py` processes on one PostgreSQL
schema and one Redis backplane, and talks to them over real HTTP and WebSockets.
Rooms, history, members and presence agree on every process; a room never overfills;
logout and session expiry act on every process; rate limits are shared.

PostgreSQL and Redis are needed: without them these tests skip, unless
GREENROOM_REQUIRE_SERVICES is set (as in CI), when they fail.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.support import WS, Api, Cluster, User, unique_name, wait_for
from tests.support.cluster import connect, expect_presence, history, statuses

# ---- two processes, one chat ----------------------------------------------------------------


def test_users_on_two_processes_share_rooms_history_members_presence_and_deletion(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """Alice on process 0 and bob on process 1 chat both ways; every REST view and read marker agrees on both."""
    cluster = make_cluster(2)
    api0, api1 = Api(cluster[0]), Api(cluster[1])
    alice, bob = api0.new_user("alice"), api1.new_user("bob")
    room = api0.create_room(alice, "across")["id"]
    joined = bob.join(room)
    assert joined.status_code == 200 and joined.json()["member_count"] == 2

    a = connect(alice, cluster[0], sockets)
    a.join(room)
    # Process 1 learns through the backplane that alice is online on process 0...
    wait_for(lambda: statuses(api1, bob).get(alice.name) == "online")
    b = connect(bob, cluster[1], sockets)
    # ...and process 0 tells alice that bob came online on process 1.
    expect_presence(a, bob.name, "online")
    frame = b.join(room)
    assert frame["members"] == [
        {"username": alice.name, "status": "online"},
        {"username": bob.name, "status": "online"},
    ]

    assert a.say(room, "hello from process 0")["seq"] == 1
    got = b.expect("message")
    assert (got["seq"], got["user"], got["body"]) == (1, alice.name, "hello from process 0")
    assert b.say(room, "hello from process 1")["seq"] == 2
    got = a.expect("message")
    assert (got["seq"], got["user"], got["body"]) == (2, bob.name, "hello from process 1")

    # Read markers: bob reads on process 1, and his socket on process 0 hears it too.
    info = api0.get(f"/api/rooms/{room}", bob.token).json()
    assert (info["last_read_seq"], info["unread"]) == (0, 1)  # his own message counts as read
    b0 = connect(bob, cluster[0], sockets)
    b.send({"type": "read", "room": room, "seq": 2})
    read = {"type": "read", "room": room, "last_read_seq": 2, "unread": 0}
    assert b.expect("read") == read
    assert b0.expect("read") == read
    b0.close()
    info = api0.get(f"/api/rooms/{room}", bob.token).json()
    assert (info["last_read_seq"], info["unread"]) == (2, 0)

    # History, members and presence: the same on both processes, whoever asks.
    views = [history(api, user, room) for api in (api0, api1) for user in (alice, bob)]
    assert [(m["seq"], m["user"], m["body"]) for m in views[0]] == [
        (1, alice.name, "hello from process 0"),
        (2, bob.name, "hello from process 1"),
    ]
    assert all(view == views[0] for view in views)
    for api in (api0, api1):
        members = api.get(f"/api/rooms/{room}/members", alice.token).json()["members"]
        assert members == [
            {"username": alice.name, "status": "online"},
            {"username": bob.name, "status": "online"},
        ]
        info = api.get(f"/api/rooms/{room}", bob.token).json()
        assert (info["last_seq"], info["member_count"], info["online_count"]) == (2, 2, 2)
        assert statuses(api, alice) == {alice.name: "online", bob.name: "online"}

    # Bob's last socket (on process 1) closes: offline on both processes, and alice hears it.
    b.close()
    expect_presence(a, bob.name, "offline")
    for api in (api0, api1):
        wait_for(lambda api=api: statuses(api, alice)[bob.name] == "offline")
    b = connect(bob, cluster[1], sockets)
    expect_presence(a, bob.name, "online")
    b.join(room)

    # The owner deletes the room through bob's process: both processes tell their sockets.
    assert api1.delete(f"/api/rooms/{room}", alice.token).status_code == 204
    assert a.expect("room_deleted")["room"] == room
    assert b.expect("room_deleted")["room"] == room
    for api in (api0, api1):
        for path in (f"/api/rooms/{room}", f"/api/rooms/{room}/messages"):
            r = api.get(path, alice.token)
            assert r.status_code == 404 and r.json()["error"]["code"] == "room_not_found"


# ---- capacity under concurrent joins --------------------------------------------------------


def test_concurrent_joins_on_three_processes_never_overfill_a_room(
    make_cluster: Callable[..., Cluster],
) -> None:
    """20 joins at once, spread over three processes, into a room for 5 (owner + 4): 4 win, 16 get room_full."""
    capacity, joiners = 5, 20
    cluster = make_cluster(3)
    apis = [Api(cluster[i % 3]) for i in range(joiners)]
    with ThreadPoolExecutor(10) as pool:
        users = list(pool.map(lambda api: api.new_user("j"), apis))
    owner = Api(cluster[0]).new_user("owner")
    room = owner.api.create_room(owner, "small", capacity=capacity)["id"]
    start = threading.Barrier(joiners)

    def join(user: User) -> tuple[str, int, str | None]:
        start.wait(10)
        r = user.join(room)
        return user.name, r.status_code, r.json()["error"]["code"] if r.status_code >= 400 else None

    with ThreadPoolExecutor(joiners) as pool:
        results = list(pool.map(join, users))
    winners = sorted(name for name, status, _ in results if status == 200)
    refusals = [(status, code) for _, status, code in results if status != 200]
    assert len(winners) == capacity - 1, results
    assert refusals == [(409, "room_full")] * (joiners - capacity + 1), results
    expected = sorted([owner.name, *winners])
    for server in cluster.servers:
        api = Api(server)
        info = api.get(f"/api/rooms/{room}", owner.token).json()
        assert info["member_count"] == capacity
        members = api.get(f"/api/rooms/{room}/members", owner.token).json()["members"]
        assert sorted(m["username"] for m in members) == expected


# ---- logout ---------------------------------------------------------------------------------


def test_logout_on_one_process_closes_that_sessions_sockets_on_every_process(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """Logout through process 0 closes the session's sockets on both processes with 4001; another session stays."""
    cluster = make_cluster(2)
    api0, api1 = Api(cluster[0]), Api(cluster[1])
    alice = api0.new_user("alice")
    r = api1.login(alice.name)
    assert r.status_code == 200
    other = User(alice.name, r.json()["token"], api1)
    there = connect(alice, cluster[1], sockets)
    here = connect(alice, cluster[0], sockets)
    kept = connect(other, cluster[1], sockets)

    assert api0.post("/api/auth/logout", alice.token).status_code == 204
    for ws in (there, here):
        error = ws.expect("error", timeout=3)
        assert (error["code"], error["message"]) == ("unauthorized", "Logged out.")
        assert ws.expect_closed(timeout=3) == 4001
    kept.send({"type": "ping"})
    assert kept.expect("pong")["type"] == "pong"
    assert api1.get("/api/auth/me", alice.token).status_code == 401
    assert api1.get("/api/auth/me", other.token).json() == {
        "username": alice.name,
        "status": "online",
    }


def test_a_session_with_a_socket_on_one_process_never_expires_on_another(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """Process 0's sweeper cannot see process 1's sockets: the session must stay, an idle one must go."""
    import psycopg

    from auth.tokens import hash_token

    cluster = make_cluster(2, {"GREENROOM_SESSION_IDLE_TIMEOUT_S": "2"})
    api0 = Api(cluster[0])
    alice = api0.new_user("alice")
    bob = api0.new_user("bob")  # logged in, no socket anywhere: expires after 2 s idle
    ws = connect(alice, cluster[1], sockets)

    def session_rows() -> dict[str, bool]:
        with psycopg.connect(cluster.env["DATABASE_URL"]) as conn:
            found = {
                row[0]
                for row in conn.execute(
                    "SELECT token_hash FROM sessions WHERE token_hash IN (%s, %s)",
                    (hash_token(alice.token), hash_token(bob.token)),
                )
            }
        return {"alice": hash_token(alice.token) in found, "bob": hash_token(bob.token) in found}

    # Nobody touches either session over REST meanwhile: only the sweepers act.
    wait_for(lambda: not session_rows()["bob"], timeout=15, interval=0.2)
    assert session_rows()["alice"]
    assert api0.get("/api/auth/me", alice.token).status_code == 200
    ws.send({"type": "ping"})
    assert ws.expect("pong")["type"] == "pong"


# ---- rate limits ----------------------------------------------------------------------------


def test_send_and_login_limits_are_shared_by_all_processes(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """3 failed logins, 2 registrations and 2 rooms are that many in total, not per process;
    sends past the burst on two processes are paid back on both (SEND_LIMIT_SYNC_S's bound)."""
    cluster = make_cluster(
        2,
        {
            "GREENROOM_SEND_BURST": "5",
            "GREENROOM_SEND_RATE_PER_S": "0.1",
            "GREENROOM_SEND_LIMIT_SYNC_S": "0.1",
            "GREENROOM_LOGIN_MAX_FAILURES": "3",
            "GREENROOM_REGISTER_MAX_PER_ADDRESS": "2",
            "GREENROOM_ROOM_CREATE_MAX": "2",
        },
    )
    apis = [Api(cluster[0]), Api(cluster[1])]
    user = apis[0].new_user("chatty")
    room = apis[0].create_room(user, "limits")["id"]
    assert apis[1].register(unique_name("second")).status_code == 201
    assert apis[0].register(unique_name("third")).status_code == 429
    assert apis[1].post("/api/rooms", user.token, json={"name": "second"}).status_code == 201
    assert apis[0].post("/api/rooms", user.token, json={"name": "third"}).status_code == 429
    both = [connect(user, server, sockets) for server in cluster.servers]
    for ws in both:
        ws.join(room)
    for i in range(5):
        assert both[0].say(room, f"#{i}")["seq"] == i + 1
    ws = both[0]
    ws.send({"type": "send", "room": room, "body": "one too many", "client_msg_id": "over"})
    error = ws.expect("error", skip=("presence", "message"))
    assert (error["code"], error["client_msg_id"]) == ("rate_limited", "over")
    assert error["retry_after_s"] >= 1
    # Process 1 decides from its own bucket until it hears of process 0's sends: at
    # most one more burst (plus rate x sync) gets through there, then it refuses.
    extra = 0
    while (r := apis[1].post(f"/api/rooms/{room}/messages", user.token, json={"body": "x"})).ok:
        extra += 1
        assert extra <= 5, "more than one extra burst"
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert history(apis[1], user, room)[-1]["seq"] == 5 + extra

    # Once process 1 has settled, it owes both processes' sends: 1 + extra tokens at 0.1/s,
    # not just its own share (10 s). Refusals take nothing, so asking again is harmless.
    def owed_s() -> int:
        r = apis[1].post(f"/api/rooms/{room}/messages", user.token, json={"body": "x"})
        assert r.status_code == 429
        return int(r.headers["Retry-After"])

    wait_for(lambda: owed_s() >= 10 * (1 + extra) - 1)

    for i in range(3):
        r = apis[i % 2].login(user.name, "not the password")
        assert r.status_code == 401, (i, r.text)
    r = apis[3 % 2].login(user.name, "not the password")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    r = apis[0].login(user.name)  # the bucket is empty: even the right password waits
    assert r.status_code == 429
