"""REST accounts and sessions against the real server, plus HTTP-level bad input on every route.

Every refusal the server gives must have the contract's one JSON shape (`assert_error`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import (
    ISO_UTC,
    NOT_AN_OBJECT,
    PASSWORD,
    Api,
    ServerProcess,
    User,
    assert_error,
    raw_post,
    unique_name,
)

# ---- register ---------------------------------------------------------------


def test_register_creates_account(api: Api) -> None:
    """Registering a valid new username answers 201 with that username, and it can log in."""
    name = unique_name("reg")
    r = api.register(name)
    assert r.status_code == 201, r.text
    assert r.json() == {"username": name}
    assert api.login(name).status_code == 200


@pytest.mark.parametrize(
    "make_name",
    [
        pytest.param(lambda: "z" + secrets.token_hex(1), id="3-chars"),
        pytest.param(lambda: (unique_name("long") + "x" * 32)[:32], id="32-chars"),
        pytest.param(lambda: "A.b-c_9" + secrets.token_hex(3), id="all-allowed-symbols"),
    ],
)
def test_register_accepts_username_edges(api: Api, make_name: Callable[[], str]) -> None:
    """Usernames of 3 to 32 letters, digits, '_', '-' and '.' are accepted as given."""
    name = make_name()
    r = api.register(name)
    assert r.status_code == 201, r.text
    assert r.json() == {"username": name}


@pytest.mark.parametrize(
    "username",
    [
        pytest.param("ab", id="too-short"),
        pytest.param("x" * 33, id="too-long"),
        pytest.param("", id="empty"),
        pytest.param("has space", id="space"),
        pytest.param("slash/name", id="slash"),
        pytest.param("at@name", id="at-sign"),
        pytest.param("ünïcode", id="non-ascii"),
        pytest.param("name\n", id="trailing-newline"),
        pytest.param(12345, id="number"),
        pytest.param(["abc"], id="list"),
        pytest.param(None, id="null"),
        pytest.param("\ud800abc", id="lone-surrogate"),
    ],
)
def test_register_rejects_invalid_username(api: Api, username: object) -> None:
    """A username outside 3-32 of [A-Za-z0-9_.-], or not a string, is refused with 400 invalid_username."""
    r = api.post("/api/auth/register", json={"username": username, "password": PASSWORD})
    assert_error(r, 400, "invalid_username")


def test_register_rejects_missing_username(api: Api) -> None:
    """A register body without a username is refused with 400 invalid_username."""
    r = api.post("/api/auth/register", json={"password": PASSWORD})
    assert_error(r, 400, "invalid_username")


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("1234567", id="7-chars"),
        pytest.param("", id="empty"),
        pytest.param(12345678, id="number"),
        pytest.param(None, id="null"),
        pytest.param(True, id="bool"),
        pytest.param("\ud800" * 8, id="lone-surrogates"),
    ],
)
def test_register_rejects_invalid_password(api: Api, password: object) -> None:
    """A password shorter than 8 characters, or not a string, is refused with 400 invalid_password."""
    r = api.post("/api/auth/register", json={"username": unique_name("pw"), "password": password})
    assert_error(r, 400, "invalid_password")


def test_register_accepts_eight_char_password(api: Api) -> None:
    """A password of exactly 8 characters is long enough, and logs in."""
    name = unique_name("pw8")
    assert api.register(name, "12345678").status_code == 201
    assert api.login(name, "12345678").status_code == 200


def test_register_rejects_taken_username_in_any_case(api: Api) -> None:
    """A username that exists already, exactly or in another letter case, is refused with 409 username_taken."""
    name = unique_name("Taken")
    assert api.register(name).status_code == 201
    assert_error(api.register(name), 409, "username_taken")
    assert_error(api.register(name.lower()), 409, "username_taken")
    assert_error(api.register(name.upper()), 409, "username_taken")
    # The first account is untouched by the refused attempts.
    assert api.login(name).json()["username"] == name


@pytest.mark.parametrize("data", NOT_AN_OBJECT)
def test_register_rejects_non_object_body(api: Api, data: bytes) -> None:
    """A register body that is not a JSON object is refused with 400 bad_request."""
    assert_error(raw_post(api, "/api/auth/register", data), 400, "bad_request")


def test_register_rejects_json_without_json_content_type(api: Api) -> None:
    """A register body not labelled application/json is refused with a 4xx JSON error, not parsed as a form."""
    r = api.post(
        "/api/auth/register",
        data=f'{{"username": "{unique_name("ct")}", "password": "{PASSWORD}"}}',
        headers={"Content-Type": "text/plain"},
    )
    assert_error(r, 400, "bad_request")


# ---- login ------------------------------------------------------------------


def test_login_returns_token(api: Api) -> None:
    """Logging in answers 200 with a token and the canonical username, and the token works."""
    name = unique_name("Login")
    api.register(name)
    r = api.login(name)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == name
    assert isinstance(body["token"], str) and len(body["token"]) >= 20
    me = api.get("/api/auth/me", body["token"])
    assert me.status_code == 200 and me.json()["username"] == name


def test_login_twice_gives_distinct_tokens(api: Api) -> None:
    """Each login opens its own session with a fresh token."""
    user = api.new_user("twice")
    other = api.login(user.name).json()["token"]
    assert other != user.token
    assert api.get("/api/auth/me", other).status_code == 200
    assert api.get("/api/auth/me", user.token).status_code == 200


def test_login_rejects_wrong_password(api: Api, alice: User) -> None:
    """A wrong password is refused with 401 invalid_credentials."""
    assert_error(api.login(alice.name, "not the password"), 401, "invalid_credentials")


def test_login_rejects_unknown_user(api: Api) -> None:
    """An unknown username is refused with 401 invalid_credentials, like a wrong password."""
    assert_error(api.login(unique_name("ghost")), 401, "invalid_credentials")


def test_login_rejects_invalid_username_as_credentials(api: Api) -> None:
    """A username that could never exist is refused with 401 invalid_credentials, not a 500."""
    assert_error(api.login("no such/user name"), 401, "invalid_credentials")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"username": 5, "password": PASSWORD}, id="number-username"),
        pytest.param({"username": "abc", "password": 12345678}, id="number-password"),
        pytest.param({"username": "abc"}, id="missing-password"),
        pytest.param({"password": PASSWORD}, id="missing-username"),
        pytest.param({}, id="empty-object"),
    ],
)
def test_login_rejects_wrong_field_types(api: Api, body: dict[str, Any]) -> None:
    """A login body whose fields are missing or not strings is refused with a 400 JSON error."""
    assert_error(api.post("/api/auth/login", json=body), 400, "bad_request")


@pytest.mark.parametrize("data", NOT_AN_OBJECT)
def test_login_rejects_non_object_body(api: Api, data: bytes) -> None:
    """A login body that is not a JSON object is refused with 400 bad_request."""
    assert_error(raw_post(api, "/api/auth/login", data), 400, "bad_request")


def test_login_with_unencodable_password_is_refused(api: Api, alice: User) -> None:
    """A password that is not valid Unicode (a lone surrogate) is refused with a 4xx JSON error, not a 500."""
    r = api.post("/api/auth/login", json={"username": alice.name, "password": "\ud800" * 8})
    assert r.status_code in (400, 401), r.text
    assert_error(r, r.status_code)


def test_login_rate_limited_after_repeated_failures(
    make_server: Callable[..., ServerProcess],
) -> None:
    """After GREENROOM_LOGIN_MAX_FAILURES wrong passwords, logins for that name get 429 with Retry-After."""
    api = Api(make_server("login", GREENROOM_LOGIN_MAX_FAILURES="3"))
    victim = api.new_user("victim")
    bystander = api.new_user("bystander")
    for _ in range(3):
        assert_error(api.login(victim.name, "wrong password"), 401, "invalid_credentials")

    r = api.login(victim.name)  # even the right password is refused now
    err = assert_error(r, 429, "rate_limited")
    retry_after = r.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert_error(api.login(victim.name.upper(), "wrong password"), 429, "rate_limited")
    assert "retry_after_s" not in err or err["retry_after_s"] == int(retry_after)

    # The limit is per name: others log in, and existing sessions keep working.
    assert api.login(bystander.name).status_code == 200
    assert api.get("/api/auth/me", victim.token).status_code == 200


# ---- logout -----------------------------------------------------------------


def test_logout_kills_the_token(api: Api) -> None:
    """Logout answers 204 with no body, and the token gets 401 unauthorized from then on."""
    user = api.new_user("bye")
    r = api.post("/api/auth/logout", user.token)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(api.get("/api/auth/me", user.token), 401, "unauthorized")
    assert_error(api.get("/api/rooms", user.token), 401, "unauthorized")
    assert_error(api.post("/api/auth/logout", user.token), 401, "unauthorized")


def test_logout_ends_only_that_session(api: Api) -> None:
    """Logging out one session leaves the user's other sessions alive."""
    user = api.new_user("multi")
    other = api.login(user.name).json()["token"]
    assert api.post("/api/auth/logout", user.token).status_code == 204
    assert api.get("/api/auth/me", other).json()["username"] == user.name
    # Logging in again after logout works and gives a live token.
    fresh = api.login(user.name).json()["token"]
    assert api.get("/api/auth/me", fresh).status_code == 200


