"""Real clients of a running server: HTTP (`Api`, `User`) and WebSocket (`WS`, and the bare-socket `RawClient`).

Every text frame the WebSocket clients receive is checked against
docs/ws-frames.schema.json (`#/$defs/ServerFrame`), so the whole e2e suite enforces it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import struct
import time
from typing import Any

import requests
from jsonschema import Draft202012Validator
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support.common import PASSWORD, RECV_TIMEOUT_S, ROOT, unique_name
from tests.support.servers import ServerProcess

FRAME_SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "ws-frames.schema.json").read_text())
_SERVER_FRAME = Draft202012Validator(FRAME_SCHEMA)  # its root is #/$defs/ServerFrame


def checked_frame(text: str | bytes) -> dict[str, Any]:
    """A frame the server sent, parsed, after checking it against docs/ws-frames.schema.json."""
    frame = json.loads(text)
    errors = sorted(_SERVER_FRAME.iter_errors(frame), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(frame)"
        raise AssertionError(
            f"server frame breaks docs/ws-frames.schema.json at {where}: "
            f"{errors[0].message}\n{json.dumps(frame)[:500]}"
        )
    return frame


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
        return checked_frame(self.conn.recv(timeout=timeout))

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
                data = self.conn.recv(timeout=max(0.01, deadline - time.monotonic()))
                if isinstance(data, str):
                    checked_frame(data)
        except ConnectionClosed:
            pass
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> WS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
                return checked_frame(payload)
            if opcode == 0x8:
                raise ConnectionError(f"closed {struct.unpack('!H', payload[:2])[0]}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()
