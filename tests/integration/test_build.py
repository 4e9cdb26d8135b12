"""Building is not starting: app.build_app() has no side effects, and refuses requests until start()."""

from __future__ import annotations

import dataclasses
import gc
import logging
import signal
from pathlib import Path

import gevent

from app import build_app
from tests.integration.conftest import SETTINGS


def live_greenlets() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, gevent.Greenlet) and not o.dead)


def test_building_touches_nothing(tmp_path: Path) -> None:
    """No database file, no greenlet, no signal handler, no log handler: all of that is start()'s."""
    db = tmp_path / "var" / "greenroom.db"
    sigterm = signal.getsignal(signal.SIGTERM)
    handlers = list(logging.getLogger().handlers)
    greenlets = live_greenlets()

    build_app(dataclasses.replace(SETTINGS, DATABASE_URL=f"sqlite:///{db}"))

    assert not db.parent.exists()
    assert signal.getsignal(signal.SIGTERM) is sigterm
    assert logging.getLogger().handlers == handlers
    assert live_greenlets() == greenlets


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
