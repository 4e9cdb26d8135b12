"""The `greenroom` command shows hostile text inert, and lists every page of a long list.

Another user's message body or room name may hold terminal escapes (title set,
screen clear, colour), bidi overrides, or a line break followed by a forged
`09:00:00 <admin> ...` prefix. The CLI must print all of it visibly and never let
the terminal act on it: under a pseudo-terminal (`chat`), piped, and in the list
commands. A stub HTTP server stands in for a hostile server where the real one
would refuse the text (usernames), and for one whose cursors never end.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pexpect
import pytest
from click.testing import CliRunner

from client.cli import cli
from tests.support import PASSWORD, ROOT, Api, ServerProcess, User

# These tests exercise the client, not storage: one backend is enough.
sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

WAIT_S = 15.0
HOSTILE = "hi \x1b]0;pwned\x07\x1b[2J\x1b[31mred \u202eevil\n09:00:00 <admin> hi"
SHOWN = "hi ^[]0;pwned^G^[[2J^[[31mred <U+202E>evil"  # its first line, as the CLI prints it
FORGED = "09:00:00 <admin> hi"
# Bytes a terminal would act on, besides the line feed: C0, DEL, C1, bidi controls.
CONTROLS = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def assert_inert(text: str) -> None:
    """No control character at all, and no line that starts with the forged prefix."""
    assert not CONTROLS.search(text), repr(CONTROLS.findall(text))
    assert not re.search(rf"(?m)^{re.escape(FORGED)}", text), text


class Term:
    """One person's `greenroom`, with its own config dir, pointed at one server."""

    def __init__(self, root: Path, server: str) -> None:
        self.server = server
        self.env = {
            **os.environ,
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "xdg"),
            "GREENROOM_CONFIG_DIR": str(root / "config"),
            "GREENROOM_SERVER": server,
        }

    def __call__(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        """Run in-process through click's CliRunner: (exit status, stdout, stderr)."""
        env = {k: self.env[k] for k in ("HOME", "XDG_CONFIG_HOME", "GREENROOM_CONFIG_DIR")}
        result = CliRunner().invoke(
            cli, ["--server", self.server, *args], input=input, env=env, prog_name="greenroom"
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError("".join(traceback.format_exception(result.exception)))
        return result.exit_code, result.stdout, result.stderr

    def ok(self, *args: str) -> str:
        status, out, err = self(*args)
        assert (status, err) == (0, ""), (status, out, err)
        return out

    def login(self, name: str) -> Term:
        status, _, err = self("login", name, "--password-stdin", input=PASSWORD + "\n")
        assert status == 0, err
        return self

    def spawn_chat(self, room: str) -> pexpect.spawn:
        return pexpect.spawn(
            sys.executable,
            ["-m", "client", "--server", self.server, "chat", room],
            cwd=str(ROOT),
            env={**self.env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"},
            dimensions=(24, 100),
            encoding="utf-8",
            timeout=WAIT_S,
        )


@pytest.fixture
def term(tmp_path: Path) -> Callable[[ServerProcess | str, User | str], Term]:
    made = iter(range(1000))

    def factory(srv: ServerProcess | str, user: User | str) -> Term:
        url = srv if isinstance(srv, str) else srv.url
        name = user if isinstance(user, str) else user.name
        return Term(tmp_path / f"term{next(made)}", url).login(name)

    return factory


def post(api: Api, user: User, room: str, body: str) -> dict[str, Any]:
    r = api.post(f"/api/rooms/{room}/messages", user.token, json={"body": body})
    assert r.status_code == 201, r.text
    return r.json()


# ---- the real server ----------------------------------------------------------------


@sqlite_only
def test_interactive_chat_shows_a_hostile_message_inert(
    api: Api, term: Callable[..., Term]
) -> None:
    """In a terminal, escapes and bidi controls in a live message arrive as visible text, and its forged line is indented."""
    alice, mallory = api.new_user("alice"), api.new_user("mallory")
    room = api.create_room(alice, "tty")["id"]
    assert mallory.join(room).status_code == 200
    child = term(api.server, alice).spawn_chat(room)
    child.logfile_read = io.StringIO()  # every character the terminal was sent
    try:
        child.expect_exact("[tty] >")
        post(api, mallory, room, HOSTILE)
        child.expect_exact(FORGED)
        child.expect_exact("[tty] >")  # the prompt redrawn after the message
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    raw = child.logfile_read.getvalue()
    for sequence in ("\x1b]0;pwned", "\x07", "\x1b[2J", "\x1b[31m", "\u202e"):
        assert sequence not in raw, (sequence, raw)
    assert f"<{mallory.name}> {SHOWN}" in raw
    text = raw.replace("\r", "")
    assert re.search(rf"\n +{re.escape(FORGED)}", text), text
    assert not re.search(rf"(^|\n){re.escape(FORGED)}", text), text


@sqlite_only
def test_piped_chat_and_its_json_print_no_control_character(
    api: Api, term: Callable[..., Term]
) -> None:
    """Piped, the history of a room with a hostile message prints no control character, as text or --json."""
    alice, mallory = api.new_user("alice"), api.new_user("mallory")
    room = api.create_room(alice, "pipes")["id"]
    assert mallory.join(room).status_code == 200
    sent = post(api, mallory, room, HOSTILE + "\r\nand \x9b31m C1 \u2028 too")
    for extra in ([], ["--json"]):
        cli_term = term(api.server, alice)  # its own bookmarks: it prints the history again
        proc = subprocess.run(
            [sys.executable, "-m", "client", "chat", room, *extra],
            input="",
            env=cli_term.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout.replace("\n", "")
        assert not CONTROLS.search(out), repr(out)
        if extra:
            (frame,) = [json.loads(line) for line in proc.stdout.splitlines()]
            assert frame["body"] == sent["body"]  # escaped for the terminal, not altered
        else:
            assert_inert(proc.stdout)
            assert f"<{mallory.name}> {SHOWN}" in proc.stdout
            assert "\n    and <U+009B>31m C1 \n     too\n" in proc.stdout


@sqlite_only
def test_history_and_rooms_show_hostile_names_and_bodies_inert(
    api: Api, term: Callable[..., Term]
) -> None:
    """`history`, `rooms`, `rooms show`, `rooms join` and `members` print hostile text visibly and inert."""
    alice, mallory = api.new_user("alice"), api.new_user("mallory")
    room = api.create_room(mallory, HOSTILE)["id"]
    post(api, mallory, room, HOSTILE)
    t = term(api.server, alice)

    joined = t.ok("rooms", "join", room)
    history = t.ok("history", room)
    listed = t.ok("rooms")
    shown = t.ok("rooms", "show", room)
    members = t.ok("members", room)
    for out in (joined, history, listed, shown, members):
        assert_inert(out)
    assert FORGED in history and f"<{mallory.name}> {SHOWN}" in history
    name_shown = SHOWN + "^J" + FORGED  # a name stays on one line: its break is shown
    assert f"({name_shown})" in joined
    assert f"* {room}  {name_shown}  {mallory.name}  2/" in listed  # the longest name: 2 spaces
    assert shown.startswith(f"{room}  {name_shown}  (owner")
    for out in (t.ok("rooms", "--json"), t.ok("history", room, "--json")):
        assert "\x1b" not in out and "\u202e" not in out
        json.loads(out.splitlines()[0])


@sqlite_only
def test_lists_follow_every_page_of_the_server(
    make_server: Callable[..., ServerProcess], term: Callable[..., Term]
) -> None:
    """With two items per page, `rooms`, `users` and `members` (and --json) list every item exactly once."""
    srv = make_server(GREENROOM_LIST_PAGE_SIZE="2", GREENROOM_LIST_MAX_PAGE_SIZE="2")
    api = Api(srv)
    owner = api.new_user("owner")
    others = [api.new_user("pager") for _ in range(4)]
    rooms = [api.create_room(owner, f"room {i}")["id"] for i in range(5)]
    for u in others:
        assert u.join(rooms[0]).status_code == 200
    first = api.get("/api/rooms", owner.token).json()
    assert len(first["rooms"]) == 2 and first.get("next_cursor"), first  # the server pages

    t = term(srv, owner)
    names = sorted([owner.name, *(u.name for u in others)])
    listed = [line.split()[1] for line in t.ok("rooms").splitlines()[1:]]  # after the `*`
    assert sorted(listed) == sorted(rooms)
    assert sorted(r["id"] for r in json.loads(t.ok("rooms", "--json"))["rooms"]) == sorted(rooms)
    assert sorted(line.split()[0] for line in t.ok("users").splitlines()[1:]) == names
    assert sorted(u["username"] for u in json.loads(t.ok("users", "--json"))["users"]) == names
    assert sorted(line.split()[0] for line in t.ok("members", rooms[0]).splitlines()[1:]) == names
    got = json.loads(t.ok("members", rooms[0], "--json"))["members"]
    assert sorted(m["username"] for m in got) == names


# ---- a hostile server ---------------------------------------------------------------


class Stub:
    """A tiny HTTP server with canned answers: path -> function(query) -> JSON body."""

    def __init__(self, routes: dict[str, Callable[[dict[str, str]], Any]]) -> None:
        self.requests: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                url = urlsplit(self.path)
                stub.requests.append(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                route = routes.get(url.path)
                status, body = (200, route(query)) if route else (404, {"error": {}})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[..., Stub]]:
    made: list[Stub] = []

    def factory(routes: dict[str, Callable[[dict[str, str]], Any]]) -> Stub:
        routes = {"/api/auth/login": lambda q: {"username": "alice", "token": "t"}, **routes}
        made.append(Stub(routes))
        return made[-1]

    yield factory
    for s in made:
        s.close()


def paged(key: str, items: list[dict[str, Any]]) -> Callable[[dict[str, str]], Any]:
    """Two items a page; the cursor is the index of the next item."""

    def page(query: dict[str, str]) -> Any:
        start = int(query.get("cursor", "0"))
        more = start + 2 < len(items)
        return {key: items[start : start + 2], "next_cursor": str(start + 2) if more else None}

    return page


def test_users_and_members_from_a_hostile_server_are_inert(
    stub: Callable[..., Stub], term: Callable[..., Term]
) -> None:
    """Usernames and statuses from a hostile server, over several pages, print visibly and inert."""
    people = [
        {"username": f"u{i}\x1b]0;pwned\x07", "status": f"on\u202eline\n{FORGED}"} for i in range(5)
    ]
    srv = stub(
        {"/api/users": paged("users", people), "/api/rooms/r1/members": paged("members", people)}
    )
    t = term(srv.url, "alice")
    for args in (["users"], ["members", "r1"]):
        out = t.ok(*args)
        assert_inert(out)
        assert [line.split()[0] for line in out.splitlines()[1:]] == [
            f"u{i}^[]0;pwned^G" for i in range(5)
        ]
        assert f"on<U+202E>line^J{FORGED}" in out
        listed = t.ok(*args, "--json")
        assert "\x1b" not in listed and "\u202e" not in listed
        assert list(json.loads(listed).values()) == [people]


def test_a_server_whose_cursor_never_ends_is_stopped(
    stub: Callable[..., Stub], term: Callable[..., Term]
) -> None:
    """A server that keeps sending the same next_cursor makes `rooms` fail in one line, not loop."""
    room = {"id": "r1", "name": "loop", "owner": "x", "capacity": 5, "private": False}
    srv = stub({"/api/rooms": lambda q: {"rooms": [room], "next_cursor": "again"}})
    t = term(srv.url, "alice")
    started = time.monotonic()
    status, out, err = t("rooms")
    assert status == 1 and out == "", (status, out, err)
    assert err.startswith("greenroom: ") and len(err.splitlines()) == 1, err
    assert time.monotonic() - started < WAIT_S
    assert len([p for p in srv.requests if p.startswith("/api/rooms")]) <= 3
