"""Fixtures for the browser tests: one chromium for the session, one server on a fixed port per module.

The server listens on a port chosen up front, so a test can kill it and start it
again where the open pages expect it. The web client does not depend on the storage
backend, so these tests run on SQLite only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ServerProcess, free_port
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, Console, require_browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("web"),
        {"PORT": str(free_port()), "GREENROOM_TYPING_INTERVAL_S": "0.2"},
    ).start()
    yield proc
    try:
        proc.stop()
    except Exception:
        proc.kill()


@pytest.fixture
def console() -> Iterator[Console]:
    """Console errors of every page the test watches: there must be none."""
    seen = Console()
    yield seen
    assert seen.errors == []


@pytest.fixture
def new_page(browser: Any, console: Console) -> Iterator[Any]:
    """new_page(who, **context options): a page in a fresh browser context (its own storage)."""
    contexts: list[Any] = []

    def factory(who: str, context: Any = None, **options: Any) -> Any:
        if context is None:
            options.setdefault("viewport", {"width": 1200, "height": 800})
            context = browser.new_context(**options)
            context.set_default_timeout(8000)
            contexts.append(context)
        return console.watch(context.new_page(), who)

    yield factory
    for context in contexts:
        context.close()
