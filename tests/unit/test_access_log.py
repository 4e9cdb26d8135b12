"""The access log and the log formats, in process: request ids, one line per request, no forged lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from core import logs
from core.access import AccessLog, request_id_from
from tests.support.fakes import FakeClock

HOSTILE = "x\nINFO greenroom: forged\x1b[2J\u202eevil\u2028\x85"


@pytest.mark.parametrize(
    "given",
    ["abc", "0f8e4a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b", "Root=1-5e1b:x.y_z+/", "a" * 128],
)
def test_a_sane_request_id_is_kept(given: str) -> None:
    """Letters, digits and id punctuation up to 128 characters come back unchanged."""
    assert request_id_from(given) == given


@pytest.mark.parametrize(
    "given", [None, "", "a" * 129, "a b", "id\nx", "id\x1b", "caf\u00e9", "<script>", "a;b"]
)
def test_a_missing_or_hostile_request_id_is_replaced(given: str | None) -> None:
    """Anything else becomes 32 fresh hex digits, different each time."""
    made = request_id_from(given)
    assert len(made) == 32 and int(made, 16) >= 0
    assert made != request_id_from(given)


def capture(kind: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.use_format(handler, kind)
    logger = logging.getLogger(f"test_access_log.{kind}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def app(status: str, route: str | None) -> Callable[..., Iterable[bytes]]:
    """A WSGI app that stands in for Flask: it notes the route as the teardown hook does."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        environ["greenroom.route"] = route
        environ["greenroom.user"] = "alice"
        # The request id is on the log lines written while the request is served.
        logging.getLogger("test_access_log.text").info("inside")
        logging.getLogger("test_access_log.json").info("inside")
        start_response(status, [("Content-Type", "application/json")])
        return iter([b"{}"])

    return wsgi


@pytest.mark.parametrize("kind", ["text", "json"])
def test_one_access_line_per_request_with_the_id_echoed(kind: str) -> None:
    """The middleware answers with X-Request-Id and writes one access line with every field."""
    access_logger = logging.getLogger("greenroom.access")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.use_format(handler, kind)
    access_logger.addHandler(handler)
    level = access_logger.level
    access_logger.setLevel(logging.INFO)
    _, inner = capture(kind)
    clock = FakeClock()
    headers: list[tuple[str, str]] = []
    try:
        wsgi = AccessLog(app("404 NOT FOUND", "/api/rooms/<room_id>"), clock)
        environ = {"REQUEST_METHOD": "GET", "HTTP_X_REQUEST_ID": "req-1"}
        body = wsgi(environ, lambda status, h, exc=None: headers.extend(h))
        assert list(body) == [b"{}"]
    finally:
        access_logger.removeHandler(handler)
        access_logger.setLevel(level)
    assert ("X-Request-Id", "req-1") in headers
    line = out.getvalue().strip()
    assert "\n" not in line
    if kind == "text":
        assert line.endswith(
            "INFO greenroom.access [req-1]: GET /api/rooms/<room_id> 404 0.0ms user=alice"
        )
        assert "[req-1]: inside" in inner.getvalue()
    else:
        record = json.loads(line)
        assert {k: record[k] for k in ("method", "route", "status", "user", "request_id")} == {
            "method": "GET",
            "route": "/api/rooms/<room_id>",
            "status": 404,
            "user": "alice",
            "request_id": "req-1",
        }
        assert json.loads(inner.getvalue())["request_id"] == "req-1"
    # Outside the request, no id.
    assert logs.REQUEST_ID.get() is None


@pytest.mark.parametrize("kind", ["text", "json"])
def test_no_logged_value_can_forge_a_line_in_either_format(kind: str) -> None:
    """Newlines, ESC, C1, line separators and bidi overrides stay escaped, in text and in JSON."""
    logger, out = capture(kind)
    logger.warning("failed login for %s", HOSTILE)
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        logger.exception("handler failed")
    text = out.getvalue()
    for raw in ("\x1b", "\u202e", "\u2028", "\x85", "\r"):
        assert raw not in text
    lines = text.splitlines()
    if kind == "json":
        assert len(lines) == 2
        records = [json.loads(line) for line in lines]
        assert records[0]["message"] == f"failed login for {HOSTILE}"  # intact once decoded
        assert HOSTILE in records[1]["exc_info"]
    else:
        assert not [line for line in lines if line.startswith("INFO greenroom: forged")]
        assert all(line.startswith("  ") for line in lines[2:]), lines
