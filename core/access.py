"""The access log and request ids: one line per HTTP request, and X-Request-Id on every response.

`AccessLog` wraps the Flask app's WSGI callable, so it sees every request the app
answers under both servers, refusals and errors included, and the WebSocket
handshake on /ws (whose line is written when the session ends: its duration is the
session's). Each request gets an id: the client's (or the proxy's) X-Request-Id when
it is sane, else a random one. The id is echoed in the response, and put on every
log line written while the request is served (core.logs.REQUEST_ID).

The line holds the method, the route (the URL rule, `/api/rooms/<room_id>`, never the
raw path or query string), the status, the duration, the user and the request id:
never a header, a body or a query value, so never a token or a password.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g, request

from core import logs
from core.clock import Clock

log = logging.getLogger("greenroom.access")
# A WebSocket's line comes when its session ends: a child of greenroom.ws, so it takes
# GREENROOM_WS_LOG_LEVEL (quiet by default) and 10,000 closing sockets stay quiet.
ws_log = logging.getLogger("greenroom.ws.access")

MAX_REQUEST_ID_CHARS = 128
# Letters, digits and the punctuation of common id formats (UUIDs, AWS trace ids, base64).
_SANE_ID = re.compile(rf"[A-Za-z0-9._:=+/-]{{1,{MAX_REQUEST_ID_CHARS}}}")
HEADER = "X-Request-Id"
_ROUTE = "greenroom.route"  # environ keys, filled while Flask serves the request
_USER = "greenroom.user"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def request_id_from(header: str | None) -> str:
    """The client's id when it is sane (bounded, a safe charset), else a new random one."""
    if header and _SANE_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


def note_user(username: str) -> None:
    """Name the user on this request's access line (the WebSocket knows it after auth)."""
    request.environ[_USER] = username


class AccessLog:
    """WSGI middleware: the request id in, out and on the log lines; the access line at the end."""

    def __init__(self, app: WSGIApp, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = self.clock.monotonic()
        rid = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["HTTP_X_REQUEST_ID"] = rid
        token = logs.REQUEST_ID.set(rid)
        status = 0

        def respond(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status
            status = int(line.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((HEADER, rid))
            return start_response(line, headers, exc_info)

        try:
            return self.app(environ, respond)
        finally:
            # A WebSocket answers its handshake on the socket itself (flask-sock), never
            # through start_response: a session that ran was a 101.
            if not status and environ.get(_ROUTE) == "/ws":
                status = 101
            ms = (self.clock.monotonic() - started) * 1000
            (ws_log if status == 101 else log).info(
                "%s %s %d %.1fms user=%s",
                environ.get("REQUEST_METHOD", "-"),
                environ.get(_ROUTE) or "-",
                status,
                ms,
                environ.get(_USER) or "-",
                extra={
                    "method": environ.get("REQUEST_METHOD"),
                    "route": environ.get(_ROUTE),
                    "status": status,
                    "duration_ms": round(ms, 1),
                    "user": environ.get(_USER),
                },
            )
            logs.REQUEST_ID.reset(token)


def _note_route_and_user(exc: BaseException | None) -> None:
    """Flask's teardown: the matched rule (None for a 404) and who authenticated, for the line."""
    rule = request.url_rule
    request.environ[_ROUTE] = rule.rule if rule is not None else None
    session = g.get("session")
    if session is not None:
        request.environ[_USER] = session.username


def install(app: Flask, clock: Clock) -> None:
    """Wrap the app: request ids and the access log for every request it answers."""
    app.teardown_request(_note_route_and_user)
    app.wsgi_app = AccessLog(app.wsgi_app, clock)  # type: ignore[method-assign]
