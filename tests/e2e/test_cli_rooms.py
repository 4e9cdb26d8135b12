"""`greenroom` rooms, users and messages against a real server: the rooms subcommands, members, users, status, send, history.

Commands run through `tests.support.cli.Term`: in-process, or as a real subprocess
where the process boundary matters. Every terminal has its own config dir, HOME and
XDG_CONFIG_HOME under tmp_path, so no test ever touches the real ~/.config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from tests.support import Api, ServerProcess, User, unique_name
from tests.support.cli import (
    MEMBERS_HEADER,
    ROOM_FIELDS,
    ROOMS_HEADER,
    USERS_HEADER,
    Term,
    error_line,
    json_one,
    ok,
    table,
    usage_error_line,
)

ROOM_ID = re.compile(r"[a-z0-9]{10}")
CLOCK = r"\d\d:\d\d:\d\d"


@pytest.fixture
def carol(api: Api) -> Iterator[User]:
    yield api.new_user("carol")


# ---- rooms --------------------------------------------------------------------


def test_rooms_create_prints_the_new_room(api: Api, alice: User, alice_term: Term) -> None:
    """`rooms create` prints the new room's id; with --json, the room object with its fields."""
    (line,) = ok(alice_term("rooms", "create", "general"))
    m = re.fullmatch(r"created room (\S+) \(general\)", line)
    assert m and ROOM_ID.fullmatch(m.group(1)), line
    room = api.get(f"/api/rooms/{m.group(1)}", alice.token).json()
    assert (room["name"], room["owner"], room["private"]) == ("general", alice.name, False)

    made = json_one(
        alice_term("rooms", "create", "secret", "--capacity", "5", "--private", "--json")
    )
    assert set(made) >= ROOM_FIELDS, made
    assert (made["name"], made["owner"], made["capacity"], made["private"]) == (
        "secret",
        alice.name,
        5,
        True,
    )
    assert made["created_at"].endswith("Z")
    assert api.get(f"/api/rooms/{made['id']}", alice.token).status_code == 200


def test_rooms_create_refused_by_the_server_is_one_line(alice_term: Term) -> None:
    """A room name the server refuses (only whitespace) gives one line and exit 1."""
    line = error_line(alice_term("rooms", "create", "   "))
    assert line.startswith("greenroom: ") and "name" in line


def rooms_of(term: Term) -> dict[str, dict[str, str]]:
    """`greenroom rooms` as aligned columns: room id -> its row."""
    rows = table(ok(term("rooms")), ROOMS_HEADER, marked=True, right=("UNREAD",))
    return {row["ID"]: row for row in rows}


def test_rooms_lists_the_rooms_you_can_see(
    api: Api, alice: User, bob: User, alice_term: Term, bob_term: Term
) -> None:
    """`rooms` lists public rooms and your private ones in aligned columns, `*` and unread counts
    on yours (--json: one document)."""
    public = api.create_room(alice, "lobby")["id"]
    private = api.create_room(alice, "hideout", private=True)["id"]

    mine = rooms_of(alice_term)
    assert mine[public] == {
        "mark": "*",
        "ID": public,
        "NAME": "lobby",
        "OWNER": alice.name,
        "MEMBERS": "1/10000",
        "ACCESS": "public",
        "UNREAD": "0",
    }
    assert (mine[private]["NAME"], mine[private]["ACCESS"]) == ("hideout", "private")
    theirs = rooms_of(bob_term)
    assert private not in theirs
    assert (theirs[public]["mark"], theirs[public]["UNREAD"]) == (" ", "")

    # Bob joins; two messages from alice are unread for him, his own one is not.
    assert bob.join(public).status_code == 200
    for body in ("one", "two"):
        assert alice_term("send", public, body).status == 0
    assert bob_term("send", public, "mine").status == 0
    theirs = rooms_of(bob_term)
    assert (theirs[public]["mark"], theirs[public]["UNREAD"]) == ("*", "2")
    assert rooms_of(alice_term)[public]["UNREAD"] == "1"
    (shown,) = ok(bob_term("rooms", "show", public))
    assert shown.endswith(", 2 unread)"), shown

    listed = {r["id"]: r for r in json_one(bob_term("rooms", "--json"))["rooms"]}
    assert private not in listed
    assert (listed[public]["name"], listed[public]["member_count"]) == ("lobby", 2)
    assert listed[public]["member"] is True and listed[public]["unread"] == 2


