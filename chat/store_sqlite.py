"""SQLite's fast path for storing a batch of messages: no savepoint or idempotency lookup per message.

chat.store.store_messages uses it on SQLite, and falls back to storing draft by draft
(its portable SQL) when this returns None. Every draft gets the outcome the
draft-by-draft path would give it: the drafts are decided in the same order (room id,
then send order), against what the database holds plus what this batch stored before.

Per batch: one SELECT per (room, sender) pair for the room's last_seq and the sender's
membership, then in Python each room's contiguous seq range, then one executemany
INSERT, one executemany UPDATE of the rooms' last_seq, and a retention DELETE only
for rooms past `keep`. The idempotency lookup (a SELECT per client_msg_id) is skipped
at first: the unique index refuses a client_msg_id already stored, which is rare (a
client's retry), and only then is the batch redone with the lookups.

The SQL text never varies, so sqlite3's per-connection statement cache prepares each
statement once. (Passing lists as one JSON parameter was measured and lost: SQLite
3.40's json_each costs more per element than a prepared primary-key lookup.)
"""

from __future__ import annotations

import logging
import sqlite3
from typing import cast

from chat.errors import client_msg_id_reused, not_a_member, room_not_found
from chat.models import Draft, Message, Stored, message_row

log = logging.getLogger(__name__)

FIND_SENT = (
    "SELECT room_id, seq, username, body, ts, client_msg_id FROM messages"
    " WHERE username = ? AND client_msg_id = ?"
)
# The room's last_seq and whether the sender is a member; no row: no such room.
FIND_ROOM = (
    "SELECT last_seq, EXISTS (SELECT 1 FROM members WHERE room_id = ? AND username = ?)"
    " FROM rooms WHERE id = ?"
)
INSERT = (
    "INSERT INTO messages (room_id, seq, username, body, ts, client_msg_id)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
# last_seq is written, not incremented: the batch read it under the write lock that
# BEGIN IMMEDIATE took, so no other writer can have moved it since. (In a deferred
# transaction a stale read would make this write fail with SQLITE_BUSY_SNAPSHOT,
# and the batch would fall back, so even then nothing is lost.)
SET_LAST_SEQ = "UPDATE rooms SET last_seq = ? WHERE id = ?"
TRIM = "DELETE FROM messages WHERE room_id = ? AND seq <= ?"


class _Unexpected(Exception):
    """The database disagrees with what the batch read a moment ago: store draft by draft."""


def store_messages(conn: sqlite3.Connection, drafts: list[Draft], keep: int) -> list[Stored] | None:
    """chat.store.store_messages with per-batch statements; None: store draft by draft.

    Per message at most one lookup (per new room and sender), one insert row and one
    room update (per room), all prepared once: a batch of one runs 5 statements, not 7.
    """
    conn.execute("SAVEPOINT batch")
    try:
        try:
            results = _store(conn, drafts, keep, look_up_sent=False)
        except sqlite3.IntegrityError:
            # A client_msg_id stored before (a retry): redo the batch with the lookups.
            conn.execute("ROLLBACK TO batch")
            results = _store(conn, drafts, keep, look_up_sent=True)
    except (sqlite3.Error, _Unexpected) as exc:
        log.info("batch of %d failed (%s); storing one by one", len(drafts), exc)
        conn.execute("ROLLBACK TO batch")
        conn.execute("RELEASE batch")
        return None
    conn.execute("RELEASE batch")
    return results


def _store(
    conn: sqlite3.Connection, drafts: list[Draft], keep: int, look_up_sent: bool
) -> list[Stored]:
    execute = conn.execute
    results: list[Stored | None] = [None] * len(drafts)  # every draft gets one below
    rooms: dict[str, int | None] = {}  # room id -> last_seq (None: no such room)
    fresh: dict[str, list[int]] = {}  # room id -> drafts stored there, in send order
    taken: dict[tuple[str, str], int] = {}  # (user, client_msg_id) -> draft of this batch
    repeats: list[tuple[int, int]] = []  # (draft, the earlier draft of this batch it repeats)
    members: dict[tuple[str, str], bool] = {}  # (room id, user) -> is a member
    # Rooms are decided in room id order (the portable path's lock order); the sort is
    # stable, so each room's messages keep the order they were sent in.
    for i in sorted(range(len(drafts)), key=lambda i: drafts[i].room):
        d = drafts[i]
        room_id, user, cmid = d.room, d.user, d.client_msg_id
        if cmid is not None:
            first = taken.get((user, cmid))
            if first is not None:
                if drafts[first].room != room_id:
                    results[i] = Stored(error=client_msg_id_reused())
                else:
                    repeats.append((i, first))
                continue
        member = members.get((room_id, user))
        if member is None:
            row = execute(FIND_ROOM, (room_id, user, room_id)).fetchone()
            rooms[room_id] = None if row is None else row[0]
            member = members[room_id, user] = row is not None and bool(row[1])
        # A refused draft must still find the message it repeats (a retry after leaving
        # the room is acked as a duplicate): the unique index only speaks up on insert.
        if cmid is not None and (look_up_sent or not member):
            old = execute(FIND_SENT, (user, cmid)).fetchone()
            if old is not None:
                if old["room_id"] != room_id:
                    results[i] = Stored(error=client_msg_id_reused())
                else:
                    results[i] = Stored(message=message_row(old), duplicate=True)
                continue
        if not member:
            results[i] = Stored(
                error=room_not_found(room_id) if rooms[room_id] is None else not_a_member(room_id)
            )
            continue
        fresh.setdefault(room_id, []).append(i)
        if cmid is not None:
            taken[user, cmid] = i

    rows = []
    seqs = []
    trims = []
    for room_id, indexes in fresh.items():
        last_seq = rooms[room_id]
        if last_seq is None:  # pragma: no cover - a member implies the room
            raise _Unexpected(f"room {room_id} has members but no row")
        for i in indexes:
            last_seq += 1
            d = drafts[i]
            rows.append((room_id, last_seq, d.user, d.body, d.ts, d.client_msg_id))
            results[i] = Stored(
                message=Message(room_id, last_seq, d.user, d.body, d.ts, d.client_msg_id)
            )
        seqs.append((last_seq, room_id))
        if last_seq > keep:
            trims.append((room_id, last_seq - keep))
    if rows:
        conn.executemany(INSERT, rows)  # first: it is the one that can refuse (IntegrityError)
        conn.executemany(SET_LAST_SEQ, seqs)
    if trims:
        conn.executemany(TRIM, trims)
    for i, first in repeats:
        results[i] = Stored(message=results[first].message, duplicate=True)  # type: ignore[union-attr]
    return cast(list[Stored], results)
