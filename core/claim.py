"""The start-up guard: processes with no backplane between them must not share one database.

Each process claims its database as it starts: exclusively without REDIS_URL (it
holds rooms in its own memory, so a second process would split every room),
shared with REDIS_URL on PostgreSQL. A SQLite database serves one process only. The claim is a lock that the kernel (SQLite's lock file) or
PostgreSQL (an advisory lock on the process's own connection) drops when the
process dies, so a crash never leaves it behind. A process that cannot get its
claim within `wait_s` refuses to start, saying why. The wait lets a replacement
worker start while the old one is still finishing a graceful shutdown.
"""

from __future__ import annotations

import fcntl
import logging
import time
from typing import Any

from core.clock import monotonic
from core.database import sqlite_path

log = logging.getLogger(__name__)


class ClaimError(RuntimeError):
    """Another process uses this database in a way this one cannot share."""


REFUSAL = (
    "another Greenroom process is using this database {how}. Processes without a "
    "backplane would split every room between them: run one process, or set REDIS_URL "
    "on all of them (see docs/deployment.md, 'Scaling out')."
)
SQLITE_REFUSAL = (
    "another Greenroom process is using this SQLite database. SQLite serves one process: "
    "for several, use DATABASE_URL=postgresql://... and REDIS_URL on all of them "
    "(see docs/deployment.md, 'Scaling out')."
)


def claim_database(url: str, shared: bool, wait_s: float) -> Any:
    """Take the claim, or raise ClaimError; keep the returned object for the life of the process."""
    deadline = monotonic() + wait_s
    waited = False
    while True:
        postgres = url.startswith("postgres")
        holder = _try_postgres(url, shared) if postgres else _try_sqlite(url)
        if holder is not None:
            if waited:
                log.info("got the database claim")
            return holder
        if not waited:
            # One line, so a start-up that seems stuck says why (a replacement worker
            # waits here while the old one finishes its graceful shutdown).
            other = "without REDIS_URL " if postgres and shared else ""
            log.warning(
                "waiting up to %g s (GREENROOM_CLAIM_WAIT_S) for the database claim: "
                "another Greenroom process uses this %s database %s",
                wait_s,
                "PostgreSQL" if postgres else "SQLite",
                other.strip() or "(it must stop first)",
            )
            waited = True
        if monotonic() >= deadline:
            if not postgres:
                raise ClaimError(SQLITE_REFUSAL)
            raise ClaimError(REFUSAL.format(how="without REDIS_URL" if shared else "already"))
        time.sleep(0.25)


def _try_sqlite(url: str) -> Any:
    path = sqlite_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held open for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _try_postgres(url: str, shared: bool) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    fn = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    # One key per database and schema: test runs in their own schemas never collide.
    row = conn.execute(
        f"SELECT {fn}(hashtext('greenroom:' || current_database() || ':' || current_schema()))"
    ).fetchone()
    if row is None or not row[0]:
        conn.close()
        return None
    return conn
