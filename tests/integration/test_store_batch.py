"""store_alone decides every draft of a mixed batch as if they were stored one by one, on every path.

The paths: SQLite's fast path (chat/store_sqlite.py), PostgreSQL's (chat/store_pg.py:
one statement for a lone draft, one pipelined transaction for several), and draft by
draft, the portable fallback, on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat import store, store_pg, store_sqlite
from chat.models import Draft, Stored
from core.database import Database, open_database
from tests.support import (
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    require_service,
)

KEEP = 3  # the room history limit for these tests
SEED = [
    "INSERT INTO users VALUES ('alice', 'alice', 'x', 0, NULL)",
    "INSERT INTO users VALUES ('bob', 'bob', 'x', 0, NULL)",
    # ra: alice alone; rb and rc: alice and bob.
    "INSERT INTO rooms (id, name, owner, capacity, private, created_at) VALUES"
    " ('ra', 'a', 'alice', 10, 0, 0), ('rb', 'b', 'alice', 10, 0, 1),"
    " ('rc', 'c', 'alice', 10, 0, 2)",
    "INSERT INTO members (room_id, username, joined_at) VALUES ('ra', 'alice', 0),"
    " ('rb', 'alice', 0), ('rb', 'bob', 0), ('rc', 'alice', 0), ('rc', 'bob', 0)",
]


@pytest.fixture(
    params=["sqlite", "sqlite-draft-by-draft", "postgresql", "postgresql-draft-by-draft"]
)
def db(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    if request.param.startswith("postgresql"):
        require_service(postgres_unavailable())
        url = new_postgres_schema()
    else:
        url = f"sqlite:///{tmp_path / 'greenroom.db'}"
    module = store_pg if request.param.startswith("postgresql") else store_sqlite
    name = "store_alone" if module is store_pg else "store_messages"
    fast = getattr(module, name)
    if request.param.endswith("draft-by-draft"):
        monkeypatch.setattr(module, name, lambda conn, drafts, keep: None)
    else:  # the fast path must not fall back here: that would test the other path

        def must_not_fall_back(conn: Any, drafts: list[Draft], keep: int) -> list[Stored]:
            stored = fast(conn, drafts, keep)
            assert stored is not None, "the fast path fell back"
            return stored

        monkeypatch.setattr(module, name, must_not_fall_back)
    database = open_database(url)
    database.open()
    try:
        database.run(lambda conn: [conn.execute(sql) for sql in SEED])
        yield database
    finally:
        database.close()
        drop_postgres_schemas()


def store_batch(db: Database, drafts: list[tuple[str, str, str, str | None]]) -> list[Any]:
    """Store (room, user, body, client_msg_id) drafts as one batch; each outcome as
    (seq, body, duplicate) or the error code."""
    stored: list[Stored] = db.run_alone(
        store.store_alone, [Draft(r, u, b, c, 0.0) for r, u, b, c in drafts], KEEP
    )
    return [
        s.error.code if s.error else (s.message.seq, s.message.body, s.duplicate)  # type: ignore[union-attr]
        for s in stored
    ]


def rooms_now(db: Database) -> dict[str, tuple[int, list[tuple[int, str, str]]]]:
    """room id -> (last_seq, its stored (seq, user, body) in seq order)."""

    def read(conn: Any) -> dict[str, tuple[int, list[tuple[int, str, str]]]]:
        return {
            room["id"]: (
                room["last_seq"],
                [
                    (m["seq"], m["username"], m["body"])
                    for m in conn.execute(
                        "SELECT * FROM messages WHERE room_id = ? ORDER BY seq", (room["id"],)
                    )
                ],
            )
            for room in conn.execute("SELECT * FROM rooms ORDER BY id").fetchall()
        }

    return db.run(read)


def test_a_mixed_batch_is_decided_draft_by_draft(db: Database) -> None:
    """Seqs are gap-free in send order per room; retries, reuses, refusals and trimming as documented."""
    assert store_batch(db, [("rb", "alice", "first", "k-old")]) == [(1, "first", False)]
    outcomes = store_batch(
        db,
        [
            ("rc", "bob", "b1", "b-1"),
            ("rb", "alice", "retry of first", "k-old"),  # stored before: the same message
            ("rc", "alice", "k-old elsewhere", "k-old"),  # stored before in rb
            ("rb", "alice", "n1", "k-new"),
            ("ra", "bob", "not a member", "b-2"),
            ("rb", "alice", "n1 again", "k-new"),  # repeats a draft of this batch
            ("zz", "alice", "nowhere", None),
            ("rc", "bob", "b2", "b-2"),  # b-2's refused draft did not take it
            ("rb", "alice", "n2", None),
            ("rc", "alice", "k-new elsewhere", "k-new"),  # rb's draft of this batch has it
            ("rb", "bob", "b3", None),
        ],
    )
    assert outcomes == [
        (1, "b1", False),
        (1, "first", True),
        "client_msg_id_reused",
        (2, "n1", False),
        "not_a_member",
        (2, "n1", True),
        "room_not_found",
        (2, "b2", False),
        (3, "n2", False),
        "client_msg_id_reused",
        (4, "b3", False),
    ]
    assert rooms_now(db) == {
        "ra": (0, []),  # a refused draft takes no seq
        "rb": (4, [(2, "alice", "n1"), (3, "alice", "n2"), (4, "bob", "b3")]),  # seq 1 trimmed
        "rc": (2, [(1, "bob", "b1"), (2, "bob", "b2")]),
    }
    # A retry after leaving the room still finds its message; a new draft is refused.
    db.run(store.leave_room, "rc", "bob")
    assert store_batch(db, [("rc", "bob", "b1 again", "b-1"), ("rc", "bob", "late", "b-9")]) == [
        (1, "b1", True),
        "not_a_member",
    ]
    assert rooms_now(db)["rc"][0] == 2


def test_lone_drafts_are_decided_as_in_a_batch(db: Database) -> None:
    """A batch of one (PostgreSQL: one statement, no transaction) gives every outcome a batch gives."""
    drafts = [
        ("rb", "alice", "first", "k-old"),
        ("rc", "bob", "b1", "b-1"),
        ("rb", "alice", "retry of first", "k-old"),
        ("rc", "alice", "k-old elsewhere", "k-old"),
        ("rb", "alice", "n1", "k-new"),
        ("ra", "bob", "not a member", "b-2"),
        ("zz", "alice", "nowhere", None),
        ("rb", "alice", "n2", None),
        ("rb", "bob", "b3", None),
    ]
    assert [store_batch(db, [d])[0] for d in drafts] == [
        (1, "first", False),
        (1, "b1", False),
        (1, "first", True),
        "client_msg_id_reused",
        (2, "n1", False),
        "not_a_member",
        "room_not_found",
        (3, "n2", False),
        (4, "b3", False),
    ]
    assert rooms_now(db) == {
        "ra": (0, []),
        "rb": (4, [(2, "alice", "n1"), (3, "alice", "n2"), (4, "bob", "b3")]),
        "rc": (1, [(1, "bob", "b1")]),
    }


@pytest.mark.parametrize("size", [1, 3])
def test_a_failed_postgresql_batch_rolls_back_and_is_stored_draft_by_draft(
    size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path's error leaves no transaction open, and every draft is still stored once."""
    require_service(postgres_unavailable())
    database = open_database(new_postgres_schema())
    database.open()
    try:
        database.run(lambda conn: [conn.execute(sql) for sql in SEED])
        broken = "SELECT no_such_column FROM rooms"
        monkeypatch.setattr(store_pg, "STORE_ONE", broken)
        monkeypatch.setattr(store_pg, "STORE_ONE_TRIMMED", broken)
        drafts = [("rb", "alice", f"m{n}", f"k{n}") for n in range(size)]
        assert store_batch(database, drafts) == [(n + 1, f"m{n}", False) for n in range(size)]
        assert rooms_now(database)["rb"][0] == size
    finally:
        database.close()
        drop_postgres_schemas()
