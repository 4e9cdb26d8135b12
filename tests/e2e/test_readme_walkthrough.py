"""The README's walkthrough, run for real: every command it shows prints what the README says.

Each ```console block in README.md holds `$ ` command lines (with `\\` continuations
and here-documents), each followed by the output it prints. The test runs every
command in order with bash against a fresh server, carrying the shell variables the
README sets (`TOKEN`, `ROOM`, ...) from one command to the next, and compares:

- JSON structurally: the same keys in the same order and the same values, except the
  fields that differ on every run (ids, tokens, timestamps), which must still have the
  same form; the same README id must stand for the same real id throughout;
- other text line by line, with room ids and `HH:MM:SS` times as the varying parts.

The README's address, `127.0.0.1:8000`, becomes the test server's. `greenroom register`
and `greenroom login` ask for a password: they run in a pseudo-terminal that answers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support import ROOT, ServerProcess, procfile_web_command

README = ROOT / "README.md"
README_ADDRESS = "127.0.0.1:8000"
TERMINAL_PASSWORD = "carol has a long password"
COMMAND_TIMEOUT_S = 30

ROOM_ID = r"[a-km-np-z2-9]{10}"  # 10 of the server's room-id alphabet (no l, o, 0, 1)
FORMATS = {
    "a room id": re.compile(ROOM_ID),
    "a timestamp": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"),
    "a token": re.compile(r"[A-Za-z0-9_-]{43}"),
    "a worker id": re.compile(r"[0-9a-f]{12}"),
}
# Fields whose value differs on every run; the README's value must have the same form.
VARYING_FIELDS = {"id", "room", "token", "ts", "created_at", "last_seen", "worker"}
# Of those, the ones that name something: one README value stands for one real value.
NAMING_FIELDS = {"id", "room", "token"}
# In plain text: a room id as the README shows one (with a digit), or a local time.
TEXT_VARYING = re.compile(rf"\b(?=[a-z]*\d){ROOM_ID}\b|\b\d\d:\d\d:\d\d\b")
PASSWORD_PROMPT = r"(Password|Repeat for confirmation): "


@dataclass
class Step:
    line: int  # where the command starts in README.md
    command: str
    expected: str


def parse_steps(text: str) -> list[Step]:
    """The commands of every ```console block, in order, each with the output shown under it."""
    lines = text.splitlines()
    steps: list[Step] = []
    i, in_block = 0, False
    while i < len(lines):
        line = lines[i]
        if not in_block:
            in_block = line.strip() == "```console"
            i += 1
            continue
        if line.startswith("```"):
            in_block = False
            i += 1
            continue
        assert line.startswith("$ "), f"README.md:{i + 1}: output before any command: {line!r}"
        start, command = i, [line[2:]]
        while command[-1].endswith("\\"):
            i += 1
            command.append(lines[i])
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", "\n".join(command))
        if heredoc:
            while lines[i] != heredoc.group(1):
                i += 1
                command.append(lines[i])
        i += 1
        output = []
        while not lines[i].startswith(("$ ", "```")):
            output.append(lines[i])
            i += 1
        steps.append(Step(start + 1, "\n".join(command), "\n".join(output)))
    return steps


class Shell:
    """Runs commands one at a time in bash, carrying the variables the README assigns."""

    def __init__(self, workdir: Path, env: dict[str, str], names: set[str]) -> None:
        self.state = workdir / "state.sh"
        self.state.write_text("")
        self.env = env
        self.names = " ".join(sorted(names))

    def run(self, command: str) -> str:
        script = (
            f"source {self.state}\n{command}\ndeclare -p {self.names} >{self.state} 2>/dev/null\n"
        )
        if re.search(r"\bgreenroom (register|login)\b", command):
            return self._run_in_terminal(script)
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        return done.stdout

    def _run_in_terminal(self, script: str) -> str:
        """As a person would: in a terminal, typing the password at each prompt."""
        child = pexpect.spawn(
            "bash",
            ["-c", script],
            cwd=str(ROOT),
            env=self.env,
            encoding="utf-8",
            timeout=COMMAND_TIMEOUT_S,
        )
        output = ""
        try:
            while child.expect([PASSWORD_PROMPT, pexpect.EOF]) == 0:
                output += child.before + child.after
                child.sendline(TERMINAL_PASSWORD)
            output += child.before
        finally:
            child.close()
        return output.replace("\r\n", "\n")


