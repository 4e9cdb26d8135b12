"""Fixtures shared by several end-to-end modules: clusters of server processes (test_cluster*)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    WS,
    Cluster,
    drop_postgres_schemas,
    postgres_unavailable,
    redis_unavailable,
    require_service,
)

# ---- clusters (test_cluster*.py) --------------------------------------------------------------


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
