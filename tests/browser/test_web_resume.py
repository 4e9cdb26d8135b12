"""The web client survives its server dying mid-chat: it reconnects, resumes every room, and loses nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import requests
from playwright.sync_api import expect

from tests.support import ServerProcess, unique_name
from tests.support.browser import OUTAGE_NOISE, Console, seqs, sign_up, token_of

expect.set_options(timeout=8000)


def say(page: Any, body: str) -> None:
    page.fill("#compose", body)
    page.press("#compose", "Enter")


def test_killed_server_the_page_reconnects_and_shows_every_message_once(
    web_server: ServerProcess, new_page: Any, console: Console
) -> None:
    """SIGKILL the server mid-chat: both pages show the banner, a line typed meanwhile waits as
    queued, and after the restart (same database, same port) every message, including those
    posted while the pages were away, is shown exactly once, in order."""
    url = web_server.url
    ann = sign_up(new_page("ann"), url, unique_name("ann"))
    ben = sign_up(new_page("ben"), url, unique_name("ben"))
    ann.click("#create-panel summary")
    ann.fill("#create-name", "resilient")
    ann.click("#create-form button[type=submit]")
    expect(ann.locator("#room-title")).to_have_text("resilient")
    room = str(ann.text_content("#room-id"))
    ben.click("#join-panel summary")
    ben.fill("#join-id", room)
    ben.click("#join-form button[type=submit]")
    expect(ben.locator("#room-title")).to_have_text("resilient")
    for i, page in enumerate([ann, ben, ann]):
        say(page, f"before {i}")
        expect(
            page.locator("#messages li[data-state=sent]").filter(has_text=f"before {i}")
        ).to_be_visible()
    expect(ben.locator("#messages li.msg")).to_have_count(3)
    token = token_of(ann)

    # The browser itself logs the refused reconnections: the only console errors allowed here.
    console.allowed = OUTAGE_NOISE
    web_server.kill()
    for page in (ann, ben):
        expect(page.locator("#banner")).to_be_visible()
        expect(page.locator("#banner-text")).to_contain_text("Reconnecting")
    say(ann, "typed while down")
    expect(ann.locator("#pending li[data-state=queued]")).to_contain_text("typed while down")

    web_server.restart()
    # Posted before the pages are back: they must arrive through `since`, not live.
    with requests.Session() as http:
        for i in range(2):
            r = http.post(
                f"{url}/api/rooms/{room}/messages",
                json={"body": f"while away {i}", "client_msg_id": f"away-{room}-{i}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert r.status_code == 201, r.text

    for page in (ann, ben):
        expect(page.locator("#banner")).to_be_hidden(timeout=15000)
        expect(page.locator("#messages li.msg")).to_have_count(6)
    expect(ann.locator("#pending li")).to_have_count(0)
    expect(ann.locator("#messages li.msg").filter(has_text="typed while down")).to_have_attribute(
        "data-state", "sent"
    )
    # One more exchange on the new connections, then count every seq on both pages.
    say(ben, "after")
    for page in (ann, ben):
        expect(page.locator("#messages li.msg")).to_have_count(7)
        shown = seqs(page)
        assert shown == list(range(1, 8)), shown
        assert max(Counter(shown).values()) == 1
    bodies = ben.locator("#messages li.msg .body").all_text_contents()
    assert sorted(bodies) == sorted(
        [
            "before 0",
            "before 1",
            "before 2",
            "typed while down",
            "while away 0",
            "while away 1",
            "after",
        ]
    )
