"""Scale-out, end to end: several server processes on one PostgreSQL schema and one Redis backplane.

Each test starts its own processes (a `Cluster` of `python app.py`, or the Procfile's
gunicorn with two workers) and talks to them over real HTTP and WebSockets. Users
connect to different processes and must see one chat: one seq order per room, one
presence map, shared rate limits, logout everywhere. Crashes (SIGKILL of a process, a
Redis restart) must lose and reorder no acknowledged message.

PostgreSQL and Redis are needed: without them these tests skip, unless
GREENROOM_REQUIRE_SERVICES is set (as in CI), when they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed

from tests.e2e.test_gunicorn import free_port, procfile_web_command
from tests.support import (
    CLUSTER_SETTINGS,
    FAST_SETTINGS,
    REDIS_URL,
    ROOT,
    WS,
    Api,
    Cluster,
    ServerProcess,
    User,
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    redis_unavailable,
    unique_name,
    wait_for,
)

# How long after its death a worker's users may still show as online: docs/protocol.md.
DEAD_WORKER_BOUND_S = float(CLUSTER_SETTINGS["GREENROOM_WORKER_TIMEOUT_S"]) + float(
    CLUSTER_SETTINGS["GREENROOM_HEARTBEAT_S"]
)
SLACK_S = 5.0


def require(reason: str | None) -> None:
    """Skip for this reason, or fail when GREENROOM_REQUIRE_SERVICES says the service must be there."""
    if reason is None:
        return
    if os.environ.get("GREENROOM_REQUIRE_SERVICES"):
        pytest.fail(f"{reason} (GREENROOM_REQUIRE_SERVICES is set, as in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def backplane_services() -> Iterator[None]:
    """PostgreSQL and Redis are up (else skip or fail); every schema made meanwhile is dropped at the end."""
    require(postgres_unavailable())
    require(redis_unavailable())
    yield
    drop_postgres_schemas()


@pytest.fixture
def make_cluster(tmp_path: Path, backplane_services: None) -> Iterator[Callable[..., Cluster]]:
    """Start clusters in tmp_path; each is stopped afterwards (SIGTERM, SIGKILL if that fails)."""
    clusters: list[Cluster] = []

    def factory(size: int, env: dict[str, str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", size, env)
        clusters.append(cluster)
        return cluster.start()

    yield factory
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def sockets(make_cluster: Callable[..., Cluster]) -> Iterator[list[WS]]:
    """WebSockets a test opened; closed before its clusters stop."""
    opened: list[WS] = []
    yield opened
    for ws in opened:
        ws.close()


# ---- helpers --------------------------------------------------------------------------------


def connect(user: User, server: ServerProcess, opened: list[WS]) -> WS:
    """A WebSocket of `user` (whose token is valid on every process) to `server`."""
    ws = WS.open(server.ws_url, user.token)
    opened.append(ws)
    return ws


def statuses(api: Api, user: User) -> dict[str, str]:
    """username -> online/offline, as GET /api/users on api's process says."""
    return {u["username"]: u["status"] for u in api.list_all("/api/users", user.token, "users")}


def health(server: ServerProcess) -> dict[str, Any]:
    return requests.get(f"{server.url}/healthz", timeout=5).json()


def history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """Every stored message of the room, oldest first, paged forward over REST."""
    messages: list[dict[str, Any]] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        r = api.get(f"/api/rooms/{room}/messages?after={after}&limit=500", user.token)
        assert r.status_code == 200, r.text
        messages += r.json()["messages"]
        if not r.json()["has_more"]:
            return messages


