"""Scale-out under load and crashes: one gap-free seq order per room, and no acknowledged message lost.

Senders on three processes at once, a process killed with SIGKILL mid-traffic, Redis
killed and restarted (a private redis-server): every client still gets every
acknowledged message once, in seq order, the same as stored. Tests wait on what
followers have read, never on the clock.

PostgreSQL and Redis are needed: without them these tests skip, unless
GREENROOM_REQUIRE_SERVICES is set (as in CI), when they fail.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import CLUSTER_SETTINGS, WS, Api, Cluster, RedisServer, require_service, wait_for
from tests.support.cluster import Follower, Sender, connect, health, history, key, statuses

# How long after its death a worker's users may still show as online: docs/protocol.md.
DEAD_WORKER_BOUND_S = float(CLUSTER_SETTINGS["GREENROOM_WORKER_TIMEOUT_S"]) + float(
    CLUSTER_SETTINGS["GREENROOM_HEARTBEAT_S"]
)
SLACK_S = 5.0


# ---- concurrent senders on three processes --------------------------------------------------


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


# ---- a process dies -------------------------------------------------------------------------


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


# ---- Redis restarts -------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path, backplane_services: None) -> Iterator[RedisServer]:
    require_service(None if shutil.which("redis-server") else "redis-server is not installed")
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
