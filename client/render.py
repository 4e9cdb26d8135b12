"""Pure formatting: server objects and errors to the lines a person (or a script) reads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def local_time(ts: str) -> str:
    """HH:MM:SS in the local zone, from the server's ISO-8601 UTC time."""
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")
    except (ValueError, AttributeError):
        return "--:--:--"


def format_message(m: dict[str, Any], show_room: bool = False) -> str:
    room = f"[{m.get('room')}] " if show_room else ""
    return f"{local_time(m.get('ts', ''))} {room}<{m.get('user')}> {m.get('body')}"


def format_event(frame: dict[str, Any], show_room: bool = False) -> str | None:
    """One line for a notice frame, or None for frames a person need not see."""
    kind = frame.get("type")
    room = f"[{frame.get('room')}] " if show_room and frame.get("room") else ""
    if kind == "message":
        return format_message(frame, show_room)
    if kind == "member_joined":
        return f"-- {room}{frame['user']} joined"
    if kind == "member_left":
        return f"-- {room}{frame['user']} left"
    if kind == "presence":
        return f"-- {frame['user']} is {frame['status']}"
    if kind == "room_deleted":
        return f"-- room {frame['room']} was deleted"
    if kind == "typing":
        return None
    return None


def format_room(r: dict[str, Any]) -> str:
    flags = " private" if r.get("private") else ""
    count = r.get("member_count")
    members = f" {count}/{r.get('capacity')} members" if count is not None else ""
    online = f", {r['online_count']} online" if "online_count" in r else ""
    return f"{r['id']}  {r['name']}  (owner {r['owner']}{flags}{members}{online})"


def format_user(u: dict[str, Any]) -> str:
    seen = u.get("last_seen")
    when = f", last seen {local_time(seen)}" if seen and u.get("status") != "online" else ""
    return f"{u['username']}  {u['status']}{when}"


def format_member(m: dict[str, Any]) -> str:
    return f"{m['username']}  {m['status']}"


def format_error(code: str, message: str, room: str | None = None, user: str | None = None) -> str:
    """A one-line explanation; room and user make the common refusals concrete."""
    known = {
        "room_not_found": f"no such room: {room}" if room else None,
        "room_full": f"room {room} is full" if room else None,
        "room_restricted": f"room {room} is private: ask its owner for an invite" if room else None,
        "not_a_member": f"you are not a member of room {room}" if room else None,
        "not_room_owner": f"only the owner of room {room} can do that" if room else None,
        "user_not_found": f"no such user: {user}" if user else None,
        "unauthorized": "not logged in, or the session expired: run greenroom login USERNAME",
        "invalid_credentials": "wrong username or password",
    }
    return known.get(code) or message[:1].lower() + message[1:].rstrip(".")


def as_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
