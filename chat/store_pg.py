"""PostgreSQL's fast path for storing a batch of messages: one round trip, every statement pipelined.

chat.store.store_messages uses it when the database is PostgreSQL, and falls back to
storing draft by draft (its portable SQL) when this returns None.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from chat.errors import client_msg_id_reused, not_a_member, room_not_found
from chat.models import Draft, Stored, message_row

log = logging.getLogger(__name__)

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

# STORE_ONE and the room's retention in one statement, which is its own transaction:
# a lone message (most of them, below a few hundred a second) costs one round trip
# instead of three (BEGIN, the pipeline, COMMIT). The DELETE sees the rows as they were
# before the statement, so it never touches the message being inserted.
STORE_ONE_ALONE = STORE_ONE.replace(
    "SELECT false AS dup, * FROM ins UNION ALL",
    """, trim AS (
    DELETE FROM messages WHERE room_id = %(r)s
      AND seq <= (SELECT last_seq FROM bump) - %(keep)s
)
SELECT false AS dup, * FROM ins UNION ALL""",
)

TRIM_ROOM = """
DELETE FROM messages WHERE room_id = %(r)s
  AND seq <= (SELECT last_seq FROM rooms WHERE id = %(r)s) - %(keep)s
"""


def store_messages(
    conn: psycopg.Connection[Any], drafts: list[Draft], keep: int
) -> list[Stored] | None:
    """chat.store.store_messages in one round trip: every draft's statements pipelined.

    Each draft is one statement (STORE_ONE). Any error drops back to the savepoint
    and returns None, and the caller stores the batch draft by draft instead.
    """
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
        results[i] = _outcome(conn, drafts[i], found)
    return results


def store_alone(conn: psycopg.Connection[Any], draft: Draft, keep: int) -> Stored | None:
    """One draft in one statement, outside any transaction (Database.run_alone).

    Returns None when the statement fails; the caller then stores the draft in a
    transaction of its own.
    """
    params = {
        "r": draft.room,
        "u": draft.user,
        "b": draft.body,
        "t": draft.ts,
        "c": draft.client_msg_id,
        "keep": keep,
    }
    try:
        found = conn.execute(STORE_ONE_ALONE, params).fetchall()
    except psycopg.Error as exc:
        log.info("storing one message failed (%s); trying again in a transaction", exc)
        return None
    return _outcome(conn, draft, found)


def _outcome(conn: psycopg.Connection[Any], d: Draft, found: list[Any]) -> Stored:
    """What STORE_ONE's rows mean for draft d."""
    if not found:
        # Not stored: say why (rare, so a query of its own is fine).
        room = conn.execute("SELECT 1 FROM rooms WHERE id = %s", (d.room,)).fetchone()
        return Stored(error=room_not_found(d.room) if room is None else not_a_member(d.room))
    row = found[0]
    message = message_row(row)
    if not row["dup"]:
        return Stored(message=message)
    if row["room_id"] != d.room:
        return Stored(error=client_msg_id_reused())
    return Stored(message=message, duplicate=True)
