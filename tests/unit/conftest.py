"""Fixtures for chat.fanout's unit tests (test_fanout*.py): a fresh rig, and one connection in room r."""

from __future__ import annotations

import pytest

from tests.support.fanout import FakeConn, Rig


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def conn(rig: Rig) -> FakeConn:
    c = FakeConn("c")
    rig.join("r", 0, c)
    return c
