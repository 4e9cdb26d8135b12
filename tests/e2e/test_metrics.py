"""GET /metrics: the metrics move by what a known exchange did, under `python app.py` and
gunicorn -w 2 with the backplane; the bearer token and the off switch.

Every scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import (
    CLUSTER_SETTINGS,
    REDIS_URL,
    WS,
    Api,
    GunicornProcess,
    ServerProcess,
    WsAttacker,
    assert_error,
    postgres_unavailable,
    redis_unavailable,
    require_service,
    wait_for,
    ws_frame,
)

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


def scrape(server: ServerProcess, token: str | None = None) -> dict[Sample, float]:
    """Every sample of one scrape, by name and labels (a fresh connection: any worker may answer)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Moved:
    """How far each sample moved between two scrapes."""

    def __init__(self, before: dict[Sample, float], after: dict[Sample, float]) -> None:
        self.before = before
        self.after = after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


def test_metrics_move_by_what_a_known_exchange_did(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Register, a failed login, two sockets in a room, 3 sends and a REST post, a 429, a 1009
    and an auth deadline: each metric moves by exactly that much."""
    server = make_server(
        "metrics",
        GREENROOM_SEND_BURST="4",
        GREENROOM_SEND_RATE_PER_S="0.001",
        GREENROOM_MAX_FRAME_BYTES="2048",
        GREENROOM_AUTH_TIMEOUT_S="1",
    )
    api = Api(server)
    before = scrape(server)
    alice, bob = api.new_user("alice"), api.new_user("bob")
    assert_error(api.login(alice.name, "not the password"), 401, "invalid_credentials")
    room = api.create_room(alice)["id"]
    assert bob.join(room).status_code == 200

    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        live = scrape(server)
        assert value(live, "greenroom_ws_connections") == 2
        assert value(live, "greenroom_ws_users") == 2
        assert value(live, "greenroom_rooms_live") == 1
        for i in range(3):
            a.say(room, f"hello {i}")
        for _ in range(3):
            b.expect("message")
        post = {"body": "by REST", "client_msg_id": "rest-1"}
        r = api.post(f"/api/rooms/{room}/messages", alice.token, json=post)
        assert r.status_code == 201, r.text
        b.expect("message")
        r = api.post(
            f"/api/rooms/{room}/messages", alice.token, json={**post, "client_msg_id": "x"}
        )
        assert_error(r, 429, "rate_limited")

        with WS.open(server.ws_url, bob.token) as big:
            big.send("x" * 3000)  # over MAX_FRAME_BYTES
            assert big.expect_closed() == 1009
        with WS.open(server.ws_url, expect_ready=False) as silent:
            assert silent.expect("error")["code"] == "unauthorized"  # no auth frame in time
            assert silent.expect_closed() == 4001

    def settled() -> bool:
        # The gauge drops when a socket's writer ends; a peer's close is counted when the
        # handler winds up, a moment later: wait for both, not for the gauge alone.
        now = scrape(server)
        closes = Moved(before, now)
        return value(now, "greenroom_ws_connections") == 0 and (
            closes("greenroom_ws_closes_total", code="peer") >= 2
        )

    wait_for(settled, timeout=10)
    moved = Moved(before, scrape(server))
    assert moved("greenroom_messages_stored_total") == 4
    assert moved("greenroom_message_frames_delivered_total") == 8  # to alice and to bob
    assert moved("greenroom_login_failures_total") == 1
    assert moved("greenroom_rate_limited_total", limit="send") == 1
    assert moved("greenroom_http_responses_total", status="429") == 1
    assert moved("greenroom_http_responses_total", status="401") == 1
    assert moved("greenroom_http_responses_total", status="201") == 4  # 2 registers, room, post
    assert moved("greenroom_ws_closes_total", code="1009") == 1
    assert moved("greenroom_ws_closes_total", code="4001") == 1
    assert moved("greenroom_ws_closes_total", code="peer") == 2  # a and b closed themselves
    assert moved("greenroom_limit_trips_total", limit="oversized_message") == 1
    assert moved("greenroom_limit_trips_total", limit="auth_deadline") == 1
    assert moved("greenroom_send_ack_seconds_count") == 3  # WebSocket sends only
    assert moved("greenroom_send_ack_seconds_bucket", le="+Inf") == 3
    assert moved("greenroom_db_batch_messages_sum") == 4
    assert 1 <= moved("greenroom_db_batch_messages_count") <= 4
    assert moved("greenroom_db_commit_seconds_count") == moved("greenroom_db_batch_messages_count")
    assert moved("greenroom_sweeps_total") > 0
    assert value(moved.after, "greenroom_outbox_bytes") == 0
    assert value(moved.after, "greenroom_backplane_connected") == 1
    assert moved("greenroom_backplane_publishes_total") == 0  # one worker: nobody to tell


def read_reply(sock: socket.socket) -> bytes:
    """What the server writes until it closes the connection (at most 10 s)."""
    sock.settimeout(10)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


@pytest.mark.parametrize("kind", ["app", "gunicorn"])
def test_http_limits_that_trip_are_counted(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """A request line over 8,190 bytes (414) and headers that never end (408) each count once,
    under python app.py and the Procfile's gunicorn."""
    server = make_server("limits", kind=kind, GREENROOM_HEADER_TIMEOUT_S="1")
    before = scrape(server)
    assert server.port is not None
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_reply(sock).startswith(b"HTTP/1.1 414")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        assert read_reply(sock).startswith(b"HTTP/1.1 408")
    moved = Moved(before, scrape(server))
    assert moved("greenroom_limit_trips_total", limit="request_line_limit") == 1
    assert moved("greenroom_limit_trips_total", limit="header_deadline") == 1


def test_a_client_over_its_inbound_budget_is_counted_held_then_closed(
    make_server: Callable[..., ServerProcess],
) -> None:
    """A ping flood past the frame budget: the reader's hold is counted, then the 4029 close."""
    server = make_server(
        "budget",
        GREENROOM_INBOUND_FRAMES_PER_S="200",
        GREENROOM_INBOUND_BURST_FRAMES="200",
        GREENROOM_INBOUND_OVER_BUDGET_CLOSE_S="1",
    )
    api = Api(server)
    flooder = api.new_user("flooder")
    before = scrape(server)
    attacker = WsAttacker(server, flooder.token).start_reading()
    attacker.flood(ws_frame(0x9, b""), 3.0)
    assert attacker.wait_closed(5) == 4029
    attacker.close()
    wait_for(lambda: value(scrape(server), "greenroom_ws_connections") == 0, timeout=10)
    moved = Moved(before, scrape(server))
    assert moved("greenroom_ws_closes_total", code="4029") == 1
    assert moved("greenroom_limit_trips_total", limit="inbound_budget") >= 1
    assert (
        moved("greenroom_limit_trips_total", limit="auth_budget") == 0
    )  # the header authenticated


def test_metrics_token_is_required_when_set(make_server: Callable[..., ServerProcess]) -> None:
    """With GREENROOM_METRICS_TOKEN, a scrape without it or with a wrong one gets the JSON 401."""
    server = make_server("token", GREENROOM_METRICS_TOKEN="s3cret-scrape")
    url = f"{server.url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-scrape"}):
        r = requests.get(url, headers=headers, timeout=10)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    assert value(scrape(server, "s3cret-scrape"), "greenroom_ws_connections") == 0


