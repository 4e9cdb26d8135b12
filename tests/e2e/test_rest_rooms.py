"""REST rooms against the real server: create, list, get, delete, join, leave, members, invites."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import ISO_UTC, NOT_AN_OBJECT, Api, ServerProcess, User, assert_error, raw_post

ROOM_FIELDS = {"id", "name", "owner", "capacity", "private", "created_at"}
MISSING_ROOM = "nosuchroom"


@pytest.fixture
def carol(api: Api) -> User:
    return api.new_user("carol")


def room_ids(api: Api, user: User) -> set[str]:
    return {room["id"] for room in api.list_all("/api/rooms", user.token, "rooms")}


def member_names(api: Api, user: User, room: str) -> list[str]:
    r = api.get(f"/api/rooms/{room}/members", user.token)
    assert r.status_code == 200, r.text
    return [m["username"] for m in r.json()["members"]]


# ---- create -----------------------------------------------------------------


def test_create_room_returns_room_and_makes_creator_member(api: Api, alice: User) -> None:
    """Creating a room answers 201 with the room, owned by and with the creator as its only member."""
    r = api.post("/api/rooms", alice.token, json={"name": "general"})
    assert r.status_code == 201, r.text
    room = r.json()
    assert set(room) >= ROOM_FIELDS, room
    assert room["name"] == "general"
    assert room["owner"] == alice.name
    assert room["private"] is False
    assert isinstance(room["capacity"], int) and room["capacity"] >= 10_000
    assert isinstance(room["id"], str) and room["id"]
    assert ISO_UTC.fullmatch(room["created_at"]), room["created_at"]
    assert member_names(api, alice, room["id"]) == [alice.name]


def test_create_room_with_capacity_and_private(api: Api, alice: User) -> None:
    """A room created with capacity and private keeps them."""
    room = api.create_room(alice, "secret", capacity=3, private=True)
    assert (room["capacity"], room["private"]) == (3, True)
    got = api.get(f"/api/rooms/{room['id']}", alice.token).json()
    assert (got["capacity"], got["private"]) == (3, True)


def test_create_room_ids_are_distinct(api: Api, alice: User) -> None:
    """Two rooms with the same name are two rooms with different ids."""
    a = api.create_room(alice, "same")["id"]
    b = api.create_room(alice, "same")["id"]
    assert a != b


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="no-name"),
        pytest.param({"name": ""}, id="empty-name"),
        pytest.param({"name": "   "}, id="blank-name"),
        pytest.param({"name": "x" * 1000}, id="huge-name"),
        pytest.param({"name": 42}, id="number-name"),
        pytest.param({"name": ["general"]}, id="list-name"),
        pytest.param({"name": None}, id="null-name"),
        pytest.param({"name": "bad \ud800 name"}, id="lone-surrogate-name"),
        pytest.param({"name": "r", "capacity": 0}, id="capacity-0"),
        pytest.param({"name": "r", "capacity": -5}, id="capacity-negative"),
        pytest.param({"name": "r", "capacity": 2.5}, id="capacity-fraction"),
        pytest.param({"name": "r", "capacity": "10"}, id="capacity-string"),
        pytest.param({"name": "r", "capacity": True}, id="capacity-bool"),
        pytest.param({"name": "r", "capacity": 10**30}, id="capacity-huge"),
        pytest.param({"name": "r", "private": "yes"}, id="private-string"),
        pytest.param({"name": "r", "private": 1}, id="private-number"),
        pytest.param({"name": "r", "private": {"on": True}}, id="private-object"),
    ],
)
def test_create_room_rejects_invalid_fields(api: Api, alice: User, fields: dict[str, Any]) -> None:
    """A bad room name, capacity or private flag is refused with 400 invalid_room and creates nothing."""
    before = room_ids(api, alice)
    assert_error(api.post("/api/rooms", alice.token, json=fields), 400, "invalid_room")
    assert room_ids(api, alice) == before


@pytest.mark.parametrize("data", NOT_AN_OBJECT)
def test_create_room_rejects_non_object_body(api: Api, alice: User, data: bytes) -> None:
    """A create-room body that is not a JSON object is refused with 400 bad_request."""
    assert_error(raw_post(api, "/api/rooms", data, alice.token), 400, "bad_request")


def test_create_room_capacity_limited_by_setting(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Capacity may go up to GREENROOM_MAX_ROOM_CAPACITY and no further (400 invalid_room)."""
    api = Api(
        make_server("cap", GREENROOM_MAX_ROOM_CAPACITY="50", GREENROOM_DEFAULT_ROOM_CAPACITY="20")
    )
    user = api.new_user("cap")
    assert api.create_room(user, "max", capacity=50)["capacity"] == 50
    assert api.create_room(user, "default")["capacity"] == 20
    assert_error(
        api.post("/api/rooms", user.token, json={"name": "r", "capacity": 51}), 400, "invalid_room"
    )


