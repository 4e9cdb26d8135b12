"""SQL for rooms, members, invites and messages. Each function runs inside one transaction.

Room access rules that must be atomic with the write (capacity, privacy, ownership)
are checked here, inside the transaction, so two joins can never both take the last seat.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import sqlite3
from typing import cast

from chat import store_pg, store_sqlite
from chat.errors import (
    client_msg_id_reused,
    not_a_member,
    room_not_found,
    room_restricted,
    too_many_rooms,
)
from chat.models import (
    Draft,
    ListedRoom,
    Message,
    ReadMarker,
    Room,
    Stored,
    message_row,
    room_row,
)
from core.database import DatabaseError
from core.errors import ChatError, conflict, forbidden, not_found
from core.paging import ListPage

log = logging.getLogger(__name__)

ROOM_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
ROOM_ID_CHARS = 10


def new_room_id() -> str:
    return "".join(secrets.choice(ROOM_ID_ALPHABET) for _ in range(ROOM_ID_CHARS))


def _room(conn: sqlite3.Connection, room_id: str, lock: bool = False) -> sqlite3.Row:
    # FOR UPDATE (PostgreSQL only) serialises joins of one room across workers, so two
    # can never both take the last seat; SQLite's BEGIN IMMEDIATE already does.
    suffix = getattr(conn, "for_update", "") if lock else ""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM rooms WHERE id = ?" + suffix, (room_id,)
    ).fetchone()
    if row is None:
        raise room_not_found(room_id)
    return row


def _is_member(conn: sqlite3.Connection, room_id: str, username: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM members WHERE room_id = ? AND username = ?", (room_id, username)
        ).fetchone()
        is not None
    )


def _is_invited(conn: sqlite3.Connection, room_id: str, username: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM invites WHERE room_id = ? AND username = ?", (room_id, username)
        ).fetchone()
        is not None
    )


def _member_count(conn: sqlite3.Connection, room_id: str) -> int:
    count: int = conn.execute(
        "SELECT COUNT(*) FROM members WHERE room_id = ?", (room_id,)
    ).fetchone()[0]
    return count


def create_room(
    conn: sqlite3.Connection,
    owner: str,
    name: str,
    capacity: int,
    private: bool,
    now: float,
    max_owned: int,
) -> Room:
    # The owner's row is locked (PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises)
    # so that two creations at once cannot both pass the cap.
    suffix = getattr(conn, "for_update", "")
    conn.execute("SELECT 1 FROM users WHERE username = ?" + suffix, (owner,)).fetchone()
    owned = conn.execute("SELECT COUNT(*) FROM rooms WHERE owner = ?", (owner,)).fetchone()[0]
    if owned >= max_owned:
        raise too_many_rooms(max_owned)
    while True:
        room_id = new_room_id()
        if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
            break
    conn.execute(
        "INSERT INTO rooms (id, name, owner, capacity, private, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, name, owner, capacity, int(private), now),
    )
    conn.execute(
        "INSERT INTO members (room_id, username, joined_at) VALUES (?, ?, ?)", (room_id, owner, now)
    )
    return room_row(_room(conn, room_id))


def list_rooms(
    conn: sqlite3.Connection,
    username: str,
    after: tuple[object, ...] | None,
    limit: int,
    unread_cap: int,
) -> ListPage[ListedRoom]:
    """Public rooms, and private rooms the user owns, belongs to or is invited to.

    Keyset pages in creation order: (created_at, id) is unique, and the rows after
    `after` are read through the rooms_by_created index, so a page costs its own rows.
    """
    created, room_id = after if after is not None else (-1.0, "")
    rows = conn.execute(
        f"""
        SELECT r.*, (SELECT COUNT(*) FROM members m WHERE m.room_id = r.id) AS member_count,
               me.last_read_seq AS last_read_seq,
               CASE WHEN me.username IS NULL THEN 0 ELSE ({_unread_of_row(unread_cap)}) END AS unread
        FROM rooms r LEFT JOIN members me ON me.room_id = r.id AND me.username = ?
        WHERE (r.created_at > ? OR (r.created_at = ? AND r.id > ?))
          AND (r.private = 0 OR r.owner = ? OR me.username IS NOT NULL
               OR EXISTS(SELECT 1 FROM invites i WHERE i.room_id = r.id AND i.username = ?))
        ORDER BY r.created_at, r.id
        LIMIT ?
        """,
        (username, created, created, room_id, username, username, limit + 1),
    ).fetchall()
    items = [
        ListedRoom(
            room_row(r),
            r["member_count"],
            r["last_read_seq"] is not None,
            None
            if r["last_read_seq"] is None
            else ReadMarker(r["id"], r["last_read_seq"], r["unread"]),
        )
        for r in rows[:limit]
    ]
    last = rows[limit - 1] if len(rows) > limit else None
    return ListPage(items, None if last is None else (last["created_at"], last["id"]))


def get_room(
    conn: sqlite3.Connection, room_id: str, username: str, unread_cap: int
) -> tuple[Room, list[str], ReadMarker | None]:
    """The room, its member names and the user's read marker (None: not a member), if the
    user may see it."""
    row = _room(conn, room_id)
    marker = read_marker(conn, room_id, username, unread_cap)
    if (
        row["private"]
        and marker is None
        and row["owner"] != username
        and not _is_invited(conn, room_id, username)
    ):
        raise room_restricted(room_id)
    names = [
        r[0]
        for r in conn.execute(
            "SELECT username FROM members WHERE room_id = ? ORDER BY username", (room_id,)
        )
    ]
    return room_row(row), names, marker


def delete_room(conn: sqlite3.Connection, room_id: str, username: str) -> None:
    row = _room(conn, room_id)
    if row["owner"] != username:
        raise forbidden("not_room_owner", f"Only the owner of room {room_id} can do that.")
    conn.execute("DELETE FROM messages WHERE room_id = ?", (room_id,))
    conn.execute("DELETE FROM rooms WHERE id = ?", (room_id,))


def join_room(
    conn: sqlite3.Connection, room_id: str, username: str, now: float, unread_cap: int
) -> tuple[Room, list[str], ReadMarker | None, bool]:
    """Make the user a member; return (room, member names, read marker, whether they were new).

    A new member starts with everything already in the room read, as in other chat
    products: joining a busy room does not bring thousands of unread messages.
    """
    row = _room(conn, room_id, lock=True)
    new = not _is_member(conn, room_id, username)
    if new:
        # The owner may always come back, even to a private room they left.
        if row["private"] and row["owner"] != username and not _is_invited(conn, room_id, username):
            raise room_restricted(room_id)
        if _member_count(conn, room_id) >= row["capacity"]:
            raise conflict("room_full", f"Room {room_id} is full ({row['capacity']} members).")
        conn.execute(
            "INSERT INTO members (room_id, username, joined_at, last_read_seq) VALUES (?, ?, ?, ?)",
            (room_id, username, now, row["last_seq"]),
        )
    room, names, marker = get_room(conn, room_id, username, unread_cap)
    return room, names, marker, new


def leave_room(conn: sqlite3.Connection, room_id: str, username: str) -> None:
    _room(conn, room_id)
    deleted = conn.execute(
        "DELETE FROM members WHERE room_id = ? AND username = ?", (room_id, username)
    ).rowcount
    if not deleted:
        raise not_a_member(room_id)


# Messages after a marker that others sent (your own always count as read), counted
# up to a cap: a range scan of the (room_id, seq) key, at most `cap` rows per room, so
# a page of 500 busy rooms costs the database thread 500 short scans, not 500 long ones.
_UNREAD = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM messages"
    " WHERE room_id = ? AND seq > ? AND username != ? LIMIT ?) AS u"
)


def _unread_of_row(cap: int) -> str:
    """_UNREAD for list_rooms' rows r (room) and me (the caller's membership)."""
    return (
        "SELECT COUNT(*) FROM (SELECT 1 FROM messages g WHERE g.room_id = r.id"
        f" AND g.seq > me.last_read_seq AND g.username != me.username LIMIT {int(cap)}) AS u"
    )


def read_marker(
    conn: sqlite3.Connection, room_id: str, username: str, cap: int
) -> ReadMarker | None:
    """The user's read marker in the room, with its unread count; None if not a member."""
    row = conn.execute(
        "SELECT last_read_seq FROM members WHERE room_id = ? AND username = ?", (room_id, username)
    ).fetchone()
    if row is None:
        return None
    unread: int = conn.execute(_UNREAD, (room_id, row[0], username, cap)).fetchone()[0]
    return ReadMarker(room_id, row[0], unread)


