"""The server under test as a real process: `python app.py`, the Procfile's gunicorn, or a cluster of them.

Each process gets a free loopback port, its own database (a SQLite file or a fresh
PostgreSQL schema) and FAST_SETTINGS, so no test waits for a real default.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.support.common import ROOT, free_port, wait_for
from tests.support.services import REDIS_URL, new_postgres_schema

# Short timeouts and cheap hashing so no test waits for a real default.
FAST_SETTINGS = {
    "GREENROOM_ARGON2_TIME_COST": "1",
    "GREENROOM_ARGON2_MEMORY_KIB": "8192",
    "GREENROOM_ARGON2_PARALLELISM": "1",
    "GREENROOM_PING_INTERVAL_S": "1",
    "GREENROOM_PRESENCE_TIMEOUT_S": "4",
    "GREENROOM_SWEEP_INTERVAL_S": "0.25",
    "GREENROOM_AUTH_TIMEOUT_S": "3",
    "GREENROOM_CLOSE_TIMEOUT_S": "2",
    "GREENROOM_SHUTDOWN_TIMEOUT_S": "5",
    "GREENROOM_SEND_RATE_PER_S": "1000",
    "GREENROOM_SEND_BURST": "1000",
    "GREENROOM_LOGIN_MAX_FAILURES": "1000",
    # Some tests push far more than a person types (9 MB in one burst); hostile tests set their own.
    "GREENROOM_INBOUND_FRAMES_PER_S": "100000",
    "GREENROOM_INBOUND_BURST_FRAMES": "100000",
    "GREENROOM_INBOUND_BYTES_PER_S": "100000000",
    "GREENROOM_INBOUND_BURST_BYTES": "100000000",
    # The suite registers hundreds of users and creates many rooms from 127.0.0.1.
    "GREENROOM_REGISTER_MAX_PER_ADDRESS": "100000",
    "GREENROOM_ROOM_CREATE_MAX": "100000",
    "GREENROOM_LOGIN_ADDRESS_MAX_FAILURES": "100000",
}

# The backplane's timers, short enough that no cluster test waits long.
CLUSTER_SETTINGS = {
    "GREENROOM_HEARTBEAT_S": "0.2",
    "GREENROOM_WORKER_TIMEOUT_S": "1.5",
    "GREENROOM_GAP_WAIT_S": "0.2",
    "GREENROOM_CLAIM_WAIT_S": "1",
}


class ServerProcess:
    """`python app.py` on a free loopback port with its own database (SQLite file or PG schema)."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        database: str = "sqlite",
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = (
            new_postgres_schema()
            if database == "postgresql"
            else f"sqlite:///{workdir / 'greenroom.db'}"
        )
        self.env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "DATABASE_URL": url,
            "PYTHONUNBUFFERED": "1",
            **FAST_SETTINGS,
            **(env or {}),
        }
        self.command = command or [sys.executable, str(ROOT / "app.py")]
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.log_path = workdir / "server.log"
        self._starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self._starts += 1
        log = open(self.log_path, "a")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc, lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            m = re.search(r"listening on http://[\d.]+:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                return self
        raise RuntimeError(f"server did not start; log:\n{self.log()}")

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        """Start again on the same database (a new port)."""
        return self.start()


def procfile_web_command() -> str:
    """The Procfile's `web:` command, exactly as a deployment runs it."""
    text = (ROOT / "Procfile").read_text()
    match = re.search(r"^web:\s*(.+)$", text, re.MULTILINE)
    assert match, "Procfile has no web: line"
    return match.group(1)


class GunicornProcess(ServerProcess):
    """The Procfile's gunicorn command on a free loopback port, with the same settings as `python app.py`."""

    def start(self, timeout: float = 30.0) -> GunicornProcess:
        self._starts += 1
        self.port = free_port()
        env = {
            **self.env,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PORT": str(self.port),
            "HOME": str(self.workdir),
        }
        log = open(self.log_path, "a")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_web_command()}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            text=True,
        )
        log.close()
        proc = self.proc

        def up() -> bool:
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:  # refused, or a worker still booting under load
                assert proc.poll() is None, self.log()
                return False

        wait_for(up, timeout=timeout, interval=0.1)
        return self


class Cluster:
    """Several `python app.py` processes on one PostgreSQL schema and one Redis channel."""

    def __init__(self, workdir: Path, size: int, env: dict[str, str] | None = None) -> None:
        url = new_postgres_schema()
        self.channel = f"greenroom-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS_URL,
            "GREENROOM_BACKPLANE_CHANNEL": self.channel,
            **CLUSTER_SETTINGS,
            **(env or {}),
        }
        self.workdir = workdir
        self._made = itertools.count()
        self.servers = [self.add() for _ in range(size)]

    def add(self) -> ServerProcess:
        """One more process of the cluster (not started)."""
        return ServerProcess(self.workdir / f"node{next(self._made)}", dict(self.env))

    def spare(self, **env: str) -> ServerProcess:
        """One more process with these env overrides (not started); `stop()` stops it with the rest."""
        server = self.add()
        server.env.update(env)
        self.servers.append(server)
        return server

    def start(self) -> Cluster:
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            try:
                server.stop()
            except Exception:
                server.kill()

    def __getitem__(self, i: int) -> ServerProcess:
        return self.servers[i]

    def __len__(self) -> int:
        return len(self.servers)


def server_rss_kib(server: ServerProcess) -> int:
    """The resident memory of the process serving requests (gunicorn: its one worker), in KiB."""
    assert server.proc is not None
    pid = server.proc.pid
    if isinstance(server, GunicornProcess):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1, f"expected one gunicorn worker, got {children}"
        pid = int(children[0])
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))
