"""The PostgreSQL backend: the same run(fn, *args) interface as the SQLite one.

psycopg 3 is cooperative under gevent once patch_all() has run (app.py patches
first), so queries wait on the hub like any socket, and a small pool of
connections lets several greenlets query at once. The store modules' SQL is
written for SQLite; PgConn translates the few differences (? placeholders,
INSERT OR IGNORE) and gives rows that index by position and by name, as
sqlite3.Row does.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import gevent.queue
import psycopg
from psycopg.pq import TransactionStatus

from core import pgwait
from core.schema import ADDED_COLUMNS
from core.schema import SCHEMA as SQLITE_SCHEMA

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 8

# The one schema, in PostgreSQL's types: SQLite's REAL and INTEGER hold 64-bit values.
SCHEMA = SQLITE_SCHEMA.replace(" REAL", " DOUBLE PRECISION").replace(" INTEGER", " BIGINT")
ADD_COLUMNS = "".join(
    f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind.replace('INTEGER', 'BIGINT')};"
    for table, column, kind in ADDED_COLUMNS
)


class Row(tuple[Any, ...]):
    """A row that indexes by position or by column name, like sqlite3.Row."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


_row_classes: dict[tuple[str, ...], type[Row]] = {}


def row_factory(cursor: psycopg.Cursor[Any]) -> Callable[[Sequence[Any]], Row]:
    key = tuple(d.name for d in cursor.description or ())
    cls = _row_classes.get(key)
    if cls is None:
        # One class per column list, made once: type() per query cost more than the query.
        names = {name: i for i, name in enumerate(key)}
        cls = _row_classes[key] = type("PgRow", (Row,), {"names": names})
    return cls


_translated: dict[str, str] = {}


def translate(sql: str) -> str:
    """SQLite's dialect, as written in the stores, to PostgreSQL's."""
    out = _translated.get(sql)
    if out is None:
        out = sql.replace("?", "%s")
        if re.search(r"INSERT OR IGNORE INTO", out):
            out = out.replace("INSERT OR IGNORE INTO", "INSERT INTO") + " ON CONFLICT DO NOTHING"
        _translated[sql] = out
    return out


class PgConn:
    """What the store functions see: execute/executemany in SQLite's dialect."""

    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        # The psycopg connection itself, for a store that pipelines (chat/store_pg.py).
        self.pg = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(translate(sql), params)

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor()
        if seq:
            cur.executemany(translate(sql), seq)
        return cur


class PostgresDatabase:
    """A small pool of psycopg connections; each run() is one transaction."""

    def __init__(self, url: str, size: int = POOL_SIZE) -> None:
        self.url = url
        self._size = size
        self._idle: gevent.queue.Queue[psycopg.Connection[Any]] = gevent.queue.Queue()
        self._open = 0
        pgwait.install()

    def open(self) -> None:
        """Create the tables if they are missing (and so check that the server answers)."""
        with self._connect() as conn, conn.transaction():
            # Workers starting together would race to create the same tables.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('greenroom:schema'))")
            conn.execute(SCHEMA)
            conn.execute(ADD_COLUMNS)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, row_factory=row_factory)

    def _acquire(self) -> psycopg.Connection[Any]:
        if self._idle.empty() and self._open < self._size:
            self._open += 1
            try:
                return self._connect()
            except BaseException:
                self._open -= 1
                raise
        return self._idle.get()

    def run(self, fn: Callable[..., T], *args: object) -> T:
        return self._with_conn(fn, args, transaction=True)

    def _with_conn(self, fn: Callable[..., T], args: tuple[object, ...], transaction: bool) -> T:
        conn = self._acquire()
        healthy = True
        try:
            if not transaction:
                return fn(PgConn(conn), *args)
            with conn.transaction():
                return fn(PgConn(conn), *args)
        except psycopg.OperationalError:
            healthy = False
            raise
        finally:
            # A greenlet killed mid-query (GreenletExit) leaves the connection busy: only
            # an idle one, outside any transaction, may serve the next caller.
            idle = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
            if healthy and idle:
                self._idle.put(conn)
            else:
                self._open -= 1
                conn.close()

    def run_alone(self, fn: Callable[..., T], *args: object) -> T:
        """fn(conn, *args) with no transaction around it: each statement commits by itself."""
        return self._with_conn(fn, args, transaction=False)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()