def expect_presence(ws: WS, user: str, status: str, timeout: float = 5.0) -> None:
    """Read until a presence frame says `user` is `status` (other frames are passed over)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = ws.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "presence" and (frame["user"], frame["status"]) == (user, status):
            return


def key(message: dict[str, Any]) -> tuple[Any, ...]:
    """What must be identical about a message wherever it is read."""
    return (message["seq"], message["user"], message["body"], message["client_msg_id"])


class Follower:
    """Reads every frame of one WebSocket on its own thread, so no buffer fills while a test waits.

    Tests wait on what it has read (`wait`), never on the clock.
    """

    def __init__(self, ws: WS, name: str) -> None:
        self.ws = ws
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self.acks: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.presence: list[tuple[float, str, str]] = []  # (monotonic time, user, status)
        self.pongs = 0
        self.ended = False
        self.close_code: int | None = None
        self.failure: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                with self._cond:
                    self._record(frame)
                    self._cond.notify_all()
        except ConnectionClosed:
            self.close_code = self.ws.conn.close_code
        except BaseException as exc:  # reported by wait()
            self.failure = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _record(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            self.messages.append(frame)
        elif kind == "ack":
            self.acks[frame["client_msg_id"]] = frame["seq"]
        elif kind == "error":
            self.errors.append(frame)
        elif kind == "presence":
            self.presence.append((time.monotonic(), frame["user"], frame["status"]))
        elif kind == "pong":
            self.pongs += 1

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]

    def wait(self, predicate: Callable[[Follower], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if self.failure is not None or self.ended or remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: {what} not seen within {timeout} s (reader failure "
                        f"{self.failure!r}, closed {self.close_code}, last seqs "
                        f"{self.seqs()[-5:]} of {len(self.messages)}, errors {self.errors[-3:]})"
                    )
                self._cond.wait(remaining)

    def wait_seq(self, seq: int, timeout: float = 15) -> None:
        self.wait(
            lambda f: bool(f.messages) and f.messages[-1]["seq"] >= seq, f"seq {seq}", timeout
        )

    def sync(self) -> None:
        """Round-trip a ping: whatever the server had queued for this socket has been read."""
        with self._cond:
            before = self.pongs
        self.ws.send({"type": "ping"})
        self.wait(lambda f: f.pongs > before, "pong")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Sender:
    """Sends one message at a time through a followed WebSocket, each after the previous answer.

    It paces itself (`pause` between sends: a rate, not an ordering) so that what piles up
    while a test breaks something stays the same on a faster machine.
    """

    def __init__(
        self, follower: Follower, room: str, prefix: str, limit: int = 2000, pause: float = 0.01
    ) -> None:
        self.follower = follower
        self.room = room
        self.prefix = prefix
        self.limit = limit
        self.pause = pause
        self.acked: dict[str, int] = {}
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"send-{prefix}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i in range(self.limit):
                if self._stop.wait(self.pause if i else 0):
                    return
                cmid = f"{self.prefix}-{i}"
                self.follower.ws.send(
                    {"type": "send", "room": self.room, "body": f"{cmid}!", "client_msg_id": cmid}
                )
                self.follower.wait(
                    lambda f, c=cmid: (
                        c in f.acks or any(e.get("client_msg_id") == c for e in f.errors)
                    ),
                    f"the answer to {cmid}",
                )
                if cmid not in self.follower.acks:
                    raise AssertionError(f"{cmid} refused: {self.follower.errors[-1]}")
                self.acked[cmid] = self.follower.acks[cmid]
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> dict[str, int]:
        """Stop after the message in flight is answered; return client_msg_id -> seq of every ack."""
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), f"sender {self.prefix} did not stop"
        if self.failure is not None:
            raise AssertionError(f"sender {self.prefix} failed: {self.failure!r}")
        return dict(self.acked)


# ---- 1. two processes, one chat -------------------------------------------------------------


def test_users_on_two_processes_share_rooms_history_members_presence_and_deletion(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """Alice on process 0 and bob on process 1 chat both ways; every REST view agrees on both."""
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


# ---- 2. concurrent senders on three processes -----------------------------------------------


def test_concurrent_senders_on_three_processes_give_everyone_one_gap_free_order(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """Senders on three processes at once: every member everywhere sees seq 1..600 once, in one order.

    Each sender first pipelines 100 sends (large group-commit batches that contend for the
    room), then sends 100 one at a time. The second half interleaves the processes finely,
    so a process often commits its own message before an earlier one from another process
    has come through Redis: only holding it back keeps the order.
    """
    pipelined = one_by_one = 100
    per_sender = pipelined + one_by_one
    total = 3 * per_sender
    cluster = make_cluster(3)
    apis = [Api(server) for server in cluster.servers]
    senders = [apis[i].new_user(f"send{i}") for i in range(3)]
    readers = [apis[i].new_user(f"read{i}") for i in range(3)]
    room = apis[0].create_room(senders[0], "storm")["id"]
    for user in senders[1:] + readers:
        assert user.join(room).status_code == 200

    followers: dict[str, Follower] = {}
    for i, user in enumerate(senders + readers):
        ws = connect(user, cluster[i % 3], sockets)
        ws.join(room)
        followers[user.name] = Follower(ws, f"{user.name}@{i % 3}")
    start = threading.Barrier(3)

    def send(follower: Follower, cmid: str) -> None:
        follower.ws.send({"type": "send", "room": room, "body": f"{cmid}!", "client_msg_id": cmid})

    def burst(i: int) -> None:
        follower = followers[senders[i].name]
        start.wait(10)
        for n in range(pipelined):
            send(follower, f"s{i}-{n}")
        for n in range(pipelined, per_sender):
            follower.wait(lambda f, c=f"s{i}-{n - 1}": c in f.acks, f"the ack of s{i}-{n - 1}")
            send(follower, f"s{i}-{n}")

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(burst, i) for i in range(3)]:
            future.result(60)

    for follower in followers.values():
        follower.wait_seq(total, timeout=30)
        follower.sync()
    stored = history(apis[1], readers[1], room)
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    by_cmid = {m["client_msg_id"]: m for m in stored}
    for name, follower in followers.items():
        assert [m["seq"] for m in follower.messages] == list(range(1, total + 1)), name
        assert [key(m) for m in follower.messages] == [key(m) for m in stored], name
        assert not follower.errors, (name, follower.errors[:3])
    for i, user in enumerate(senders):
        acks = followers[user.name].acks
        assert len(acks) == per_sender
        assert all(
            by_cmid[c]["seq"] == seq and by_cmid[c]["user"] == user.name for c, seq in acks.items()
        )
        # Each sender's own messages keep the order they were sent in.
        assert [acks[f"s{i}-{n}"] for n in range(per_sender)] == sorted(acks.values())
    for api in apis:
        assert [key(m) for m in history(api, senders[0], room)] == [key(m) for m in stored]


# ---- 3. capacity under concurrent joins -----------------------------------------------------


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


# ---- 4. a process dies ----------------------------------------------------------------------


def test_sigkilled_process_clients_resume_on_survivor_and_its_users_go_offline(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """SIGKILL one of two processes mid-traffic: its client resumes on the survivor with since and
    misses nothing; its only-there user goes offline in time; a reconnected user never does."""
    cluster = make_cluster(2)
    doomed, survivor = cluster[0], cluster[1]
    api = Api(survivor)
    sender, reader, loner, watcher = (
        api.new_user(p) for p in ("sender", "reader", "loner", "watch")
    )
    room = api.create_room(sender, "crash")["id"]
    for user in (reader, loner, watcher):
        assert user.join(room).status_code == 200

    watch = Follower(connect(watcher, survivor, sockets), "watcher@survivor")  # presence only
    ws = connect(reader, doomed, sockets)
    ws.join(room)
    before = Follower(ws, "reader@doomed")
    connect(loner, doomed, sockets)  # online on the doomed process only
    s = connect(sender, survivor, sockets)
    s.join(room)
    pump = Sender(Follower(s, "sender@survivor"), room, "k")
    wait_for(lambda: statuses(api, watcher).get(loner.name) == "online")
    assert statuses(api, watcher)[reader.name] == "online"

    before.wait(lambda f: len(f.messages) >= 10, "10 messages before the kill")
    killed_at = time.monotonic()
    doomed.kill()
    before.wait(lambda f: f.ended, "the dropped connection")
    assert before.close_code == 1006
    since = before.seqs()[-1]

    ws = connect(reader, survivor, sockets)
    joined = ws.join(room, since=since)
    after = Follower(ws, "reader@survivor")
    after.wait(lambda f: len(f.messages) >= 5, "live messages after resuming")

    # The loner was online only on the dead process: offline once it is presumed dead.
    watch.wait(
        lambda f: (loner.name, "offline") in [(u, st) for _, u, st in f.presence],
        "the loner going offline",
        timeout=DEAD_WORKER_BOUND_S + SLACK_S + 1,
    )
    went_at = next(t for t, u, st in watch.presence if (u, st) == (loner.name, "offline"))
    assert went_at - killed_at <= DEAD_WORKER_BOUND_S + SLACK_S
    now = statuses(api, watcher)
    assert (now[loner.name], now[reader.name]) == ("offline", "online")
    assert (reader.name, "offline") not in [(u, st) for _, u, st in watch.presence]
    assert api.get(f"/api/users/{loner.name}", watcher.token).json()["last_seen"] is not None

    acked = pump.stop()
    n = max(acked.values())
    after.wait_seq(n)
    after.sync()
    seen = before.messages + joined["history"] + after.messages
    assert [m["seq"] for m in seen] == list(range(1, n + 1))
    assert {m["client_msg_id"]: m["seq"] for m in seen} == acked
    assert [key(m) for m in seen] == [key(m) for m in history(api, reader, room)]


# ---- 5. Redis restarts ----------------------------------------------------------------------


class RedisServer:
    """A private redis-server on its own port, to kill and restart without touching the shared one."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=10)

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path, backplane_services: None) -> Iterator[RedisServer]:
    require(None if shutil.which("redis-server") else "redis-server is not installed")
    server = RedisServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_redis_restart_during_traffic_loses_and_reorders_nothing(
    make_cluster: Callable[..., Cluster], private_redis: RedisServer, sockets: list[WS]
) -> None:
    """Senders on both processes keep going while Redis is killed and restarted: every client still
    gets every acknowledged message exactly once, in seq order."""
    cluster = make_cluster(2, {"REDIS_URL": private_redis.url})
    apis = [Api(cluster[0]), Api(cluster[1])]
    users = [apis[i % 2].new_user(p) for i, p in enumerate(("s0", "s1", "r0", "r1"))]
    room = apis[0].create_room(users[0], "blip")["id"]
    for user in users[1:]:
        assert user.join(room).status_code == 200
    followers = []
    for i, user in enumerate(users):
        ws = connect(user, cluster[i % 2], sockets)
        ws.join(room)
        followers.append(Follower(ws, f"{user.name}@{i % 2}"))
    pumps = [Sender(followers[0], room, "a"), Sender(followers[1], room, "b")]

    def acks() -> int:
        return sum(len(p.acked) for p in pumps)

    def connected() -> list[bool]:
        return [health(server)["backplane_connected"] for server in cluster.servers]

    assert connected() == [True, True]
    wait_for(lambda: acks() >= 20, timeout=10)
    private_redis.kill()
    wait_for(lambda: connected() == [False, False], timeout=10)
    mark = acks()
    wait_for(lambda: acks() >= mark + 30, timeout=10)  # chat goes on without Redis
    private_redis.start()
    wait_for(lambda: connected() == [True, True], timeout=15)
    mark = acks()
    wait_for(lambda: acks() >= mark + 20, timeout=10)
    acked = {**pumps[0].stop(), **pumps[1].stop()}
    n = max(acked.values())
    assert sorted(acked.values()) == list(range(1, n + 1))

    stored = history(apis[0], users[0], room)
    assert [m["seq"] for m in stored] == list(range(1, n + 1))
    for follower in followers:
        follower.wait_seq(n, timeout=15)
        follower.sync()
        assert follower.seqs() == list(range(1, n + 1)), follower.name
        assert {m["client_msg_id"]: m["seq"] for m in follower.messages} == acked, follower.name
        assert [key(m) for m in follower.messages] == [key(m) for m in stored], follower.name


