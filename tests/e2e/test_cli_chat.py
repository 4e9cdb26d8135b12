"""`greenroom chat` as a real subprocess against a real server: pipes, restarts of either side, a pty.

Every wait is bounded and waits for the output that proves the state it needs; each
pipe of each client has its own reader thread, so no pipe ever fills up.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from client.chat import HELP
from tests.support import WS, Api, ServerProcess, free_port, wait_for
from tests.support.terminal import (
    TIME,
    WAIT_S,
    Clients,
    Terminal,
    after,
    message_lines,
    post,
    shown,
    stored,
)

LOST = "-- connection lost: reconnecting; lines you type meanwhile are queued"
# Tests of the client alone: one storage backend is enough.
sqlite_only = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    c = Clients(tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


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
    c.err.wait_for(LOST)
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


@sqlite_only
def test_line_typed_while_server_is_down_is_stored_once(
    make_server: Callable[..., ServerProcess], clients: Clients
) -> None:
    """An outage is one line when it starts and one when it ends, however many attempts it takes;
    a line piped in meanwhile is marked as queued, then stored exactly once with its own client_msg_id."""
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
    c.err.wait_for(LOST)
    # Two more attempts fail while it is down (a listener resets them): still that one line.
    with socket.create_server(("127.0.0.1", srv.port)) as listener:
        listener.settimeout(WAIT_S)
        for _ in range(2):
            conn, _ = listener.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
    c.say("typed while the server is down")
    queued = wait_for(
        lambda: [p for p in cli.pending_on_disk() if p["body"] == "typed while the server is down"]
    )
    assert len(queued) == 1
    srv.restart()
    c.out.wait_for(rf"{TIME} <{alice.name}> typed while the server is down")
    c.end_input()
    assert c.wait() == 0, c.err.snapshot()
    assert c.err.snapshot() == [
        LOST,
        "-- queued until the connection is back: typed while the server is down",
        "-- reconnected",
    ]

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
    first.err.wait_for(LOST)
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
    prompt = "[tty] > "  # the room's name, not its id
    with bob.ws() as bob_ws:
        bob_ws.join(room)
        child = clients.login(api.server, alice).spawn_chat(room)
        term = Terminal(child)
        term.wait(lambda s: s and s[-1] == prompt.rstrip(), "the prompt")
        assert "-- chatting in tty; /help lists the commands, /quit leaves" in term.screen.lines()

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
        # The typed line gives way to the stored message: it shows once, with its time.
        screen = term.wait(lambda s: s if shown(frame) in s else None, "the sent line echoed")
        assert [line for line in screen if "half typed and done" in line] == [shown(frame)]

        child.send("/who\r")
        members = term.wait(lambda s: after(s, prompt + "/who", 3), "the /who answer")
        assert members[0].split() == ["USER", "STATUS"]
        assert sorted(line.split() for line in members[1:]) == sorted(
            [[alice.name, "online"], [bob.name, "online"]]
        )

        child.send("/history 5\r")
        last5 = [shown(m) for m in stored(api, bob, room)[-5:]]
        assert last5[0].endswith("> old 2") and last5[-1].endswith("> half typed and done")
        assert term.wait(lambda s: after(s, prompt + "/history 5", 5), "/history 5") == last5

        child.send("/help\r")
        # The whole text: waiting for fewer lines raced the terminal's last ones.
        lines = len(HELP.splitlines())
        help_text = term.wait(lambda s: after(s, prompt + "/help", lines), "the /help text")
        assert help_text[0] == "commands:"
        for cmd in ("/who", "/history [N]", "/help", "/quit"):
            assert any(line.strip().startswith(cmd) for line in help_text), cmd
        (leave,) = [line for line in help_text if line.strip().startswith("/leave")]
        assert "ends your membership" in leave

        child.send("/quit\r")
        child.expect(pexpect.EOF, timeout=WAIT_S)
        child.close()
        assert child.exitstatus == 0


@sqlite_only
def test_interactive_chat_names_rooms_and_keeps_running_after_leaving_the_last(
    api: Api, clients: Clients
) -> None:
    """Rooms go by name (with the id only on a clash); /leave of the last room keeps chat running."""
    alice, bob = api.new_user("alice"), api.new_user("bob")
    first = api.create_room(bob, "lobby")["id"]
    second = api.create_room(bob, "lobby")["id"]
    child = clients.login(api.server, alice).spawn_chat(first)
    term = Terminal(child)
    term.wait(lambda s: s and s[-1] == "[lobby] >", "the prompt, with the room's name")

    # A second room of the same name: both are told apart by their ids.
    child.send(f"/join {second}\r")
    term.wait(lambda s: s[-1] == f"[lobby ({second})] >", "the prompt with the id")
    post(api, bob, first, "in the first")
    term.wait(
        lambda s: any(
            re.fullmatch(rf"{TIME} \[lobby \({first}\)\] <{bob.name}> in the first", x) for x in s
        ),
        "the message tagged with its room",
    )

    child.send("/leave\r")
    term.wait(lambda s: f"-- left room lobby ({second}): you are no longer a member" in s, "/leave")
    term.wait(lambda s: s[-1] == "[lobby] >", "back in the only room left, by name alone")
    child.send("/leave\r")
    term.wait(lambda s: s[-1] == ">", "a prompt in no room")
    term.wait(
        lambda s: any(x.startswith("-- you are in no room now: /join ID") for x in s), "the hint"
    )
    assert child.isalive(), "chat keeps running after leaving its last room"
    child.send("stray line\r")
    term.wait(lambda s: "-- not sent: stray line" in s, "the line refused while in no room")
    member_of = {
        r["id"] for r in api.list_all("/api/rooms", alice.token, "rooms") if r.get("member")
    }
    assert first not in member_of and second not in member_of

    child.send(f"/join {first}\r")
    term.wait(lambda s: s[-1] == "[lobby] >", "joined again")
    child.send("/quit\r")
    child.expect(pexpect.EOF, timeout=WAIT_S)
    child.close()
    assert child.exitstatus == 0
    assert [m["body"] for m in stored(api, bob, first)] == ["in the first"]


def read_frames_until(ws: WS, room: str, seq: int) -> list[int]:
    """The markers of the `read` frames for `room` one connection hears, up to the one at `seq`."""
    deadline = time.monotonic() + WAIT_S
    markers: list[int] = []
    while not markers or markers[-1] < seq:
        frame = ws.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "read" and frame["room"] == room:
            markers.append(frame["last_read_seq"])
    return markers


@sqlite_only
def test_chat_marks_what_it_printed_as_read(api: Api, clients: Clients) -> None:
    """chat marks printed messages read, at most one `read` frame a second for a burst, the rest at exit."""
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(bob, "marks")["id"]
    assert alice.join(room).status_code == 200
    for i in range(3):
        post(api, bob, room, f"before {i}")
    cli = clients.login(api.server, alice)
    with alice.ws() as watcher:  # alice's other connection hears every move of her marker
        c = cli.chat(room)
        c.out.wait_for(rf"{TIME} <{bob.name}> before 2")
        assert read_frames_until(watcher, room, 3) == [3]  # the history: one frame

        started = time.monotonic()
        for i in range(10):
            post(api, bob, room, f"burst {i}")
        c.out.wait_for(rf"{TIME} <{bob.name}> burst 9")
        markers = read_frames_until(watcher, room, 13)
        # One frame at once, then one per second at most: not one per message.
        assert len(markers) <= 2 + (time.monotonic() - started), markers

        # Printed right after a frame went out, this one is marked when chat ends.
        post(api, bob, room, "last")
        c.out.wait_for(rf"{TIME} <{bob.name}> last")
        c.end_input()
        assert c.wait() == 0, c.err.snapshot()
        assert read_frames_until(watcher, room, 14)[-1] == 14

    (mine,) = [r for r in api.list_all("/api/rooms", alice.token, "rooms") if r["id"] == room]
    assert (mine["last_read_seq"], mine["unread"]) == (14, 0)
    out = subprocess.run(
        cli.argv("rooms"), env=cli.env, capture_output=True, text=True, timeout=WAIT_S
    )
    (row,) = [line for line in out.stdout.splitlines() if room in line]
    assert row.startswith(f"* {room}") and row.endswith("  0"), out.stdout
