"""A database made by an earlier release opens and gains the columns added since (ADDED_COLUMNS)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from chat import store
from core.database import open_database
from tests.support import drop_postgres_schemas, new_postgres_schema, postgres_unavailable
from tests.support.services import POSTGRES_URL, require_service

# The members table before read markers, with one member in it.
OLD_TABLES = [
    "CREATE TABLE users (username_key TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE,"
    " password_hash TEXT NOT NULL, created_at REAL NOT NULL, last_seen REAL)",
    "CREATE TABLE rooms (id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL,"
    " capacity INTEGER NOT NULL, private INTEGER NOT NULL, created_at REAL NOT NULL,"
    " last_seq INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE members (room_id TEXT NOT NULL, username TEXT NOT NULL,"
    " joined_at REAL NOT NULL, PRIMARY KEY (room_id, username))",
    "INSERT INTO users VALUES ('alice', 'alice', 'x', 0, NULL)",
    "INSERT INTO rooms VALUES ('r1', 'lobby', 'alice', 10, 0, 0, 0)",
    "INSERT INTO members VALUES ('r1', 'alice', 0)",
]


def read_and_mark(url: str) -> tuple[Any, Any]:
    db = open_database(url)
    db.open()
    try:
        before = db.run(store.read_marker, "r1", "alice", 100)
        after, _ = db.run(store.mark_read, "r1", "alice", 0, 100)
        return before, after
    finally:
        db.close()


def test_an_old_sqlite_file_gains_read_markers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for sql in OLD_TABLES:
            conn.execute(sql)
    before, after = read_and_mark(f"sqlite:///{path}")
    assert (before.last_read_seq, before.unread) == (0, 0)
    assert after == before
    read_and_mark(f"sqlite:///{path}")  # and opening it again changes nothing


def test_an_old_postgresql_schema_gains_read_markers() -> None:
    require_service(postgres_unavailable())
    url = new_postgres_schema()
    schema = url.rsplit("%3D", 1)[1]
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            for sql in OLD_TABLES:
                conn.execute(sql.replace(" REAL", " DOUBLE PRECISION"))
        before, _ = read_and_mark(url)
        assert (before.last_read_seq, before.unread) == (0, 0)
        read_and_mark(url)
    finally:
        drop_postgres_schemas()
