"""The SQLite connection, running SQL off the gevent hub, and picking the backend.

open_database() returns this SQLite backend or core.postgres's, by DATABASE_URL;
both offer run(fn, *args): fn(conn, *args) in one transaction.

Every call goes through one OS thread in a gevent threadpool: SQLite serialises
writers anyway, a single connection needs no locking, and the hub keeps running
other greenlets while a query or commit is in progress.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar, cast

from gevent.threadpool import ThreadPool

from core.schema import ADDED_COLUMNS, SCHEMA

log = logging.getLogger(__name__)
T = TypeVar("T")


def sqlite_path(url: str) -> Path:
    """sqlite:///relative/or/absolute/path -> Path."""
    return Path(url.removeprefix("sqlite:///"))


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is in requirements.txt
        return (sqlite3.IntegrityError,), (sqlite3.Error,)
    return (sqlite3.IntegrityError, psycopg.IntegrityError), (sqlite3.Error, psycopg.Error)


# What the store modules catch, whichever backend runs them.
IntegrityError, DatabaseError = _driver_errors()


class Database(Protocol):
    """What every feature's store functions run on; open() connects, nothing before it does."""

    def open(self) -> None: ...

    def run(self, fn: Callable[..., T], *args: object) -> T: ...

    # fn(conn, *args) where the backend need not open a transaction around fn: each of
    # fn's statements is then its own (PostgreSQL), which saves BEGIN and COMMIT.
    def run_alone(self, fn: Callable[..., T], *args: object) -> T: ...

    def close(self) -> None: ...


def open_database(url: str) -> Database:
    """The backend DATABASE_URL names, sqlite:///path or postgresql://..., not yet connected."""
    if url.startswith(("postgresql://", "postgres://")):
        from core.postgres import PostgresDatabase

        return PostgresDatabase(url)
    return SqliteDatabase(url)


class SqliteDatabase:
    """One SQLite connection, used only from one pool thread."""

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        self._pool = ThreadPool(1)
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create the file and the tables if they are missing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pool.apply(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            # isolation_level=None: we issue BEGIN ourselves, so one run() is one transaction.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (SIGKILL), not a power loss.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self._conn = conn
        return self._conn

    def _transact(self, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        conn = self._connect()
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        if elapsed > 0.5:
            log.warning("slow transaction %s took %.3f s", getattr(fn, "__name__", fn), elapsed)
        return result

    def _call(self, fn: Callable[..., T], args: tuple[object, ...]) -> tuple[bool, object]:
        try:
            return True, self._transact(fn, args)
        except Exception as exc:
            return False, exc

    def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run fn(conn, *args) in one transaction on the database thread; block only this greenlet."""
        # Exceptions come back as values and are raised here, in the caller's greenlet:
        # gevent's threadpool would print a traceback for every expected ChatError.
        # _call returns (True, fn's result) or (False, the exception it raised).
        ok, value = self._pool.apply(self._call, (fn, args))
        if not ok:
            raise cast(Exception, value)
        return cast(T, value)

    def run_alone(self, fn: Callable[..., T], *args: object) -> T:
        """run(): SQLite's transaction costs no round trip, and its writes need the lock."""
        return self.run(fn, *args)

    def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._pool.apply(_close)
        self._pool.kill()
