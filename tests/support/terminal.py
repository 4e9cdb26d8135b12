"""`greenroom chat` as a subprocess: piped clients whose every output line is gathered, and a pty.

Every wait is bounded and waits for the output that proves the state it needs; each
pipe of each client has its own reader thread, so no pipe ever fills up. Under a
pseudo-terminal, a small VT100 `Screen` shows what a person at it would see.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pexpect

from tests.support.clients import Api, User
from tests.support.common import PASSWORD, ROOT
from tests.support.servers import ServerProcess

WAIT_S = 15.0  # generous upper bound for one awaited event; normally they take milliseconds
TIME = r"\d\d:\d\d:\d\d"
MESSAGE_LINE = re.compile(rf"{TIME} <[^>]+> .*")


def hhmmss(ts: str) -> str:
    """The server's UTC time as the client shows it: HH:MM:SS in the local zone."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")


def shown(m: dict[str, Any]) -> str:
    """The line `chat` prints for a stored message."""
    return f"{hhmmss(m['ts'])} <{m['user']}> {m['body']}"


def stored(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """Every message of the room, oldest first, over REST."""
    r = api.get(f"/api/rooms/{room}/messages?after=0&limit=500", user.token)
    assert r.status_code == 200, r.text
    return r.json()["messages"]


def post(api: Api, user: User, room: str, body: str) -> dict[str, Any]:
    r = api.post(f"/api/rooms/{room}/messages", user.token, json={"body": body})
    assert r.status_code == 201, r.text
    return r.json()


def message_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if MESSAGE_LINE.fullmatch(line)]


