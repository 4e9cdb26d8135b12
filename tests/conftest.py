"""Fixtures: a shared live server, a factory for servers with their own settings, and HTTP helpers.

The server always runs as its own process (`python app.py`), the way users run it:
it patches gevent itself, so this test process stays unpatched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    Api,
    GunicornProcess,
    ServerProcess,
    User,
    drop_postgres_schemas,
    postgres_unavailable,
    require_service,
    wait_for,
)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test that uses a server runs once per storage backend."""
    if request.param == "postgresql":
        require_service(postgres_unavailable())
    yield request.param
    drop_postgres_schemas()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("server"), database=database).start()
    yield proc
    proc.stop()


@pytest.fixture
def make_server(tmp_path: Path, database: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server with its own database and extra GREENROOM_* settings."""
    started: list[ServerProcess] = []

    def factory(name: str = "srv", kind: str = "app", **env: str) -> ServerProcess:
        """kind="app" runs `python app.py`; kind="gunicorn" runs the Procfile's command."""
        cls = GunicornProcess if kind == "gunicorn" else ServerProcess
        proc = cls(tmp_path / f"{name}{len(started)}", env, database=database).start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        try:
            proc.stop()
        except Exception:
            proc.kill()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server)
    yield client
    # Every connection a test opened must be gone soon after it ends: a handler
    # that never exits would leak greenlets and keep users online.
    wait_for(lambda: client.get("/healthz").json()["connections"] == 0, timeout=10)


@pytest.fixture
def alice(api: Api) -> User:
    return api.new_user("alice")


@pytest.fixture
def bob(api: Api) -> User:
    return api.new_user("bob")