def test_logout_without_token_is_unauthorized(api: Api) -> None:
    """Logout without a token is refused with 401 unauthorized."""
    assert_error(api.post("/api/auth/logout"), 401, "unauthorized")


# ---- me and users -------------------------------------------------------------


def test_me_reports_username_and_status(api: Api, alice: User) -> None:
    """GET /api/auth/me answers 200 with the caller's username and status: offline, then online with a WebSocket."""
    r = api.get("/api/auth/me", alice.token)
    assert r.status_code == 200, r.text
    assert r.json() == {"username": alice.name, "status": "offline"}
    with alice.ws():
        assert api.get("/api/auth/me", alice.token).json()["status"] == "online"


def test_users_lists_everyone_with_status(api: Api, alice: User, bob: User) -> None:
    """GET /api/users lists every user with status and last_seen, online ones marked online."""
    with bob.ws():
        users = {u["username"]: u for u in api.list_all("/api/users", alice.token, "users")}
    assert {alice.name, bob.name} <= set(users)
    for u in users.values():
        assert set(u) >= {"username", "status", "last_seen"}, u
        assert u["status"] in ("online", "offline")
        assert u["last_seen"] is None or ISO_UTC.fullmatch(u["last_seen"]), u
    assert users[bob.name]["status"] == "online"
    assert ISO_UTC.fullmatch(users[bob.name]["last_seen"])
    assert users[alice.name]["status"] == "offline"


