"""The start-up claim on a database (core.claim): SQLite lock files and PostgreSQL advisory locks.

Two claims in this one process stand for two processes: a flock belongs to an open
file description (each open() makes a new one) and an advisory lock to a PostgreSQL
session (each claim opens its own connection), so they conflict just as two
processes' would. PostgreSQL tests run in fresh schemas; without PostgreSQL they
are skipped, unless GREENROOM_REQUIRE_SERVICES is set (as in CI), when they fail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from core.claim import ClaimError, claim_database
from tests.support import (
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    require_service,
    services,
)


@pytest.fixture
def claims() -> Iterator[Callable[[str, bool, float], Any]]:
    """claim_database, with every claim taken closed at the end (as a process exit would)."""
    held: list[Any] = []

    def claim(url: str, shared: bool, wait_s: float) -> Any:
        holder = claim_database(url, shared, wait_s)
        held.append(holder)
        return holder

    yield claim
    for holder in held:
        holder.close()


# ---- SQLite -------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'greenroom.db'}"


def test_sqlite_first_claim_takes_a_lock_file(
    claims: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    """The claim is a lock on <db>.lock; its directory is made if missing."""
    holder = claims(sqlite_url, False, 0.3)
    assert (tmp_path / "data" / "greenroom.db.lock").exists()
    assert not holder.closed


def test_sqlite_second_claim_is_refused_after_the_wait(
    claims: Callable[..., Any], sqlite_url: str
) -> None:
    """A second claim, even a shared one, waits wait_s and then refuses, saying why."""
    claims(sqlite_url, False, 0.3)
    started = time.monotonic()
    with pytest.raises(ClaimError, match="SQLite serves one process"):
        claims(sqlite_url, True, 0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    with pytest.raises(ClaimError):
        claims(sqlite_url, False, 0)


def test_sqlite_claim_succeeds_once_the_first_is_closed(
    claims: Callable[..., Any], sqlite_url: str
) -> None:
    first = claims(sqlite_url, False, 0)
    first.close()
    assert not claims(sqlite_url, False, 0).closed


def test_sqlite_claim_waits_for_a_holder_that_is_shutting_down(
    claims: Callable[..., Any], sqlite_url: str
) -> None:
    """A replacement process gets the claim when the old one lets go within wait_s."""
    first = claims(sqlite_url, False, 0)
    closer = threading.Timer(0.1, first.close)
    closer.start()
    try:
        started = time.monotonic()
        second = claims(sqlite_url, False, 5.0)
        assert not second.closed
        assert time.monotonic() - started < 2.0
    finally:
        closer.join()


def test_sqlite_databases_are_claimed_separately(
    claims: Callable[..., Any], tmp_path: Path
) -> None:
    claims(f"sqlite:///{tmp_path / 'one.db'}", False, 0)
    claims(f"sqlite:///{tmp_path / 'two.db'}", False, 0)


# ---- PostgreSQL -----------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_schemas() -> Iterator[Callable[[], str]]:
    """new_postgres_schema, with this module's schemas dropped at its end.

    drop_postgres_schemas() drops every schema the process made; a session's server
    may still be using one, so this module keeps its own list while it runs.
    """
    require_service(postgres_unavailable())
    with mock.patch.object(services, "_schemas", []):
        yield new_postgres_schema
        drop_postgres_schemas()


@pytest.fixture
def pg_url(postgres_schemas: Callable[[], str]) -> str:
    return postgres_schemas()


def test_postgres_exclusive_claims_conflict(claims: Callable[..., Any], pg_url: str) -> None:
    """A process without REDIS_URL has the database to itself."""
    claims(pg_url, False, 0)
    with pytest.raises(ClaimError, match="already"):
        claims(pg_url, False, 0)


def test_postgres_shared_claims_coexist_and_keep_exclusive_out(
    claims: Callable[..., Any], pg_url: str
) -> None:
    """Workers with REDIS_URL share the database; a process without it is refused."""
    claims(pg_url, True, 0)
    claims(pg_url, True, 0)
    with pytest.raises(ClaimError, match="already"):
        claims(pg_url, False, 0)


def test_postgres_shared_claim_is_refused_while_exclusive_is_held(
    claims: Callable[..., Any], pg_url: str
) -> None:
    claims(pg_url, False, 0)
    with pytest.raises(ClaimError, match="without REDIS_URL"):
        claims(pg_url, True, 0)


def test_postgres_claim_is_released_when_its_connection_closes(
    claims: Callable[..., Any], pg_url: str
) -> None:
    """The lock dies with the session (a crashed process leaves nothing behind)."""
    exclusive = claims(pg_url, False, 0)
    exclusive.close()
    s1 = claims(pg_url, True, 0)
    s2 = claims(pg_url, True, 0)
    s1.close()
    with pytest.raises(ClaimError):
        claims(pg_url, False, 0)  # s2 still holds its share
    s2.close()
    claims(pg_url, False, 0)


def test_postgres_schemas_are_claimed_separately(
    claims: Callable[..., Any], postgres_schemas: Callable[[], str]
) -> None:
    """The lock key includes the schema: separate schemas (test runs) never collide."""
    claims(postgres_schemas(), False, 0)
    claims(postgres_schemas(), False, 0)
