"""The `greenroom` command against a real server: accounts, rooms, messages, errors, --json, --help.

Most commands run in-process through click's CliRunner; a handful run as real
subprocesses (`python -m client` and the installed `greenroom` script) where the
process boundary matters: piped stdin, the environment, exit statuses, stderr.
Every terminal gets its own config dir, HOME and XDG_CONFIG_HOME under tmp_path,
so no test ever touches the real ~/.config.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from client.cli import cli
from tests.support import PASSWORD, ROOT, Api, ServerProcess, User, unique_name

ROOM_ID = re.compile(r"[a-z0-9]{10}")
CLOCK = r"\d\d:\d\d:\d\d"
ROOM_FIELDS = {"id", "name", "owner", "capacity", "private", "created_at"}
NOT_LOGGED_IN = "greenroom: not logged in: run greenroom login USERNAME"
DEFAULT_SERVER = "http://127.0.0.1:8000"

# Every command and subcommand, as the words typed after `greenroom`.
COMMAND_PATHS = [
    (),
    ("register",),
    ("login",),
    ("logout",),
    ("whoami",),
    ("users",),
    ("status",),
    ("rooms",),
    ("rooms", "create"),
    ("rooms", "show"),
    ("rooms", "delete"),
    ("rooms", "invite"),
    ("rooms", "join"),
    ("rooms", "leave"),
    ("members",),
    ("history",),
    ("send",),
    ("chat",),
]
ROOMS_SUBCOMMANDS = {path[1] for path in COMMAND_PATHS if path[:1] == ("rooms",) and len(path) == 2}


# ---- harness ------------------------------------------------------------------


@dataclass
class Outcome:
    """What the user sees after one command: exit status, stdout, stderr."""

    status: int
    stdout: str
    stderr: str
    crash: str = ""  # the traceback, when an in-process run raised instead of exiting

    def __str__(self) -> str:
        return (
            f"exit {self.status}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
            f"{'--- crash' + chr(10) + self.crash if self.crash else ''}"
        )


class Term:
    """One person's terminal: their own config dir and home, pointed at one server."""

    def __init__(self, root: Path, server: str | None) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.server = server

    def env(self, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "HOME": str(self.root / "home"),
            "XDG_CONFIG_HOME": str(self.root / "xdg"),
            "GREENROOM_CONFIG_DIR": str(self.config_dir),
            "GREENROOM_SERVER": self.server,
        }
        env.update(extra)
        return env

    def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Outcome:
        """Run `greenroom ARGS...` in-process through click's CliRunner."""
        result = CliRunner().invoke(
            cli, list(args), input=input, env=self.env(**env), prog_name="greenroom"
        )
        crash = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crash = "".join(traceback.format_exception(result.exception))
        return Outcome(result.exit_code, result.stdout, result.stderr, crash)

    def run(
        self,
        *args: str,
        input: str | None = None,
        program: list[str] | None = None,
        **env: str | None,
    ) -> Outcome:
        """Run `greenroom ARGS...` as a real process (`python -m client` unless told)."""
        full = dict(os.environ)
        for key, value in self.env(**env).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        proc = subprocess.run(
            [*(program or [sys.executable, "-m", "client"]), *args],
            input=input,
            env=full,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def login_as(self, user: User, server: str | None = None) -> None:
        where = ["--server", server] if server else []
        ok(self(*where, "login", user.name, "--password-stdin", input=PASSWORD + "\n"))

    def files(self) -> list[Path]:
        """Every file the client keeps (outside `chat`, these are the saved tokens)."""
        if not self.config_dir.exists():
            return []
        return sorted(p for p in self.config_dir.rglob("*") if p.is_file())

    def saved_token(self) -> str:
        files = self.files()
        assert len(files) == 1, files
        return json.loads(files[0].read_text())["token"]

    def nothing_outside_config_dir(self) -> bool:
        return not (self.root / "home").exists() and not (self.root / "xdg").exists()


def ok(out: Outcome) -> list[str]:
    """The command succeeded quietly on stderr; its stdout lines."""
    assert out.status == 0, out
    assert out.stderr == "", out
    assert not out.crash, out
    return out.stdout.splitlines()


def error_line(out: Outcome, status: int = 1) -> str:
    """The command failed with `status` and exactly one line on stderr, no traceback."""
    assert out.status == status, out
    assert not out.crash and "Traceback" not in out.stderr + out.stdout, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out
    assert out.stdout == "", out
    return lines[0]


def usage_error_line(out: Outcome) -> str:
    """A usage error: exit 2, click's usage block with exactly one `Error:` line, no traceback."""
    assert out.status == 2, out
    assert not out.crash and "Traceback" not in out.stderr + out.stdout, out
    assert out.stdout == "", out
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    return errors[0]


def json_lines(out: Outcome) -> list[dict[str, Any]]:
    """Every stdout line parses as one JSON object."""
    lines = ok(out)
    assert lines, out
    objs = [json.loads(line) for line in lines]
    assert all(isinstance(obj, dict) for obj in objs), out
    return objs


def json_one(out: Outcome) -> dict[str, Any]:
    objs = json_lines(out)
    assert len(objs) == 1, out
    return objs[0]


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = {prefix}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            paths |= command_paths(cmd, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def closed_port_url() -> str:
    """An address where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def terminal(tmp_path: Path, server: ServerProcess) -> Callable[..., Term]:
    """Open a terminal on the shared server, logged in through the CLI when given a user."""

    def open_terminal(user: User | None = None, name: str = "anon") -> Term:
        term = Term(tmp_path / (user.name if user else name), server.url)
        if user is not None:
            term.login_as(user)
        return term

    return open_terminal


@pytest.fixture
def alice_term(terminal: Callable[..., Term], alice: User) -> Term:
    return terminal(alice)


@pytest.fixture
def bob_term(terminal: Callable[..., Term], bob: User) -> Term:
    return terminal(bob)


@pytest.fixture
def carol(api: Api) -> Iterator[User]:
    yield api.new_user("carol")


# ---- accounts -----------------------------------------------------------------


def test_register_and_login_with_password_stdin_as_subprocesses(
    server: ServerProcess, terminal: Callable[..., Term]
) -> None:
    """`register` and `login --password-stdin` run as real processes save a 0600 token that whoami uses."""
    term = terminal(name="scripted")
    name = unique_name("scripted")
    reg = term.run("register", name, "--password-stdin", input=PASSWORD + "\n")
    assert ok(reg) == [f"registered {name}; now run: greenroom login {name}"]
    assert term.files() == []

    login = term.run("login", name, "--password-stdin", input=PASSWORD + "\n")
    assert ok(login) == [f"logged in as {name} on {server.url}"]
    (token_file,) = term.files()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert PASSWORD not in token_file.read_text()
    assert term.nothing_outside_config_dir()

    installed = [str(Path(sys.executable).parent / "greenroom")]
    assert ok(term.run("whoami", program=installed)) == [f"{name} on {server.url}"]
    assert PASSWORD not in reg.stdout + login.stdout


def test_prompted_register_and_login_do_not_echo_the_password(
    server: ServerProcess, terminal: Callable[..., Term]
) -> None:
    """`register` and `login` ask for the password at a prompt (twice to register) without echoing it."""
    term = terminal(name="typist")
    name = unique_name("typist")
    typed = "typed-secret-4711"

    reg = term("register", name, input=f"{typed}\n{typed}\n")
    lines = ok(reg)
    assert "Password:" in reg.stdout and "Repeat for confirmation:" in reg.stdout
    assert lines[-1] == f"registered {name}; now run: greenroom login {name}"
    assert typed not in reg.stdout

    login = term("login", name, input=f"{typed}\n")
    lines = ok(login)
    assert "Password:" in login.stdout
    assert lines[-1] == f"logged in as {name} on {server.url}"
    assert typed not in login.stdout
    assert ok(term("whoami")) == [f"{name} on {server.url}"]


def test_token_files_are_private_and_one_per_server(
    server: ServerProcess, make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Logging in to two servers keeps two 0600 token files; logging out of one leaves the other."""
    other = make_server("other")
    term = Term(tmp_path / "two", None)
    name = unique_name("both")
    for url in (server.url, other.url):
        ok(term("--server", url, "register", name, "--password-stdin", input=PASSWORD + "\n"))
        ok(term("--server", url, "login", name, "--password-stdin", input=PASSWORD + "\n"))

    files = term.files()
    assert len(files) == 2, files
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert term.nothing_outside_config_dir()
    assert ok(term("--server", server.url, "whoami")) == [f"{name} on {server.url}"]
    assert ok(term("--server", other.url, "whoami")) == [f"{name} on {other.url}"]

    assert ok(term("--server", other.url, "logout")) == ["logged out"]
    assert len(term.files()) == 1
    assert ok(term("--server", server.url, "whoami")) == [f"{name} on {server.url}"]
    assert error_line(term("--server", other.url, "whoami")) == NOT_LOGGED_IN


def test_logout_deletes_the_token_and_ends_the_session(
    api: Api, alice: User, alice_term: Term
) -> None:
    """`logout` deletes the saved token and the token no longer works on the server."""
    token = alice_term.saved_token()
    assert api.get("/api/auth/me", token).status_code == 200

    assert ok(alice_term("logout")) == ["logged out"]
    assert alice_term.files() == []
    assert api.get("/api/auth/me", token).status_code == 401
    assert error_line(alice_term("whoami")) == NOT_LOGGED_IN


def test_whoami_names_the_user_and_server(
    server: ServerProcess, alice: User, alice_term: Term
) -> None:
    """`whoami` prints the logged-in username and the server, as text or JSON."""
    assert ok(alice_term("whoami")) == [f"{alice.name} on {server.url}"]
    me = json_one(alice_term("whoami", "--json"))
    assert (me["username"], me["server"], me["status"]) == (alice.name, server.url, "offline")


def test_wrong_password_is_one_line_and_exit_1(alice: User, terminal: Callable[..., Term]) -> None:
    """A wrong password gives one line on stderr, exit 1, no traceback and no saved token."""
    term = terminal(name="guesser")
    out = term.run("login", alice.name, "--password-stdin", input="not the password\n")
    assert error_line(out) == "greenroom: wrong username or password"
    assert term.files() == []


def test_register_refusals_are_one_line(alice: User, terminal: Callable[..., Term]) -> None:
    """Registering a taken name or a too-short password is refused in one line with exit 1."""
    term = terminal(name="newcomer")
    taken = error_line(term("register", alice.name, "--password-stdin", input=PASSWORD + "\n"))
    assert taken.startswith("greenroom: ") and "taken" in taken
    short = term("register", unique_name("short"), "--password-stdin", input="pw\n")
    assert "password" in error_line(short)


def test_empty_password_stdin_is_a_usage_error(alice: User, terminal: Callable[..., Term]) -> None:
    """`--password-stdin` with nothing on stdin is a usage error (exit 2), not a login attempt."""
    term = terminal(name="empty")
    line = usage_error_line(term("login", alice.name, "--password-stdin", input=""))
    assert "--password-stdin" in line
    assert term.files() == []


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


def test_rooms_lists_the_rooms_you_can_see(
    api: Api, alice: User, bob: User, alice_term: Term, bob_term: Term
) -> None:
    """`rooms` lists public rooms and your private ones, one line per room (--json: one document)."""
    public = api.create_room(alice, "lobby")["id"]
    private = api.create_room(alice, "hideout", private=True)["id"]

    alice_lines = {line.split()[0]: line for line in ok(alice_term("rooms"))}
    assert f"lobby  (owner {alice.name} 1/" in alice_lines[public]
    assert "hideout" in alice_lines[private] and "private" in alice_lines[private]
    bob_ids = {line.split()[0] for line in ok(bob_term("rooms"))}
    assert public in bob_ids and private not in bob_ids

    listed = {r["id"]: r for r in json_one(bob_term("rooms", "--json"))["rooms"]}
    assert private not in listed
    assert (listed[public]["name"], listed[public]["member_count"]) == ("lobby", 1)
    assert listed[public]["member"] is False


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
    lines = ok(alice_term("members", room))
    assert sorted(lines) == sorted([f"{alice.name}  offline", f"{bob.name}  offline"])
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

    lines = ok(alice_term("users"))
    assert f"{never}  offline" in lines
    assert any(re.fullmatch(rf"{bob.name}  offline, last seen {CLOCK}", line) for line in lines)
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


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["rooms", "create"], "NAME"),
        (["rooms", "create", "x", "--capacity", "0"], "--capacity"),
        (["rooms", "create", "x", "--capacity", "many"], "--capacity"),
        (["rooms", "show"], "ROOM_ID"),
        (["rooms", "delete"], "ROOM_ID"),
        (["rooms", "invite", "abc"], "USER"),
        (["rooms", "join"], "ROOM_ID"),
        (["rooms", "leave"], "ROOM_ID"),
        (["rooms", "nosuch"], "nosuch"),
        (["members"], "ROOM_ID"),
        (["status"], "USER"),
        (["history"], "ROOM_ID"),
        (["history", "abc", "--limit", "0"], "--limit"),
        (["history", "abc", "--before", "-1"], "--before"),
        (["send"], "ROOM_ID"),
        (["register"], "USERNAME"),
        (["login"], "USERNAME"),
        (["whoami", "--bogus"], "--bogus"),
        (["nosuchcommand"], "nosuchcommand"),
        (["--server", "ftp://example.com", "whoami"], "ftp://example.com"),
    ],
)
def test_usage_errors_exit_2(terminal: Callable[..., Term], args: list[str], mentions: str) -> None:
    """A missing argument, a bad option value or an unknown command is a usage error: exit 2, no traceback."""
    line = usage_error_line(terminal(name="usage")(*args))
    assert mentions in line, line


