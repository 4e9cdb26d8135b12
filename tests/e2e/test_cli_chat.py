"""`greenroom chat` as a real subprocess against a real server: pipes, restarts of either side, a pty.

Every wait is bounded and waits for the output that proves the state it needs; each
pipe of each client has its own reader thread, so no pipe ever fills up.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support import PASSWORD, Api, ServerProcess, User, wait_for

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 15.0  # generous upper bound for one awaited event; normally they take milliseconds
TIME = r"\d\d:\d\d:\d\d"
MESSAGE_LINE = re.compile(rf"{TIME} <[^>]+> .*")


# ---- helpers ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    c = Clients(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


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


# ---- tests --------------------------------------------------------------------------


def test_two_piped_chats_exchange_messages(api: Api, clients: Clients) -> None:
    """Lines written to one piped chat appear on the other's stdout as `HH:MM:SS <user> text`."""
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "pipes")["id"]
    a = clients.login(api.server, alice).chat(room)
    b = clients.login(api.server, bob).chat(room)

    a.say("hello from alice")
    b.out.wait_for(rf"{TIME} <{alice.name}> hello from alice")
    b.say("hi alice, bob here")
    a.out.wait_for(rf"{TIME} <{bob.name}> hi alice, bob here")
    # Both are joined now, so this one goes out live.
    a.say("second from alice")
    b.out.wait_for(rf"{TIME} <{alice.name}> second from alice")

    a.end_input()
    b.end_input()
    assert a.wait() == 0, a.err.snapshot()
    assert b.wait() == 0, b.err.snapshot()
    expected = [shown(m) for m in stored(api, alice, room)]
    assert [m.split("> ", 1)[1] for m in expected] == [
        "hello from alice",
        "hi alice, bob here",
        "second from alice",
    ]
    # Each side printed every message (its own ones too) exactly once, in order.
    assert message_lines(a.out.snapshot()) == expected
    assert message_lines(b.out.snapshot()) == expected
    assert a.err.snapshot() == [] and b.err.snapshot() == []


def test_chat_json_prints_one_object_per_line(api: Api, clients: Clients) -> None:
    """With --json every line a piped chat prints is one JSON object, and messages are the stored ones."""
    carol, bob = api.new_user("carol"), api.new_user("bob")
    room = api.create_room(bob, "json")["id"]
    c = clients.login(api.server, carol).chat(room, "--json")

    c.say("json hello")

    def message_from(user: str, body: str) -> Callable[[str], bool]:
        def test(line: str) -> bool:
            obj = json.loads(line)
            return obj.get("type") == "message" and (obj["user"], obj["body"]) == (user, body)

        return test

    c.out.wait_for(message_from(carol.name, "json hello"))
    post(api, bob, room, "from bob")
    c.out.wait_for(message_from(bob.name, "from bob"))
    c.end_input()
    assert c.wait() == 0, c.err.snapshot()

    objects = [json.loads(line) for line in c.out.snapshot()]
    assert objects and all(isinstance(o, dict) and "type" in o for o in objects)
    messages = [
        {k: v for k, v in o.items() if k != "type"} for o in objects if o["type"] == "message"
    ]
    assert messages == stored(api, bob, room)
    assert [m["body"] for m in messages] == ["json hello", "from bob"]


def test_piped_chat_exits_after_every_line_is_acknowledged(api: Api, clients: Clients) -> None:
    """`printf 'a\\nb\\nc\\n' | greenroom chat ROOM` exits 0 by itself with all three stored exactly once."""
    alice = api.new_user("alice")
    room = api.create_room(alice, "printf")["id"]
    cli = clients.login(api.server, alice)
    c = cli.chat(room)
    assert c.proc.stdin is not None
    c.proc.stdin.write("a\nb\nc\n")
    c.end_input()

    assert c.wait() == 0, c.err.snapshot()
    msgs = stored(api, alice, room)
    assert [(m["user"], m["body"]) for m in msgs] == [(alice.name, b) for b in "abc"]
    assert len({m["client_msg_id"] for m in msgs}) == 3
    assert message_lines(c.out.snapshot()) == [shown(m) for m in msgs]
    assert cli.pending_on_disk() == []
    assert c.err.snapshot() == []


