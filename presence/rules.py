"""Presence rules as pure functions of `now`: who is stale, who is due a ping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar


class Watched(Protocol):
    last_heard: float
    last_ping: float


W = TypeVar("W", bound=Watched)


def find_stale(conns: Iterable[W], now: float, timeout_s: float) -> list[W]:
    """Connections silent (no frame, no pong) for longer than timeout_s."""
    return [c for c in conns if now - c.last_heard > timeout_s]


def find_due_pings(conns: Iterable[W], now: float, interval_s: float) -> list[W]:
    """Connections that have been quiet for interval_s and were not pinged within it."""
    return [
        c for c in conns if now - c.last_heard >= interval_s and now - c.last_ping >= interval_s
    ]


def status(online: bool) -> str:
    return "online" if online else "offline"