def test_metrics_off_is_a_json_404(make_server: Callable[..., ServerProcess]) -> None:
    """GREENROOM_METRICS=0: /metrics is an unknown route like any other."""
    server = make_server("off", GREENROOM_METRICS="0")
    assert_error(requests.get(f"{server.url}/metrics", timeout=10), 404, "not_found")
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[GunicornProcess]:
    """The Procfile's gunicorn with two workers on PostgreSQL and the Redis backplane."""
    require_service(postgres_unavailable())
    require_service(redis_unavailable())
    env = {
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": REDIS_URL,
        "GREENROOM_BACKPLANE_CHANNEL": f"greenroom-metrics-{secrets.token_hex(4)}",
        **CLUSTER_SETTINGS,
    }
    server = GunicornProcess(tmp_path / "gunicorn", env, database="postgresql").start()
    yield server
    server.stop()


def connections_by_worker(server: ServerProcess, workers: dict[str, int]) -> bool:
    """Ask /healthz on fresh connections until both workers answered; True when each holds a socket."""
    for _ in range(20):
        health = requests.get(f"{server.url}/healthz", timeout=10).json()
        workers[health["worker"]] = health["connections"]
        if len(workers) == 2:
            break
    return len(workers) == 2 and all(workers.values())


def workers_of(server: ServerProcess) -> list[int]:
    """The gunicorn master's worker processes."""
    assert server.proc is not None
    pid = server.proc.pid
    return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def messages_and_acks(ws: WS, count: int) -> list[str]:
    """The types of the next `count` message and ack frames, passing over presence and the like."""
    got: list[str] = []
    while len(got) < count:
        kind = ws.recv()["type"]
        if kind in ("message", "ack"):
            got.append(kind)
    return got