def mark_read(
    conn: sqlite3.Connection, room_id: str, username: str, seq: int, cap: int
) -> tuple[ReadMarker, bool]:
    """Move the marker forward to seq (never back, never past the room's last_seq);
    return the marker and whether it moved."""
    seq = min(seq, _room(conn, room_id)["last_seq"])
    moved = conn.execute(
        "UPDATE members SET last_read_seq = ?"
        " WHERE room_id = ? AND username = ? AND last_read_seq < ?",
        (seq, room_id, username, seq),
    ).rowcount
    marker = read_marker(conn, room_id, username, cap)
    if marker is None:
        raise not_a_member(room_id)
    return marker, moved > 0


def require_member(conn: sqlite3.Connection, room_id: str, username: str) -> sqlite3.Row:
    row = _room(conn, room_id)
    if not _is_member(conn, room_id, username):
        raise not_a_member(room_id)
    return row


def member_names(conn: sqlite3.Connection, room_id: str, username: str) -> list[str]:
    require_member(conn, room_id, username)
    return [
        r[0]
        for r in conn.execute(
            "SELECT username FROM members WHERE room_id = ? ORDER BY username", (room_id,)
        )
    ]


def member_page(
    conn: sqlite3.Connection,
    room_id: str,
    username: str,
    after: tuple[object, ...] | None,
    limit: int,
) -> ListPage[str]:
    """Member names in username order (the primary key's), after `after`; members only."""
    require_member(conn, room_id, username)
    rows = conn.execute(
        "SELECT username FROM members WHERE room_id = ? AND username > ? ORDER BY username LIMIT ?",
        (room_id, after[0] if after is not None else "", limit + 1),
    ).fetchall()
    names = [r[0] for r in rows[:limit]]
    return ListPage(names, (names[-1],) if len(rows) > limit else None)


