"""The `greenroom` command as a person runs it: a `Term` per person, and checks on what they see.

Most commands run in-process through click's CliRunner; `Term.run` runs a real
subprocess (`python -m client` and the installed `greenroom` script) where the
process boundary matters: piped stdin, the environment, exit statuses, stderr.
Every terminal gets its own config dir, HOME and XDG_CONFIG_HOME under tmp_path,
so no test ever touches the real ~/.config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

from client.cli import cli
from tests.support.clients import User
from tests.support.common import PASSWORD, ROOT, free_port

ROOM_FIELDS = {"id", "name", "owner", "capacity", "private", "created_at"}


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


ROOMS_HEADER = ["ID", "NAME", "OWNER", "MEMBERS", "ACCESS", "UNREAD"]
USERS_HEADER = ["USER", "STATUS", "LAST SEEN"]
MEMBERS_HEADER = ["USER", "STATUS"]


def table(
    lines: list[str], header: list[str], marked: bool = False, right: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """The rows of an aligned table of ASCII cells, checking that each cell is in its column.

    A cell starts where its column's title does (ends where it does, for the `right`
    columns); only trailing cells may be empty. With `marked`, each line starts with a
    one-character mark (`*` or a space) and a space, returned as the row's "mark".
    """
    skip = 2 if marked else 0
    head = lines[0]
    assert re.split(r" {2,}", head.strip()) == header, lines
    starts = [head.index(title) for title in header]
    out = []
    for row in lines[1:]:
        cells = re.split(r" {2,}", row[skip:].strip())
        got = {"mark": row[0]} if marked else {}
        pos = skip
        for title, cell in zip(header, cells, strict=False):
            at = row.index(cell, pos)
            if title in right:
                at_end = at + len(cell) == head.index(title) + len(title)
                assert at_end, f"{cell!r} not under {title}:\n" + "\n".join(lines)
            else:
                at_start = at == starts[header.index(title)]
                assert at_start, f"{cell!r} not under {title}:\n" + "\n".join(lines)
            got[title] = cell
            pos = at + len(cell)
        for title in header[len(cells) :]:
            got[title] = ""
        out.append(got)
    return out


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
    return f"http://127.0.0.1:{free_port()}"
