"""Building is not starting: app.build_app() has no side effects, and refuses requests until start()."""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path

import gevent
import pytest

from app import build_app
from tests.integration.conftest import SETTINGS


def test_building_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No database file, no greenlet, no signal handler, no log handler: all of that is start()'s."""
    db = tmp_path / "var" / "greenroom.db"
    sigterm = signal.getsignal(signal.SIGTERM)
    handlers = list(logging.getLogger().handlers)
    started: list[object] = []
    # Every greenlet of ours is made by these two (core.clock's timers included).
    monkeypatch.setattr(gevent, "spawn", lambda *a, **k: started.append(a))
    monkeypatch.setattr(gevent, "spawn_later", lambda *a, **k: started.append(a))

    build_app(dataclasses.replace(SETTINGS, DATABASE_URL=f"sqlite:///{db}"))

    assert not db.parent.exists()
    assert signal.getsignal(signal.SIGTERM) is sigterm
    assert logging.getLogger().handlers == handlers
    assert started == []


def test_a_built_app_refuses_requests_until_started(tmp_path: Path) -> None:
    """gunicorn without gunicorn.conf.py would serve a built app nobody started: say so.

    (Every end-to-end test runs a started app: python app.py and the Procfile's gunicorn.)
    """
    app = build_app(dataclasses.replace(SETTINGS, DATABASE_URL=f"sqlite:///{tmp_path / 'g.db'}"))
    client = app.test_client()

    for refused in (client.get("/healthz"), client.post("/api/auth/login", json={})):
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "unavailable"
        assert "gunicorn.conf.py" in refused.get_json()["error"]["message"]
