"""Every `greenroom` command against a real server: usage errors, `--json` output and `--help`.

Commands run through `tests.support.cli.Term`: in-process, or as a real subprocess
where the process boundary matters. Every terminal has its own config dir, HOME and
XDG_CONFIG_HOME under tmp_path, so no test ever touches the real ~/.config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import PASSWORD, ROOT, Api, ServerProcess, User, unique_name
from tests.support.cli import (
    ROOM_FIELDS,
    Term,
    command_paths,
    json_lines,
    json_one,
    ok,
    usage_error_line,
)

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


# ---- usage errors -------------------------------------------------------------


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
    # --json before the command, or on the group before its subcommand, works the same.
    assert json_one(bob_term("--json", "users")) == listed
    assert json_one(bob_term("--json", "rooms", "show", rid))["id"] == rid
    assert json_one(bob_term("rooms", "--json", "show", rid))["id"] == rid
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


# ---- shell completion -----------------------------------------------------------


def test_shell_completion_as_the_readme_sets_it_up(tmp_path: Path) -> None:
    """The README's bash line for completion, run in bash, completes commands and options."""
    readme = (ROOT / "README.md").read_text()
    (line,) = [x for x in readme.splitlines() if "_GREENROOM_COMPLETE=bash_source" in x]
    setup = line.split("#")[0].strip()
    assert setup == 'eval "$(_GREENROOM_COMPLETE=bash_source greenroom)"'
    for shell in ("zsh_source", "fish_source"):
        assert f"_GREENROOM_COMPLETE={shell} greenroom" in readme, shell

    def complete(*words: str) -> list[str]:
        script = (
            f"{setup}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}\n"
            '_greenroom_completion greenroom; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("greenroom", "rooms", "cr") == ["create"]
    assert complete("greenroom", "users", "--se") == ["--server"]
