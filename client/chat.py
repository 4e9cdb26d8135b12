"""`greenroom chat`: the interactive line mode, and the piped mode for scripts.

Interactive: prompt_toolkit keeps the line being typed intact at the bottom while
incoming messages are printed above it. Piped (stdin not a terminal): each input
line is sent, everything that arrives is printed, and it exits at end of input once
every line it sent is acknowledged.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from client import render
from client.api import Api, ClientError
from client.config import ChatState, terminal_width
from client.connection import LiveSession

HELP = """commands:
  /rooms            list the rooms you can see
  /switch ID        talk in another joined room
  /join ID          join a room (and switch to it)
  /leave            leave the current room
  /who              members of the current room, with status
  /users            everyone, with status
  /history [N]      the last N messages of the current room (default 20)
  /help             this list
  /quit             leave the chat (Ctrl-D works too)"""


class Printer:
    """Prints events as lines (or JSON); safe to call from the connection thread.

    Every line goes through render.format_lines on its way out, so nothing unsafe
    reaches the terminal even from a line built without render's formatters.
    """

    def __init__(self, as_json: bool, multi_room: bool) -> None:
        self.as_json = as_json
        self.multi_room = multi_room
        self._lock = threading.Lock()
        self._lost = False

    def event(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "error":
            self.error(
                render.format_error(
                    frame.get("code", ""), frame.get("message", ""), room=frame.get("room")
                )
            )
            return
        if self.as_json:
            if frame.get("type") != "joined":
                self.out(render.as_json(frame))
            return
        line = render.format_event(frame, self.multi_room)
        if line is not None:
            self.out(line)

    def status(self, text: str) -> None:
        if text == "connected":
            if self._lost:
                self.error("reconnected")
            self._lost = False
            return
        self._lost = True
        self.error(render.format_safe(text))  # may quote the server: one line, made safe

    def out(self, line: str) -> None:
        with self._lock:
            print(render.format_lines(line, terminal_width(sys.stdout)), flush=True)

    def error(self, line: str) -> None:
        with self._lock:
            text = render.format_lines(f"-- {line}", terminal_width(sys.stderr))
            print(text, file=sys.stderr, flush=True)


def run_chat(api: Api, state: ChatState, rooms: list[str], as_json: bool) -> int:
    # Messages still unacknowledged from an earlier run go out once this one is connected.
    for item in state.pending:
        if item["room"] not in rooms:
            rooms.append(item["room"])
    printer = Printer(as_json, multi_room=len(rooms) > 1)
    live = LiveSession(api, state, rooms, printer.event, printer.status)
    live.start()
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not as_json
    try:
        if interactive:
            code = _interactive(api, live, printer, rooms[0])
        else:
            code = _piped(live, rooms[0])
    except KeyboardInterrupt:
        code = 130
    finally:
        live.close()
    if live.fatal is not None:
        printer.error(render.format_error(live.fatal.code, live.fatal.message))
        return 1
    return code


def _piped(live: LiveSession, room: str) -> int:
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if line.strip():
            live.send(room, line)
        if live.fatal is not None:
            return 1
    live.wait_until_synced()
    return 0 if live.fatal is None else 1


def _interactive(api: Api, live: LiveSession, printer: Printer, room: str) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    current = [room]
    session: PromptSession[str] = PromptSession()
    printer.error(f"chatting in {room}; /help lists the commands, /quit leaves")

    def end_prompt_when_session_dies() -> None:
        # A dead session (logged out elsewhere, expired) ends the prompt at once,
        # instead of on the next line the user types.
        live.wait_stopped()
        app = session.app
        if live.fatal is not None and app.is_running and app.loop is not None:
            app.loop.call_soon_threadsafe(lambda: app.exit(exception=EOFError()))

    threading.Thread(target=end_prompt_when_session_dies, daemon=True).start()
    with patch_stdout(raw=True):
        while live.fatal is None:
            try:
                line = session.prompt(lambda: f"[{current[0]}] > ")
            except EOFError:
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                try:
                    if not _command(api, live, printer, current, line):
                        break
                except ClientError as err:
                    printer.error(render.format_error(err.code, err.message, room=current[0]))
                continue
            live.send(current[0], line)
    if live.pending_count():
        printer.error(f"waiting for {live.pending_count()} message(s) to be acknowledged...")
        if not live.wait_until_synced(timeout=5):
            printer.error("not acknowledged yet: they will be sent the next time you chat")
    return 0


def _command(api: Api, live: LiveSession, printer: Printer, current: list[str], line: str) -> bool:
    """Run one slash command; False means quit."""
    cmd, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if cmd == "/quit":
        return False
    if cmd == "/help":
        printer.out(HELP)
    elif cmd == "/rooms":
        for r in api.rooms():
            mark = "*" if r["id"] == current[0] else " "
            printer.out(f"{mark} {render.format_room(r)}")
    elif cmd == "/switch":
        if arg not in live.rooms:
            printer.error(
                f"not in room {arg or '?'}: /join it first" if arg else "usage: /switch ID"
            )
        else:
            current[0] = arg
            printer.multi_room = len(live.rooms) > 1
    elif cmd == "/join":
        if not arg:
            printer.error("usage: /join ID")
        else:
            try:
                api.join(arg)
            except ClientError as err:
                printer.error(render.format_error(err.code, err.message, room=arg))
                return True
            live.join(arg)
            current[0] = arg
            printer.multi_room = len(live.rooms) > 1
    elif cmd == "/leave":
        left = current[0]
        api.leave(left)
        live.leave(left)
        printer.error(f"left room {left}")
        if not live.rooms:
            return False
        current[0] = live.rooms[0]
    elif cmd == "/who":
        for m in api.members(current[0]):
            printer.out(render.format_member(m))
    elif cmd == "/users":
        for u in api.users():
            printer.out(render.format_user(u))
    elif cmd == "/history":
        n = int(arg) if arg.isdigit() and 0 < int(arg) <= 500 else 20
        for m in api.history(current[0], limit=n)["messages"]:
            printer.out(render.format_message(m))
    else:
        printer.error(f"unknown command {cmd}; /help lists them")
    return True
