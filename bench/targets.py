"""The servers under test: how to start each one pinned to CPU 0, and how a member joins and sends.

Greenroom runs under its Procfile's gunicorn command (the deployment); the three
baselines run as their small scripts in bench/baselines/ (node-ws under Node, with `ws`
from npm in bench/baselines/node_ws/node_modules). ClusterGreenroom, for the
scale-out comparison, runs the same command with -w N, PostgreSQL and Redis if asked,
pinned or not.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gevent
import gevent.event
import gevent.pool
import requests

from bench.procstat import children, cpu_seconds, peers_by_pid, tree_cpu_seconds, worker_pid
from bench.wsclient import Conn

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
NOFILE = 65536


def _pin_and_raise_limits(cpus: frozenset[int] | None = frozenset({SERVER_CPU})) -> None:
    """Runs in the child before exec: the given CPUs (None: all of them, undoing the load
    generator's own pinning, which a child inherits), and enough file descriptors for 20k sockets."""
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, cpus if cpus is not None else range(os.cpu_count()))  # type: ignore[arg-type]
    raise_nofile()


def raise_nofile() -> int:
    """Raise the open-files limit as far as allowed (the hard limit too, where permitted)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    """A server process plus its client protocol."""

    name = ""
    ws_path = "/ws"
    root = ROOT  # the checkout the server runs from
    cpus: frozenset[int] | None = frozenset({SERVER_CPU})  # None: not pinned

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pid = 0
        self._rooms = itertools.count(1)
        self._workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))

    # ---- process ------------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def skip_note(self) -> str:
        """Why this server cannot run here, in one line ('' when it can)."""
        return ""

    def versions(self) -> str:
        """What the server runs on, when it is not this venv's Python ('' otherwise)."""
        return ""

    def env(self) -> dict[str, str]:
        return {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1"}

    def start(self) -> None:
        self.port = free_port()
        log = open(self._workdir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=self.env(),
            stdout=log,
            stderr=log,
            preexec_fn=lambda: _pin_and_raise_limits(self.cpus),
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited: {(self._workdir / 'server.log').read_text()[-2000:]}"
                )
            if self._ready():
                self.pid = worker_pid(self.proc.pid)
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def cpu_seconds(self) -> float:
        """The server CPU that drive() charges to the deliveries: the worker's, by default."""
        return cpu_seconds(self.pid)

    def _ready(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # ---- protocol -------------------------------------------------------------------

    def prepare(self, members: int) -> None:
        """Anything needed before `members` connections can open (accounts, for Greenroom)."""

    def new_room(self) -> str:
        return f"r{next(self._rooms)}"

    def open(self, member: int, room: str) -> Conn:
        """A connection joined to room, reader running; on_text must be set by the caller."""
        raise NotImplementedError

    def send_payload(self, room: str, body: str, n: int) -> bytes:
        raise NotImplementedError

    def _join(self, conn: Conn, join_payload: bytes, joined_marker: bytes) -> None:
        done = gevent.event.Event()

        def wait_joined(payload: bytes) -> None:
            if joined_marker in payload:
                done.set()

        conn.on_text = wait_joined
        conn.start()
        conn.send(join_payload)
        if not done.wait(30):
            raise TimeoutError(f"{self.name}: join not answered")


class Greenroom(Target):
    """Greenroom from this checkout, or from another one (`greenroom@PATH`: the same bench,
    e.g. against a checkout of an older commit, to compare the two in one run), optionally
    with settings of its own (`greenroom+NAME=VALUE`: e.g. metrics off beside metrics on)."""

    name = "greenroom"

    def __init__(self, root: Path | None = None, settings: dict[str, str] | None = None) -> None:
        super().__init__()
        self.settings = dict(settings or {})  # this server's own env, over every other
        if root is not None:
            self.root = root.resolve()
            self.name = f"greenroom@{root}"
        self.name += "".join(f"+{k}={v}" for k, v in self.settings.items())
        self.tokens: list[str] = []
        self._owner = ""
        self._msg_ids = itertools.count(1)

    def command(self) -> list[str]:
        procfile = (self.root / "Procfile").read_text()
        web = re.search(r"^web:\s*(.+)$", procfile, re.MULTILINE)
        assert web
        return ["bash", "-c", f"exec {web.group(1)}"]

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "DATABASE_URL": f"sqlite:///{self._workdir / 'bench.db'}",
            "WORKER_CONNECTIONS": "30000",
            "HOME": str(self._workdir),
            "GREENROOM_LOG_LEVEL": "WARNING",
            # Hashing and rate limits are not what is measured here.
            "GREENROOM_ARGON2_TIME_COST": "1",
            "GREENROOM_ARGON2_MEMORY_KIB": "8192",
            "GREENROOM_ARGON2_PARALLELISM": "1",
            "GREENROOM_SEND_RATE_PER_S": "1000000",
            "GREENROOM_SEND_BURST": "1000000",
            "GREENROOM_LOGIN_MAX_FAILURES": "1000000",
            "GREENROOM_REGISTER_MAX_PER_ADDRESS": "1000000",
            "GREENROOM_ROOM_CREATE_MAX": "1000000",
            "GREENROOM_MAX_ROOMS_OWNED": "1000000",
            # many-rooms opens about 100 sockets per account
            "GREENROOM_MAX_CONNECTIONS_PER_USER": "1000000",
            "GREENROOM_MAX_SESSIONS_PER_USER": "1000000",
            **self.settings,
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, members: int) -> None:
        # Ten connections per account keeps set-up quick; presence is per account.
        wanted = max(1, (members + 9) // 10)
        pool = gevent.pool.Pool(16)
        start = len(self.tokens)

        self.tokens += pool.map(lambda i: self.account(f"bench{i}"), range(start, wanted))
        self._owner = self.tokens[0]

    def account(self, name: str) -> str:
        """Register `name` (if new) and log in: a session token."""
        http = requests.Session()
        http.post(
            f"{self.url}/api/auth/register",
            json={"username": name, "password": "benchmark-pw"},
            timeout=30,
        )
        r = http.post(
            f"{self.url}/api/auth/login",
            json={"username": name, "password": "benchmark-pw"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["token"]

    def new_room(self) -> str:
        r = requests.post(
            f"{self.url}/api/rooms",
            json={"name": "bench", "capacity": 100000},
            headers={"Authorization": f"Bearer {self._owner}"},
            timeout=30,
        )
        r.raise_for_status()
        return r.json()["id"]

    def open(self, member: int, room: str) -> Conn:
        token = self.tokens[member % len(self.tokens)]
        conn = Conn("127.0.0.1", self.port, "/ws", {"Authorization": f"Bearer {token}"})
        self._join(conn, json.dumps({"type": "join", "room": room}).encode(), b'"type":"joined"')
        return conn

    def send_payload(self, room: str, body: str, n: int) -> bytes:
        # client_msg_id must be new for every message of the whole run: a reused one is
        # (correctly) treated as a retry and stores nothing.
        return b'{"type":"send","room":"%s","body":"%s","client_msg_id":"b%d"}' % (
            room.encode(),
            body.encode(),
            next(self._msg_ids),
        )


def with_workers(command: str, workers: int) -> str:
    """The Procfile's web command with its `-w 1` (or `-w ${WEB_CONCURRENCY:-1}`) made `-w workers`."""
    out, n = re.subn(r"(?<!\S)-w\s+\S+", f"-w {workers}", command)
    if n != 1:
        raise ValueError(f"expected one -w option in {command!r}")
    return out


class ClusterGreenroom(Greenroom):
    """Greenroom under the Procfile's command with `-w workers`, a given database and backplane.

    Its CPU is the whole gunicorn process tree (master and every worker), and it can
    tell which worker holds each connection.
    """

    def __init__(
        self,
        name: str,
        workers: int,
        database_url: str = "",
        redis_url: str = "",
        channel: str = "",
        cpus: frozenset[int] | None = frozenset({SERVER_CPU}),
    ) -> None:
        self.name = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")  # for the work directory
        super().__init__()
        self.name = name
        self.workers = workers
        self.database_url = database_url
        self.redis_url = redis_url
        self.channel = channel
        self.cpus = cpus
        self.worker_pids: list[int] = []

    def command(self) -> list[str]:
        cmd = super().command()
        return [*cmd[:-1], with_workers(cmd[-1], self.workers)]

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.pop("REDIS_URL", None)
        env["WEB_CONCURRENCY"] = str(self.workers)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
            env["GREENROOM_BACKPLANE_CHANNEL"] = self.channel
        return env

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while len(children(self.proc.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        self.worker_pids = sorted(children(self.proc.pid))
        if len(self.worker_pids) != self.workers:
            raise RuntimeError(f"{self.name}: {len(self.worker_pids)} of {self.workers} workers up")
        # Every worker has loaded the app once each has answered /healthz at least once.
        seen: set[str] = set()
        while len(seen) < self.workers and time.monotonic() < deadline:
            seen |= set(self.healthz_workers(4))
        if len(seen) < self.workers:
            raise RuntimeError(f"{self.name}: only {len(seen)} workers answered /healthz")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def healthz_workers(self, requests_n: int) -> dict[str, int]:
        """Which worker (its backplane id) answered each of requests_n fresh connections to /healthz."""
        counts: dict[str, int] = {}
        for _ in range(requests_n):
            r = requests.get(f"{self.url}/healthz", headers={"Connection": "close"}, timeout=10)
            worker = r.json()["worker"]
            counts[worker] = counts.get(worker, 0) + 1
        return counts

    def worker_of(self, conns: list[Conn]) -> list[int | None]:
        """The pid of the worker holding the server end of each connection (None: not found)."""
        assert self.proc is not None
        pids = children(self.proc.pid)
        peers = peers_by_pid(self.port, pids)
        return [peers.get(conn.sock.getsockname()[1]) for conn in conns]

    def restarts(self) -> list[int]:
        """Workers running now that were not there at start (gunicorn replaced a dead one)."""
        assert self.proc is not None
        return sorted(set(children(self.proc.pid)) - set(self.worker_pids))

    @property
    def workdir(self) -> Path:
        """Where the server's log and SQLite database live."""
        return self._workdir

    def log_text(self) -> str:
        """The server's log so far ('' if it never started)."""
        try:
            return (self._workdir / "server.log").read_text(errors="replace")
        except OSError:
            return ""


class WebsocketsBaseline(Target):
    name = "websockets"

    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / "baselines" / "websockets_chat.py")]

    def open(self, member: int, room: str) -> Conn:
        conn = Conn("127.0.0.1", self.port, "/")
        self._join(conn, json.dumps({"type": "join", "room": room}).encode(), b'"type": "joined"')
        return conn

    def send_payload(self, room: str, body: str, n: int) -> bytes:
        return b'{"type":"send","room":"%s","body":"%s"}' % (room.encode(), body.encode())


class SocketIOBaseline(Target):
    name = "flask-socketio"

    def command(self) -> list[str]:
        return [sys.executable, str(ROOT / "bench" / "baselines" / "socketio_chat.py")]

    def open(self, member: int, room: str) -> Conn:
        conn = Conn("127.0.0.1", self.port, "/socket.io/?EIO=4&transport=websocket")
        ready = gevent.event.Event()

        def handshake(payload: bytes) -> None:
            if payload.startswith(b"0{"):
                conn.send(b"40")
            elif payload.startswith(b"40"):
                ready.set()
            elif payload.startswith(b'42["joined"'):
                ready.set()
            elif payload == b"2":
                conn.send(b"3")

        conn.on_text = handshake
        conn.start()
        if not ready.wait(30):
            raise TimeoutError("socket.io connect not answered")
        ready.clear()
        conn.send(b'42["join",{"room":"%s"}]' % room.encode())
        if not ready.wait(30):
            raise TimeoutError("socket.io join not answered")
        return conn

    def wrap(self, conn: Conn, handler: object) -> object:
        def on_text(payload: bytes) -> None:
            if payload == b"2":
                conn.send(b"3")  # Engine.IO heartbeat
            else:
                handler(payload)  # type: ignore[operator]

        return on_text

    def send_payload(self, room: str, body: str, n: int) -> bytes:
        return b'42["send",{"room":"%s","body":"%s"}]' % (room.encode(), body.encode())


NODE_WS = ROOT / "bench" / "baselines" / "node_ws"


class NodeWsBaseline(WebsocketsBaseline):
    """The same chat on Node's `ws` (bench/baselines/node_ws/server.js): a non-Python reference.

    Optional: without `node` on PATH or without its node_modules (`make bench` runs `npm ci`
    there), it is skipped with a note instead of failing the run.
    """

    name = "node-ws"

    def __init__(self, folder: Path = NODE_WS) -> None:
        super().__init__()
        self.folder = folder
        self.node = shutil.which("node") or ""

    def skip_note(self) -> str:
        if not self.node:
            return "node-ws skipped: node is not on PATH"
        if not (self.folder / "node_modules" / "ws" / "package.json").is_file():
            return (
                f"node-ws skipped: no {self.folder / 'node_modules'} "
                f"(make bench installs it with npm ci)"
            )
        return ""

    def command(self) -> list[str]:
        return [self.node or "node", str(self.folder / "server.js")]

    def open(self, member: int, room: str) -> Conn:
        # JSON.stringify writes no spaces, unlike Python's json.dumps.
        conn = Conn("127.0.0.1", self.port, "/")
        self._join(conn, json.dumps({"type": "join", "room": room}).encode(), b'"type":"joined"')
        return conn

    def versions(self) -> str:
        """Node's and ws's versions, for the report ('' if they cannot be read)."""
        try:
            node = subprocess.run(
                [self.node, "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            ws = json.loads((self.folder / "node_modules" / "ws" / "package.json").read_text())
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return ""
        return f"node {node}, ws {ws.get('version', '?')}"


TARGETS = {t.name: t for t in (Greenroom, SocketIOBaseline, WebsocketsBaseline, NodeWsBaseline)}


def target_for(spec: str) -> Target:
    """A server by name; `greenroom@PATH`: Greenroom from the checkout at PATH; and either
    Greenroom followed by `+NAME=VALUE` settings of its own (`greenroom+GREENROOM_METRICS=0`)."""
    # A + starts a setting only before NAME=, so a path may hold a + of its own.
    base, *pairs = re.split(r"\+(?=[A-Za-z_][A-Za-z0-9_]*=)", spec)
    settings = dict(pair.split("=", 1) for pair in pairs)
    name, at, path = base.partition("@")
    if settings and name != "greenroom":
        raise ValueError(f"only greenroom takes +NAME=VALUE settings, not {spec!r}")
    if not at:
        if name not in TARGETS:
            raise ValueError(f"unknown server {spec!r}")
        return Greenroom(None, settings) if settings else TARGETS[name]()
    if name != "greenroom" or not path:
        raise ValueError(f"only greenroom@PATH takes a path, not {spec!r}")
    root = Path(path)
    if not (root / "Procfile").is_file() or not (root / "app.py").is_file():
        raise ValueError(f"{path} is not a Greenroom checkout (no Procfile and app.py)")
    return Greenroom(root, settings)
