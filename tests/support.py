"""Test helpers: run the real server as a process, and talk to it with real HTTP and WebSocket clients."""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
RECV_TIMEOUT_S = 5.0
PASSWORD = "correct horse battery"

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

_names = itertools.count(1)


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{next(_names)}_{secrets.token_hex(3)}"


POSTGRES_URL = os.environ.get(
    "GREENROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


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

    schema = f"gr_{os.getpid()}_{next(_names)}_{secrets.token_hex(3)}"
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

REDIS_URL = os.environ.get("GREENROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# The backplane's timers, short enough that no cluster test waits long.
CLUSTER_SETTINGS = {
    "GREENROOM_HEARTBEAT_S": "0.2",
    "GREENROOM_WORKER_TIMEOUT_S": "1.5",
    "GREENROOM_GAP_WAIT_S": "0.2",
    "GREENROOM_CLAIM_WAIT_S": "1",
}


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


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Api:
    """Real HTTP against a server."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.http = requests.Session()

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, self.server.url + path, headers=headers, **kwargs)

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("GET", path, token, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, token, **kw)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, token, **kw)

    def register(self, username: str, password: str = PASSWORD) -> requests.Response:
        return self.post("/api/auth/register", json={"username": username, "password": password})

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        return self.post("/api/auth/login", json={"username": username, "password": password})

    def new_user(self, prefix: str = "u") -> User:
        name = unique_name(prefix)
        r = self.register(name)
        assert r.status_code == 201, r.text
        r = self.login(name)
        assert r.status_code == 200, r.text
        return User(name, r.json()["token"], self)

    def list_all(self, path: str, token: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list (rooms, users, members), following next_cursor to the end."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(10_000):
            query = {**params, **({"cursor": cursor} if cursor else {})}
            r = self.get(path, token, params=query)
            assert r.status_code == 200, r.text
            items += r.json()[key]
            cursor = r.json().get("next_cursor")
            if cursor is None:
                return items
        raise AssertionError(f"{path} never ended")

    def create_room(self, user: User, name: str = "room", **fields: Any) -> dict[str, Any]:
        r = self.post("/api/rooms", user.token, json={"name": name, **fields})
        assert r.status_code == 201, r.text
        return r.json()


class User:
    def __init__(self, name: str, token: str, api: Api) -> None:
        self.name = name
        self.token = token
        self.api = api

    def ws(self, **kwargs: Any) -> WS:
        return WS.open(self.api.server.ws_url, self.token, **kwargs)

    def join(self, room_id: str) -> requests.Response:
        return self.api.post(f"/api/rooms/{room_id}/join", self.token)


class WS:
    """A websockets sync client that speaks JSON frames; every receive has a timeout."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    def open(
        cls, url: str, token: str | None = None, expect_ready: bool = True, **kwargs: Any
    ) -> WS:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        kwargs.setdefault("max_queue", 4096)
        kwargs.setdefault("open_timeout", 10)
        kwargs.setdefault("legacy", True)
        ws = cls(connect(url, additional_headers=headers, **kwargs))
        if token and expect_ready:
            first = ws.recv()
            if first["type"] != "ready":
                ws.close()  # else every later test's leak check waits on it
                raise AssertionError(f"expected ready first, got {first}")
        return ws

    def send(self, obj: Any) -> None:
        self.conn.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def expect(
        self,
        kind: str,
        timeout: float = RECV_TIMEOUT_S,
        skip: tuple[str, ...] = ("presence", "typing", "member_joined", "member_left"),
    ) -> dict[str, Any]:
        """The next frame of type `kind`, passing over frames of the types in `skip`."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame["type"] == kind:
                return frame
            if frame["type"] not in skip:
                raise AssertionError(f"expected a {kind} frame, got {frame}")

    def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        self.send(frame)
        return self.expect("joined")

    def say(self, room: str, body: str, client_msg_id: str | None = None) -> dict[str, Any]:
        """Send and wait for the ack; returns the ack."""
        cmid = client_msg_id or secrets.token_hex(8)
        self.send({"type": "send", "room": room, "body": body, "client_msg_id": cmid})
        return self.expect(
            "ack", skip=("presence", "typing", "member_joined", "member_left", "message")
        )

    def expect_closed(self, timeout: float = RECV_TIMEOUT_S) -> int | None:
        """Read until the server closes; return the close code."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.conn.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed:
            pass
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(predicate: Any, timeout: float = RECV_TIMEOUT_S, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy (for state that has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


class RawClient:
    """A bare-socket WebSocket client with no flow control of its own: it reads only when told to.

    Used for slow and silent peers, where a real client library's own buffering and
    keepalive would get in the way of what is being tested.
    """

    def __init__(self, server: ServerProcess, token: str, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert status.startswith(b"HTTP/1.1 101"), status
        while self.file.readline() not in (b"\r\n", b""):
            pass

    def send_json(self, obj: Any) -> None:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        self.sock.sendall(header + mask + masked)

    def _exact(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise ConnectionError("connection closed mid-frame")
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; server frames are never masked."""
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        return b0 & 0x0F, self._exact(n)

    def read_json(self) -> dict[str, Any]:
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise ConnectionError(f"closed {struct.unpack('!H', payload[:2])[0]}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455); the mask is fixed, which the server may not mind."""
    mask = b"\x37\xfa\x21\x3d"
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class WsAttacker:
    """A hostile WebSocket peer on a bare socket: floods frames, hangs up, and reads only if asked.

    `start_reading()` starts a thread that reads and counts what the server sends
    (by opcode, and text frames by their JSON type) and notes its close code.
    """

    def __init__(
        self, server: ServerProcess, token: str | None = None, rcvbuf: int | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # the kernel then holds little of what the server sends us
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", server.port))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        self._buf = head.split(b"\r\n\r\n", 1)[1]  # frames that came with the handshake
        self.sent_frames = 0
        self.received: dict[Any, int] = {}  # opcode, or the JSON type of a text frame -> count
        self.close_code: int | None = None
        self.closed = threading.Event()  # the server sent a close frame or ended the connection
        self.closed_at: float | None = None
        self._reader: threading.Thread | None = None

    def flood(self, frame: bytes, seconds: float) -> int:
        """Send `frame` back to back for up to `seconds`; stop early when the server stops taking them.

        A server that pushes back makes a send time out, a closed one makes it fail:
        both end the flood. Returns the number of frames sent.
        """
        chunk = frame * max(1, 16384 // len(frame))
        per_chunk = len(chunk) // len(frame)
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.5)
        try:
            while time.monotonic() < deadline and not self.closed.is_set():
                self.sock.sendall(chunk)
                self.sent_frames += per_chunk
        except OSError:
            pass
        return self.sent_frames

    def start_reading(self) -> WsAttacker:
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()
        return self

    def wait_closed(self, timeout: float) -> int | None:
        """Read until the server closes; its close code, or None if it only ended the TCP connection."""
        if self._reader is None:
            self.start_reading()
        assert self._reader is not None
        self._reader.join(timeout)
        if not self.closed.is_set():
            raise AssertionError(f"the server did not close the connection within {timeout} s")
        return self.close_code

    def _read_all(self) -> None:
        buf = self._buf
        sock = socket.socket(fileno=os.dup(self.sock.fileno()))  # its own timeout
        sock.settimeout(30)
        try:
            while True:
                while len(buf) >= 2:
                    n = buf[1] & 0x7F
                    start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                    if len(buf) < start:
                        break
                    if n == 126:
                        n = struct.unpack("!H", buf[2:4])[0]
                    elif n == 127:
                        n = struct.unpack("!Q", buf[2:10])[0]
                    if len(buf) < start + n:
                        break
                    opcode, payload = buf[0] & 0x0F, buf[start : start + n]
                    buf = buf[start + n :]
                    if opcode == 0x8:
                        self.close_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
                        return
                    key: Any = json.loads(payload).get("type") if opcode == 0x1 else opcode
                    self.received[key] = self.received.get(key, 0) + 1
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:  # reset, or still open after 30 s
            return
        finally:
            sock.close()
            self.closed_at = time.monotonic()
            self.closed.set()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # also wakes the reading thread's copy
        except OSError:
            pass
        self.sock.close()
        if self._reader is not None:
            self._reader.join(5)


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
