"""What every other support module uses: the repo root, the test password, unique names, free ports and polling."""

from __future__ import annotations

import itertools
import secrets
import socket
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECV_TIMEOUT_S = 5.0
PASSWORD = "correct horse battery"

_names = itertools.count(1)


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}{next(_names)}_{secrets.token_hex(3)}"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float = RECV_TIMEOUT_S, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy (for state that has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
