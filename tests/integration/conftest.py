"""The services built in process (app.build) over a FakeClock, on a temp SQLite file or PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import Greenroom, build
from core.settings import Settings
from tests.support import (
    PASSWORD,
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    require_service,
)
from tests.support.fakes import FakeClock, FakeSocket

# The real defaults for every timeout: the fake clock makes waiting them out free.
# Only hashing is made cheap.
SETTINGS = Settings(ARGON2_TIME_COST=1, ARGON2_MEMORY_KIB=8192, ARGON2_PARALLELISM=1)


@dataclasses.dataclass
class Rig:
    gr: Greenroom
    clock: FakeClock

    @property
    def settings(self) -> Settings:
        return self.gr.settings

    def user(self, name: str) -> tuple[str, str]:
        """Register and log in; return (username, session token hash)."""
        self.gr.auth.register(name, PASSWORD, "127.0.0.1")
        token, username = self.gr.auth.login(name, PASSWORD, "127.0.0.1")
        return username, self.gr.auth.authenticate(token).token_hash

    def token(self, name: str) -> str:
        return self.gr.auth.login(name, PASSWORD, "127.0.0.1")[0]

    def connect(self, name: str, session: str) -> FakeSocket:
        conn = FakeSocket(self.clock)
        self.gr.live.admit(name)
        self.gr.live.connect(conn, name, session)  # type: ignore[arg-type]
        return conn

    def sweep(self) -> tuple[int, int, int]:
        return self.gr.sweeper.sweep_once()


@pytest.fixture(params=["sqlite", "postgresql"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    if request.param == "postgresql":
        require_service(postgres_unavailable())
        url = new_postgres_schema()
    else:
        url = f"sqlite:///{tmp_path / 'greenroom.db'}"
    clock = FakeClock()
    gr = build(dataclasses.replace(SETTINGS, DATABASE_URL=url), clock)
    # The parts of start() these tests need: no claim, no signals, no sweeper greenlet
    # (the tests sweep by hand), no logging set-up.
    gr.db.open()
    gr.writer.start()
    try:
        yield Rig(gr, clock)
    finally:
        gr.writer.stop()
        gr.db.close()
        drop_postgres_schemas()