def invite(conn: sqlite3.Connection, room_id: str, owner: str, invitee_key: str) -> str:
    """Invite a user (matched without regard to case); return their canonical name."""
    row = _room(conn, room_id)
    if row["owner"] != owner:
        raise forbidden("not_room_owner", f"Only the owner of room {room_id} can invite.")
    user = conn.execute(
        "SELECT username FROM users WHERE username_key = ?", (invitee_key.lower(),)
    ).fetchone()
    if user is None:
        raise not_found("user_not_found", f"There is no user {invitee_key}.")
    conn.execute(
        "INSERT OR IGNORE INTO invites (room_id, username) VALUES (?, ?)", (room_id, user[0])
    )
    return cast(str, user[0])  # the invitee's name as registered


def co_members(conn: sqlite3.Connection, username: str) -> list[str]:
    """Everyone who shares at least one room with the user (the user excluded)."""
    return [
        r[0]
        for r in conn.execute(
            """
            SELECT DISTINCT b.username FROM members a JOIN members b ON a.room_id = b.room_id
            WHERE a.username = ? AND b.username != ?
            """,
            (username, username),
        )
    ]


def rooms_of(conn: sqlite3.Connection, username: str) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT room_id FROM members WHERE username = ?", (username,))
    ]


# ---- messages ---------------------------------------------------------------


def store_alone(conn: sqlite3.Connection, drafts: list[Draft], keep: int) -> list[Stored]:
    """Store a batch through Database.run_alone: the one transaction is opened here if needed.

    PostgreSQL stores it in one round trip (chat/store_pg.py); when that fails it goes
    draft by draft in a transaction. SQLite's run_alone is run, already in a transaction.
    """
    pg = getattr(conn, "pg", None)
    if pg is None:
        return store_messages(conn, drafts, keep)
    stored = store_pg.store_alone(pg, drafts, keep)
    if stored is not None:
        return stored
    with pg.transaction():
        return store_messages(conn, drafts, keep)


