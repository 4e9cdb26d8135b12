"""The escaping log formatter: no logged value can start a line or drive a terminal."""

from __future__ import annotations

import io
import logging

from core.logs import EscapingFormatter, escape_controls, install


def test_escape_controls_makes_every_control_and_bidi_character_visible() -> None:
    """CR, LF, tab, ESC, other C0, DEL, C1, line separators and bidi overrides become escapes."""
    raw = "a\nb\rc\td\x1b[2Je\x00f\x7fg\x85h\x9bi\u2028j\u202ek\u2066l\u200fm"
    assert escape_controls(raw) == (
        "a\\nb\\rc\\td\\x1b[2Je\\x00f\\x7fg\\x85h\\x9bi\\u2028j\\u202ek\\u2066l\\u200fm"
    )
    assert escape_controls("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def _logger() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("test_logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    install([logger])
    install([logger])  # a second call must not wrap twice
    assert isinstance(handler.formatter, EscapingFormatter)
    assert not isinstance(handler.formatter.inner, EscapingFormatter)
    return logger, out


def test_formatter_escapes_arguments_and_keeps_the_handler_format() -> None:
    """A value with a newline stays on its line, in the handler's own format."""
    logger, out = _logger()
    logger.warning("failed login for %s", "x\nINFO greenroom: forged")
    assert out.getvalue() == "WARNING test_logs: failed login for x\\nINFO greenroom: forged\n"


def test_traceback_lines_are_indented_and_escaped() -> None:
    """A traceback keeps its lines, each indented, so an exception message cannot start a line."""
    logger, out = _logger()
    try:
        raise ValueError("bad\nINFO greenroom: forged\x1b[31m")
    except ValueError:
        logger.exception("handler failed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "ERROR test_logs: handler failed"
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert "  INFO greenroom: forged\\x1b[31m" in lines
    assert "\x1b" not in out.getvalue()
