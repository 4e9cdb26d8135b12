"""Readiness: whether this worker should get traffic (/readyz), as opposed to being alive (/healthz).

A worker is ready while its database answers, its backplane (when configured) is
connected, and it is not draining after SIGTERM. The database check is one
`SELECT 1` bounded by READY_DB_TIMEOUT_S; its answer is reused for READY_CACHE_S and
only one check runs at a time, so a storm of probes costs the database at most one
query per READY_CACHE_S.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock

from core.clock import Clock
from core.database import Database

log = logging.getLogger(__name__)


def _select_one(conn: Any) -> None:
    conn.execute("SELECT 1").fetchall()


class Readiness:
    """Answers which checks fail; `draining()` and `backplane()` are read fresh on each call."""

    def __init__(
        self,
        db: Database,
        backplane_connected: Callable[[], bool] | None,
        draining: Callable[[], bool],
        timeout_s: float,
        cache_s: float,
        clock: Clock,
    ) -> None:
        self._db = db
        self._backplane_connected = backplane_connected  # None: no backplane configured
        self._draining = draining
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = gevent.lock.Semaphore()
        self._db_ok: bool | None = None  # None: never checked
        self._checked_at: float | None = None

    def checks(self) -> dict[str, str]:
        """Each check's state: "ok", or why it fails ("unreachable", "disconnected", "draining")."""
        result = {"database": "ok" if self._database_ok() else "unreachable"}
        if self._backplane_connected is not None:
            result["backplane"] = "ok" if self._backplane_connected() else "disconnected"
        result["shutdown"] = "draining" if self._draining() else "ok"
        return result

    def _database_ok(self) -> bool:
        with self._lock:  # probes arriving during a check wait for its answer
            now = self._clock.monotonic()
            if self._checked_at is not None and now - self._checked_at < self._cache_s:
                return bool(self._db_ok)
            why = ""
            timer = gevent.Timeout(self._timeout_s)
            timer.start()
            try:
                self._db.run_alone(_select_one)
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                why = f"no answer within {self._timeout_s} s"
            except Exception as exc:  # any failure to answer means: not ready
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            finally:
                timer.close()
            ok = not why
            # One line per change, not per probe.
            if not ok and self._db_ok is not False:
                log.warning("not ready: the database is unreachable (%s)", why)
            elif ok and self._db_ok is False:
                log.info("ready: the database answers again")
            self._db_ok = ok
            self._checked_at = self._clock.monotonic()
            return ok
