"""Log lines that a client cannot forge: control characters in logged values are escaped.

Values in log messages come from clients (usernames, paths, exception texts). A
newline in one would start a line that looks like the server's own; ESC sequences
would drive the terminal of whoever tails the log; bidi overrides reorder what a
reader sees. The formatter escapes them in every record, so no call site can forget.
"""

from __future__ import annotations

import logging

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
