"""The log format, and log lines that a client cannot forge.

One format for every line the process writes, ours and gunicorn's: text
(`time level logger [request id]: message`) or JSON lines (GREENROOM_LOG_FORMAT=json),
each line carrying the id of the request it was written for (REQUEST_ID).

Values in log messages come from clients (usernames, paths, exception texts). A
newline in one would start a line that looks like the server's own; ESC sequences
would drive the terminal of whoever tails the log; bidi overrides reorder what a
reader sees. The text formatter escapes them in every record, so no call site can
forget; the JSON formatter writes ASCII only, so JSON's own escapes cover them.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

# The id of the request (or WebSocket session) the current greenlet serves; set by
# core.access for the length of one request, None outside any request.
REQUEST_ID: ContextVar[str | None] = ContextVar("greenroom_request_id", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

# C0 controls, DEL and C1 controls; the line and paragraph separators that some viewers
# break lines on; and the bidi marks, embeddings, overrides and isolates.
_UNSAFE = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    *range(0x2028, 0x202F),
    *range(0x2066, 0x206A),
]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {c: _NAMED.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}
# Inside a traceback the newlines are the server's own: keep them, escape the rest.
_ESCAPES_KEEP_NEWLINE = {**_ESCAPES, 0x0A: "\n"}
TRACEBACK_INDENT = "  "


def escape_controls(text: str) -> str:
    """text with every control and bidi character written as a visible escape (\\n, \\x1b, \\u202e)."""
    return text.translate(_ESCAPES)


def _indented(text: str) -> str:
    # Every line of a traceback starts indented: only the server's own lines start with
    # a timestamp, even when an exception's message holds a newline.
    return "\n".join(
        TRACEBACK_INDENT + line for line in text.translate(_ESCAPES_KEEP_NEWLINE).split("\n")
    )


class EscapingFormatter(logging.Formatter):
    """Wraps a handler's formatter: the message is escaped and tracebacks are indented."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg = escape_controls(record.getMessage())
        safe.request_id = escape_controls(str(getattr(record, "request_id", None) or "-"))
        safe.args = None
        safe.exc_info = None
        safe.exc_text = None
        safe.stack_info = None
        line = self.inner.format(safe)
        if record.exc_info:
            line += "\n" + _indented(self.inner.formatException(record.exc_info))
        elif record.exc_text:
            line += "\n" + _indented(record.exc_text)
        if record.stack_info:
            line += "\n" + _indented(self.inner.formatStack(record.stack_info))
        return line


def install(loggers: list[logging.Logger]) -> None:
    """Put an EscapingFormatter on every handler of these loggers (once; calling again is harmless)."""
    for logger in loggers:
        for handler in logger.handlers:
            if not isinstance(handler.formatter, EscapingFormatter):
                handler.setFormatter(EscapingFormatter(handler.formatter))


class RequestFields(logging.Filter):
    """Puts the current request's id on every record a handler writes (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _utc_iso(self: logging.Formatter, record: logging.LogRecord, datefmt: str | None = None) -> str:
    """2026-11-30T18:13:58.123Z: one unambiguous time, whatever the host's zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


class TextFormatter(logging.Formatter):
    formatTime = _utc_iso  # noqa: N815 - logging's hook name


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, and any extra fields.

    ASCII only (json_ensure_ascii): control, bidi and other non-ASCII characters in a
    value are written as \\uXXXX escapes, so no value can break or reorder a line.
    """

    formatTime = _utc_iso  # noqa: N815 - logging's hook name

    def __init__(self) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=True,
        )


def formatter(kind: str) -> logging.Formatter:
    """The formatter for GREENROOM_LOG_FORMAT: "text" (escaped) or "json"."""
    if kind == "json":
        return JsonLineFormatter()
    return EscapingFormatter(TextFormatter(TEXT_FORMAT))


def use_format(handler: logging.Handler, kind: str) -> None:
    """Make this handler write Greenroom's format, with the request id on each line."""
    handler.setFormatter(formatter(kind))
    if not any(isinstance(f, RequestFields) for f in handler.filters):
        handler.addFilter(RequestFields())


def configure(kind: str, level: str, ws_level: str, others: list[logging.Logger]) -> None:
    """One handler on the root logger, to stderr, in this format; `others` (gunicorn's
    loggers, which do not propagate) get the same format on their own handlers."""
    root = logging.getLogger()
    ours: list[logging.Handler] = [h for h in root.handlers if getattr(h, "greenroom", False)]
    if not ours:
        handler: logging.Handler = logging.StreamHandler()
        handler.greenroom = True  # type: ignore[attr-defined]  # marks the handler as ours
        root.addHandler(handler)
        ours = [handler]
    for mine in ours:
        use_format(mine, kind)
    root.setLevel(level.upper())
    # WebSocket open and close lines: one pair per connection, quiet unless asked for.
    logging.getLogger("greenroom.ws").setLevel(ws_level.upper())
    for logger in others:
        for theirs in logger.handlers:
            use_format(theirs, kind)