class Lines:
    """Every line one pipe of a subprocess writes, gathered by its own reader thread."""

    def __init__(self, pipe: Any, name: str) -> None:
        self.name = name
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: Any) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    self._lines.append(line.rstrip("\r\n"))
                    self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def snapshot(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def wait_for(self, match: str | Callable[[str], bool], timeout: float = WAIT_S) -> str:
        """The first line (of all so far) that fully matches a regex or satisfies a predicate."""
        test = (lambda s: re.fullmatch(match, s) is not None) if isinstance(match, str) else match
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    if test(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise AssertionError(
                        f"no line matching {match!r} on {self.name} "
                        f"({'closed' if self._eof else 'timed out'}); got:\n"
                        + "\n".join(self._lines)
                    )
                self._changed.wait(left)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class ChatProc:
    """A `greenroom chat` subprocess with its stdin, stdout and stderr on pipes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Lines(self.proc.stdout, "stdout")
        self.err = Lines(self.proc.stderr, "stderr")

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = WAIT_S) -> int:
        """The exit status, once the process has ended and both pipes are read to the end."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"chat did not exit within {timeout} s; stderr:\n" + "\n".join(self.err.snapshot())
            ) from None
        self.out.join(5)
        self.err.join(5)
        return code

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass  # a broken pipe to a dead process


class Cli:
    """The greenroom command for one user, with a config directory of its own."""

    def __init__(self, clients: Clients, srv: ServerProcess, user: User) -> None:
        self.clients = clients
        self.srv = srv
        self.user = user
        self.config_dir = clients.root / f"config-{user.name}"
        self.env = {
            **os.environ,
            "GREENROOM_CONFIG_DIR": str(self.config_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("GREENROOM_SERVER", None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "client", "--server", self.srv.url, *args]

    def login(self) -> Cli:
        r = subprocess.run(
            self.argv("login", self.user.name, "--password-stdin"),
            cwd=ROOT,
            env=self.env,
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert r.returncode == 0, r.stderr
        return self

    def chat(self, *args: str) -> ChatProc:
        proc = ChatProc(self.argv("chat", *args), self.env)
        self.clients.started.append(proc)
        return proc

    def spawn_chat(self, *args: str) -> pexpect.spawn:
        env = {**self.env, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        child = pexpect.spawn(
            sys.executable,
            ["-m", "client", "--server", self.srv.url, "chat", *args],
            cwd=str(ROOT),
            env=env,
            dimensions=(24, 100),
            encoding="utf-8",
            timeout=WAIT_S,
        )
        self.clients.started.append(child)
        return child

    def pending_on_disk(self) -> list[dict[str, Any]]:
        """The not-yet-acknowledged messages the client keeps in its config directory."""
        pending: list[dict[str, Any]] = []
        for path in self.config_dir.glob("**/state-*.json"):
            pending += json.loads(path.read_text()).get("pending", [])
        return pending


class Clients:
    """Starts clients for a test and kills every one of them when it ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[ChatProc | pexpect.spawn] = []

    def login(self, srv: ServerProcess, user: User) -> Cli:
        return Cli(self, srv, user).login()

    def kill_all(self) -> None:
        for p in self.started:
            if isinstance(p, ChatProc):
                p.kill()
            else:
                p.close(force=True)


class Screen:
    """A small VT100 screen: enough of the terminal to see what a person at it would see."""

    TOKEN = re.compile(
        r"\x1b\[([?>=]?)([\d;]*)([@-~])"  # CSI
        r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (window title)
        r"|\x1b[()#][0-9A-Za-z]|\x1b[^\[\]]"  # charset and other two-byte escapes
        r"|[\x00-\x1a\x1c-\x1f]|[^\x00-\x1f]+"
    )

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.scrolled: list[str] = []
        self.row = self.col = 0
        self._partial = ""

    def feed(self, data: str) -> None:
        data, self._partial = self._partial + data, ""
        pos = 0
        while pos < len(data):
            m = self.TOKEN.match(data, pos)
            if m is None:  # an escape sequence cut off at the end of this read
                self._partial = data[pos:]
                return
            pos = m.end()
            token = m.group(0)
            if m.group(3):
                self._csi(m.group(1), m.group(2), m.group(3))
            elif token == "\r":
                self.col = 0
            elif token == "\n":
                self._linefeed()
            elif token == "\b":
                self.col = max(0, self.col - 1)
            elif token[0] not in "\x1b" and ord(token[0]) >= 0x20:
                for ch in token:
                    if self.col >= self.cols:
                        self.col = 0
                        self._linefeed()
                    self.grid[self.row][self.col] = ch
                    self.col += 1

    def _linefeed(self) -> None:
        if self.row < self.rows - 1:
            self.row += 1
            return
        self.scrolled.append("".join(self.grid.pop(0)).rstrip())
        self.grid.append([" "] * self.cols)

    def _clear(self, row: int, start: int, end: int) -> None:
        self.grid[row][start:end] = [" "] * (end - start)

    def _csi(self, private: str, params: str, final: str) -> None:
        if private:
            return  # modes: bracketed paste, cursor visibility, autowrap
        nums = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = nums[0] if nums and nums[0] else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.cols - 1, n - 1)
        elif final in "Hf":
            row = nums[0] if nums and nums[0] else 1
            col = nums[1] if len(nums) > 1 and nums[1] else 1
            self.row, self.col = min(self.rows, row) - 1, min(self.cols, col) - 1
        elif final == "J":
            mode = nums[0] if nums else 0
            rows = {0: range(self.row + 1, self.rows), 1: range(self.row)}.get(
                mode, range(self.rows)
            )
            for r in rows:
                self._clear(r, 0, self.cols)
            if mode == 0:
                self._clear(self.row, self.col, self.cols)
            elif mode == 1:
                self._clear(self.row, 0, self.col + 1)
        elif final == "K":
            mode = nums[0] if nums else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(mode, (0, self.cols))
            self._clear(self.row, start, end)

    def lines(self) -> list[str]:
        """What scrolled off the top, then the screen, trailing blank rows dropped."""
        out = [*self.scrolled, *("".join(r).rstrip() for r in self.grid)]
        while out and not out[-1]:
            out.pop()
        return out


class Terminal:
    """Reads a pexpect child into a Screen and waits for what the screen shows."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.screen = Screen(24, 100)
        self.eof = False

    def wait(self, check: Callable[[list[str]], Any], what: str, timeout: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check(self.screen.lines())
            if value:
                return value
            if self.eof or time.monotonic() > deadline:
                raise AssertionError(
                    f"the terminal never showed {what}; it shows:\n"
                    + "\n".join(self.screen.lines())
                )
            try:
                self.screen.feed(self.child.read_nonblocking(4096, timeout=0.1))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                self.eof = True


def after(lines: list[str], line: str, n: int) -> list[str] | None:
    """The n lines after the last occurrence of `line`, once they are all there."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i] == line:
            following = lines[i + 1 : i + 1 + n]
            return following if len(following) == n else None
    return None