def test_rooms_show_and_its_errors(api: Api, alice: User, alice_term: Term, bob_term: Term) -> None:
    """`rooms show` prints one room; an unknown id or a private room says so in one line, exit 1."""
    room = api.create_room(alice, "lobby", capacity=7)["id"]
    private = api.create_room(alice, "hideout", private=True)["id"]

    (line,) = ok(bob_term("rooms", "show", room))
    assert line == f"{room}  lobby  (owner {alice.name} 1/7 members, 0 online)"
    shown = json_one(bob_term("rooms", "show", room, "--json"))
    assert (shown["id"], shown["member_count"], shown["online_count"]) == (room, 1, 0)

    assert error_line(bob_term("rooms", "show", "xyz")) == "greenroom: no such room: xyz"
    assert error_line(bob_term("rooms", "show", private)) == (
        f"greenroom: room {private} is private: ask its owner for an invite"
    )


def test_rooms_delete_and_its_errors(
    api: Api, alice: User, alice_term: Term, bob_term: Term
) -> None:
    """Only the owner can `rooms delete`; afterwards the room is gone."""
    room = api.create_room(alice, "doomed")["id"]
    assert error_line(bob_term("rooms", "delete", room)) == (
        f"greenroom: only the owner of room {room} can do that"
    )
    assert ok(alice_term("rooms", "delete", room)) == [f"deleted room {room}"]
    assert api.get(f"/api/rooms/{room}", alice.token).status_code == 404
    assert error_line(alice_term("rooms", "delete", room)) == f"greenroom: no such room: {room}"


def test_private_room_needs_an_invite(
    api: Api, alice: User, bob: User, alice_term: Term, bob_term: Term
) -> None:
    """A private room refuses `rooms join` until its owner runs `rooms invite`."""
    room = api.create_room(alice, "hideout", private=True)["id"]
    assert error_line(bob_term("rooms", "join", room)) == (
        f"greenroom: room {room} is private: ask its owner for an invite"
    )
    assert ok(alice_term("rooms", "invite", room, bob.name)) == [
        f"invited {bob.name} to room {room}"
    ]
    assert ok(bob_term("rooms", "join", room)) == [f"joined room {room} (hideout)"]


def test_rooms_invite_errors(api: Api, alice: User, alice_term: Term, bob_term: Term) -> None:
    """Inviting an unknown user, to an unknown room, or as a non-owner is one line, exit 1."""
    room = api.create_room(alice, "hideout", private=True)["id"]
    nobody = unique_name("nobody")
    assert error_line(alice_term("rooms", "invite", room, nobody)) == (
        f"greenroom: no such user: {nobody}"
    )
    assert error_line(alice_term("rooms", "invite", "xyz", nobody)) == (
        "greenroom: no such room: xyz"
    )
    public = api.create_room(alice, "lobby")["id"]
    assert error_line(bob_term("rooms", "invite", public, alice.name)) == (
        f"greenroom: only the owner of room {public} can do that"
    )


def test_joining_a_full_room_is_refused(api: Api, alice: User, bob_term: Term) -> None:
    """`rooms join` on a capacity-1 room that already has its owner says `room ID is full`, exit 1."""
    room = api.create_room(alice, "tiny", capacity=1)["id"]
    assert error_line(bob_term("rooms", "join", room)) == f"greenroom: room {room} is full"


def test_join_and_leave(api: Api, alice: User, bob: User, bob_term: Term) -> None:
    """`rooms join` makes you a member and `rooms leave` ends it; leaving twice or a missing room fails."""
    room = api.create_room(alice, "lobby")["id"]
    assert ok(bob_term("rooms", "join", room)) == [f"joined room {room} (lobby)"]
    members = api.get(f"/api/rooms/{room}/members", alice.token).json()["members"]
    assert bob.name in [m["username"] for m in members]

    assert ok(bob_term("rooms", "leave", room)) == [f"left room {room}"]
    assert error_line(bob_term("rooms", "leave", room)) == (
        f"greenroom: you are not a member of room {room}"
    )
    assert error_line(bob_term("rooms", "join", "xyz")) == "greenroom: no such room: xyz"
    assert error_line(bob_term("rooms", "leave", "xyz")) == "greenroom: no such room: xyz"


def test_members_lists_the_room_with_status(
    api: Api, alice: User, bob: User, carol: User, alice_term: Term, terminal: Callable[..., Term]
) -> None:
    """`members` prints each member with their status; a non-member is refused in one line."""
    room = api.create_room(alice, "lobby")["id"]
    assert bob.join(room).status_code == 200
    rows = table(ok(alice_term("members", room)), MEMBERS_HEADER)
    assert sorted(rows, key=lambda r: r["USER"]) == sorted(
        [{"USER": alice.name, "STATUS": "offline"}, {"USER": bob.name, "STATUS": "offline"}],
        key=lambda r: r["USER"],
    )
    listed = json_one(alice_term("members", room, "--json"))["members"]
    got = {m["username"]: m["status"] for m in listed}
    assert got == {alice.name: "offline", bob.name: "offline"}

    carol_term = terminal(carol)
    assert error_line(carol_term("members", room)) == (
        f"greenroom: you are not a member of room {room}"
    )
    assert error_line(carol_term("members", "xyz")) == "greenroom: no such room: xyz"


