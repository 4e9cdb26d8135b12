"""The background sweeper greenlet: pings quiet connections, closes silent ones, ends idle sessions."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent

from auth.service import Auth
from chat.connection import CLOSE_TIMEOUT
from chat.service import Chat
from core.settings import Settings
from presence.rules import find_due_pings, find_stale

log = logging.getLogger(__name__)


class Sweeper:
    """Runs sweep_once every SWEEP_INTERVAL_S on its own greenlet."""

    def __init__(
        self, chat: Chat, auth: Auth, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self._chat = chat
        self._auth = auth
        self._settings = settings
        self._clock = clock
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _run(self) -> None:
        while True:
            gevent.sleep(self._settings.SWEEP_INTERVAL_S)
            try:
                self.sweep_once(self._clock())
            except Exception:
                log.exception("sweep failed")

    def sweep_once(self, now: float) -> tuple[int, int, int]:
        """One pass; returns (closed, pinged, sessions expired)."""
        s = self._settings
        conns = self._chat.registry.connections()
        stale = find_stale(conns, now, s.PRESENCE_TIMEOUT_S)
        for conn in stale:
            conn.close(CLOSE_TIMEOUT, "no sign of life within the presence timeout")
            # Offline now, not after the close handshake that a dead peer never answers.
            self._chat.disconnect(conn)
        pinged = find_due_pings([c for c in conns if c.open], now, s.PING_INTERVAL_S)
        for conn in pinged:
            conn.ping(now)
        expired = self._auth.expire_idle(now)
        self._chat.prune(now)
        if stale or expired:
            log.info(
                "sweep: closed %d silent connections, expired %d sessions", len(stale), len(expired)
            )
        return len(stale), len(pinged), len(expired)