# ---- --json -------------------------------------------------------------------


def test_json_on_every_command_that_prints_a_result(
    server: ServerProcess, api: Api, alice: User, bob: User, alice_term: Term, bob_term: Term
) -> None:
    """`--json` makes every command print one parseable JSON object per line (a whole list is one)."""
    covered: set[tuple[str, ...]] = set()

    def js(term: Term, *args: str, input: str | None = None) -> list[dict[str, Any]]:
        sub = args[1] if args[0] == "rooms" and len(args) > 1 else None
        covered.add((args[0], sub) if sub in ROOMS_SUBCOMMANDS else (args[0],))
        return json_lines(term(*args, "--json", input=input))

    fresh = Term(alice_term.root.parent / "fresh", server.url)
    name = unique_name("fresh")
    (reg,) = js(fresh, "register", name, "--password-stdin", input=PASSWORD + "\n")
    assert reg["username"] == name
    (login,) = js(fresh, "login", name, "--password-stdin", input=PASSWORD + "\n")
    assert login == {"username": name, "server": server.url}
    (me,) = js(fresh, "whoami")
    assert me["username"] == name
    (out,) = js(fresh, "logout")
    assert out == {"logged_out": True}

    (room,) = js(alice_term, "rooms", "create", "lobby")
    assert set(room) >= ROOM_FIELDS and room["name"] == "lobby"
    rid = room["id"]
    private = api.create_room(alice, "hideout", private=True)["id"]
    (listed,) = js(alice_term, "rooms")
    assert rid in {r["id"] for r in listed["rooms"]}
    (shown,) = js(alice_term, "rooms", "show", rid)
    assert shown["id"] == rid and shown["member"] is True
    (invited,) = js(alice_term, "rooms", "invite", private, bob.name)
    assert invited == {"invited": bob.name, "room": private}
    (joined,) = js(bob_term, "rooms", "join", rid)
    assert joined["id"] == rid and joined["member"] is True and joined["member_count"] == 2
    (listed,) = js(bob_term, "members", rid)
    assert {m["username"] for m in listed["members"]} == {alice.name, bob.name}
    (listed,) = js(bob_term, "users")
    assert bob.name in {u["username"] for u in listed["users"]}
    (st,) = js(bob_term, "status", alice.name)
    assert st["username"] == alice.name and "last_seen" in st

    sent = [js(bob_term, "send", rid, f"message {i}")[0] for i in (1, 2, 3)]
    assert [(m["seq"], m["user"], m["body"]) for m in sent] == [
        (i, bob.name, f"message {i}") for i in (1, 2, 3)
    ]
    hist = js(alice_term, "history", rid)
    assert [(m["seq"], m["room"], m["body"]) for m in hist] == [
        (i, rid, f"message {i}") for i in (1, 2, 3)
    ]
    assert [m["seq"] for m in js(alice_term, "history", rid, "--before", "3", "--limit", "1")] == [
        2
    ]

    (left,) = js(bob_term, "rooms", "leave", rid)
    assert left == {"left": rid}
    (deleted,) = js(alice_term, "rooms", "delete", rid)
    assert deleted == {"deleted": rid}

    assert covered == command_paths() - {(), ("chat",)}


