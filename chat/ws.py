"""The /ws WebSocket loop: authenticate, then read frames and hand them to chat.live.

It is a thin shell. A ChatError becomes an error frame and the loop goes on; an
unexpected exception is logged and closes the socket with 1011, never escaping to
flask-sock (the client would see a protocol error, 1002).
"""

from __future__ import annotations

import logging

import gevent
from flask import Blueprint, Response, request
from flask_sock import Sock
from simple_websocket import Server

from chat.connection import Connection, InboundLimits, NoThread
from chat.live import Live
from chat.protocol import Frame, error_frame, parse_frame
from core.access import note_user
from core.clock import Clock
from core.errors import ChatError, bad_request, rate_limited, unauthorized
from core.settings import Settings
from core.web import Authenticator, Principal, error_response, parse_bearer, service
from core.wire import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHORIZED,
)

log = logging.getLogger(__name__)
# Each session's open and close, at INFO on a logger of its own: GREENROOM_WS_LOG_LEVEL
# (WARNING by default) keeps 10,000 connections quiet, INFO shows them.
sessions_log = logging.getLogger("greenroom.ws")

bp = Blueprint("ws", __name__)
sock = Sock()


@bp.before_request
def _check_handshake() -> tuple[Response, int] | None:
    """Refuse a malformed upgrade with JSON, before simple-websocket fails on it with a 500."""
    key = request.headers.get("Sec-WebSocket-Key", "")
    if not key or len(key) > 64:
        return error_response(bad_request("The WebSocket handshake needs a Sec-WebSocket-Key."))
    if request.headers.get("Sec-WebSocket-Version") != "13":
        response, _ = error_response(
            ChatError(426, "bad_request", "Only WebSocket version 13 is supported.")
        )
        response.headers["Sec-WebSocket-Version"] = "13"
        return response, 426
    # We never offer permessage-deflate: it doubles CPU per delivery and costs about 120 KB
    # per connection, and one encoded frame can then go to every member unchanged.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    return _hold_failing_address()


def _hold_failing_address() -> tuple[Response, int] | None:
    """Make an address that keeps failing to authenticate wait before its next upgrade.

    A refusal answered at once is cheap for a client to ask again, and an upgrade is
    dear for us (measured: about 2.7 ms of server CPU per unauthenticated flood
    connection, and one client reconnected 120 times a second). Waiting costs this
    greenlet nothing, and a client that retries in a loop gets one try per refill.
    """
    auth = service(Authenticator)
    address = request.remote_addr or ""
    wait = auth.address_wait(address)
    if wait <= 0:
        return None
    gevent.sleep(min(wait, service(Settings).AUTH_TIMEOUT_S))
    wait = auth.address_wait(address)
    if wait > 0:
        return error_response(rate_limited(wait))
    return None


def server_options(max_frame_bytes: int) -> dict[str, object]:
    """simple-websocket's options (the app's SOCK_SERVER_OPTIONS).

    Its reader thread never starts: the handler's greenlet reads (chat/connection.py),
    so every byte read is paced and counted, and a connection costs one greenlet.
    """
    return {"max_message_size": max_frame_bytes, "thread_class": NoThread}