# ---- 6. logout ------------------------------------------------------------------------------


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


# ---- 7. rate limits -------------------------------------------------------------------------


def test_send_and_login_limits_are_shared_by_all_processes(
    make_cluster: Callable[..., Cluster], sockets: list[WS]
) -> None:
    """A burst of 5 sends is 5 in total, not 5 per process; so are 3 failed logins, 2 registrations and 2 rooms."""
    cluster = make_cluster(
        2,
        {
            "GREENROOM_SEND_BURST": "5",
            "GREENROOM_SEND_RATE_PER_S": "0.1",
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
        assert both[i % 2].say(room, f"#{i}")["seq"] == i + 1
    ws = both[5 % 2]
    ws.send({"type": "send", "room": room, "body": "one too many", "client_msg_id": "over"})
    error = ws.expect("error", skip=("presence", "message"))
    assert (error["code"], error["client_msg_id"]) == ("rate_limited", "over")
    assert error["retry_after_s"] >= 1
    r = apis[0].post(f"/api/rooms/{room}/messages", user.token, json={"body": "and another"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert history(apis[1], user, room)[-1]["seq"] == 5

    for i in range(3):
        r = apis[i % 2].login(user.name, "not the password")
        assert r.status_code == 401, (i, r.text)
    r = apis[3 % 2].login(user.name, "not the password")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    r = apis[0].login(user.name)  # the bucket is empty: even the right password waits
    assert r.status_code == 429


# ---- 8. the start-up guard ------------------------------------------------------------------


def assert_refused(server: ServerProcess) -> None:
    """The process did not start: a non-zero exit and one line naming REDIS_URL, no traceback."""
    with pytest.raises(RuntimeError):
        server.start()
    assert server.proc is not None
    assert server.proc.wait(10) != 0
    log = server.log()
    assert "another Greenroom process is using this database" in log, log
    assert "REDIS_URL" in log, log
    assert "Traceback" not in log, log


def test_second_process_without_backplane_refuses_to_share_the_database(
    make_cluster: Callable[..., Cluster],
) -> None:
    """While a backplane-less process runs, neither another one nor a clustered one may use its database."""
    alone = make_cluster(0, {"REDIS_URL": ""})  # one fresh schema; processes added below
    first = alone.spare().start()
    assert_refused(alone.spare())
    assert_refused(alone.spare(REDIS_URL=REDIS_URL))
    still = health(first)
    assert (still["status"], still["backplane"]) == ("ok", "none")


def test_process_without_backplane_refuses_a_database_held_by_a_cluster(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Clustered processes hold the database: one started without REDIS_URL stops, naming REDIS_URL."""
    cluster = make_cluster(2)
    assert_refused(cluster.spare(REDIS_URL=""))
    assert [health(server)["backplane"] for server in cluster.servers[:2]] == ["redis", "redis"]


# ---- 9. gunicorn with two workers -----------------------------------------------------------


def procfile_env(tmp_path: Path, workers: int, **env: str) -> tuple[str, dict[str, str]]:
    """The Procfile's web command for `workers` workers, and its environment on a free port."""
    command = procfile_web_command()
    if "-w 1 " in command:
        command = command.replace("-w 1 ", f"-w {workers} ")
    assert f"-w {workers} " in command or "-w ${WEB_CONCURRENCY" in command, command
    return command, {
        **os.environ,
        **FAST_SETTINGS,
        **CLUSTER_SETTINGS,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": str(workers),
        "DATABASE_URL": new_postgres_schema(),
        "HOME": str(tmp_path),
        **env,
    }


def pinned_socket(port: int) -> tuple[socket.socket, str]:
    """A keep-alive connection and the gunicorn worker that answered /healthz on it.

    A WebSocket upgrade sent on the same connection is served by that same worker.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    with sock.makefile("rb") as reader:
        status = reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            assert (name.strip().lower(), value.strip().lower()) != ("connection", "close")
        body = json.loads(reader.read(length))
    return sock, body["worker"]


@pytest.fixture
def gunicorn_pair(tmp_path: Path, backplane_services: None) -> Iterator[ServerProcess]:
    """The Procfile's gunicorn with two workers, REDIS_URL and a PostgreSQL database."""
    command, env = procfile_env(
        tmp_path,
        2,
        REDIS_URL=REDIS_URL,
        GREENROOM_BACKPLANE_CHANNEL=f"greenroom-test-gunicorn-{os.getpid()}-{free_port()}",
    )
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    log.close()
    server = ServerProcess(tmp_path / "unused")
    server.proc = proc  # type: ignore[assignment]
    server.port = int(env["PORT"])
    server.log_path = tmp_path / "gunicorn.log"

    def up() -> bool:
        try:
            return requests.get(f"{server.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:  # refused, or accepted while no worker is up yet
            assert proc.poll() is None, server.log()
            return False

    try:
        wait_for(up, timeout=30, interval=0.1)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_gunicorn_two_workers_from_the_procfile_share_rooms(
    gunicorn_pair: ServerProcess, sockets: list[WS]
) -> None:
    """Under the Procfile's gunicorn with 2 workers, users on different workers chat in one room."""
    pinned: dict[str, socket.socket] = {}
    deadline = time.monotonic() + 15
    while len(pinned) < 2:
        assert time.monotonic() < deadline, f"only workers {list(pinned)} answered"
        sock, worker = pinned_socket(gunicorn_pair.port)  # type: ignore[arg-type]
        if worker in pinned:
            sock.close()
        else:
            pinned[worker] = sock
    api = Api(gunicorn_pair)
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "workers")["id"]
    assert bob.join(room).status_code == 200
    (worker_a, sock_a), (worker_b, sock_b) = pinned.items()
    a = WS.open(gunicorn_pair.ws_url, alice.token, sock=sock_a)
    sockets.append(a)
    b = WS.open(gunicorn_pair.ws_url, bob.token, sock=sock_b)
    sockets.append(b)
    assert worker_a != worker_b
    expect_presence(a, bob.name, "online")
    a.join(room)
    b.join(room)
    assert a.say(room, f"from worker {worker_a}")["seq"] == 1
    assert b.expect("message")["body"] == f"from worker {worker_a}"
    assert b.say(room, f"from worker {worker_b}")["seq"] == 2
    assert a.expect("message")["body"] == f"from worker {worker_b}"
    api.http.close()  # an idle keep-alive connection would hold up the graceful stop


def test_gunicorn_two_workers_without_redis_url_refuse_to_start(
    tmp_path: Path, backplane_services: None
) -> None:
    """-w 2 on PostgreSQL but without REDIS_URL: gunicorn stops at once, naming REDIS_URL."""
    command, env = procfile_env(tmp_path, 2, REDIS_URL="")
    done = subprocess.run(
        ["bash", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "refusing to start 2 workers" in done.stderr, done.stderr
    assert "REDIS_URL" in done.stderr
    assert "DATABASE_URL=postgresql" not in done.stderr  # PostgreSQL is set: only Redis is missing
    assert "Traceback" not in done.stderr
