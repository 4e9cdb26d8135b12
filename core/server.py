"""The HTTP server layer under both servers: deadlines, fairness, clean ends and JSON refusals.

`python app.py` serves with `Server` (gevent.pywsgi with our `Handler`); the Procfile's
gunicorn runs `GeventWorker` (gunicorn's gevent worker with our request loop). Both
loops apply the same rules to every connection:

- Idle and slow clients are cut: the request line and headers must arrive within
  HEADER_TIMEOUT_S of the connection opening (or of the request's first byte on a
  keep-alive connection), the declared body within BODY_TIMEOUT_S of the headers, and
  the next request must start within KEEPALIVE_TIMEOUT_S of the last response.
  A request cut part-way gets 408; a connection that sent nothing is closed quietly.
- The loop yields to the hub after every request, so one connection pipelining
  requests back to back cannot starve other users, timers or sockets.
- After a WebSocket session (any request that asked for an upgrade) the TCP
  connection is closed: bytes after it are never parsed as HTTP.
- Every refusal the server layer writes itself (400, 408, 414, 431, ...) carries the
  documented JSON error body, and none of them logs a traceback.

Nothing here applies after a WebSocket upgrade: the socket then belongs to the
WebSocket loop, whose liveness is the sweeper's job.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import json
import logging
import socket
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import Any, Literal, cast

import gevent
from gevent import pywsgi
from gevent.socket import wait_read
from gunicorn import http as ghttp
from gunicorn import util as gutil
from gunicorn.http import errors as gerrors
from gunicorn.workers import ggevent
from werkzeug.exceptions import RequestTimeout

from core.clock import monotonic
from core.metrics import trip
from core.settings import Settings, load_settings

log = logging.getLogger(__name__)

# Request-line and header limits, the same under both servers (gunicorn.conf.py sets
# gunicorn's to these): pywsgi's own 8192-byte line, gunicorn's field size and count.
MAX_REQUEST_LINE_BYTES = 8190
MAX_HEADER_LINE_BYTES = 8190
MAX_HEADER_FIELDS = 100
# An unread request body longer than this is not read out to keep the connection:
# the connection is closed instead.
MAX_DRAIN_BYTES = 65_536

_REFUSALS = {
    400: ("Bad Request", "bad_request", "The request is malformed."),
    408: ("Request Timeout", "request_timeout", "The request did not arrive in time."),
    414: ("URI Too Long", "uri_too_long", "The request line is too long."),
    417: ("Expectation Failed", "bad_request", "Only Expect: 100-continue is supported."),
    431: (
        "Request Header Fields Too Large",
        "headers_too_large",
        "Too many request headers, or one too long.",
    ),
    500: ("Internal Server Error", "internal_error", "Something went wrong on the server."),
    501: ("Not Implemented", "bad_request", "That transfer coding is not supported."),
}


# The hostile-client limit (core.metrics.trip) behind each refusal of the server layer.
_TRIPS = {408: "header_deadline", 414: "request_line_limit", 431: "header_limit"}


def refusal(status: int) -> bytes:
    """A complete HTTP response with the JSON error body, closing the connection."""
    reason, code, message = _REFUSALS[status]
    body = json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


@dataclasses.dataclass(frozen=True)
class Limits:
    """The deadlines every HTTP connection gets, in seconds."""

    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.HEADER_TIMEOUT_S, settings.BODY_TIMEOUT_S, settings.KEEPALIVE_TIMEOUT_S)


def is_upgrade(environ: dict[str, Any]) -> bool:
    return (
        environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        or "upgrade" in environ.get("HTTP_CONNECTION", "").lower()
    )


class BodyDeadline:
    """wsgi.input whose reads all end by one deadline; past it they raise 408 (RequestTimeout)."""

    def __init__(self, stream: Any, deadline: float, content_length: int | None) -> None:
        self.stream = stream
        self.deadline = deadline
        self.left = content_length  # None: chunked, or no body
        self.expired = False  # the deadline passed, or the rest was too long to read out

    def _bounded(self, read: Callable[..., Any], *args: Any) -> Any:
        remaining = self.deadline - monotonic()
        if self.expired or remaining <= 0:
            if not self.expired:
                trip("body_deadline")
            self.expired = True
            raise RequestTimeout("The request body did not arrive in time.")
        timer = gevent.Timeout(remaining)
        timer.start()
        try:
            data = read(*args)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.expired = True
            trip("body_deadline")
            raise RequestTimeout("The request body did not arrive in time.") from None
        finally:
            timer.close()
        if self.left is not None:
            self.left -= len(data) if isinstance(data, bytes) else sum(map(len, data))
        return data

    def read(self, size: int | None = None) -> bytes:
        return cast(bytes, self._bounded(self.stream.read, size))

    def readline(self, size: int | None = None) -> bytes:
        return cast(bytes, self._bounded(self.stream.readline, size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return cast(list[bytes], self._bounded(self.stream.readlines, hint))

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _discard(self) -> None:
        """Read out what the app left unread (pywsgi calls this), within the deadline and a size cap."""
        if self.expired or (self.left is not None and self.left > MAX_DRAIN_BYTES):
            self.expired = True
            return
        drained = 0
        try:
            while data := self.read(16_384):
                drained += len(data)
                if drained > MAX_DRAIN_BYTES:
                    self.expired = True
                    return
        except RequestTimeout:
            pass


def bound_body_reads(app: Callable[..., Any], body_timeout_s: float) -> Callable[..., Any]:
    """WSGI middleware: the request body must arrive within body_timeout_s (gunicorn's loop uses it)."""

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not is_upgrade(environ):
            length = environ.get("CONTENT_LENGTH")
            environ["wsgi.input"] = BodyDeadline(
                environ["wsgi.input"],
                monotonic() + body_timeout_s,
                int(length) if length and length.isdigit() else None,
            )
        return app(environ, start_response)

    return middleware


class _HeaderLimit(Exception):
    """Too many header fields, or one too long (431)."""


class Handler(pywsgi.WSGIHandler):
    """pywsgi's per-connection loop with deadlines, fairness, clean WebSocket ends and JSON refusals."""

    server: Server
    # pywsgi.WSGIHandler's own methods used below, which gevent's stubs leave out.
    _connection_upgrade_requested: Callable[[], bool]
    _sendall: Callable[[bytes], None]

    def __init__(self, sock: Any, address: Any, server: Server, rfile: Any = None) -> None:
        super().__init__(sock, address, server, rfile)  # type: ignore[call-arg]  # gevent's stubs lack rfile
        self.accepted = monotonic()
        self.served = 0

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 - pywsgi's hook name
        """Headers within MAX_HEADER_FIELDS lines of MAX_HEADER_LINE_BYTES, parsed as pywsgi does."""
        lines = []
        while True:
            line = fp.readline(MAX_HEADER_LINE_BYTES + 1)
            if len(line) > MAX_HEADER_LINE_BYTES:
                raise _HeaderLimit("header line too long")
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(lines) > MAX_HEADER_FIELDS:
                raise _HeaderLimit("too many header fields")
        return pywsgi.headers_factory(BytesIO(b"".join(lines)))  # type: ignore[attr-defined]  # not in gevent's stubs

    def _refuse(self, status: int, why: str) -> None:
        trip(_TRIPS.get(status, "malformed_request"))
        log.info("refused a request from %s with %d: %s", self.client_address[0], status, why)
        try:
            self.socket.sendall(refusal(status))
        except OSError:
            pass

    def handle_one_request(self) -> Literal[True] | None:
        """One request: None closes the connection, True reads the next one (pywsgi's contract)."""
        if self.rfile.closed:
            return None
        limits = self.server.limits
        # On a new connection, HEADER_TIMEOUT_S runs from the accept and covers the wait
        # for the first byte; on a kept-alive one, the wait is KEEPALIVE_TIMEOUT_S and
        # HEADER_TIMEOUT_S starts with the first byte.
        if self.served:
            first_deadline, wait = None, limits.keepalive_timeout_s
        else:
            first_deadline = self.accepted + limits.header_timeout_s
            wait = first_deadline - monotonic()
        # A client that sends nothing is closed quietly.
        if not _wait_in_slices(self._peek, wait, lambda: self.server.closed):
            log.debug("closed an idle connection from %s", self.client_address[0])
            return None
        head_s = limits.header_timeout_s
        if first_deadline is not None:
            head_s = max(0.0, first_deadline - monotonic())
        timer = gevent.Timeout(head_s)
        timer.start()
        try:
            raw = self.rfile.readline(pywsgi.MAX_REQUEST_LINE)  # type: ignore[attr-defined]  # not in gevent's stubs
            if len(raw.rstrip(b"\r\n")) > MAX_REQUEST_LINE_BYTES:
                self._refuse(414, f"request line over {MAX_REQUEST_LINE_BYTES} bytes")
                return None
            self.requestline = raw.decode("latin-1")
            if not self.requestline:
                return None
            self.response_length = 0
            self.read_request(self.requestline)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self._refuse(408, f"request headers not complete within {limits.header_timeout_s} s")
            return None
        except _HeaderLimit as exc:
            self._refuse(431, str(exc))
            return None
        except OSError:
            return None  # the client hung up or reset: normal
        except (ValueError, http.client.HTTPException) as exc:
            self._refuse(400, repr(str(exc))[:200])
            return None
        finally:
            timer.close()

        self.environ = self.get_environ()
        self.application = self.server.application
        self.handle_one_response()
        if self._connection_upgrade_requested():
            return None  # a WebSocket ended (or was refused): never read HTTP after it
        if isinstance(self.wsgi_input, BodyDeadline) and self.wsgi_input.expired:
            return None  # the body was not read out: where the next request starts is unknown
        if self.close_connection or self.rfile.closed:
            return None
        self.served += 1
        gevent.sleep(0)  # let other connections, timers and sockets run between requests
        return True

    def _peek(self, timeout: float) -> bool | None:
        """True when a byte is waiting, False at end of stream, None when timeout passed first."""
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return bool(self.rfile.peek(1))
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            return None
        except OSError:
            return False
        finally:
            timer.close()

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        if env["wsgi.input"] is self.wsgi_input:
            # BodyDeadline stands in for pywsgi's Input: it has the same read methods.
            self.wsgi_input = env["wsgi.input"] = cast(
                pywsgi.Input,
                BodyDeadline(
                    self.wsgi_input,
                    monotonic() + self.server.limits.body_timeout_s,
                    self.content_length,
                ),
            )
        return env

    def _send_error_response_if_possible(self, error_code: int) -> None:
        """pywsgi's own 400 (a malformed chunked body) and 500, with the JSON body."""
        self.close_connection = True
        if self.response_length or self.headers_sent:
            return
        try:
            self._sendall(refusal(error_code if error_code in _REFUSALS else 500))
        except OSError:
            pass

    def log_error(self, msg: str, *args: Any) -> None:
        log.info(
            "refused a request from %s: %s", self.client_address[0], msg % args if args else msg
        )


class Server(pywsgi.WSGIServer):
    """gevent's WSGI server with Handler and the connection deadlines."""

    handler_class = Handler

    def __init__(self, listener: Any, application: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(listener, application, **kwargs)
        self.limits = limits


class GeventWorker(ggevent.GeventWorker):
    """gunicorn's gevent worker (-k gevent) with the same per-connection rules as Handler.

    Its request loop replaces AsyncWorker.handle for plain HTTP/1.1 (Greenroom's case):
    gunicorn's loop reads pipelined requests without yielding and bounds a request only
    by --keep-alive. TLS and HTTP/2 connections keep gunicorn's own loop.
    """

    limits: Limits

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.limits = Limits.from_settings(load_settings())
        self.wsgi = bound_body_reads(self.wsgi, self.limits.body_timeout_s)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if self.cfg.is_ssl or getattr(self.cfg, "http2_cleartext", "off") != "off":
            super().handle(listener, client, addr)
            return
        client.setblocking(1)
        accepted: float | None = monotonic()
        req = None
        try:
            parser = ghttp.get_parser(self.cfg, client, addr)
            listener_name = listener.getsockname()
            while True:
                req = None
                req = self._next_request(parser, client, addr, accepted)
                if req is None:
                    break
                accepted = None
                started = monotonic()
                self.handle_request(listener_name, req, client, addr)
                if is_upgrade_request(req):
                    break  # a WebSocket ended (or was refused): never read HTTP after it
                deadline = started + self.limits.body_timeout_s
                if not parser.finish_body(deadline=deadline, max_bytes=MAX_DRAIN_BYTES):
                    break
                gevent.sleep(0)  # let other connections, timers and sockets run
        except (gerrors.NoMoreData, StopIteration, gevent.GreenletExit, SystemExit):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF):
                self.log.exception("Socket error processing request.")
        except Exception as exc:
            self.handle_error(req, client, addr, exc)
        finally:
            gutil.close(client)

    def _next_request(self, parser: Any, client: Any, addr: Any, accepted: float | None) -> Any:
        """The next request, or None when the connection should close (idle, late or done)."""
        now = monotonic()
        if accepted is None:
            wait, header_s = self.limits.keepalive_timeout_s, self.limits.header_timeout_s
        else:
            wait = header_s = accepted + self.limits.header_timeout_s - now
        if not parser.unreader.buf.tell():

            def readable(timeout: float) -> bool | None:
                try:
                    wait_read(client.fileno(), timeout=timeout)
                except TimeoutError:
                    return None
                return True

            if not _wait_in_slices(readable, wait, lambda: not self.alive):
                self.log.debug("closed an idle connection from %s", addr[0])
                return None
        if accepted is not None:
            header_s = accepted + self.limits.header_timeout_s - monotonic()
        timer = gevent.Timeout(max(0.0, header_s))
        timer.start()
        try:
            return next(parser)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            trip("header_deadline")
            self.log.info("refused a request from %s with 408: headers too slow", addr[0])
            _write_quietly(client, refusal(408))
            return None
        finally:
            timer.close()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's refusals with the JSON body; a traceback only for a server bug."""
        addr = addr or ("", -1)
        # InvalidResponseHeader is new in gunicorn 27, and types-gunicorn describes 26.2.
        if isinstance(exc, gerrors.ParseException) and not isinstance(
            exc,
            gerrors.ConfigurationProblem | gerrors.InvalidResponseHeader,  # type: ignore[attr-defined]
        ):
            if isinstance(exc, gerrors.LimitRequestLine):
                status = 414
            elif isinstance(exc, gerrors.LimitRequestHeaders):
                status = 431
            elif isinstance(exc, gerrors.UnsupportedTransferCoding):
                status = 501
            elif isinstance(exc, gerrors.ExpectationFailed):
                status = 417
            else:
                status = 400
            trip(_TRIPS.get(status, "malformed_request"))
            self.log.info("refused a request from %s with %d: %r", addr[0], status, str(exc)[:200])
        else:
            self.log.exception("Error handling request")
            status = 500
        _write_quietly(client, refusal(status))


def _wait_in_slices(
    ready: Callable[[float], bool | None], timeout: float, stopping: Callable[[], bool]
) -> bool:
    """Whether ready() saw data within timeout; looks up every second so a stopping server
    need not wait out an idle keep-alive connection."""
    end = monotonic() + timeout
    while (left := end - monotonic()) > 0:
        seen = ready(min(1.0, left))
        if seen is not None:
            return seen
        if stopping():
            return False
    return False


def is_upgrade_request(req: Any) -> bool:
    headers = {name.lower(): value.lower() for name, value in req.headers}
    return headers.get("upgrade") == "websocket" or "upgrade" in headers.get("connection", "")


def _write_quietly(client: socket.socket, data: bytes) -> None:
    try:
        gutil.write_nonblock(client, data)
    except OSError:
        pass