# ---- users --------------------------------------------------------------------


def test_users_and_status(api: Api, alice: User, bob: User, alice_term: Term) -> None:
    """`users` lists everyone with status and last seen; `status USER` shows one user."""
    never = unique_name("never")
    assert api.register(never).status_code == 201

    rows = {row["USER"]: row for row in table(ok(alice_term("users")), USERS_HEADER)}
    assert rows[never] == {"USER": never, "STATUS": "offline", "LAST SEEN": ""}
    assert rows[bob.name]["STATUS"] == "offline"
    assert re.fullmatch(CLOCK, rows[bob.name]["LAST SEEN"])  # today: the time alone
    everyone = {u["username"]: u for u in json_one(alice_term("users", "--json"))["users"]}
    assert everyone[never]["last_seen"] is None
    assert everyone[bob.name]["status"] == "offline" and everyone[bob.name]["last_seen"]

    (line,) = ok(alice_term("status", bob.name))
    assert re.fullmatch(rf"{bob.name}  offline, last seen {CLOCK}", line), line
    assert ok(alice_term("status", never)) == [f"{never}  offline"]
    shown = json_one(alice_term("status", bob.name.upper(), "--json"))
    assert (shown["username"], shown["status"]) == (bob.name, "offline")

    nobody = unique_name("nobody")
    assert error_line(alice_term("status", nobody)) == f"greenroom: no such user: {nobody}"


# ---- messages -----------------------------------------------------------------


def test_send_and_history(api: Api, alice: User, alice_term: Term) -> None:
    """`send` posts from its arguments or from stdin, and `history` prints them oldest first."""
    room = api.create_room(alice, "lobby")["id"]
    assert ok(alice_term("send", room, "hello", "world")) == [f"sent #1 to {room}"]
    assert ok(alice_term("send", room, input="from stdin\n")) == [f"sent #2 to {room}"]
    assert ok(alice_term("send", room, "third")) == [f"sent #3 to {room}"]

    stored = api.get(f"/api/rooms/{room}/messages", alice.token).json()["messages"]
    assert [m["body"] for m in stored] == ["hello world", "from stdin", "third"]

    lines = ok(alice_term("history", room))
    assert len(lines) == 3, lines
    for line, body in zip(lines, ["hello world", "from stdin", "third"], strict=True):
        assert re.fullmatch(rf"{CLOCK} <{alice.name}> {body}", line), line
    assert [line.split("> ", 1)[1] for line in ok(alice_term("history", room, "--limit", "2"))] == [
        "from stdin",
        "third",
    ]
    older = ok(alice_term("history", room, "--before", "3", "--limit", "1"))
    assert [line.split("> ", 1)[1] for line in older] == ["from stdin"]


def test_send_from_a_pipe_in_a_subprocess(
    api: Api, alice: User, alice_term: Term, server: ServerProcess
) -> None:
    """`greenroom send ID` with the message piped in posts it, as a real process."""
    room = api.create_room(alice, "lobby")["id"]
    out = alice_term.run("send", room, input="piped in\n")
    assert ok(out) == [f"sent #1 to {room}"]
    stored = api.get(f"/api/rooms/{room}/messages", alice.token).json()["messages"]
    assert [(m["user"], m["body"]) for m in stored] == [(alice.name, "piped in")]


def test_send_errors(api: Api, alice: User, alice_term: Term, bob_term: Term) -> None:
    """`send` to a room you are not in or that does not exist fails in one line; nothing to send is exit 2."""
    room = api.create_room(alice, "lobby")["id"]
    assert error_line(bob_term("send", room, "hi")) == (
        f"greenroom: you are not a member of room {room}"
    )
    assert error_line(alice_term("send", "xyz", "hi")) == "greenroom: no such room: xyz"
    assert "nothing to send" in usage_error_line(alice_term("send", room, input=""))
    assert "nothing to send" in usage_error_line(alice_term("send", room, "   "))
    assert api.get(f"/api/rooms/{room}/messages", alice.token).json()["messages"] == []


def test_history_errors(api: Api, alice: User, alice_term: Term, bob_term: Term) -> None:
    """`history` of a room you are not in or that does not exist fails in one line, exit 1."""
    room = api.create_room(alice, "lobby")["id"]
    assert error_line(bob_term("history", room)) == (
        f"greenroom: you are not a member of room {room}"
    )
    assert error_line(alice_term("history", "xyz")) == "greenroom: no such room: xyz"
    assert ok(alice_term("history", room)) == []
