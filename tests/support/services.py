"""The services tests use beside the server: PostgreSQL schemas, Redis, and the rule for when they are missing.

A test that needs a service calls `require_service(postgres_unavailable())` (or the
Redis check): without the service it is skipped, unless GREENROOM_REQUIRE_SERVICES is
set (as in CI), when it fails.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.common import free_port, unique_name, wait_for

POSTGRES_URL = os.environ.get(
    "GREENROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("GREENROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_service(reason: str | None) -> None:
    """Skip for this reason, or fail when GREENROOM_REQUIRE_SERVICES says the service must be there."""
    if reason is None:
        return
    if os.environ.get("GREENROOM_REQUIRE_SERVICES"):
        pytest.fail(f"{reason} (GREENROOM_REQUIRE_SERVICES is set, as in CI)")
    pytest.skip(reason)


def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: not usable here
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}".splitlines()[0]
    return None


def new_postgres_schema() -> str:
    """A fresh, empty schema; its URL makes the server use nothing else."""
    import psycopg

    schema = unique_name(f"gr_{os.getpid()}_")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    _schemas.append(schema)
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def drop_postgres_schemas() -> None:
    if not _schemas:
        return
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in _schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    _schemas.clear()


_schemas: list[str] = []


def redis_unavailable() -> str | None:
    """Why Redis cannot be used for tests, or None when it can."""
    try:
        with socket.create_connection(_redis_address(), timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
        if not reply.startswith(b"+PONG"):
            return f"Redis at {REDIS_URL} answered {reply!r} to PING"
    except OSError as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    return None


def _redis_address() -> tuple[str, int]:
    m = re.match(r"redis://([^:/]+):(\d+)", REDIS_URL)
    return (m.group(1), int(m.group(2))) if m else ("127.0.0.1", 6379)


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