# ---- sessions -----------------------------------------------------------------

NEEDS_LOGIN = [
    ["whoami"],
    ["users"],
    ["status", "bob"],
    ["rooms"],
    ["rooms", "create", "x"],
    ["rooms", "show", "abc"],
    ["rooms", "delete", "abc"],
    ["rooms", "invite", "abc", "bob"],
    ["rooms", "join", "abc"],
    ["rooms", "leave", "abc"],
    ["members", "abc"],
    ["history", "abc"],
    ["send", "abc", "hi"],
]


@pytest.mark.parametrize("args", NEEDS_LOGIN, ids=" ".join)
def test_not_logged_in_says_to_run_login(terminal: Callable[..., Term], args: list[str]) -> None:
    """Without a saved token every command that needs one says to run `greenroom login`, exit 1."""
    term = terminal(name="stranger")
    assert error_line(term(*args)) == NOT_LOGGED_IN


def test_a_logged_out_token_says_to_log_in_again(api: Api, alice: User, alice_term: Term) -> None:
    """When the saved session was ended behind the client's back, commands say to log in again, exit 1."""
    room = api.create_room(alice, "lobby")["id"]
    assert api.post("/api/auth/logout", alice_term.saved_token()).status_code == 204

    for args in (["whoami"], ["rooms"], ["rooms", "show", room], ["send", room, "hi"]):
        line = error_line(alice_term(*args))
        assert "greenroom login" in line and ("again" in line or "expired" in line), (args, line)
    assert api.get(f"/api/rooms/{room}/messages", alice.token).json()["messages"] == []
    # The same, as a real process.
    line = error_line(alice_term.run("history", room))
    assert "greenroom login" in line and ("again" in line or "expired" in line), line


