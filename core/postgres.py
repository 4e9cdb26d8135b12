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

from chat.store import (
    Draft,
    Stored,
    client_msg_id_reused,
    message_row,
    not_a_member,
    room_not_found,
)
from core.database import SCHEMA as SQLITE_SCHEMA

log = logging.getLogger(__name__)
T = TypeVar("T")
POOL_SIZE = 8

# The one schema, in PostgreSQL's types: SQLite's REAL and INTEGER hold 64-bit values.
SCHEMA = SQLITE_SCHEMA.replace(" REAL", " DOUBLE PRECISION").replace(" INTEGER", " BIGINT")


class Row(tuple):  # type: ignore[type-arg]
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


# One message in one statement: the idempotency check, the membership check, the seq
# taken under the room row's lock, and the insert. It returns the stored message
# (dup false), or the earlier one with the same client_msg_id (dup true), or nothing
# when the room is gone or the sender is not a member.
STORE_ONE = """
WITH dup AS (
    SELECT room_id, seq, username, body, ts, client_msg_id FROM messages
    WHERE %(c)s::text IS NOT NULL AND username = %(u)s AND client_msg_id = %(c)s
), bump AS (
    UPDATE rooms SET last_seq = last_seq + 1
    WHERE id = %(r)s AND NOT EXISTS (SELECT 1 FROM dup)
      AND EXISTS (SELECT 1 FROM members WHERE room_id = %(r)s AND username = %(u)s)
    RETURNING last_seq
), ins AS (
    INSERT INTO messages (room_id, seq, username, body, ts, client_msg_id)
    SELECT %(r)s, last_seq, %(u)s, %(b)s, %(t)s, %(c)s FROM bump
    RETURNING room_id, seq, username, body, ts, client_msg_id
)
SELECT false AS dup, * FROM ins UNION ALL SELECT true AS dup, * FROM dup
"""

TRIM_ROOM = """
DELETE FROM messages WHERE room_id = %(r)s
  AND seq <= (SELECT last_seq FROM rooms WHERE id = %(r)s) - %(keep)s
"""

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

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(translate(sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, seq: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor()
        if seq:
            cur.executemany(translate(sql), seq)  # type: ignore[arg-type]
        return cur

    def store_messages(self, drafts: list[Draft], keep: int) -> list[Stored] | None:
        """chat.store.store_messages in one round trip: every draft's statements pipelined.

        Each draft is one statement (STORE_ONE). Any error drops back to the savepoint
        and returns None, and the caller stores the batch draft by draft instead.
        """
        conn = self._conn
        order = sorted(range(len(drafts)), key=lambda i: drafts[i].room)  # lock order
        try:
            with conn.pipeline():
                conn.execute("SAVEPOINT batch")
                cursors = [
                    conn.execute(
                        STORE_ONE,
                        {
                            "r": drafts[i].room,
                            "u": drafts[i].user,
                            "b": drafts[i].body,
                            "t": drafts[i].ts,
                            "c": drafts[i].client_msg_id,
                        },
                    )
                    for i in order
                ]
                # Retention, in the same round trip: it needs each room's seq, not our results.
                for room_id in dict.fromkeys(drafts[i].room for i in order):
                    conn.execute(TRIM_ROOM, {"r": room_id, "keep": keep})
            rows = [cur.fetchall() for cur in cursors]
        except psycopg.Error as exc:
            log.info("pipelined batch of %d failed (%s); storing one by one", len(drafts), exc)
            conn.execute("ROLLBACK TO SAVEPOINT batch")
            return None
        results: list[Stored] = [Stored()] * len(drafts)
        for i, found in zip(order, rows, strict=True):
            d = drafts[i]
            if not found:
                # Not stored: say why (rare, so a query of its own is fine).
                room = conn.execute("SELECT 1 FROM rooms WHERE id = %s", (d.room,)).fetchone()
                results[i] = Stored(
                    error=room_not_found(d.room) if room is None else not_a_member(d.room)
                )
                continue
            row = found[0]
            message = message_row(row)
            if not row["dup"]:
                results[i] = Stored(message=message)
            elif row["room_id"] != d.room:
                results[i] = Stored(error=client_msg_id_reused())
            else:
                results[i] = Stored(message=message, duplicate=True)
        return results


class PostgresDatabase:
    """A small pool of psycopg connections; each run() is one transaction."""

    def __init__(self, url: str, size: int = POOL_SIZE) -> None:
        self.url = url
        self._size = size
        self._idle: gevent.queue.Queue[psycopg.Connection[Any]] = gevent.queue.Queue()
        self._open = 0
        with self._connect() as conn, conn.transaction():
            # Workers starting together would race to create the same tables.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('greenroom:schema'))")
            conn.execute(SCHEMA)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, row_factory=row_factory)  # type: ignore[arg-type]

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
        conn = self._acquire()
        healthy = True
        try:
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

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()
