"""Liveness and readiness: /healthz says the process is alive, /readyz whether it should get traffic."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import (
    Api,
    Cluster,
    RawClient,
    RedisServer,
    ServerProcess,
    assert_error,
    new_postgres_schema,
    postgres_unavailable,
    require_service,
    wait_for,
)


def ready(srv: ServerProcess) -> tuple[int, dict[str, Any]]:
    """/readyz on a fresh connection, as a balancer's probe does: (status, body)."""
    r = requests.get(f"{srv.url}/readyz", timeout=5)
    return r.status_code, r.json()


def checks_of(body: dict[str, Any]) -> dict[str, str]:
    return body["checks"] if "checks" in body else body["error"]["checks"]


def test_healthz_and_readyz_without_a_backplane(make_server: Callable[..., ServerProcess]) -> None:
    """With no backplane, /healthz has no backplane_connected and /readyz is 200 with its checks."""
    srv = make_server()
    health = requests.get(f"{srv.url}/healthz", timeout=5).json()
    assert health["backplane"] == "none" and "backplane_connected" not in health
    status, body = ready(srv)
    assert status == 200, body
    assert body == {"status": "ready", "checks": {"database": "ok", "shutdown": "ok"}}


def test_readyz_is_503_while_redis_is_down_and_200_when_it_returns(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """A worker whose Redis backplane stops answers 503 (backplane disconnected), then 200 again."""
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        cluster = make_cluster(2, {"REDIS_URL": redis.url})
        for srv in cluster.servers:
            wait_for(lambda srv=srv: ready(srv)[0] == 200, timeout=10)
            assert checks_of(ready(srv)[1])["backplane"] == "ok"
        redis.kill()
        for srv in cluster.servers:
            wait_for(lambda srv=srv: ready(srv)[0] == 503, timeout=15)
            status, body = ready(srv)
            assert_error_shape(body, "not_ready")
            assert checks_of(body) == {
                "database": "ok",
                "backplane": "disconnected",
                "shutdown": "ok",
            }
            health = requests.get(f"{srv.url}/healthz", timeout=5).json()
            assert health["status"] == "ok" and health["backplane_connected"] is False
        redis.start()
        for srv in cluster.servers:
            wait_for(lambda srv=srv: ready(srv)[0] == 200, timeout=15)
    finally:
        redis.stop()


def assert_error_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code and isinstance(body["error"]["message"], str), body


@pytest.mark.parametrize("kind", ["app", "gunicorn"])
def test_readyz_is_503_while_the_worker_drains_after_sigterm(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """From SIGTERM until exit the worker still answers: /readyz says draining, a new WebSocket gets 503."""
    srv = make_server(kind=kind)
    api = Api(srv)
    user = api.new_user("drain")
    # A client that never answers the close frame holds the drain for CLOSE_TIMEOUT_S.
    held = RawClient(srv, user.token)
    assert held.read_json()["type"] == "ready"
    assert ready(srv)[0] == 200
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    try:

        def draining() -> dict[str, Any] | None:
            status, body = ready(srv)
            return body if status == 503 else None

        body = wait_for(draining, timeout=5, interval=0.02)
        assert_error_shape(body, "not_ready")
        assert checks_of(body)["shutdown"] == "draining"
        r = requests.get(
            f"{srv.url}/ws",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                "Authorization": f"Bearer {user.token}",
            },
            timeout=5,
        )
        assert_error(r, 503, "unavailable")
        assert srv.proc.wait(20) == 0, srv.log()
    finally:
        held.close()


class TcpProxy:
    """A TCP relay to PostgreSQL that a test stops (connections refused, open ones cut),
    freezes (connections accepted, nothing relayed) and starts again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.frozen = False
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not,
            # and the port would stay taken.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.append(client)
                self.accepted += 1
            if self.frozen:
                continue  # accepted, never answered: the check must give up by itself
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.append(server)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_readyz_is_503_while_the_database_is_unreachable(tmp_path: Path) -> None:
    """PostgreSQL behind a relay: refused or silent, /readyz says database unreachable within
    READY_DB_TIMEOUT_S; when it answers again, 200."""
    require_service(postgres_unavailable())
    url = new_postgres_schema()
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.start()
    # The test's PostgreSQL URL, through the relay (the schema stays in the query string).
    via_proxy = url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert via_proxy != url
    srv = ServerProcess(
        tmp_path / "db",
        {
            "DATABASE_URL": via_proxy,
            "GREENROOM_READY_DB_TIMEOUT_S": "0.5",
            "GREENROOM_READY_CACHE_S": "0.2",
        },
    ).start()
    try:
        assert ready(srv)[0] == 200
        proxy.stop()
        body = wait_for(lambda: (lambda s, b: b if s == 503 else None)(*ready(srv)), timeout=5)
        assert_error_shape(body, "not_ready")
        assert checks_of(body) == {"database": "unreachable", "shutdown": "ok"}
        # Liveness does not depend on the database.
        assert requests.get(f"{srv.url}/healthz", timeout=5).status_code == 200

        proxy.frozen = True
        proxy.accepted = 0
        proxy.start()
        # A storm of 40 probes at once while the database hangs: one check runs, bounded by
        # READY_DB_TIMEOUT_S, and the others share its answer instead of queueing behind
        # 40 timeouts or opening 40 connections.
        answers: list[int] = []
        started = time.monotonic()
        storm = [threading.Thread(target=lambda: answers.append(ready(srv)[0])) for _ in range(40)]
        for t in storm:
            t.start()
        for t in storm:
            t.join(10)
        elapsed = time.monotonic() - started
        assert answers == [503] * 40
        assert elapsed < 3, elapsed  # bounded by READY_DB_TIMEOUT_S, not TCP's timeouts
        assert proxy.accepted <= 1 + elapsed / 0.2, proxy.accepted  # one check per cache period

        proxy.stop()
        proxy.frozen = False
        proxy.start()
        wait_for(lambda: ready(srv)[0] == 200, timeout=10)
    finally:
        srv.stop()
        proxy.stop()
