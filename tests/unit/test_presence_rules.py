"""Presence rules with a fake clock: who is stale and who is due a ping."""

from __future__ import annotations

import dataclasses

from presence.rules import find_due_pings, find_stale, status


@dataclasses.dataclass(eq=False)
class Watched:
    last_heard: float
    last_ping: float = 0.0


def test_silent_longer_than_timeout_is_stale() -> None:
    """A connection is stale only when silence exceeds the timeout, not when it equals it."""
    now = 1000.0
    fresh, edge, stale = Watched(now - 5), Watched(now - 10), Watched(now - 10.01)
    assert find_stale([fresh, edge, stale], now, 10.0) == [stale]


def test_quiet_connections_are_pinged_once_per_interval() -> None:
    """A quiet connection gets a ping, then none until another interval has passed."""
    now = 1000.0
    quiet = Watched(last_heard=now - 30, last_ping=now - 30)
    chatty = Watched(last_heard=now - 1, last_ping=now - 30)
    just_pinged = Watched(last_heard=now - 30, last_ping=now - 2)
    assert find_due_pings([quiet, chatty, just_pinged], now, 20.0) == [quiet]


def test_status_words() -> None:
    """Status is the word clients see."""
    assert status(True) == "online" and status(False) == "offline"