@sock.route("/ws", bp=bp)  # type: ignore[untyped-decorator]  # flask-sock has no type hints
def websocket(ws: Server) -> None:
    s = service(Settings)
    live = service(Live)
    clock = service(Clock)
    opened = clock.monotonic()
    conn = Connection(
        ws,
        s.OUTBOX_MAX_FRAMES,
        s.OUTBOX_MAX_BYTES,
        s.CLOSE_TIMEOUT_S,
        inbound=InboundLimits.from_settings(s),
        clock=clock,
    )
    username: str | None = None
    try:
        session = _authenticate(s, conn)
        if session is None:
            return
        # From here to connect() nothing yields: the place admit() found is still free.
        try:
            live.admit(session.username)
        except ChatError as err:
            conn.send(error_frame(err))
            conn.close(CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
            return
        conn.authenticated()
        username = session.username
        note_user(username)
        sessions_log.info("open user=%s", username, extra={"user": username})
        # `ready` is queued first so it is always the first frame, whatever others push.
        conn.send({"type": "ready", "username": session.username})
        live.connect(conn, session.username, session.token_hash)
        _serve(s, live, conn)
    except Exception:
        log.exception("WebSocket handler failed for %s", conn.username)
        conn.close(CLOSE_INTERNAL_ERROR, "internal error")
    finally:
        # The server's code when it closed first, else the client's (None: no close frame).
        by = "server" if conn.close_code is not None else "client"
        code = conn.close_code if conn.close_code is not None else int(ws.close_reason)
        live.disconnect(conn)
        conn.close(CLOSE_NORMAL)
        conn.drain()  # this greenlet is the reader: it reads the client's close reply
        conn.wait_closed(s.CLOSE_TIMEOUT_S + 1)
        duration = round(clock.monotonic() - opened, 1)
        sessions_log.info(
            "close user=%s code=%s by=%s duration_s=%.1f",
            username or "-",
            code,
            by,
            duration,
            # The same fields as JSON keys under GREENROOM_LOG_FORMAT=json.
            extra={"user": username, "close_code": code, "closed_by": by, "duration_s": duration},
        )


def _authenticate(s: Settings, conn: Connection) -> Principal | None:
    """From the Authorization header, else from a first `auth` frame within AUTH_TIMEOUT_S."""
    auth = service(Authenticator)
    header = request.headers.get("Authorization")
    try:
        if header is not None:
            return auth.authenticate(parse_bearer(header))
        text = conn.receive(timeout=s.AUTH_TIMEOUT_S)
        if text is None:
            raise unauthorized("Authenticate first: send an auth frame with your token.")
        frame = parse_frame(text, s.MAX_MESSAGE_CHARS)
        if frame.type != "auth":
            raise unauthorized("Authenticate first: send an auth frame with your token.")
        return auth.authenticate(frame.token)
    except ChatError as err:
        if err.code != "unauthorized":
            err = unauthorized(f"Authenticate first: {err.message}")
        auth.failed_socket_auth(request.remote_addr or "")
        conn.send(error_frame(err))
        conn.close(CLOSE_UNAUTHORIZED, "unauthorized")
        return None


def _serve(s: Settings, live: Live, conn: Connection) -> None:
    max_chars = s.MAX_MESSAGE_CHARS
    while conn.open:
        text = conn.receive()
        if text is None:
            return
        try:
            _dispatch(live, conn, parse_frame(text, max_chars))
        except ChatError as err:
            conn.send(error_frame(err))


def _dispatch(live: Live, conn: Connection, frame: Frame) -> None:
    echo = {"room": frame.room} if frame.room else {}
    try:
        # The asserts only tell the type checker what parse_frame has checked: the
        # fields a frame type requires (chat.protocol._FIELDS) are there.
        if frame.type == "ping":
            conn.send({"type": "pong"})
        elif frame.type == "join":
            assert frame.room is not None
            live.join(conn, frame.room, frame.since)
        elif frame.type == "leave":
            assert frame.room is not None
            live.leave(conn, frame.room)
        elif frame.type == "send":
            assert frame.room is not None and frame.body is not None
            assert frame.client_msg_id is not None
            live.send(conn, frame.room, frame.body, frame.client_msg_id)
        elif frame.type == "typing":
            assert frame.room is not None
            live.typing(conn, frame.room)
        elif frame.type == "read":
            assert frame.room is not None and frame.seq is not None
            live.read(conn, frame.room, frame.seq)
        elif frame.type == "auth":
            raise bad_request("This connection is already authenticated.", code="invalid_frame")
    except ChatError as err:
        if frame.client_msg_id:
            echo["client_msg_id"] = frame.client_msg_id
        raise err.with_extra(**echo) from None
