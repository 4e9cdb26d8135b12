"""Scale-out start-up: processes share a database only through the backplane.

A process without REDIS_URL and any other process refuse to share a database; the
Procfile's gunicorn with two workers shares rooms across them with REDIS_URL, and
refuses to start without it.

PostgreSQL and Redis are needed: without them these tests skip, unless
GREENROOM_REQUIRE_SERVICES is set (as in CI), when they fail.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.support import (
    CLUSTER_SETTINGS,
    FAST_SETTINGS,
    REDIS_URL,
    ROOT,
    WS,
    Api,
    Cluster,
    ServerProcess,
    free_port,
    new_postgres_schema,
    procfile_web_command,
    wait_for,
)
from tests.support.cluster import expect_presence, health

# ---- the start-up guard ---------------------------------------------------------------------


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


# ---- gunicorn with two workers --------------------------------------------------------------


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