class Matcher:
    """Compares the README's outputs with real ones, keeping which README id stands for which."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.real_for: dict[str, str] = {}  # README value -> the real value it stands for
        self.readme_for: dict[str, str] = {}  # real value -> the README value shown for it

    def compare(self, expected: str, actual: str) -> list[str]:
        expected = expected.replace(README_ADDRESS, self.address)
        problems: list[str] = []
        wanted = json_values(expected)
        if wanted is not None:
            got = json_values(actual)
            if got is None:
                return ["the README shows JSON, the server printed text"]
            if len(wanted) != len(got):
                return [
                    f"the README shows {len(wanted)} JSON values, the command printed {len(got)}"
                ]
            for i, (w, g) in enumerate(zip(wanted, got, strict=True)):
                self._match_json(w, g, f"value {i + 1}", None, problems)
            return problems
        wanted_lines, got_lines = expected.strip("\n").splitlines(), actual.strip("\n").splitlines()
        if len(wanted_lines) != len(got_lines):
            return [
                f"the README shows {len(wanted_lines)} lines, the command printed {len(got_lines)}"
            ]
        for w, g in zip(wanted_lines, got_lines, strict=True):
            self._match_line(w.rstrip(), g.rstrip(), problems)
        return problems

    def _match_json(self, w: Any, g: Any, path: str, key: str | None, problems: list[str]) -> None:
        if isinstance(w, dict) and isinstance(g, dict):
            if list(w) != list(g):
                problems.append(
                    f"{path}: the README shows fields {list(w)}, the server sends {list(g)}"
                )
            for k in w.keys() & g.keys():
                self._match_json(w[k], g[k], f"{path}.{k}", k, problems)
        elif isinstance(w, list) and isinstance(g, list):
            if len(w) != len(g):
                problems.append(
                    f"{path}: the README shows {len(w)} items, the server sends {len(g)}"
                )
            for i, (wi, gi) in enumerate(zip(w, g, strict=False)):
                self._match_json(wi, gi, f"{path}[{i}]", key, problems)
        elif key in VARYING_FIELDS:
            if form(w) != form(g):
                problems.append(f"{path}: the README shows {form(w)} ({w!r}), the server {form(g)}")
            elif key in NAMING_FIELDS and isinstance(w, str):
                self._bind(w, g, path, problems)
        elif type(w) is not type(g) or w != g:
            problems.append(f"{path}: the README shows {w!r}, the server sends {g!r}")

    def _match_line(self, w: str, g: str, problems: list[str]) -> None:
        pattern, named, pos = "", [], 0
        for m in TEXT_VARYING.finditer(w):
            pattern += re.escape(w[pos : m.start()])
            if ":" in m.group():
                pattern += r"(\d\d:\d\d:\d\d)"
                named.append(None)
            else:
                pattern += f"({ROOM_ID})"
                named.append(m.group())
            pos = m.end()
        found = re.fullmatch(pattern + re.escape(w[pos:]), g)
        if found is None:
            problems.append(f"the README shows {w!r}, the command printed {g!r}")
            return
        for shown, real in zip(named, found.groups(), strict=True):
            if shown is not None:
                self._bind(shown, real, repr(w), problems)

    def _bind(self, shown: str, real: str, where: str, problems: list[str]) -> None:
        if self.real_for.setdefault(shown, real) != real:
            problems.append(f"{where}: the README shows {shown} for two different real values")
        if self.readme_for.setdefault(real, shown) != shown:
            problems.append(
                f"{where}: the README shows {shown} here and {self.readme_for[real]} elsewhere "
                "for the same real value"
            )


def json_values(text: str) -> list[Any] | None:
    """The JSON values in text, one after another, or None if it is not all JSON."""
    decoder, values, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    if not text:
        return None
    while pos < len(text):
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        values.append(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return values


def form(value: Any) -> str:
    """What kind of value this is: one of FORMATS, else its JSON type."""
    if isinstance(value, str):
        for name, pattern in FORMATS.items():
            if pattern.fullmatch(value):
                return name
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def test_readme_walkthrough_prints_what_the_server_answers(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Each README console command, run in order against a fresh server, prints the output shown."""
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README's walkthrough uses {tool}, which is not installed")
    assert (ROOT / ".venv" / "bin" / "greenroom").exists(), "run make test: .venv has no greenroom"
    server = make_server("readme")
    address = f"127.0.0.1:{server.port}"
    steps = parse_steps(README.read_text())
    assert len(steps) >= 20, f"only {len(steps)} console commands found in README.md"

    names = {n for s in steps for n in re.findall(r"^(?:export )?([A-Z_][A-Z0-9_]*)=", s.command)}
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "GREENROOM_SERVER": f"http://{address}",
        "GREENROOM_CONFIG_DIR": str(home / "config"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    shell, matcher = Shell(tmp_path, env, names), Matcher(address)
    failures = []
    for step in steps:
        actual = shell.run(step.command.replace(README_ADDRESS, address))
        problems = matcher.compare(step.expected, actual)
        if problems:
            shown = step.command.splitlines()[0]
            failures.append(
                f"README.md:{step.line}: $ {shown}\n  "
                + "\n  ".join(problems)
                + f"\n  The command printed:\n{actual}"
            )
    assert not failures, "\n\n".join(failures)


def test_readme_runs_every_curl_it_shows() -> None:
    """A curl command in the README outside a console block would never be checked."""
    unchecked, in_console = [], False
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_console = line.strip() == "```console"
        elif not in_console and re.match(r"\s*(\$ )?curl ", line):
            unchecked.append(f"README.md:{number}: {line}")
    assert not unchecked, "\n".join(unchecked)


@pytest.mark.parametrize("doc", ["README.md", "docs/deployment.md"])
def test_docs_show_the_procfiles_web_line(doc: str) -> None:
    """The deployment docs show the Procfile's web command exactly."""
    shown = [line.strip() for line in (ROOT / doc).read_text().splitlines()]
    assert [line for line in shown if line.startswith("web: ")] == [
        f"web: {procfile_web_command()}"
    ]
