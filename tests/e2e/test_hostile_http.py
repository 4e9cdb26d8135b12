"""Hostile clients at the HTTP layer, under both servers.

Every test runs against `python app.py` and the Procfile's gunicorn command, on SQLite
(nothing here touches SQL beyond registering a user), with bare sockets so that no
client library's own timeouts or buffering hide what the server does.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support import PASSWORD, Api, ServerProcess, unique_name

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
KINDS = pytest.mark.parametrize("kind", ["app", "gunicorn"])

TIMEOUTS = {
    "GREENROOM_HEADER_TIMEOUT_S": "1",
    "GREENROOM_BODY_TIMEOUT_S": "1",
    "GREENROOM_KEEPALIVE_TIMEOUT_S": "1",
}
SLACK_S = 1.5
# More than a WebSocket reader takes in one read (simple-websocket reads 4096 bytes), so
# what follows stays in the socket for whoever reads it next.
SPACES = b" " * 6000


def connect(server: ServerProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response with a Content-Length body: (status, lower-cased headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after timeout."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {timeout} s; got {data!r}") from None
    return data


def assert_json_error(status: int, headers: dict[str, str], body: bytes, want: int, code: str):
    assert status == want, (status, body)
    assert headers.get("content-type") == "application/json", headers
    assert json.loads(body)["error"]["code"] == code, body


def request_bytes(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def register_bytes(username: str) -> bytes:
    body = json.dumps({"username": username, "password": PASSWORD}).encode()
    return request_bytes("POST", "/api/auth/register", body, Connection="close")


def open_ws(server: ServerProcess, token: str) -> socket.socket:
    """A bare WebSocket, authenticated by header, after its 101 and `ready` frame."""
    sock = connect(server)
    sock.sendall(
        request_bytes(
            "GET",
            "/ws",
            Upgrade="websocket",
            Connection="Upgrade",
            Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ==",
            Sec_WebSocket_Version="13",
            Authorization=f"Bearer {token}",
        )
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: the frames after the 101 stay in the socket
    assert head.startswith(b"HTTP/1.1 101"), head
    assert read_frame(sock)[1].startswith(b'{"type":"ready"'), "no ready frame"
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed mid-frame")
            data += chunk
        return data

    b0, b1 = exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", exact(8))[0]
    return b0 & 0x0F, exact(n)


def expect_close_frame(sock: socket.socket) -> int:
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0]


def assert_not_registered(api: Api, username: str) -> None:
    asker = api.new_user("asker")
    r = api.get(f"/api/users/{username}", asker.token)
    assert r.status_code == 404, f"the smuggled request created {username}: {r.text}"
    assert api.login(username).status_code == 401


@KINDS
def test_pipelining_on_one_connection_does_not_stall_other_users(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """While one keep-alive connection pipelines requests for 2.5 s, another user's requests take under 0.5 s."""
    server = make_server("pipe", kind=kind)
    batch = request_bytes("GET", "/healthz") * 200
    stop = time.monotonic() + 2.5
    answered = [0]
    attacker = connect(server, timeout=10)

    def flood() -> None:
        try:
            while time.monotonic() < stop:
                attacker.sendall(batch)
        except OSError:
            pass

    def drain() -> None:
        try:
            while time.monotonic() < stop + 5 and (chunk := attacker.recv(1 << 20)):
                answered[0] += chunk.count(b"HTTP/1.1 200")
        except OSError:
            pass

    threads = [threading.Thread(target=flood), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    latencies = []
    with requests.Session() as other:
        while time.monotonic() < stop:
            started = time.monotonic()
            assert other.get(f"{server.url}/healthz", timeout=10).status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
    attacker.shutdown(socket.SHUT_RDWR)  # wakes the draining thread
    for t in threads:
        t.join(10)
    attacker.close()
    assert answered[0] > 500, f"the flood was not served ({answered[0]} answers)"
    assert max(latencies) < 0.5, (
        f"another user waited {max(latencies):.2f} s ({len(latencies)} requests)"
    )
    assert "Traceback" not in server.log()


@KINDS
def test_request_hidden_in_an_oversized_frame_is_never_served(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """After a frame over MAX_FRAME_BYTES is closed with 1009, its remaining bytes are not read as HTTP."""
    server = make_server("smuggle", kind=kind, GREENROOM_MAX_FRAME_BYTES="1024")
    api = Api(server)
    hidden = unique_name("hidden")
    with open_ws(server, api.new_user("carrier").token) as sock:
        # One frame with a zero mask, so its payload on the wire is plain text: spaces past
        # the limit and past the WebSocket reader's first read, then a request (HTTP
        # parsers skip the spaces). It all arrives at once, as an attacker would send it.
        payload = SPACES + register_bytes(hidden)
        sock.sendall(struct.pack("!BBH", 0x81, 0xFE, len(payload)) + b"\0\0\0\0" + payload)
        assert expect_close_frame(sock) == 1009
        assert b"HTTP/1.1" not in read_until_closed(sock, timeout=5)
    assert_not_registered(api, hidden)


@KINDS
def test_bytes_after_a_websocket_close_handshake_are_never_served(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """After a normal WebSocket close, an HTTP request sent on the same TCP connection is not served."""
    server = make_server("after", kind=kind)
    api = Api(server)
    hidden = unique_name("after")
    with open_ws(server, api.new_user("closer").token) as sock:
        close = struct.pack("!BB", 0x88, 0x82) + b"\0\0\0\0" + struct.pack("!H", 1000)
        sock.sendall(close + SPACES + register_bytes(hidden))
        assert expect_close_frame(sock) == 1000
        assert b"HTTP/1.1" not in read_until_closed(sock, timeout=5)
    assert_not_registered(api, hidden)


@KINDS
def test_slow_and_idle_connections_are_closed_by_the_timeouts(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """Trickled headers, a half-sent body, an idle keep-alive and a silent socket are each cut near their 1 s timeout; a WebSocket is not."""
    server = make_server("slow", kind=kind, **TIMEOUTS)
    api = Api(server)
    user = api.new_user("stays")
    ws = open_ws(server, user.token)
    results: dict[str, Any] = {}  # case -> (bytes received, seconds until the server closed)
    opened = [ws]

    def conn() -> socket.socket:
        opened.append(connect(server))
        return opened[-1]

    def trickle() -> tuple[bytes, float]:
        sock, started = conn(), time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sock.settimeout(0.25)
        for i in range(40):  # a header line every 0.25 s, for up to 10 s
            try:
                sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
                if data := sock.recv(65536):
                    return data + read_until_closed(sock, 5), time.monotonic() - started
                break
            except TimeoutError:
                continue
            except OSError:
                break
        return b"", time.monotonic() - started

    def half_body() -> tuple[bytes, float]:
        sock = conn()
        sock.sendall(
            b"POST /api/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"user'
        )
        started = time.monotonic()
        return read_until_closed(sock, 5), time.monotonic() - started

    def idle() -> tuple[bytes, float]:
        sock = conn()
        sock.sendall(request_bytes("GET", "/healthz"))
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        return read_until_closed(sock, 5), time.monotonic() - started

    def silent() -> tuple[bytes, float]:
        sock, started = conn(), time.monotonic()
        return read_until_closed(sock, 5), time.monotonic() - started

    def run(case: Callable[[], tuple[bytes, float]]) -> None:
        try:
            results[case.__name__] = case()
        except Exception as exc:  # reported below, with its case
            results[case.__name__] = exc

    threads = [threading.Thread(target=run, args=(c,)) for c in (trickle, half_body, idle, silent)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    for name, result in results.items():
        assert not isinstance(result, Exception), (name, result)
        assert 0.8 < result[1] < 1 + SLACK_S, (name, result)
    assert len(results) == 4, results
    assert_json_error(*parse_response(results["trickle"][0]), 408, "request_timeout")
    assert_json_error(*parse_response(results["half_body"][0]), 408, "request_timeout")
    assert results["idle"][0] == b"" and results["silent"][0] == b""
    # The WebSocket outlived all of them: it still answers.
    ws.sendall(ws_text(b'{"type":"ping"}'))
    while True:
        opcode, payload = read_frame(ws)
        if opcode == 0x1 and json.loads(payload)["type"] == "pong":
            break
    for sock in opened:
        sock.close()
    assert "Traceback" not in server.log()


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a response already read whole."""
    assert data, "the connection closed with no response"
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def ws_text(payload: bytes) -> bytes:
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload


@KINDS
def test_server_refusals_carry_the_json_error_body(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """A long request line (414), a malformed one (400), too many or too long headers (431) and //paths (404) get JSON errors."""
    server = make_server("refuse", kind=kind)
    cases = [
        (f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 414, "uri_too_long"),
        (b"NOT A REQUEST AT ALL\r\n\r\n", 400, "bad_request"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 120 + b"\r\n", 431, "headers_too_large"),
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
        (request_bytes("GET", "//api/rooms"), 404, "not_found"),
        (request_bytes("GET", "//healthz"), 404, "not_found"),
    ]
    for raw, want, code in cases:
        with connect(server) as sock:
            sock.sendall(raw)
            assert_json_error(*read_response(sock), want, code)
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in server.log()
