"""Keyset paging for the list routes: the `limit` argument and opaque cursors.

A cursor is the sort key of the last row of a page, as JSON in URL-safe base64. The
next page starts strictly after that key, over an order that is unique and stable,
so a row added or removed between pages never makes another row appear twice or go
missing. Pure: no I/O, no Flask.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Generic, TypeVar

from core.errors import ChatError, bad_request

T = TypeVar("T")

# A cursor holds at most a float and a room id, or one username: far below this.
MAX_CURSOR_CHARS = 256
_DIGITS = re.compile(r"[0-9]{1,9}")
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]+")
# The string parts of every key (room ids, usernames) use only these characters; anything
# else (a NUL, a lone surrogate) could not have come from us and might upset the driver.
_KEY_TEXT = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclasses.dataclass
class ListPage(Generic[T]):
    """One page of rows and the sort key of its last row when more follow (else None)."""

    items: list[T]
    next_key: tuple[object, ...] | None


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    """The page size asked for: absent means `default`; else a whole number 1..maximum."""
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise bad_request(f"limit is a whole number from 1 to {maximum}.")
    return int(raw)


def encode_cursor(key: tuple[object, ...] | None) -> str | None:
    if key is None:
        return None
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _malformed() -> ChatError:
    return bad_request("cursor is malformed: pass next_cursor from the previous page as it is.")


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # NaN and Infinity are never in a key we wrote


def decode_cursor(raw: str | None, shape: tuple[type, ...]) -> tuple[object, ...] | None:
    """The key a cursor holds, checked against the types the list's order needs; None if absent."""
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CURSOR_CHARS or not _CURSOR_CHARS.fullmatch(raw):
        raise _malformed()
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        key = json.loads(data, parse_constant=_reject_constant)
    except (binascii.Error, ValueError):
        raise _malformed() from None
    if not isinstance(key, list) or len(key) != len(shape):
        raise _malformed()
    out: list[object] = []
    for value, kind in zip(key, shape, strict=True):
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
        elif kind is str and isinstance(value, str) and _KEY_TEXT.fullmatch(value):
            out.append(value)
        else:
            raise _malformed()
    return tuple(out)


def parse_page_args(
    args: Mapping[str, str], shape: tuple[type, ...], default: int, maximum: int
) -> tuple[int, tuple[object, ...] | None]:
    """(limit, key to start after) from a list request's query arguments."""
    return parse_limit(args.get("limit"), default, maximum), decode_cursor(
        args.get("cursor"), shape
    )