def test_logout_after_the_session_ended_still_cleans_up(
    api: Api, alice: User, alice_term: Term
) -> None:
    """`logout` with a session the server already ended still deletes the token and succeeds."""
    assert api.post("/api/auth/logout", alice_term.saved_token()).status_code == 204
    assert ok(alice_term("logout")) == ["logged out"]
    assert alice_term.files() == []


# ---- server address -----------------------------------------------------------


def test_server_option_beats_environment(
    server: ServerProcess, alice: User, terminal: Callable[..., Term]
) -> None:
    """--server wins over GREENROOM_SERVER, which is used when there is no --server."""
    dead = closed_port_url()
    term = terminal(name="precedence")
    stdin = PASSWORD + "\n"

    out = term(
        "--server",
        server.url,
        "login",
        alice.name,
        "--password-stdin",
        input=stdin,
        GREENROOM_SERVER=dead,
    )
    assert ok(out) == [f"logged in as {alice.name} on {server.url}"]
    assert ok(term("whoami", GREENROOM_SERVER=server.url)) == [f"{alice.name} on {server.url}"]
    assert ok(term("--server", server.url + "/", "whoami", GREENROOM_SERVER=dead)) == [
        f"{alice.name} on {server.url}"
    ]
    out = term(
        "--server",
        dead,
        "register",
        "x" + alice.name,
        "--password-stdin",
        input=stdin,
        GREENROOM_SERVER=server.url,
    )
    assert error_line(out) == f"greenroom: cannot reach the server at {dead}"