def test_metrics_under_two_gunicorn_workers_add_up_both(two_workers: GunicornProcess) -> None:
    """With sockets on both workers, one scrape (from either) counts every worker's
    connections, messages, deliveries and backplane publishes."""
    server = two_workers
    api = Api(server)
    before = scrape(server)
    alice = api.new_user("alice")
    assert_error(api.login(alice.name, "not the password"), 401, "invalid_credentials")
    room = api.create_room(alice)["id"]
    sockets: list[WS] = []
    workers: dict[str, int] = {}  # worker id -> its open connections, from /healthz
    try:
        # New TCP connections land on either worker: open them until both hold some.
        while not connections_by_worker(server, workers) or len(sockets) < 4:
            assert len(sockets) < 20, f"every socket went to one worker: {workers}"
            ws = alice.ws()
            sockets.append(ws)
            ws.join(room)
        n = len(sockets)
        for i, ws in enumerate(sockets):
            ws.send({"type": "send", "room": room, "body": f"#{i}", "client_msg_id": f"m{i}"})
        for ws in sockets:  # each gets every message and its own ack
            assert sorted(messages_and_acks(ws, n + 1)) == ["ack"] + ["message"] * n

        def all_counted() -> bool:
            now = scrape(server)
            moved = Moved(before, now)
            return (
                value(now, "greenroom_ws_connections") == n
                and moved("greenroom_messages_stored_total") == n
                and moved("greenroom_message_frames_delivered_total") == n * n
                and moved("greenroom_backplane_published_messages_total") == n
                and moved("greenroom_send_ack_seconds_count") == n
            )

        wait_for(all_counted, timeout=10)
        live = scrape(server)
        assert value(live, "greenroom_ws_users") == 2  # alice on each worker, summed
        assert value(live, "greenroom_rooms_live") == 2  # the room followed on each worker
        assert value(live, "greenroom_backplane_connected") == 1
        moved = Moved(before, live)
        assert moved("greenroom_login_failures_total") == 1
        assert moved("greenroom_backplane_publishes_total") > 0
        assert moved("greenroom_backplane_received_total") > 0
        assert value(live, "greenroom_backplane_resubscriptions_total") == 2  # one per worker
    finally:
        for ws in sockets:
            ws.close()

    def all_closed() -> bool:
        now = scrape(server)
        return (
            value(now, "greenroom_ws_connections") == 0
            and Moved(before, now)("greenroom_ws_closes_total", code="peer") == n
        )

    wait_for(all_closed, timeout=10)

    # A worker replaced (SIGTERM, gunicorn starts another): its counts stay in the sums.
    old = workers_of(server)
    os.kill(old[0], signal.SIGTERM)
    wait_for(lambda: len(now := workers_of(server)) == 2 and now != old, timeout=30)

    def replaced_and_still_counted() -> bool:
        now = scrape(server)
        return (
            value(now, "greenroom_backplane_resubscriptions_total") == 3  # the new worker's
            and Moved(before, now)("greenroom_messages_stored_total") == n
            and Moved(before, now)("greenroom_message_frames_delivered_total") == n * n
        )

    wait_for(replaced_and_still_counted, timeout=10)
