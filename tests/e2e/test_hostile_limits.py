"""Hostile clients: creation limits, list paging, login budgets, log safety, owners of private rooms.

Every test starts its own server with low limits (make_server), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.support import Api, ServerProcess, unique_name


def assert_error(r: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["code"] == code, error
    return error


def assert_retry_after(r: requests.Response) -> None:
    assert_error(r, 429, "rate_limited")
    retry_after = r.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after


# ---- 5. creation limits ---------------------------------------------------------------------


def test_registration_burst_from_one_address_is_limited(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Past GREENROOM_REGISTER_MAX_PER_ADDRESS, registrations from one address get 429 and create nothing."""
    api = Api(make_server("reg", GREENROOM_REGISTER_MAX_PER_ADDRESS="3"))
    for _ in range(3):
        assert api.register(unique_name("burst")).status_code == 201
    late = unique_name("late")
    assert_retry_after(api.register(late))
    assert_error(api.login(late), 401, "invalid_credentials")


def test_room_creation_is_rate_limited_per_user(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Past GREENROOM_ROOM_CREATE_MAX rooms in the window, that user gets 429; others still create."""
    api = Api(make_server("rate", GREENROOM_ROOM_CREATE_MAX="3"))
    alice, bob = api.new_user("alice"), api.new_user("bob")
    for i in range(3):
        api.create_room(alice, f"r{i}")
    assert_retry_after(api.post("/api/rooms", alice.token, json={"name": "one more"}))
    api.create_room(bob, "bobs")
    assert len(api.list_all("/api/rooms", alice.token, "rooms")) == 4


def test_rooms_one_user_owns_are_capped(make_server: Callable[..., ServerProcess]) -> None:
    """At GREENROOM_MAX_ROOMS_OWNED rooms, creating another is refused with 409 too_many_rooms until one is deleted."""
    api = Api(make_server("cap", GREENROOM_MAX_ROOMS_OWNED="3"))
    alice = api.new_user("alice")
    rooms = [api.create_room(alice, f"r{i}", private=i == 0)["id"] for i in range(3)]
    assert_error(api.post("/api/rooms", alice.token, json={"name": "r3"}), 409, "too_many_rooms")
    assert api.delete(f"/api/rooms/{rooms[0]}", alice.token).status_code == 204
    api.create_room(alice, "r3")


# ---- 5. paging ------------------------------------------------------------------------------


def walk(api: Api, path: str, token: str, key: str, limit: int) -> list[dict[str, Any]]:
    """All pages of a list at `limit` per page; every page but the last is full."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(100):
        r = api.get(path, token, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body[key]) <= limit
        items += body[key]
        if body["next_cursor"] is None:
            return items
        assert len(body[key]) == limit
        assert isinstance(body["next_cursor"], str)
        params = {"limit": limit, "cursor": body["next_cursor"]}
    raise AssertionError("next_cursor never became null")


def assert_bad_page_args(api: Api, path: str, token: str) -> None:
    """A limit out of 1..GREENROOM_LIST_MAX_PAGE_SIZE or not whole, or a forged cursor: 400 bad_request."""
    for limit in ("0", "-1", "7", "2.5", "abc", "", "1e1", "٣"):
        assert_error(api.get(path, token, params={"limit": limit}), 400, "bad_request")
    forged = base64.urlsafe_b64encode(b'["\\u0000", 1]').decode()
    for cursor in ("not a cursor!", "%%%", "e30", forged, "W10", "x" * 300):
        assert_error(api.get(path, token, params={"cursor": cursor}), 400, "bad_request")


PAGING = {"GREENROOM_LIST_PAGE_SIZE": "4", "GREENROOM_LIST_MAX_PAGE_SIZE": "6"}


def test_room_list_pages(make_server: Callable[..., ServerProcess]) -> None:
    """GET /api/rooms pages in creation order: each visible room exactly once, next_cursor null at the end."""
    api = Api(make_server("rooms", **PAGING))
    alice, bob = api.new_user("alice"), api.new_user("bob")
    made = [api.create_room(alice, f"a{i}", private=i % 3 == 0)["id"] for i in range(7)]
    made += [api.create_room(bob, f"b{i}")["id"] for i in range(4)]
    visible = [r for i, r in enumerate(made) if i >= 7 or i % 3 != 0]  # bob's view
    first = api.get("/api/rooms", bob.token).json()
    assert [r["id"] for r in first["rooms"]] == visible[:4]  # GREENROOM_LIST_PAGE_SIZE
    for limit in (1, 3, 6):
        assert [r["id"] for r in walk(api, "/api/rooms", bob.token, "rooms", limit)] == visible
    assert [r["id"] for r in walk(api, "/api/rooms", alice.token, "rooms", 5)] == made

    # Rooms created or deleted between pages never make another appear twice or go missing.
    page = api.get("/api/rooms", bob.token, params={"limit": 3}).json()
    seen = [room["id"] for room in page["rooms"]]
    assert api.delete(f"/api/rooms/{visible[1]}", alice.token).status_code == 204  # seen
    assert api.delete(f"/api/rooms/{visible[4]}", bob.token).status_code == 204  # not yet
    newer = api.create_room(bob, "newer")["id"]
    while page["next_cursor"] is not None:
        params = {"limit": 3, "cursor": page["next_cursor"]}
        page = api.get("/api/rooms", bob.token, params=params).json()
        seen += [room["id"] for room in page["rooms"]]
    assert seen == [r for r in visible if r != visible[4]] + [newer]
    assert_bad_page_args(api, "/api/rooms", bob.token)


def test_user_list_pages(make_server: Callable[..., ServerProcess]) -> None:
    """GET /api/users pages in username order (case-insensitive): each user exactly once."""
    api = Api(make_server("users", **PAGING))
    users = [api.new_user(prefix) for prefix in ("b", "A", "c", "D", "e", "F", "g")]
    expected = sorted((u.name for u in users), key=str.lower)
    token = users[0].token
    assert len(api.get("/api/users", token).json()["users"]) == 4
    for limit in (1, 2, 6):
        names = [u["username"] for u in walk(api, "/api/users", token, "users", limit)]
        assert names == expected
    page = api.get("/api/users", token, params={"limit": 2}).json()
    assert set(page["users"][0]) >= {"username", "status", "last_seen"}
    assert_bad_page_args(api, "/api/users", token)


def test_member_list_pages(make_server: Callable[..., ServerProcess]) -> None:
    """GET /api/rooms/<id>/members pages in username order: each member exactly once."""
    api = Api(make_server("members", **PAGING))
    users = [api.new_user("m") for _ in range(7)]
    room = api.create_room(users[0], "crowd")["id"]
    for user in users[1:]:
        assert user.join(room).status_code == 200
    path = f"/api/rooms/{room}/members"
    token = users[3].token
    expected = sorted(u.name for u in users)
    assert len(api.get(path, token).json()["members"]) == 4
    for limit in (1, 4, 6):
        assert [m["username"] for m in walk(api, path, token, "members", limit)] == expected
    assert set(api.get(path, token).json()["members"][0]) == {"username", "status"}
    assert_bad_page_args(api, path, token)


# ---- 9. login -------------------------------------------------------------------------------


def test_username_spraying_from_one_address_is_throttled(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Past GREENROOM_LOGIN_ADDRESS_MAX_FAILURES failures from one address, any username gets 429."""
    api = Api(make_server("spray", GREENROOM_LOGIN_ADDRESS_MAX_FAILURES="5"))
    real = api.new_user("real")
    for _ in range(5):
        assert_error(api.login(unique_name("spray"), "guess1234"), 401, "invalid_credentials")
    assert_retry_after(api.login(unique_name("spray"), "guess1234"))
    assert_retry_after(api.login(real.name))  # the budget is the address's, whatever the name
    assert api.get("/api/auth/me", real.token).status_code == 200


def test_over_long_password_at_login_is_refused(
    make_server: Callable[..., ServerProcess],
) -> None:
    """A login password over 1,024 characters gets 400 invalid_password instead of being cut to fit."""
    api = Api(make_server("long"))
    name, password = unique_name("long"), "p" * 1024
    assert api.register(name, password).status_code == 201
    assert api.login(name, password).status_code == 200
    assert_error(api.login(name, password + "tail"), 400, "invalid_password")
    assert_error(api.login(name, "q" * 10_000), 400, "invalid_password")


# ---- 8. log injection -----------------------------------------------------------------------


FORGED = "2026-01-01 00:00:00 INFO greenroom: forged"


@pytest.mark.parametrize("kind", ["app", "gunicorn"])
def test_log_lines_cannot_be_forged_and_passwords_stay_out(
    make_server: Callable[..., ServerProcess], kind: str
) -> None:
    """A newline or ESC in a login's username forges no log line, and a password typed as username is not logged."""
    server = make_server("logs", kind=kind)
    api = Api(server)
    real = api.new_user("real")
    secret = "Correct-Horse-Battery-9f3a"
    for username in (f"x\n{FORGED}", f"y\r\n{FORGED}", "\x1b]0;pwned\x07\x1b[2J", secret):
        assert_error(api.login(username, "whatever1"), 401, "invalid_credentials")
    assert_error(api.login(real.name, "wrong password"), 401, "invalid_credentials")
    # Compared without case: the old code logged the username lower-cased.
    log = server.log_path.read_text(errors="replace").lower()
    assert not [line for line in log.splitlines() if line.startswith(FORGED.lower())], log
    assert "\x1b" not in log and "\r" not in log
    assert secret.lower() not in log
    assert f"failed login for {real.name.lower()}" in log


# ---- 10. the owner rejoins ------------------------------------------------------------------


def test_owner_rejoins_own_private_room(make_server: Callable[..., ServerProcess]) -> None:
    """The owner of a private room who left it can still see it, list it and join it again."""
    api = Api(make_server("owner"))
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "hideout", private=True)["id"]
    assert api.post(f"/api/rooms/{room}/leave", alice.token).status_code == 204
    r = api.get(f"/api/rooms/{room}", alice.token)
    assert r.status_code == 200 and r.json()["member"] is False, r.text
    assert room in {r["id"] for r in api.list_all("/api/rooms", alice.token, "rooms")}
    r = alice.join(room)
    assert r.status_code == 200 and r.json()["member"] is True, r.text
    # Others still need an invite.
    assert_error(bob.join(room), 403, "room_restricted")
    assert_error(api.get(f"/api/rooms/{room}", bob.token), 403, "room_restricted")
