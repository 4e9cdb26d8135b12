"""The web client in a real browser: Debian's chromium under Playwright, pages that log in, and screenshots.

Never a downloaded browser: without /usr/bin/chromium the browser tests skip with one
line, or fail when GREENROOM_REQUIRE_BROWSER=1 (as .ci/run sets).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import PASSWORD, ROOT

CHROMIUM = Path(os.environ.get("GREENROOM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "var" / "screenshots"
# What the browser says on its own when the server is down: the page cannot silence it.
OUTAGE_NOISE = re.compile(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED")
WAIT_MS = 8000


def require_browser() -> None:
    """Skip (or fail under CI) when Debian's chromium is not installed."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: apt-get install chromium to run the browser tests"
    if os.environ.get("GREENROOM_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class Console:
    """Every console error and uncaught exception of the pages it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: re.Pattern[str] | None = None

    def watch(self, page: Any, who: str) -> Any:
        page.on("console", lambda msg: self._console(who, msg))
        page.on("pageerror", lambda exc: self.errors.append(f"{who}: uncaught {exc}"))
        return page

    def _console(self, who: str, msg: Any) -> None:
        if msg.type != "error":
            return
        if self.allowed is not None and self.allowed.search(msg.text):
            return
        self.errors.append(f"{who}: {msg.text}")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sign_up(page: Any, url: str, username: str, keep: bool = False) -> Any:
    """Open the page, create the account with the form and land in the app."""
    page.goto(url + "/")
    page.wait_for_selector("#login-screen:not([hidden])", timeout=WAIT_MS)
    page.fill("#login-username", username)
    page.fill("#login-password", PASSWORD)
    if keep:
        page.check("#login-keep")
    page.click("#register-submit")
    page.wait_for_selector("#app-screen:not([hidden])", timeout=WAIT_MS)
    return page


def token_of(page: Any) -> str:
    token = page.evaluate(
        "sessionStorage.getItem('greenroom.token') || localStorage.getItem('greenroom.token')"
    )
    assert token, "no token stored in the page"
    return str(token)


def seqs(page: Any) -> list[int]:
    """The seq of every message node in the page, in page order."""
    return [
        int(s)
        for s in page.eval_on_selector_all(
            "#messages li[data-seq]", "ns => ns.map(n => n.dataset.seq)"
        )
    ]