def store_messages(conn: sqlite3.Connection, drafts: list[Draft], keep: int) -> list[Stored]:
    """Store a batch in one transaction: one commit for many messages (group commit)."""
    if isinstance(conn, sqlite3.Connection):
        # SQLite runs statements per batch rather than per message (store_sqlite).
        stored = store_sqlite.store_messages(conn, drafts, keep)
        if stored is not None:
            return stored
    results: list[Stored] = [Stored()] * len(drafts)
    touched: dict[str, int] = {}  # room id -> last seq after this batch
    # Rooms are locked (by the seq UPDATE) in one order, room id, on every worker: two
    # workers' batches over the same rooms then never deadlock. The sort is stable, so
    # each room's messages keep the order they were sent in.
    for i in sorted(range(len(drafts)), key=lambda i: drafts[i].room):
        d = drafts[i]
        # A savepoint per draft: one that fails unexpectedly must not sink the others.
        conn.execute("SAVEPOINT draft")
        try:
            results[i] = _store_one(conn, d, touched)
        except DatabaseError + (ValueError,):
            log.exception("storing a message in room %s failed", d.room)
            conn.execute("ROLLBACK TO draft")
            results[i] = Stored(error=ChatError(503, "unavailable", "Not stored: try again."))
        conn.execute("RELEASE draft")
    for room_id, last_seq in touched.items():
        conn.execute(
            "DELETE FROM messages WHERE room_id = ? AND seq <= ?", (room_id, last_seq - keep)
        )
    return results


def _store_one(conn: sqlite3.Connection, d: Draft, touched: dict[str, int]) -> Stored:
    if d.client_msg_id is not None:
        old = conn.execute(
            "SELECT * FROM messages WHERE username = ? AND client_msg_id = ?",
            (d.user, d.client_msg_id),
        ).fetchone()
        if old is not None:
            if old["room_id"] != d.room:
                return Stored(error=client_msg_id_reused())
            return Stored(message=message_row(old), duplicate=True)
    row = conn.execute(
        "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq", (d.room,)
    ).fetchone()
    if row is None:
        return Stored(error=room_not_found(d.room))
    if not _is_member(conn, d.room, d.user):
        conn.execute("UPDATE rooms SET last_seq = last_seq - 1 WHERE id = ?", (d.room,))
        return Stored(error=not_a_member(d.room))
    seq = row[0]
    conn.execute(
        "INSERT INTO messages (room_id, seq, username, body, ts, client_msg_id) VALUES (?, ?, ?, ?, ?, ?)",
        (d.room, seq, d.user, d.body, d.ts, d.client_msg_id),
    )
    touched[d.room] = seq
    return Stored(message=Message(d.room, seq, d.user, d.body, d.ts, d.client_msg_id))


@dataclasses.dataclass
class Page:
    messages: list[Message]
    has_more: bool
    last_seq: int
    first_kept_seq: int  # the oldest seq still stored (last_seq + 1 when none is)


def _bounds(conn: sqlite3.Connection, room_id: str, last_seq: int) -> int:
    first = conn.execute("SELECT MIN(seq) FROM messages WHERE room_id = ?", (room_id,)).fetchone()[
        0
    ]
    return last_seq + 1 if first is None else first


def messages_between(
    conn: sqlite3.Connection, room_id: str, after: int, before: int | None, limit: int
) -> list[Message]:
    """Stored messages with after < seq < before, oldest first (no access check: for live delivery)."""
    rows = conn.execute(
        "SELECT * FROM messages WHERE room_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
        (room_id, after, before if before is not None else 2**62, limit),
    ).fetchall()
    return [message_row(r) for r in rows]


def read_page(
    conn: sqlite3.Connection,
    room_id: str,
    username: str,
    before: int | None,
    after: int | None,
    limit: int,
) -> Page:
    """Up to `limit` messages, oldest first: the first ones after `after`, else the last before `before`."""
    room = require_member(conn, room_id, username)
    if after is not None:
        upper = before if before is not None else room["last_seq"] + 1
        rows = conn.execute(
            "SELECT * FROM messages WHERE room_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
            (room_id, after, upper, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit]
    else:
        upper = before if before is not None else room["last_seq"] + 1
        rows = conn.execute(
            "SELECT * FROM messages WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room_id, upper, limit + 1),
        ).fetchall()
        has_more = len(rows) > limit
        rows = rows[:limit][::-1]
    return Page(
        [message_row(r) for r in rows],
        has_more,
        room["last_seq"],
        _bounds(conn, room_id, room["last_seq"]),
    )