def test_server_restart_while_chatting_prints_each_missed_message_once(
    make_server: Callable[..., ServerProcess], clients: Clients
) -> None:
    """After a SIGKILL and restart of the server, a connected chat prints every missed message once and goes on live."""
    # Replay and history pages of 3 messages: the client must resume with `since` and
    # fetch the rest of what it missed over REST, or it would miss some.
    srv = make_server(
        PORT=str(free_port()),
        GREENROOM_REPLAY_MAX_MESSAGES="3",
        GREENROOM_HISTORY_PAGE_SIZE="3",
    )
    api = Api(srv)
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(bob, "restart")["id"]
    c = clients.login(srv, alice).chat(room)
    post(api, bob, room, "before the kill")
    c.out.wait_for(rf"{TIME} <{bob.name}> before the kill")

    srv.kill()
    c.err.wait_for(r"-- connection lost: reconnecting in \d+\.\d s")
    # Frozen while it waits to retry, the chat cannot get back before all of these are sent.
    c.pause()
    try:
        srv.restart()
        api = Api(srv)
        missed = [f"missed {i}" for i in range(1, 6)]
        for body in missed:
            post(api, bob, room, body)
    finally:
        c.resume()
    c.err.wait_for("-- reconnected")
    c.out.wait_for(rf"{TIME} <{bob.name}> missed 5")
    post(api, bob, room, "live after the restart")
    c.out.wait_for(rf"{TIME} <{bob.name}> live after the restart")

    msgs = stored(api, bob, room)
    assert [m["body"] for m in msgs] == ["before the kill", *missed, "live after the restart"]
    assert message_lines(c.out.snapshot()) == [shown(m) for m in msgs]
    assert c.proc.poll() is None, "the chat is still running"


def test_restarted_chat_prints_only_what_arrived_meanwhile(api: Api, clients: Clients) -> None:
    """A chat killed with SIGKILL and started again prints exactly the messages that arrived while it was gone."""
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(bob, "comeback")["id"]
    post(api, bob, room, "already there")
    cli = clients.login(api.server, alice)
    first = cli.chat(room)
    post(api, bob, room, "seen live")
    first.out.wait_for(rf"{TIME} <{bob.name}> seen live")
    first.kill()

    away = [f"while away {i}" for i in range(1, 4)]
    for body in away:
        post(api, bob, room, body)
    second = cli.chat(room)
    second.out.wait_for(rf"{TIME} <{bob.name}> while away 3")
    post(api, bob, room, "live again")
    second.out.wait_for(rf"{TIME} <{bob.name}> live again")
    second.end_input()
    assert second.wait() == 0, second.err.snapshot()

    msgs = [shown(m) for m in stored(api, bob, room)]
    assert message_lines(first.out.snapshot()) == msgs[:2]
    assert message_lines(second.out.snapshot()) == msgs[2:]
    assert [m.split("> ", 1)[1] for m in msgs[2:]] == [*away, "live again"]


def test_line_typed_while_server_is_down_is_stored_once(
    make_server: Callable[..., ServerProcess], clients: Clients
) -> None:
    """A line piped in while the server is down is queued, then stored exactly once with its own client_msg_id."""
    srv = make_server(PORT=str(free_port()))
    api = Api(srv)
    alice = api.new_user("alice")
    room = api.create_room(alice, "outage")["id"]
    cli = clients.login(srv, alice)
    c = cli.chat(room)
    c.say("before the outage")
    c.out.wait_for(rf"{TIME} <{alice.name}> before the outage")
    wait_for(lambda: cli.pending_on_disk() == [])

    srv.kill()
    c.err.wait_for(r"-- connection lost: reconnecting in \d+\.\d s")
    c.say("typed while the server is down")
    queued = wait_for(
        lambda: [p for p in cli.pending_on_disk() if p["body"] == "typed while the server is down"]
    )
    assert len(queued) == 1
    srv.restart()
    c.out.wait_for(rf"{TIME} <{alice.name}> typed while the server is down")
    c.end_input()
    assert c.wait() == 0, c.err.snapshot()

    msgs = stored(Api(srv), alice, room)
    assert [m["body"] for m in msgs] == ["before the outage", "typed while the server is down"]
    assert msgs[1]["client_msg_id"] == queued[0]["client_msg_id"]
    assert message_lines(c.out.snapshot()) == [shown(m) for m in msgs]
    assert cli.pending_on_disk() == []


