"""List paging arguments: limits and opaque cursors, and what is refused."""

from __future__ import annotations

import base64

import pytest

from core.errors import ChatError
from core.paging import decode_cursor, encode_cursor, parse_limit


def test_limit_defaults_and_bounds() -> None:
    """An absent limit is the default; 1..maximum is accepted; anything else is 400."""
    assert parse_limit(None, 100, 500) == 100
    assert parse_limit("1", 100, 500) == 1
    assert parse_limit("500", 100, 500) == 500
    for raw in ("0", "501", "-1", "", "1.0", " 5", "٣", "9" * 30):
        with pytest.raises(ChatError) as err:
            parse_limit(raw, 100, 500)
        assert (err.value.status, err.value.code) == (400, "bad_request")


def test_cursor_round_trips_exactly() -> None:
    """A key comes back from its cursor unchanged, floats to the last bit."""
    key = (1764000000.123456789, "abcdefghjk")
    cursor = encode_cursor(key)
    assert cursor is not None and "=" not in cursor
    assert decode_cursor(cursor, (float, str)) == key
    assert encode_cursor(None) is None
    assert decode_cursor(None, (str,)) is None


@pytest.mark.parametrize(
    "payload",
    [b"{}", b"[]", b'["a","b"]', b"[NaN]", b"[true]", b'["\\u0000"]', b'["\\ud800"]', b"[[1]]"],
)
def test_malformed_cursors_are_refused(payload: bytes) -> None:
    """A cursor that is not a key of the list's shape is 400 bad_request."""
    cursor = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    with pytest.raises(ChatError) as err:
        decode_cursor(cursor, (str,))
    assert err.value.code == "bad_request"
    for raw in ("!!", "a" * 300, "@"):
        with pytest.raises(ChatError):
            decode_cursor(raw, (float, str))
