"""SQL for users and sessions. Each function takes an open connection inside a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection

from auth.sessions import find_sessions_to_end
from core.database import IntegrityError
from core.errors import conflict


def create_user(conn: sqlite3.Connection, username: str, password_hash: str, now: float) -> None:
    try:
        conn.execute(
            "INSERT INTO users (username_key, username, password_hash, created_at) VALUES (?, ?, ?, ?)",
            (username.lower(), username, password_hash, now),
        )
    except IntegrityError:
        raise conflict("username_taken", f"The username {username} is taken.") from None


def find_user(conn: sqlite3.Connection, username: str) -> sqlite3.Row | None:
    """The user row matching username without regard to case."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT username, password_hash, last_seen FROM users WHERE username_key = ?",
        (username.lower(),),
    ).fetchone()
    return row


def create_session(
    conn: sqlite3.Connection,
    token_hash: str,
    username: str,
    now: float,
    max_sessions: int,
    live: Collection[str] = frozenset(),
) -> list[str]:
    """A new login session; logging in also counts as being seen.

    The user keeps at most max_sessions: the least recently active ones end first, in
    this same transaction. Returns the token hashes of the sessions it ended.
    """
    # Lock the user's row (PostgreSQL): two logins at once must not both find room for
    # one more. SQLite's BEGIN IMMEDIATE already runs one writer at a time.
    conn.execute(
        "SELECT username FROM users WHERE username = ?" + getattr(conn, "for_update", ""),
        (username,),
    )
    rows = conn.execute(
        "SELECT token_hash, last_active, created_at FROM sessions WHERE username = ?",
        (username,),
    ).fetchall()
    ended = find_sessions_to_end(
        ((r["token_hash"], r["last_active"], r["created_at"]) for r in rows),
        live,
        max_sessions - 1,
    )
    conn.executemany("DELETE FROM sessions WHERE token_hash = ?", [(h,) for h in ended])
    conn.execute(
        "INSERT INTO sessions (token_hash, username, created_at, last_active) VALUES (?, ?, ?, ?)",
        (token_hash, username, now, now),
    )
    # A login counts as being seen (presence reads last_seen).
    conn.execute("UPDATE users SET last_seen = ? WHERE username = ?", (now, username))
    return ended


def find_session(conn: sqlite3.Connection, token_hash: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT username, last_active FROM sessions WHERE token_hash = ?", (token_hash,)
    ).fetchone()
    return row


def touch_sessions(conn: sqlite3.Connection, token_hashes: Collection[str], now: float) -> None:
    conn.executemany(
        "UPDATE sessions SET last_active = ? WHERE token_hash = ?",
        [(now, h) for h in token_hashes],
    )


def delete_session(conn: sqlite3.Connection, token_hash: str) -> bool:
    return conn.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,)).rowcount > 0


def delete_idle_sessions(
    conn: sqlite3.Connection, cutoff: float, live: Collection[str]
) -> list[str]:
    """Delete sessions inactive since before cutoff, except those with a live connection."""
    rows = conn.execute(
        "SELECT token_hash FROM sessions WHERE last_active < ?", (cutoff,)
    ).fetchall()
    idle = [r["token_hash"] for r in rows if r["token_hash"] not in live]
    conn.executemany("DELETE FROM sessions WHERE token_hash = ?", [(h,) for h in idle])
    return idle