def test_default_server_is_local_port_8000(terminal: Callable[..., Term]) -> None:
    """With no --server and no GREENROOM_SERVER the client talks to http://127.0.0.1:8000."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.skip("something is listening on 127.0.0.1:8000")
    term = terminal(name="default")
    out = term.run(
        "register", "somebody", "--password-stdin", input=PASSWORD + "\n", GREENROOM_SERVER=None
    )
    assert error_line(out) == f"greenroom: cannot reach the server at {DEFAULT_SERVER}"


def test_unreachable_server_is_one_line(terminal: Callable[..., Term]) -> None:
    """A server nobody answers at gives `cannot reach the server at URL`, exit 1, as a real process."""
    dead = closed_port_url()
    term = terminal(name="offline")
    out = term.run("--server", dead, "login", "somebody", "--password-stdin", input=PASSWORD + "\n")
    assert error_line(out) == f"greenroom: cannot reach the server at {dead}"


def test_server_gone_after_login_is_one_line(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A logged-in command against a server that has stopped says it cannot reach it, exit 1."""
    srv = make_server("gone")
    term = Term(tmp_path / "gone", srv.url)
    name = unique_name("gone")
    ok(term("register", name, "--password-stdin", input=PASSWORD + "\n"))
    ok(term("login", name, "--password-stdin", input=PASSWORD + "\n"))
    srv.stop()
    for args in (["rooms"], ["whoami"], ["send", "abc", "hi"]):
        assert error_line(term(*args)) == f"greenroom: cannot reach the server at {srv.url}"


# ---- help ---------------------------------------------------------------------


def test_help_list_names_every_command() -> None:
    """The --help checks below cover every command and subcommand the client has."""
    assert set(COMMAND_PATHS) == command_paths()


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "greenroom")
def test_help_on_every_command_shows_examples(tmp_path: Path, path: tuple[str, ...]) -> None:
    """`--help` on every command exits 0 and shows its usage and an Example section."""
    term = Term(tmp_path, None)
    out = term(*path, "--help")
    lines = ok(out)
    assert lines[0].startswith(f"Usage: greenroom {' '.join(path)}".rstrip()), out
    assert "Example" in out.stdout, out


def test_help_from_the_installed_command_and_python_m(tmp_path: Path) -> None:
    """Both `greenroom --help` and `python -m client --help` run as processes, exit 0 and show examples."""
    term = Term(tmp_path, None)
    for program in ([str(Path(sys.executable).parent / "greenroom")], None):
        out = term.run("rooms", "create", "--help", program=program)
        assert ok(out)[0].startswith("Usage: greenroom rooms create"), out
        assert "Examples:" in out.stdout
