"""SQL for presence: users' last_seen, and the user list with it. Each function runs in one transaction."""

from __future__ import annotations

import sqlite3

from core.paging import ListPage


def find_user(conn: sqlite3.Connection, username: str) -> sqlite3.Row | None:
    """The user's name as registered and last_seen, matching without regard to case."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT username, last_seen FROM users WHERE username_key = ?", (username.lower(),)
    ).fetchone()
    return row


def list_users(
    conn: sqlite3.Connection, after: tuple[object, ...] | None, limit: int
) -> ListPage[sqlite3.Row]:
    """Users in username_key order (the primary key's), after `after`."""
    rows = conn.execute(
        "SELECT username_key, username, last_seen FROM users WHERE username_key > ?"
        " ORDER BY username_key LIMIT ?",
        (after[0] if after is not None else "", limit + 1),
    ).fetchall()
    last = rows[limit - 1] if len(rows) > limit else None
    return ListPage(rows[:limit], None if last is None else (last["username_key"],))


def set_last_seen(conn: sqlite3.Connection, username: str, now: float) -> None:
    conn.execute("UPDATE users SET last_seen = ? WHERE username = ?", (now, username))