def test_pending_line_survives_a_killed_chat(
    make_server: Callable[..., ServerProcess], clients: Clients
) -> None:
    """A line still queued when chat is SIGKILLed is sent once by the next run, which prints only what is new."""
    srv = make_server(PORT=str(free_port()))
    api = Api(srv)
    alice = api.new_user("alice")
    room = api.create_room(alice, "crash")["id"]
    cli = clients.login(srv, alice)
    first = cli.chat(room)
    first.say("sent before")
    first.out.wait_for(rf"{TIME} <{alice.name}> sent before")

    srv.kill()
    first.err.wait_for(r"-- connection lost: reconnecting in \d+\.\d s")
    first.say("queued, then the chat died")
    queued = wait_for(lambda: cli.pending_on_disk())
    first.kill()
    srv.restart()

    second = cli.chat(room)
    second.end_input()  # nothing new to send: it sends what was pending, then exits
    assert second.wait() == 0, second.err.snapshot()
    msgs = stored(Api(srv), alice, room)
    assert [m["body"] for m in msgs] == ["sent before", "queued, then the chat died"]
    assert msgs[1]["client_msg_id"] == queued[0]["client_msg_id"]
    assert message_lines(second.out.snapshot()) == [shown(msgs[1])]
    assert cli.pending_on_disk() == []


def test_interactive_chat_keeps_the_half_typed_line_intact(api: Api, clients: Clients) -> None:
    """In a terminal, an incoming message is shown above the half-typed line, which is redrawn intact."""
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(bob, "tty")["id"]
    for i in range(1, 5):
        post(api, bob, room, f"old {i}")
    prompt = f"[{room}] > "
    with bob.ws() as bob_ws:
        bob_ws.join(room)
        child = clients.login(api.server, alice).spawn_chat(room)
        term = Terminal(child)
        term.wait(lambda s: s and s[-1] == prompt.rstrip(), "the prompt")
        assert (
            f"-- chatting in {room}; /help lists the commands, /quit leaves" in term.screen.lines()
        )

        child.send("half typed")
        term.wait(lambda s: s[-1] == prompt + "half typed", "the half-typed line")
        incoming = bob_ws.say(room, "incoming while alice types")
        screen = term.wait(
            lambda s: (
                s
                if len(s) > 1
                and re.fullmatch(rf"{TIME} <{bob.name}> incoming while alice types", s[-2])
                else None
            ),
            "the incoming message above the prompt",
        )
        # The typed text is on the prompt line after the message, once, not garbled,
        # with the cursor still at its end.
        assert screen[-1] == prompt + "half typed"
        assert [line for line in screen if "half typed" in line] == [screen[-1]]
        cursor_line = len(term.screen.scrolled) + term.screen.row
        assert (cursor_line, term.screen.col) == (len(screen) - 1, len(prompt + "half typed"))

        child.send(" and done\r")
        while (frame := bob_ws.expect("message"))["seq"] <= incoming["seq"]:
            pass
        assert (frame["user"], frame["body"]) == (alice.name, "half typed and done")
        term.wait(
            lambda s: after(s, prompt + "half typed and done", 1) == [shown(frame)],
            "the sent line echoed back",
        )

        child.send("/who\r")
        members = term.wait(lambda s: after(s, prompt + "/who", 2), "the /who answer")
        assert sorted(members) == sorted([f"{alice.name}  online", f"{bob.name}  online"])

        child.send("/history 5\r")
        last5 = [shown(m) for m in stored(api, bob, room)[-5:]]
        assert last5[0].endswith("> old 2") and last5[-1].endswith("> half typed and done")
        assert term.wait(lambda s: after(s, prompt + "/history 5", 5), "/history 5") == last5

        child.send("/help\r")
        help_text = term.wait(lambda s: after(s, prompt + "/help", 10), "the /help text")
        assert help_text[0] == "commands:"
        for cmd in ("/who", "/history [N]", "/help", "/quit"):
            assert any(line.strip().startswith(cmd) for line in help_text), cmd

        child.send("/quit\r")
        child.expect(pexpect.EOF, timeout=WAIT_S)
        child.close()
        assert child.exitstatus == 0