def test_user_by_name(api: Api, alice: User, bob: User) -> None:
    """GET /api/users/<name> answers 200 with that user's username, status and last_seen."""
    r = api.get(f"/api/users/{bob.name}", alice.token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["username"] == bob.name
    assert body["status"] == "offline"
    assert "last_seen" in body


def test_user_by_name_not_found(api: Api, alice: User) -> None:
    """GET /api/users/<name> for a name nobody has is refused with 404 user_not_found."""
    assert_error(api.get(f"/api/users/{unique_name('nobody')}", alice.token), 404, "user_not_found")
    assert_error(api.get("/api/users/bad%20name", alice.token), 404, "user_not_found")


# ---- authentication on every route ------------------------------------------

AUTHENTICATED_ROUTES = [
    ("POST", "/api/auth/logout"),
    ("GET", "/api/auth/me"),
    ("GET", "/api/users"),
    ("GET", "/api/users/someone"),
    ("POST", "/api/rooms"),
    ("GET", "/api/rooms"),
    ("GET", "/api/rooms/abcdefghij"),
    ("DELETE", "/api/rooms/abcdefghij"),
    ("POST", "/api/rooms/abcdefghij/join"),
    ("POST", "/api/rooms/abcdefghij/leave"),
    ("GET", "/api/rooms/abcdefghij/members"),
    ("POST", "/api/rooms/abcdefghij/invites"),
    ("GET", "/api/rooms/abcdefghij/messages"),
    ("POST", "/api/rooms/abcdefghij/messages"),
]

BAD_AUTHORIZATION = [
    None,  # no header at all
    "Bearer not-a-real-token",
    "Bearer " + secrets.token_urlsafe(32),  # well formed, but no session has it
    "Bearer ",
    "Bearer",
    "Basic dXNlcjpwYXNz",
    "garbage",
]


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED_ROUTES)
def test_authenticated_routes_refuse_bad_authorization(api: Api, method: str, path: str) -> None:
    """Every authenticated route answers a missing or bad Authorization header with 401 unauthorized."""
    for authorization in BAD_AUTHORIZATION:
        headers = {} if authorization is None else {"Authorization": authorization}
        r = api.request(method, path, headers=headers, json={"name": "r", "body": "hi"})
        assert_error(r, 401, "unauthorized")


def test_token_is_not_accepted_in_query_string(api: Api, alice: User) -> None:
    """A token passed anywhere but the Authorization header does not authenticate."""
    assert_error(api.get(f"/api/auth/me?token={alice.token}"), 401, "unauthorized")


