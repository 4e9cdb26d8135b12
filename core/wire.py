"""The encodings every feature shares: compact JSON, WebSocket text frames, timestamps, close codes. No I/O."""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime

# WebSocket close codes the server uses (docs/protocol.md "Close codes").
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_UNAUTHORIZED = 4001
CLOSE_TIMEOUT = 4002
CLOSE_TOO_SLOW = 4008
CLOSE_TOO_MANY_CONNECTIONS = 4009
CLOSE_TOO_MANY_FRAMES = 4029

PING_FRAME = b"\x89\x00"

# What a username may be (auth registers only these; others look a name up only if it fits).
USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")


def is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON allows "\\ud800"; UTF-8, SQLite and argon2 do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def iso(ts: float) -> str:
    """Seconds since the epoch as ISO-8601 UTC with milliseconds, e.g. 2026-11-24T02:06:50.123Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def encode_text(payload: bytes) -> bytes:
    """One unmasked, uncompressed WebSocket text frame (RFC 6455): the same bytes suit every client."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def text_frame(obj: dict[str, object]) -> bytes:
    return encode_text(dumps(obj))
