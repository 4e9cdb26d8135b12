"""The REST contract's shared checks: the one JSON error shape, wire timestamps, and bodies that are not a JSON object."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from tests.support.clients import Api

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def assert_error(r: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert r is `{"error": {"code", "message"}}` JSON with this status (never HTML, never 5xx)."""
    assert r.status_code == status, f"want {status} {code}, got {r.status_code}: {r.text[:300]}"
    content_type = r.headers.get("Content-Type", "")
    assert content_type.startswith("application/json"), f"{content_type}: {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict), body
    assert isinstance(err.get("code"), str) and re.fullmatch(r"[a-z][a-z0-9_]*", err["code"]), err
    assert isinstance(err.get("message"), str) and err["message"].strip(), err
    if code is not None:
        assert err["code"] == code, err
    return err


def raw_post(api: Api, path: str, data: bytes, token: str | None = None) -> requests.Response:
    """POST a raw body labelled as JSON, whatever it holds."""
    return api.post(path, token, data=data, headers={"Content-Type": "application/json"})


# Bodies that are not a JSON object, each sent as Content-Type: application/json.
NOT_AN_OBJECT = [
    pytest.param(b"{not json", id="malformed"),
    pytest.param(b'{"username": "abc"', id="truncated"),
    pytest.param(b'["username", "password"]', id="array"),
    pytest.param(b'"just a string"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe\x00garbage", id="binary"),
]
