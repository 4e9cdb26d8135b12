"""Fixtures shared by several end-to-end modules: clusters of server processes (test_cluster*) and
`greenroom` terminals on the shared server (test_cli_*)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    WS,
    Cluster,
    ServerProcess,
    User,
    drop_postgres_schemas,
    postgres_unavailable,
    redis_unavailable,
    require_service,
)
from tests.support.cli import Term

# ---- clusters (test_cluster*.py) ------------------------------------------------------------


@pytest.fixture(scope="session")
def backplane_services() -> Iterator[None]:
    """PostgreSQL and Redis are up (else skip or fail); every schema made meanwhile is dropped at the end."""
    require_service(postgres_unavailable())
    require_service(redis_unavailable())
    yield
    drop_postgres_schemas()


@pytest.fixture
def make_cluster(tmp_path: Path, backplane_services: None) -> Iterator[Callable[..., Cluster]]:
    """Start clusters in tmp_path; each is stopped afterwards (SIGTERM, SIGKILL if that fails)."""
    clusters: list[Cluster] = []

    def factory(size: int, env: dict[str, str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(clusters)}", size, env)
        clusters.append(cluster)
        return cluster.start()

    yield factory
    for cluster in clusters:
        cluster.stop()


@pytest.fixture
def sockets(make_cluster: Callable[..., Cluster]) -> Iterator[list[WS]]:
    """WebSockets a test opened; closed before its clusters stop."""
    opened: list[WS] = []
    yield opened
    for ws in opened:
        ws.close()


# ---- greenroom terminals (test_cli_*.py) ----------------------------------------------------


@pytest.fixture
def terminal(tmp_path: Path, server: ServerProcess) -> Callable[..., Term]:
    """Open a terminal on the shared server, logged in through the CLI when given a user."""

    def open_terminal(user: User | None = None, name: str = "anon") -> Term:
        term = Term(tmp_path / (user.name if user else name), server.url)
        if user is not None:
            term.login_as(user)
        return term

    return open_terminal


@pytest.fixture
def alice_term(terminal: Callable[..., Term], alice: User) -> Term:
    return terminal(alice)


@pytest.fixture
def bob_term(terminal: Callable[..., Term], bob: User) -> Term:
    return terminal(bob)
