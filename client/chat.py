"""`greenroom chat`: the interactive line mode, and the piped mode for scripts.

Interactive: prompt_toolkit keeps the line being typed intact at the bottom while
incoming messages are printed above it. Piped (stdin not a terminal): each input
line is sent, everything that arrives is printed, and it exits at end of input once
every line it sent is acknowledged.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from typing import Any

from client import render
from client.api import Api, ClientError
from client.config import ChatState, terminal_width
from client.connection import LiveSession

HELP = """commands:
  /rooms            the rooms you can see (* marks yours, with unread counts)
  /switch ROOM      talk in another room you follow here (by name or ID)
  /join ID          join a room (and switch to it)
  /leave            leave the current room: this ends your membership
                    (/switch only changes where you talk)
  /who              members of the current room, with status
  /users            everyone, with status
  /history [N]      the last N messages of the current room (default 20)
  /help             this list
  /quit             leave the chat (Ctrl-D works too); your memberships stay"""
NO_ROOM_HINT = "you are in no room now: /join ID to chat in one, /rooms lists them, /quit leaves"


class Printer:
    """Prints events as lines (or JSON); safe to call from the connection thread.

    Rooms are called by their names, with the id only where two followed rooms'
    names clash; lines are tagged with the room when several are followed. Every
    line goes through render.format_lines on its way out, so nothing unsafe reaches
    the terminal even from a line built without render's formatters.
    """

    def __init__(self, as_json: bool, names: dict[str, str]) -> None:
        self.as_json = as_json
        self.names = names  # room id -> name, as the server gave it
        self.rooms: list[str] = []  # the rooms followed: the live session's own list
        self._lock = threading.Lock()
        self._lost = False

    def label(self, room: str) -> str:
        """What to call a room (already safe)."""
        labels = render.room_labels(self.names, self.rooms)
        return labels.get(room) or render.format_safe(self.names.get(room, room))

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
        room = frame.get("room")
        name = self.label(room) if isinstance(room, str) else None
        tag = name if len(self.rooms) > 1 else None
        line = render.format_event(frame, tag=tag, name=name)
        if line is not None:
            self.out(line)

    def status(self, text: str) -> None:
        if text == "connected":
            if self._lost:
                self.error("reconnected")
            self._lost = False
            return
        if text.startswith("connection lost"):
            self._lost = True
        self.error(render.format_safe(text))  # may quote the server: one line, made safe

    def out(self, line: str) -> None:
        with self._lock:
            print(render.format_lines(line, terminal_width(sys.stdout)), flush=True)

    def error(self, line: str) -> None:
        with self._lock:
            text = render.format_lines(f"-- {line}", terminal_width(sys.stderr))
            print(text, file=sys.stderr, flush=True)


class View:
    """Where the person at an interactive chat is talking: a room id, or None after /leave."""

    def __init__(self, room: str | None) -> None:
        self.room = room


def run_chat(
    api: Api, state: ChatState, rooms: list[str], names: dict[str, str], as_json: bool
) -> int:
    # Messages still unacknowledged from an earlier run go out once this one is connected.
    for item in state.pending:
        if item["room"] not in rooms:
            rooms.append(item["room"])
    for room in rooms:
        if room not in names:
            try:
                names[room] = str(api.room(room)["name"])
            except (ClientError, KeyError, TypeError):
                pass  # called by its id
    printer = Printer(as_json, names)
    live = LiveSession(api, state, rooms, printer.event, printer.status)
    printer.rooms = live.rooms
    live.start()
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not as_json
    try:
        if interactive:
            code = _interactive(api, live, printer, View(rooms[0]))
        else:
            code = _piped(live, printer, rooms[0])
    except KeyboardInterrupt:
        code = 130
    finally:
        live.close()
    if live.fatal is not None:
        printer.error(render.format_error(live.fatal.code, live.fatal.message))
        return 1
    return code


def _say(live: LiveSession, printer: Printer, room: str, line: str) -> None:
    if live.send(room, line):
        printer.error(f"queued until the connection is back: {render.format_safe(line)}")


def _piped(live: LiveSession, printer: Printer, room: str) -> int:
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if line.strip():
            _say(live, printer, room, line)
        if live.fatal is not None:
            return 1
    live.wait_until_synced()
    return 0 if live.fatal is None else 1


def _interactive(api: Api, live: LiveSession, printer: Printer, view: View) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.patch_stdout import patch_stdout

    # The typed line is erased once entered: the server's echo (with its time) is the
    # one place it shows, so it is never printed twice.
    session: PromptSession[str] = PromptSession(erase_when_done=True)
    assert view.room is not None
    printer.error(f"chatting in {printer.label(view.room)}; /help lists the commands, /quit leaves")

    def prompt() -> str:
        return f"[{printer.label(view.room)}] > " if view.room is not None else "> "

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
                line = session.prompt(prompt)
            except EOFError:
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                printer.out(prompt() + line)  # the command stays above its answer
                try:
                    if not _command(api, live, printer, view, line):
                        break
                except ClientError as err:
                    printer.error(render.format_error(err.code, err.message, room=view.room))
                continue
            if view.room is None:
                printer.error(f"not sent: {render.format_safe(line)}")
                printer.error(NO_ROOM_HINT)
                continue
            _say(live, printer, view.room, line)
    if live.pending_count():
        printer.error(f"waiting for {live.pending_count()} message(s) to be acknowledged...")
        if not live.wait_until_synced(timeout=5):
            printer.error("not acknowledged yet: they will be sent the next time you chat")
    return 0


def _find_room(live: LiveSession, printer: Printer, arg: str) -> str | None:
    """A followed room by id, else by its (unique) name."""
    if arg in live.rooms:
        return arg
    named = [r for r in live.rooms if printer.names.get(r) == arg]
    return named[0] if len(named) == 1 else None


def _command(api: Api, live: LiveSession, printer: Printer, view: View, line: str) -> bool:
    """Run one slash command; False means quit."""
    cmd, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if cmd == "/quit":
        return False
    if cmd == "/help":
        printer.out(HELP)
    elif cmd == "/rooms":
        printer.out(render.format_rooms(api.rooms()))
    elif cmd == "/switch":
        room = _find_room(live, printer, arg)
        if not arg:
            printer.error("usage: /switch ROOM")
        elif room is None:
            printer.error(f"not in room {render.format_safe(arg)}: /join ID first")
        else:
            view.room = room
    elif cmd == "/join":
        if not arg:
            printer.error("usage: /join ID")
        else:
            try:
                joined = api.join(arg)
            except ClientError as err:
                printer.error(render.format_error(err.code, err.message, room=arg))
                return True
            printer.names[arg] = str(joined.get("name", arg))
            live.join(arg)
            view.room = arg
    elif cmd == "/leave":
        if view.room is None:
            printer.error(NO_ROOM_HINT)
            return True
        left, name = view.room, printer.label(view.room)
        live.flush_read([left])
        api.leave(left)
        live.leave(left)
        printer.error(f"left room {name}: you are no longer a member")
        view.room = live.rooms[0] if live.rooms else None
        if view.room is None:
            printer.error(NO_ROOM_HINT)
        else:
            printer.error(f"now talking in {printer.label(view.room)}")
    elif cmd == "/who":
        if view.room is None:
            printer.error(NO_ROOM_HINT)
        else:
            printer.out(render.format_members(api.members(view.room)))
    elif cmd == "/users":
        printer.out(render.format_users(api.users(), datetime.now().astimezone()))
    elif cmd == "/history":
        if view.room is None:
            printer.error(NO_ROOM_HINT)
            return True
        n = int(arg) if arg.isdigit() and 0 < int(arg) <= 500 else 20
        for m in api.history(view.room, limit=n)["messages"]:
            printer.out(render.format_message(m))
    else:
        printer.error(f"unknown command {render.format_safe(cmd)}; /help lists them")
    return True
