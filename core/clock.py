"""The one clock: wall time, monotonic time and timers, built once in app.py and passed down.

Wall time (`time()`) is for what is stored or shown: message timestamps, last_seen,
session activity. Monotonic time (`monotonic()`) is for every duration and deadline
in the process, liveness included, so a clock step cannot make everyone look silent.
Only this module reads the system clocks; tests pass a fake with the same methods.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from typing import Protocol

import gevent


class Timer(Protocol):
    # block by keyword only: a gevent Greenlet's kill() takes the exception first.
    def kill(self, *, block: bool = ...) -> None: ...


class Clock:
    """The system's clocks and gevent's timers."""

    def time(self) -> float:
        """Seconds since the epoch (wall time)."""
        return _time.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never steps (durations, deadlines, liveness)."""
        return _time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        """Run fn on its own greenlet after delay seconds; kill() cancels it."""
        return gevent.spawn_later(delay, fn)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)


SYSTEM = Clock()
# For the platform's own deadlines (the HTTP server, the start-up claim), which run
# before any service exists and are never faked.
monotonic = SYSTEM.monotonic
