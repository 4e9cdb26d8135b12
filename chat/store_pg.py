"""PostgreSQL's fast path for storing messages: a batch in one round trip, with no transaction around it.

chat.store.store_alone uses it when the database is PostgreSQL (through
Database.run_alone, which opens no transaction), and falls back to storing draft by
draft in a transaction of its own (the portable SQL) when this returns None.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

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

# A lone message: STORE_ONE and its room's retention in one statement. The DELETE sees
# the rows as they were before the statement, so it never touches the new message.
STORE_ONE_TRIMMED = STORE_ONE.replace(
    "SELECT false AS dup, * FROM ins UNION ALL",
    """, trim AS (
    DELETE FROM messages WHERE room_id = %(r)s
      AND seq <= (SELECT last_seq FROM bump) - %(keep)s
)
SELECT false AS dup, * FROM ins UNION ALL""",
)

# A batch trims each room once, after every draft: a draft of this batch must still
# find (as a duplicate) a message that the batch's later drafts push out.
TRIM_ROOM = """
DELETE FROM messages WHERE room_id = %(r)s
  AND seq <= (SELECT last_seq FROM rooms WHERE id = %(r)s) - %(keep)s
"""


def store_alone(
    conn: psycopg.Connection[Any], drafts: list[Draft], keep: int
) -> list[Stored] | None:
    """Store a batch in one round trip, on a connection with no transaction open.

    One draft is one statement, its own transaction: no BEGIN or COMMIT to wait for
    (the usual case below a few hundred messages a second). Several are one
    transaction, BEGIN, a statement each and COMMIT pipelined, in room order, so two
    workers' batches lock rooms in the same order and never deadlock. Any error
    rolls back and returns None: the caller then stores the batch draft by draft.
    """
    order = sorted(range(len(drafts)), key=lambda i: drafts[i].room)  # lock order
    try:
        if len(drafts) == 1:
            rows = [conn.execute(STORE_ONE_TRIMMED, _params(drafts[0], keep)).fetchall()]
        else:
            with conn.pipeline():
                conn.execute("BEGIN")
                cursors = [conn.execute(STORE_ONE, _params(drafts[i], keep)) for i in order]
                for room_id in dict.fromkeys(drafts[i].room for i in order):
                    conn.execute(TRIM_ROOM, {"r": room_id, "keep": keep})
                conn.execute("COMMIT")
            rows = [cur.fetchall() for cur in cursors]
    except psycopg.Error as exc:
        log.info("storing a batch of %d failed (%s); storing one by one", len(drafts), exc)
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        return None
    results: list[Stored] = [Stored()] * len(drafts)
    for i, found in zip(order, rows, strict=True):
        results[i] = _outcome(conn, drafts[i], found)
    return results


def _params(d: Draft, keep: int) -> dict[str, Any]:
    return {"r": d.room, "u": d.user, "b": d.body, "t": d.ts, "c": d.client_msg_id, "keep": keep}


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
