"""Two people chat in the web client, each in their own browser context, against the real server."""

from __future__ import annotations

from typing import Any

import requests
from playwright.sync_api import expect

from tests.support import PASSWORD, ServerProcess, unique_name
from tests.support.browser import screenshot, seqs, sign_up, token_of

expect.set_options(timeout=8000)

XSS_BODIES = [
    "<img src=x onerror=window.__pwned=1>",
    "[x](javascript:window.__pwned=1)",
    "javascript:alert(1)",
    "<script>window.__pwned=1</script> & <b>bold</b>",
]


def room_link(page: Any, room_id: str) -> Any:
    return page.locator(f'#room-list button[data-room="{room_id}"]')


def badge(page: Any, room_id: str) -> Any:
    return room_link(page, room_id).locator(".badge")


def message(page: Any, body: str) -> Any:
    return page.locator("#messages li.msg").filter(has_text=body)


def create_room(page: Any, name: str, private: bool = False) -> str:
    page.click("#create-panel summary")
    page.fill("#create-name", name)
    if private:
        page.check("#create-private")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#room-title")).to_have_text(name)
    return str(page.text_content("#room-id"))


def post_many(server: ServerProcess, token: str, room_id: str, bodies: list[str]) -> None:
    with requests.Session() as http:
        for i, body in enumerate(bodies):
            r = http.post(
                f"{server.url}/api/rooms/{room_id}/messages",
                json={"body": body, "client_msg_id": f"seed-{room_id}-{i}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert r.status_code == 201, r.text


def test_two_people_chat_page_back_see_unread_and_log_out(
    web_server: ServerProcess, new_page: Any
) -> None:
    """Register, create a private room, invite, chat both ways with typing and presence, page
    back through history in a bounded window, follow unread counts across rooms and tabs, leave,
    delete and log out; other people's markup is shown as text and never runs."""
    url = web_server.url
    ann_name, ben_name = unique_name("ann"), unique_name("ben")
    ann = new_page("ann")
    ann.goto(url + "/")
    expect(ann.locator("#login-form")).to_be_visible()
    screenshot(ann, "login")
    sign_up(ann, url, ann_name)
    ben = sign_up(new_page("ben"), url, ben_name, keep=True)

    # The token stays out of URLs and cookies: sessionStorage, or localStorage when kept.
    assert ann.evaluate("localStorage.getItem('greenroom.token')") is None
    assert ann.evaluate("sessionStorage.getItem('greenroom.token')")
    assert ben.evaluate("sessionStorage.getItem('greenroom.token')") is None
    token = token_of(ben)
    assert token not in ben.url and ben.context.cookies() == []

    # A private room: ann owns it and invites ben, who joins it by its ID.
    team = create_room(ann, "team", private=True)
    expect(ann.locator("#delete-room")).to_be_visible()
    ann.click("#invite-panel summary")
    ann.fill("#invite-name", ben_name)
    ann.click("#invite-form button[type=submit]")
    expect(ann.locator("#toast")).to_contain_text(f"Invited {ben_name}")
    expect(ann.locator("#invite-form")).to_be_hidden()
    ben.click("#join-panel summary")
    ben.fill("#join-id", team)
    ben.click("#join-form button[type=submit]")
    expect(ben.locator("#room-title")).to_have_text("team")
    expect(ben.locator("#delete-room")).to_be_hidden()

    # Presence: each sees the other online in the member list.
    expect(ann.locator(f'#member-list li[data-user="{ben_name}"]')).to_have_attribute(
        "data-status", "online"
    )
    expect(ben.locator(f'#member-list li[data-user="{ann_name}"]')).to_have_attribute(
        "data-status", "online"
    )

    # Chat both ways: Enter sends, Shift+Enter is a new line, a mention of ben is marked for ben.
    ann.fill("#compose", f"hello @{ben_name}, welcome")
    ann.press("#compose", "Enter")
    expect(message(ann, "welcome")).to_have_attribute("data-state", "sent")
    expect(message(ben, "welcome").locator("mark.mention")).to_have_text(f"@{ben_name}")
    ben.locator("#compose").press_sequentially("hi ann")
    expect(ann.locator("#typing")).to_have_text(f"{ben_name} is typing…")
    ben.keyboard.press("Shift+Enter")
    ben.keyboard.type("second line")
    ben.keyboard.press("Enter")
    expect(message(ann, "second line").locator(".body")).to_have_text("hi ann\nsecond line")
    expect(message(ben, "second line")).to_have_attribute("data-state", "sent")
    expect(ann.locator("#typing")).to_have_text("")
    screenshot(ben, "chat")

    # Other people's markup and links stay text: no element is made of them and nothing runs.
    for body in XSS_BODIES:
        ann.fill("#compose", body)
        ann.press("#compose", "Enter")
    for body in XSS_BODIES:
        expect(message(ben, body).locator(".body")).to_have_text(body)
    assert ben.locator("#messages img, #messages a, #messages script, #messages b").count() == 0
    screenshot(ben, "room")

    # A send the server refuses is marked not sent, with its reason; Retry sends the same
    # client_msg_id again (refused again here), Discard drops it.
    ann.eval_on_selector("#compose", "c => { c.value = 'x'.repeat(4001); }")
    ann.press("#compose", "Enter")
    failed = ann.locator("#pending li[data-state=failed]")
    expect(failed).to_contain_text("4000 characters")
    cmid = failed.get_attribute("data-cmid")
    failed.locator("button.retry").click()
    expect(ann.locator(f'#pending li[data-cmid="{cmid}"][data-state=failed]')).to_be_visible()
    screenshot(ann, "failed-send")
    failed.locator("button.discard").click()
    expect(ann.locator("#pending li")).to_have_count(0)

    # History: 250 more messages arrive live; ben pages back to the first over REST, and
    # the page never holds more than the window of 200 message nodes.
    post_many(web_server, token_of(ann), team, [f"old message {i}" for i in range(250)])
    expect(message(ben, "old message 249")).to_be_visible()
    total = 2 + len(XSS_BODIES) + 250
    assert len(seqs(ben)) <= 200
    for _ in range(20):
        first = seqs(ben)[0]
        if first == 1:
            break
        ben.eval_on_selector("#scroller", "s => { s.scrollTop = 0; }")
        # Scrolling to the top moves the window back, loading an older page when needed.
        ben.wait_for_function(
            "prev => +document.querySelector('#messages li[data-seq]').dataset.seq < prev",
            arg=first,
        )
        assert len(seqs(ben)) <= 200
    shown = seqs(ben)
    assert shown[0] == 1 and shown == sorted(set(shown)), shown[:5]
    expect(ben.locator("#history-start")).to_be_visible()
    ben.click("#jump")
    expect(message(ben, "old message 249")).to_be_visible()
    assert seqs(ben)[-1] == total and len(seqs(ben)) <= 200

    # Unread: ben joins a public room from the list, then looks at team while ann writes there.
    lounge = create_room(ann, "lounge")
    ben.click("#join-panel summary")  # opening it refreshes the list
    ben.click(f'#public-list li[data-room="{lounge}"] button')
    expect(ben.locator("#room-title")).to_have_text("lounge")
    room_link(ben, team).click()
    expect(ben.locator("#room-title")).to_have_text("team")
    ann.fill("#compose", "anyone in the lounge?")
    ann.press("#compose", "Enter")
    expect(badge(ben, lounge)).to_have_text("1")
    expect(badge(ben, team)).to_be_hidden()
    screenshot(ben, "room-list")
    # A second tab of ben (kept signed in) agrees; reading there clears the count in both.
    ben2 = new_page("ben-tab2", context=ben.context)
    ben2.goto(url + "/")
    expect(badge(ben2, lounge)).to_have_text("1")
    expect(badge(ben2, team)).to_be_hidden()
    room_link(ben2, lounge).click()
    expect(message(ben2, "anyone in the lounge?")).to_be_visible()
    expect(ben2.locator(".divider")).to_be_visible()
    expect(badge(ben2, lounge)).to_be_hidden()
    expect(badge(ben, lounge)).to_be_hidden()

    # Leaving in one tab takes the room away in the other too.
    ben2.click("#leave-room")
    expect(room_link(ben2, lounge)).to_have_count(0)
    expect(room_link(ben, lounge)).to_have_count(0)

    # Logging out ends the session everywhere it was used: the other tab is sent to the login
    # screen with the reason, and ann sees ben go offline.
    ann_view_of_ben = ann.locator(f'#member-list li[data-user="{ben_name}"]')
    room_link(ann, team).click()
    ben.click("#logout")
    expect(ben.locator("#login-screen")).to_be_visible()
    expect(ben2.locator("#login-reason")).to_have_text("Logged out.")
    assert ben.evaluate("localStorage.getItem('greenroom.token')") is None
    expect(ann_view_of_ben).to_have_attribute("data-status", "offline")

    # The owner deletes a room after confirming.
    ann.once("dialog", lambda dialog: dialog.accept())
    room_link(ann, lounge).click()
    ann.click("#delete-room")
    expect(room_link(ann, lounge)).to_have_count(0)
    expect(ann.locator("#no-room")).to_contain_text("was deleted")
    room_link(ann, team).click()
    ann.set_viewport_size({"width": 390, "height": 780})
    screenshot(ann, "phone")
    ann.click("#back")
    expect(room_link(ann, team)).to_be_visible()
    screenshot(ann, "phone-rooms")
    room_link(ann, team).click()
    ann.emulate_media(color_scheme="dark")
    ann.set_viewport_size({"width": 1200, "height": 800})
    screenshot(ann, "dark")
    ann.click("#logout")
    expect(ann.locator("#login-screen")).to_be_visible()
    assert ann.evaluate("sessionStorage.getItem('greenroom.token')") is None

    # Logging in again, with the keyboard alone, brings the rooms and their history back.
    expect(ann.locator("#login-username")).to_be_focused()
    ann.keyboard.type(ann_name)
    ann.keyboard.press("Tab")
    ann.keyboard.type(PASSWORD)
    ann.keyboard.press("Enter")
    expect(room_link(ann, team)).to_be_visible()
    room_link(ann, team).focus()
    ann.keyboard.press("Enter")
    expect(message(ann, "old message 249")).to_be_visible()
    expect(ann.locator("#compose")).to_be_focused()
    assert ann.evaluate("window.__pwned") is None and ben.evaluate("window.__pwned") is None