# ---- HTTP-level bad input ---------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/nope"),
        ("GET", "/web/nope.js"),  # the web client's folder answers JSON too
        ("POST", "/api/auth/nope"),
        ("GET", "/api/rooms/abcdefghij/nope"),
        ("DELETE", "/api/users/someone/extra"),
    ],
)
def test_unknown_route_is_json_404(api: Api, alice: User, method: str, path: str) -> None:
    """A route that does not exist answers 404 as a JSON error, with or without a token."""
    assert_error(api.request(method, path), 404)
    assert_error(api.request(method, path, alice.token), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/auth/login"),
        ("GET", "/api/auth/register"),
        ("DELETE", "/api/auth/me"),
        ("PUT", "/api/rooms"),
        ("PATCH", "/api/rooms/abcdefghij"),
        ("GET", "/api/rooms/abcdefghij/join"),
        ("DELETE", "/api/rooms/abcdefghij/messages"),
        ("POST", "/api/users"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_method_is_json_405(api: Api, alice: User, method: str, path: str) -> None:
    """A known route called with a method it does not take answers 405 as a JSON error."""
    assert_error(api.request(method, path, alice.token), 405)


def test_oversized_body_is_json_413(make_server: Callable[..., ServerProcess]) -> None:
    """A body over GREENROOM_MAX_REQUEST_BYTES answers 413 as a JSON error; one under it is served."""
    api = Api(make_server("big", GREENROOM_MAX_REQUEST_BYTES="1024"))
    big = {"username": unique_name("big"), "password": "p" * 2000}
    assert_error(api.post("/api/auth/register", json=big), 413)
    user = api.new_user("small")  # a normal body still works
    room = api.create_room(user, "r")["id"]
    r = api.post(f"/api/rooms/{room}/messages", user.token, json={"body": "x" * 4000})
    assert_error(r, 413)
    r = api.post(f"/api/rooms/{room}/messages", user.token, json={"body": "x" * 900})
    assert r.status_code == 201, r.text


def test_oversized_chunked_body_is_json_413(make_server: Callable[..., ServerProcess]) -> None:
    """A chunked body (no Content-Length) over GREENROOM_MAX_REQUEST_BYTES answers 413, not a parse error."""
    api = Api(make_server("chunked", GREENROOM_MAX_REQUEST_BYTES="1024"))
    user = api.new_user("chunked")

    def chunks(n: int) -> Iterator[bytes]:
        yield b'{"name": "'
        yield from (b"x" * 100 for _ in range(n))
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    small = api.post("/api/rooms", user.token, data=chunks(0), headers=headers)
    assert small.status_code == 400 and small.json()["error"]["code"] == "invalid_room", small.text
    big = api.post("/api/rooms", user.token, data=chunks(50), headers=headers)
    assert_error(big, 413)


@pytest.mark.parametrize(
    "nested",
    [
        pytest.param("[" * 30_000 + "]" * 30_000, id="arrays"),
        pytest.param('{"a":' * 10_000 + "1" + "}" * 10_000, id="objects"),
    ],
)
def test_deeply_nested_json_is_json_400(api: Api, alice: User, nested: str) -> None:
    """A deeply nested JSON body (within the size limit) is refused with 400 on every JSON route, never a 500."""
    room = api.create_room(alice, "nested")["id"]
    body = nested.encode()
    for path, token in [
        ("/api/auth/register", None),
        ("/api/auth/login", None),
        ("/api/rooms", alice.token),
        (f"/api/rooms/{room}/invites", alice.token),
        (f"/api/rooms/{room}/messages", alice.token),
    ]:
        assert_error(raw_post(api, path, body, token), 400)


def test_plain_get_on_ws_is_json_400(api: Api, alice: User) -> None:
    """GET /ws without a WebSocket Upgrade answers 400 as a JSON error."""
    assert_error(api.get("/ws"), 400)
    assert_error(api.get("/ws", alice.token), 400)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key-no-version"),
        pytest.param({"Sec-WebSocket-Version": "13"}, id="no-key"),
        pytest.param({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, id="no-version"),
        pytest.param(
            {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"},
            id="old-version",
        ),
    ],
)
def test_malformed_ws_handshake_is_json_4xx(api: Api, headers: dict[str, str]) -> None:
    """A WebSocket upgrade missing its key or version, or with an unsupported version, gets a 4xx JSON error."""
    r = api.get("/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade", **headers})
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    assert_error(r, r.status_code)
    # The server closes a connection after a refused upgrade, and must say so, or the
    # client's next request may go out on a socket that is closing.
    assert r.headers.get("Connection", "").lower() == "close"


def test_healthz_is_ok(api: Api) -> None:
    """GET /healthz answers 200 without a token."""
    r = api.get("/healthz")
    assert r.status_code == 200, r.text
