"""The log an operator reads: one format, one access line per request, request ids, no secrets."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support import PASSWORD, WS, Api, ServerProcess, unique_name, wait_for

# time level logger [request id]: message
TEXT_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) (?P<logger>\S+) "
    r"\[(?P<request_id>[^\]]+)\]: (?P<message>.*)$"
)
# method route status duration user
ACCESS_MESSAGE = re.compile(
    r"^(?P<method>[A-Z]+) (?P<route>\S+) (?P<status>\d{3}) (?P<duration_ms>\d+\.\d)ms "
    r"user=(?P<user>\S+)$"
)
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def text_access_lines(log: str) -> list[dict[str, Any]]:
    """Every access line of a text log, parsed into its fields."""
    found = []
    for line in log.splitlines():
        m = TEXT_LINE.match(line)
        if not m or m["logger"] not in ("greenroom.access", "greenroom.ws.access"):
            continue
        a = ACCESS_MESSAGE.match(m["message"])
        assert a, line
        user = a["user"]
        found.append(
            {
                "request_id": m["request_id"],
                "method": a["method"],
                "route": a["route"],
                "status": int(a["status"]),
                "duration_ms": float(a["duration_ms"]),
                "user": None if user == "-" else user,
            }
        )
    return found


def json_access_lines(log: str) -> list[dict[str, Any]]:
    """Every access line of a JSON log; an unmatched route is null there ("-" in text)."""
    lines = [
        r
        for r in map(json.loads, log.splitlines())
        if r["logger"] in ("greenroom.access", "greenroom.ws.access")
    ]
    return [{**r, "route": r["route"] or "-"} for r in lines]


def traffic(srv: ServerProcess) -> tuple[dict[str, dict[str, Any]], str, str]:
    """A register, a login, REST calls with the token, a 404 and a WebSocket session.

    Returns what each request's access line must say (by the request id the server
    echoed), and the user's name and token.
    """
    api = Api(srv)
    expected: dict[str, dict[str, Any]] = {}

    def call(method: str, path: str, route: str, user: str | None, **kw: Any) -> Any:
        r = api.request(method, path, **kw)
        expected[r.headers["X-Request-Id"]] = {
            "method": method,
            "route": route,
            "status": r.status_code,
            "user": user,
        }
        return r

    name = unique_name("logs")
    assert call("POST", "/api/auth/register", "/api/auth/register", None,
                json={"username": name, "password": PASSWORD}).status_code == 201  # fmt: skip
    token = call("POST", "/api/auth/login", "/api/auth/login", None,
                 json={"username": name, "password": PASSWORD}).json()["token"]  # fmt: skip
    room = call("POST", "/api/rooms", "/api/rooms", name, token=token, json={"name": "logs"})
    room_id = room.json()["id"]
    call("GET", f"/api/rooms/{room_id}", "/api/rooms/<room_id>", name, token=token)
    call("GET", f"/api/rooms/{room_id}/messages?cursor=secret", "/api/rooms/<room_id>/messages",
         name, token=token)  # fmt: skip
    call("GET", "/api/rooms", "/api/rooms", None)  # no token: 401, no user
    call("GET", "/nowhere", "-", None)
    with WS.open(srv.ws_url, token) as ws:
        ws.join(room_id)
        ws.say(room_id, "hello")
    # The session's line comes when it ends: poll for it.
    return expected, name, token


def check_access_lines(lines: list[dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_id.setdefault(line["request_id"], []).append(line)
    for rid, want in expected.items():
        assert len(by_id.get(rid, [])) == 1, (rid, want, lines)
        got = by_id[rid][0]
        assert {k: got[k] for k in want} == want, got
        assert got["duration_ms"] >= 0


@pytest.mark.parametrize("kind", ["app", "gunicorn"])
def test_text_log_has_one_access_line_per_request_with_its_request_id(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """Each request gets one parsable access line (method, route, status, duration, user, id),
    under python app.py and gunicorn alike, and the WebSocket session gets its 101 line
    (on greenroom.ws.access, which GREENROOM_WS_LOG_LEVEL opens)."""
    srv = make_server(kind=kind, GREENROOM_WS_LOG_LEVEL="INFO")
    expected, name, _ = traffic(srv)
    ws_lines = lambda: [  # noqa: E731
        a for a in text_access_lines(srv.log()) if a["route"] == "/ws" and a["user"] == name
    ]
    wait_for(ws_lines, timeout=10)
    assert ws_lines()[0]["status"] == 101 and ws_lines()[0]["method"] == "GET"
    lines = text_access_lines(srv.log())
    check_access_lines(lines, expected)
    # Every line of the log is in the one format (gunicorn's own lines included).
    for line in srv.log().splitlines():
        assert TEXT_LINE.match(line) or line.startswith("  "), line
    assert not any("gunicorn.access" in line for line in srv.log().splitlines())


@pytest.mark.parametrize("kind", ["app", "gunicorn"])
def test_json_log_is_one_object_per_line_with_the_request_fields(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """GREENROOM_LOG_FORMAT=json: every line is a JSON object with time, level, logger,
    message and request_id; access lines add method, route, status, duration_ms and user,
    WebSocket close lines the user, close code, who closed and the duration."""
    srv = make_server(kind=kind, GREENROOM_LOG_FORMAT="json", GREENROOM_WS_LOG_LEVEL="INFO")
    expected, name, _ = traffic(srv)
    # The session's access line is the last one written (when it ends): wait for it.
    wait_for(lambda: [a for a in json_access_lines(srv.log()) if a["route"] == "/ws"], timeout=10)
    records = [json.loads(line) for line in srv.log().splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message", "request_id"} <= record.keys(), record
    check_access_lines(json_access_lines(srv.log()), expected)
    (closed,) = [r for r in records if r["logger"] == "greenroom.ws" and "close_code" in r]
    assert closed["user"] == name and closed["close_code"] == 1000, closed
    assert closed["closed_by"] == "client" and closed["duration_s"] >= 0, closed
    # The session's lines carry the id of its handshake request.
    (handshake,) = [a for a in json_access_lines(srv.log()) if a["route"] == "/ws"]
    assert closed["request_id"] == handshake["request_id"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_token_or_password_reaches_the_log(
    make_server: Callable[..., ServerProcess], fmt: str
) -> None:
    """With everything logged (DEBUG), a whole session leaves no token and no password in the log."""
    srv = make_server(
        GREENROOM_LOG_FORMAT=fmt, GREENROOM_LOG_LEVEL="DEBUG", GREENROOM_WS_LOG_LEVEL="DEBUG"
    )
    _, name, token = traffic(srv)
    api = Api(srv)
    api.login(name, "wrong-password-xyz")  # a failed login logs its own line
    with WS.open(srv.ws_url, expect_ready=False) as ws:  # the token in an auth frame
        ws.send({"type": "auth", "token": token})
        assert ws.recv()["type"] == "ready"
    api.get(f"/api/rooms?token={token}")
    api.post("/api/auth/logout", token)
    srv.stop()
    log = srv.log()
    assert name in log  # the log does name the user
    for secret in (token, PASSWORD, "wrong-password-xyz"):
        assert secret not in log


def test_request_id_is_echoed_when_sane_and_replaced_when_hostile(
    make_server: Callable[..., ServerProcess],
) -> None:
    """A sane X-Request-Id comes back and names the log line; a long or odd one is replaced."""
    srv = make_server()
    api = Api(srv)
    sane = "req-7f3a_9.b:c"
    r = api.get("/healthz", headers={"X-Request-Id": sane})
    assert r.headers["X-Request-Id"] == sane
    r = api.get("/nope", headers={"X-Request-Id": sane + "2"})  # errors carry it too
    assert r.status_code == 404 and r.headers["X-Request-Id"] == sane + "2"
    for hostile in ("x" * 129, "a b", "evil\x01id", "<script>", "caf\u00e9"):
        r = raw_get(srv, "/healthz", hostile.encode("latin-1", "replace"))
        assert r != hostile and HEX_ID.match(r), r
    # Without one, one is made.
    assert HEX_ID.match(requests.get(f"{srv.url}/healthz", timeout=5).headers["X-Request-Id"])
    wait_for(lambda: any(a["request_id"] == sane for a in text_access_lines(srv.log())))
    assert "evil" not in srv.log() and "<script>" not in srv.log()


def raw_get(srv: ServerProcess, path: str, request_id: bytes) -> str:
    """GET with this exact X-Request-Id byte string; the X-Request-Id the server answered."""
    with socket.create_connection(("127.0.0.1", srv.port or 0), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
            + b"X-Request-Id: "
            + request_id
            + b"\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    m = re.search(r"^X-Request-Id: (.*)$", head, re.MULTILINE | re.IGNORECASE)
    assert m, head
    return m.group(1).strip()


def test_websocket_sessions_log_open_and_close_only_when_asked(
    make_server: Callable[..., ServerProcess],
) -> None:
    """greenroom.ws says nothing by default; at INFO each session logs its open, and its close
    with the code, who closed and the duration."""
    quiet = make_server()
    api = Api(quiet)
    user = api.new_user("quiet")
    with user.ws() as ws:
        ws.send({"type": "ping"})
        ws.expect("pong")
    # Once the socket is gone and a later request has its line, the session's would be there.
    wait_for(lambda: api.get("/healthz").json()["connections"] == 0)
    api.get("/api/users", user.token)
    wait_for(lambda: any(a["route"] == "/api/users" for a in text_access_lines(quiet.log())))
    assert "greenroom.ws" not in quiet.log()  # neither the session's lines nor its 101

    loud = make_server(GREENROOM_WS_LOG_LEVEL="INFO")
    api = Api(loud)
    user = api.new_user("loud")
    with user.ws() as ws:
        ws.send({"type": "ping"})
        ws.expect("pong")
    closes = lambda: [  # noqa: E731
        line for line in loud.log().splitlines() if "greenroom.ws" in line and "close " in line
    ]
    wait_for(closes, timeout=10)
    assert f"open user={user.name}" in loud.log()
    assert re.search(
        rf"close user={user.name} code=1000 by=client duration_s=\d+\.\d$", closes()[0]
    ), closes()
