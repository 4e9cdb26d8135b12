"""The background sweeper greenlet: pings quiet connections, closes silent ones, ends idle sessions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

import gevent

from core.clock import Clock
from core.metrics import TALLY
from core.settings import Settings
from core.wire import CLOSE_TIMEOUT
from presence.rules import find_due_pings, find_stale

log = logging.getLogger(__name__)


class Watched(Protocol):
    """A live connection as the sweeper sees it (chat.connection.Connection)."""

    last_heard: float  # monotonic
    last_ping: float  # monotonic

    @property
    def open(self) -> bool: ...

    def ping(self, now: float) -> None: ...

    def close(self, code: int, reason: str = "") -> None: ...


W = TypeVar("W", bound=Watched)  # the connection type (chat.connection.Connection)


class Connections(Protocol[W]):
    """This worker's live connections (chat.live.Live)."""

    def connections(self) -> Sequence[W]: ...

    def disconnect(self, conn: W) -> None: ...


class Sweeper(Generic[W]):
    """Runs sweep_once every SWEEP_INTERVAL_S on its own greenlet."""

    def __init__(
        self,
        live: Connections[W],
        expire_sessions: Callable[[float], list[str]],
        chores: Sequence[Callable[[], object]],
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._live = live
        self._expire_sessions = expire_sessions
        self._chores = chores  # pruning that rides along (rate limits, feeds, typing)
        self._settings = settings
        self._clock = clock
        self._greenlet: gevent.Greenlet[..., None] | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        while True:
            self._clock.sleep(self._settings.SWEEP_INTERVAL_S)
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweep failed")

    def sweep_once(self) -> tuple[int, int, int]:
        """One pass; returns (closed, pinged, sessions expired)."""
        s = self._settings
        now = self._clock.monotonic()
        conns = self._live.connections()
        stale = find_stale(conns, now, s.PRESENCE_TIMEOUT_S)
        for conn in stale:
            conn.close(CLOSE_TIMEOUT, "no sign of life within the presence timeout")
            # Offline now, not after the close handshake that a dead peer never answers.
            self._live.disconnect(conn)
        pinged = find_due_pings([c for c in conns if c.open], now, s.PING_INTERVAL_S)
        for conn in pinged:
            conn.ping(now)
        expired = self._expire_sessions(self._clock.time())
        for chore in self._chores:
            chore()
        TALLY.sweeps += 1
        TALLY.sessions_expired += len(expired)
        if stale or expired:
            log.info(
                "sweep: closed %d silent connections, expired %d sessions", len(stale), len(expired)
            )
        return len(stale), len(pinged), len(expired)