# ---- list ---------------------------------------------------------------------


def test_list_rooms_shows_public_and_own_private_only(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    """The room list holds public rooms and private rooms you belong to or are invited to, never others' private rooms."""
    public = api.create_room(alice, "public")["id"]
    hidden = api.create_room(alice, "hidden", private=True)["id"]
    invited = api.create_room(alice, "invited", private=True)["id"]
    joined = api.create_room(alice, "joined", private=True)["id"]
    own = api.create_room(bob, "bobs", private=True)["id"]
    assert (
        api.post(
            f"/api/rooms/{invited}/invites", alice.token, json={"username": bob.name}
        ).status_code
        == 204
    )
    assert (
        api.post(
            f"/api/rooms/{joined}/invites", alice.token, json={"username": bob.name}
        ).status_code
        == 204
    )
    assert bob.join(joined).status_code == 200

    seen = room_ids(api, bob)
    assert {public, invited, joined, own} <= seen
    assert hidden not in seen

    carol_sees = room_ids(api, carol)
    assert public in carol_sees
    assert not {hidden, invited, joined, own} & carol_sees
    assert {public, hidden, invited, joined} <= room_ids(api, alice)
    assert own not in room_ids(api, alice)


def test_list_rooms_entries_are_rooms(api: Api, alice: User) -> None:
    """Each entry of the room list carries the room fields."""
    room = api.create_room(alice, "listed", capacity=7)
    listed = {r["id"]: r for r in api.list_all("/api/rooms", alice.token, "rooms")}
    entry = listed[room["id"]]
    assert set(entry) >= ROOM_FIELDS
    assert (entry["name"], entry["owner"], entry["capacity"], entry["private"]) == (
        "listed",
        alice.name,
        7,
        False,
    )


# ---- get ------------------------------------------------------------------------


def test_get_room_reports_member_and_online_counts(api: Api, alice: User, bob: User) -> None:
    """GET a room answers 200 with the room, its member count and how many members are online."""
    room = api.create_room(alice, "counts")["id"]
    r = api.get(f"/api/rooms/{room}", alice.token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= ROOM_FIELDS | {"member_count", "online_count"}
    assert (body["id"], body["member_count"], body["online_count"]) == (room, 1, 0)

    assert bob.join(room).status_code == 200
    with bob.ws():
        body = api.get(f"/api/rooms/{room}", alice.token).json()
        assert (body["member_count"], body["online_count"]) == (2, 1)
        with alice.ws():
            body = api.get(f"/api/rooms/{room}", bob.token).json()
            assert (body["member_count"], body["online_count"]) == (2, 2)


def test_get_public_room_as_non_member(api: Api, alice: User, bob: User) -> None:
    """Anyone logged in can GET a public room they have not joined."""
    room = api.create_room(alice, "open")["id"]
    r = api.get(f"/api/rooms/{room}", bob.token)
    assert r.status_code == 200, r.text
    assert r.json()["member_count"] == 1


@pytest.mark.parametrize("room", [MISSING_ROOM, "x" * 200, "%20", "..."])
def test_get_missing_room_not_found(api: Api, alice: User, room: str) -> None:
    """GET of a room id that does not exist is refused with 404 room_not_found."""
    assert_error(api.get(f"/api/rooms/{room}", alice.token), 404, "room_not_found")


def test_get_private_room_restricted_unless_member_or_invited(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    """GET of a private room by someone neither member nor invited is refused with 403 room_restricted."""
    room = api.create_room(alice, "private", private=True)["id"]
    assert_error(api.get(f"/api/rooms/{room}", bob.token), 403, "room_restricted")
    api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": bob.name})
    assert api.get(f"/api/rooms/{room}", bob.token).status_code == 200
    assert_error(api.get(f"/api/rooms/{room}", carol.token), 403, "room_restricted")


# ---- delete -------------------------------------------------------------------


def test_delete_room_by_owner(api: Api, alice: User, bob: User) -> None:
    """The owner deletes a room with 204; it is gone from GET, the list and join (404 room_not_found)."""
    room = api.create_room(alice, "doomed")["id"]
    assert bob.join(room).status_code == 200
    r = api.delete(f"/api/rooms/{room}", alice.token)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(api.get(f"/api/rooms/{room}", alice.token), 404, "room_not_found")
    assert_error(bob.join(room), 404, "room_not_found")
    assert room not in room_ids(api, alice)
    assert room not in room_ids(api, bob)
    assert_error(api.delete(f"/api/rooms/{room}", alice.token), 404, "room_not_found")


def test_delete_room_by_non_owner_refused(api: Api, alice: User, bob: User) -> None:
    """A member who is not the owner cannot delete the room: 403 not_room_owner, and it stays."""
    room = api.create_room(alice, "kept")["id"]
    assert bob.join(room).status_code == 200
    assert_error(api.delete(f"/api/rooms/{room}", bob.token), 403, "not_room_owner")
    assert api.get(f"/api/rooms/{room}", alice.token).status_code == 200


def test_delete_missing_room_not_found(api: Api, alice: User) -> None:
    """Deleting a room that does not exist is refused with 404 room_not_found."""
    assert_error(api.delete(f"/api/rooms/{MISSING_ROOM}", alice.token), 404, "room_not_found")


def test_delete_room_tells_live_members(api: Api, alice: User, bob: User) -> None:
    """Every WebSocket joined to a deleted room gets a room_deleted frame, and the connection stays usable."""
    room = api.create_room(alice, "live")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        assert api.delete(f"/api/rooms/{room}", alice.token).status_code == 204
        assert a.expect("room_deleted") == {"type": "room_deleted", "room": room}
        assert b.expect("room_deleted") == {"type": "room_deleted", "room": room}
        b.send({"type": "ping"})
        assert b.expect("pong")["type"] == "pong"


def test_delete_room_deletes_its_messages(api: Api, alice: User) -> None:
    """A deleted room's messages are gone: its history is 404, and their client_msg_ids are free again."""
    room = api.create_room(alice, "history")["id"]
    for i in range(3):
        r = api.post(
            f"/api/rooms/{room}/messages",
            alice.token,
            json={"body": f"m{i}", "client_msg_id": f"del-{i}-{room}"},
        )
        assert r.status_code == 201, r.text
    assert api.delete(f"/api/rooms/{room}", alice.token).status_code == 204
    assert_error(api.get(f"/api/rooms/{room}/messages", alice.token), 404, "room_not_found")

    # Had the old rows survived, this would be a retry of del-0 (or a conflict), not a new message.
    other = api.create_room(alice, "after")["id"]
    r = api.post(
        f"/api/rooms/{other}/messages",
        alice.token,
        json={"body": "fresh", "client_msg_id": f"del-0-{room}"},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["room"], r.json()["seq"], r.json()["body"]) == (other, 1, "fresh")


# ---- join -----------------------------------------------------------------------


def test_join_public_room(api: Api, alice: User, bob: User) -> None:
    """Joining a public room answers 200 with the room, and the joiner is listed as a member."""
    room = api.create_room(alice, "lobby")["id"]
    r = bob.join(room)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= ROOM_FIELDS
    assert body["id"] == room
    assert body["member_count"] == 2
    assert sorted(member_names(api, alice, room)) == sorted([alice.name, bob.name])


def test_join_twice_is_harmless(api: Api, alice: User, bob: User) -> None:
    """Joining a room you are already in answers 200 and does not add you twice."""
    room = api.create_room(alice, "again")["id"]
    assert bob.join(room).status_code == 200
    r = bob.join(room)
    assert r.status_code == 200, r.text
    assert r.json()["member_count"] == 2
    assert sorted(member_names(api, bob, room)) == sorted([alice.name, bob.name])


def test_join_notifies_live_members(api: Api, alice: User, bob: User) -> None:
    """A REST join reaches the room's WebSocket members as member_joined."""
    room = api.create_room(alice, "notice")["id"]
    with alice.ws() as a:
        a.join(room)
        assert bob.join(room).status_code == 200
        frame = a.expect("member_joined", skip=("presence", "typing"))
        assert frame == {"type": "member_joined", "room": room, "user": bob.name}


def test_join_missing_room_not_found(api: Api, alice: User) -> None:
    """Joining a room that does not exist is refused with 404 room_not_found."""
    assert_error(alice.join(MISSING_ROOM), 404, "room_not_found")


def test_join_full_room_refused(api: Api, alice: User, bob: User, carol: User) -> None:
    """A room at capacity refuses another member with 409 room_full; a seat freed by leave can be taken."""
    room = api.create_room(alice, "pair", capacity=2)["id"]
    assert bob.join(room).status_code == 200
    assert_error(carol.join(room), 409, "room_full")
    assert sorted(member_names(api, alice, room)) == sorted([alice.name, bob.name])
    assert bob.join(room).status_code == 200  # members already in still "join" fine
    assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
    assert carol.join(room).status_code == 200


def test_join_private_room_needs_invite(api: Api, alice: User, bob: User) -> None:
    """A private room refuses a join without invite (403 room_restricted) and accepts it after one."""
    room = api.create_room(alice, "vip", private=True)["id"]
    assert_error(bob.join(room), 403, "room_restricted")
    r = api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": bob.name})
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = bob.join(room)
    assert r.status_code == 200, r.text
    assert r.json()["private"] is True
    assert bob.name in member_names(api, alice, room)


def test_invite_matches_username_case_insensitively(api: Api, alice: User, bob: User) -> None:
    """An invite naming the user in another letter case lets that user join."""
    room = api.create_room(alice, "case", private=True)["id"]
    r = api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": bob.name.upper()})
    assert r.status_code == 204, r.text
    assert bob.join(room).status_code == 200


# ---- leave ----------------------------------------------------------------------


def test_leave_room(api: Api, alice: User, bob: User) -> None:
    """Leaving answers 204 and removes you from the member list; leaving again is 403 not_a_member."""
    room = api.create_room(alice, "exit")["id"]
    assert bob.join(room).status_code == 200
    r = api.post(f"/api/rooms/{room}/leave", bob.token)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert member_names(api, alice, room) == [alice.name]
    assert api.get(f"/api/rooms/{room}", alice.token).json()["member_count"] == 1
    assert_error(api.post(f"/api/rooms/{room}/leave", bob.token), 403, "not_a_member")


def test_leave_never_joined_refused(api: Api, alice: User, bob: User) -> None:
    """Leaving a room you never joined is refused with 403 not_a_member."""
    room = api.create_room(alice, "stranger")["id"]
    assert_error(api.post(f"/api/rooms/{room}/leave", bob.token), 403, "not_a_member")


def test_leave_missing_room_not_found(api: Api, alice: User) -> None:
    """Leaving a room that does not exist is refused with 404 room_not_found."""
    assert_error(api.post(f"/api/rooms/{MISSING_ROOM}/leave", alice.token), 404, "room_not_found")


def test_leave_notifies_live_members(api: Api, alice: User, bob: User) -> None:
    """A REST leave reaches the room's WebSocket members as member_left."""
    room = api.create_room(alice, "bye")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        assert api.post(f"/api/rooms/{room}/leave", bob.token).status_code == 204
        frame = a.expect("member_left", skip=("presence", "typing", "member_joined"))
        assert frame == {"type": "member_left", "room": room, "user": bob.name}


# ---- members --------------------------------------------------------------------


def test_members_lists_usernames_and_status(api: Api, alice: User, bob: User) -> None:
    """Members answers 200 with every member's username and status, online while they hold a WebSocket."""
    room = api.create_room(alice, "crowd")["id"]
    assert bob.join(room).status_code == 200
    with bob.ws():
        r = api.get(f"/api/rooms/{room}/members", alice.token)
        assert r.status_code == 200, r.text
        members = {m["username"]: m["status"] for m in r.json()["members"]}
    assert members == {alice.name: "offline", bob.name: "online"}


def test_members_refused_to_non_member(api: Api, alice: User, bob: User) -> None:
    """Someone outside the room cannot list its members: 403 not_a_member."""
    room = api.create_room(alice, "closed")["id"]
    assert_error(api.get(f"/api/rooms/{room}/members", bob.token), 403, "not_a_member")


def test_members_of_missing_room_not_found(api: Api, alice: User) -> None:
    """Members of a room that does not exist is refused with 404 room_not_found."""
    assert_error(api.get(f"/api/rooms/{MISSING_ROOM}/members", alice.token), 404, "room_not_found")


# ---- invites --------------------------------------------------------------------


def test_invite_by_non_owner_refused(api: Api, alice: User, bob: User, carol: User) -> None:
    """Only the owner invites: a member or outsider gets 403 not_room_owner, and the invitee stays out."""
    room = api.create_room(alice, "owned", private=True)["id"]
    api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": bob.name})
    assert bob.join(room).status_code == 200
    r = api.post(f"/api/rooms/{room}/invites", bob.token, json={"username": carol.name})
    assert_error(r, 403, "not_room_owner")
    r = api.post(f"/api/rooms/{room}/invites", carol.token, json={"username": carol.name})
    assert_error(r, 403, "not_room_owner")
    assert_error(carol.join(room), 403, "room_restricted")


def test_invite_unknown_user_not_found(api: Api, alice: User) -> None:
    """Inviting a username nobody has is refused with 404 user_not_found."""
    room = api.create_room(alice, "lonely", private=True)["id"]
    r = api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": "nobody_here_x"})
    assert_error(r, 404, "user_not_found")


def test_invite_to_missing_room_not_found(api: Api, alice: User, bob: User) -> None:
    """Inviting to a room that does not exist is refused with 404 room_not_found."""
    r = api.post(f"/api/rooms/{MISSING_ROOM}/invites", alice.token, json={"username": bob.name})
    assert_error(r, 404, "room_not_found")


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="no-username"),
        pytest.param({"username": ""}, id="empty-username"),
        pytest.param({"username": 7}, id="number-username"),
        pytest.param({"username": ["bob"]}, id="list-username"),
    ],
)
def test_invite_rejects_bad_fields(api: Api, alice: User, fields: dict[str, Any]) -> None:
    """An invite body without a string username is refused with a 400 JSON error."""
    room = api.create_room(alice, "badinv", private=True)["id"]
    assert_error(api.post(f"/api/rooms/{room}/invites", alice.token, json=fields), 400)


def test_invite_unencodable_username_is_refused(api: Api, alice: User) -> None:
    """Inviting a username that is not valid Unicode (a lone surrogate) is a 4xx JSON error, not a 500."""
    room = api.create_room(alice, "surrogate", private=True)["id"]
    r = api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": "bob\ud800"})
    assert r.status_code in (400, 404), r.text
    assert_error(r, r.status_code)


@pytest.mark.parametrize("data", NOT_AN_OBJECT)
def test_invite_rejects_non_object_body(api: Api, alice: User, data: bytes) -> None:
    """An invite body that is not a JSON object is refused with 400 bad_request."""
    room = api.create_room(alice, "rawinv", private=True)["id"]
    assert_error(raw_post(api, f"/api/rooms/{room}/invites", data, alice.token), 400, "bad_request")
