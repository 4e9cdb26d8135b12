"""`greenroom` accounts against a real server: register, login, logout, whoami, ended sessions, the server address.

Commands run through `tests.support.cli.Term`: in-process, or as a real subprocess
where the process boundary matters. Every terminal has its own config dir, HOME and
XDG_CONFIG_HOME under tmp_path, so no test ever touches the real ~/.config.
"""

from __future__ import annotations

import re
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import PASSWORD, Api, ServerProcess, User, unique_name
from tests.support.cli import Term, closed_port_url, error_line, json_one, ok, usage_error_line

NOT_LOGGED_IN = "greenroom: not logged in: run greenroom login USERNAME"
DEFAULT_SERVER = "http://127.0.0.1:8000"


# ---- accounts -----------------------------------------------------------------


def test_register_and_login_with_password_stdin_as_subprocesses(
    server: ServerProcess, terminal: Callable[..., Term]
) -> None:
    """`register` logs you in; it and `login --password-stdin`, as real processes, save a 0600 token."""
    term = terminal(name="scripted")
    name = unique_name("scripted")
    reg = term.run("register", name, "--password-stdin", input=PASSWORD + "\n")
    assert ok(reg) == [f"registered {name}; logged in on {server.url}"]
    (token_file,) = term.files()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert ok(term.run("whoami")) == [f"{name} on {server.url}"]

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
    """`register` and `login` ask for the password without echo; register checks its length before confirming."""
    term = terminal(name="typist")
    name = unique_name("typist")
    typed = "typed-secret-4711"

    # A too-short password is refused at once, before the confirming prompt, and asked again.
    reg = term("register", name, input=f"short\n{typed}\n{typed}\n")
    lines = ok(reg)
    prompts = re.findall(r"Password:|Repeat for confirmation:|Error: [^\n]*", reg.stdout)
    assert prompts == [
        "Password:",
        "Error: a password is 8 to 1024 characters",
        "Password:",
        "Repeat for confirmation:",
    ], reg
    assert lines[-1] == f"registered {name}; logged in on {server.url}"
    assert typed not in reg.stdout
    assert ok(term("whoami")) == [f"{name} on {server.url}"]  # no separate login needed
    too_long = term("register", unique_name("long"), input="x" * 1025 + "\n")
    assert "Error: a password is 8 to 1024 characters" in too_long.stdout
    assert "Repeat for confirmation" not in too_long.stdout

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
    """--server, before or after the command, wins over GREENROOM_SERVER (used when there is none)."""
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

    # After the command (or a group) too, where it wins over one given before it.
    for args in (
        ["whoami", "--server", server.url],
        ["--server", dead, "whoami", "--server", server.url],
    ):
        assert ok(term(*args, GREENROOM_SERVER=dead)) == [f"{alice.name} on {server.url}"], args
    created = json_one(term("rooms", "create", "after", "--server", server.url, "--json"))
    listed = ok(term("rooms", "--server", server.url, GREENROOM_SERVER=dead))
    assert any(line.split()[:2] == ["*", created["id"]] for line in listed), listed
    out = term("register", "y" + alice.name, "--server", dead, "--password-stdin", input=stdin)
    assert error_line(out) == f"greenroom: cannot reach the server at {dead}"
    assert "ftp://x" in usage_error_line(term("whoami", "--server", "ftp://x"))


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
