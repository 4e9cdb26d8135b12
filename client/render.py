"""Pure formatting: server objects and errors to the lines a person (or a script) reads.

Everything another person wrote (message bodies, room names, usernames, statuses,
error messages) goes through `format_safe` before it reaches the terminal, so a
hostile string can set no title, clear no screen, colour nothing and reorder
nothing, and a message with line breaks cannot pose as a second message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from wcwidth import wcwidth

# What continuation lines of a multi-line message start with. Never empty: a line
# that starts at column 0 is where a timestamp would be.
CONTINUATION = "    "

# Line breaks: CRLF first so it counts once, then LF, CR, VT, FF, NEL, LS, PS.
_LINE_BREAK = "\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]"
# Characters a terminal would act on or that reorder text: C0 controls (tab aside),
# DEL, C1 controls, the Unicode bidi marks, embeddings, overrides and isolates, and
# lone surrogates (they cannot even be encoded for output).
_UNSAFE = (
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\u2028\u2029\ud800-\udfff]"
)
_BREAK_OR_UNSAFE = re.compile(f"({_LINE_BREAK})|{_UNSAFE}|\t")
_ONE_UNSAFE = re.compile(f"{_UNSAFE}|\t")
# In JSON output: what json.dumps(ensure_ascii=False) leaves raw but a terminal
# could act on (C0 it escapes already).
_JSON_UNSAFE = re.compile(
    "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)
TAB = "    "


def _visible(ch: str) -> str:
    """One unsafe character as printable text: ^X for C0 and DEL, <U+XXXX> for the rest."""
    if ch == "\t":
        return TAB
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return "^" + chr(code ^ 0x40)  # caret notation, as `cat -v` and less show it
    return f"<U+{code:04X}>"


def format_safe(text: object, indent: str | None = None) -> str:
    """Any text from the server, made safe to print on a terminal.

    Nothing is executed, everything stays visible: C0 controls and DEL in caret
    notation (ESC is `^[`, BEL `^G`, DEL `^?`), C1 controls, bidi controls
    (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069) and lone surrogates as
    `<U+XXXX>`, and a tab as four spaces. Line breaks (LF, CR, CRLF, VT, FF, NEL,
    U+2028, U+2029): with `indent=None`, for one-line fields, they are shown like
    any other control (`^J`, `<U+2028>`); with an indent, each starts a new line
    that begins with `indent`, so what follows a break never starts at column 0.
    """
    s = text if isinstance(text, str) else str(text)
    if indent is None:
        return _ONE_UNSAFE.sub(lambda m: _visible(m.group()), s)
    if not indent:
        raise ValueError("a continuation indent must not be empty")
    return _BREAK_OR_UNSAFE.sub(lambda m: "\n" + indent if m.group(1) else _visible(m.group()), s)


def format_lines(text: str, width: int | None = None) -> str:
    """Output assembled from already formatted lines, each line checked once more.

    The last guard before a write: the line breaks we put there stay, anything
    else unsafe that slipped into a line is made visible (format_safe is a no-op
    on text it has already made safe). With the terminal's `width`, long lines
    are cut by wrap_lines.
    """
    safe = "\n".join(format_safe(line) for line in text.split("\n"))
    return safe if width is None else wrap_lines(safe, width)


def wrap_lines(text: str, width: int) -> str:
    """Lines cut to fit a terminal `width` columns wide, the rest on continuation lines.

    A line the terminal wraps by itself would go on at column 0, where a forged
    `HH:MM:SS <user>` could sit; cut here, it goes on after CONTINUATION instead.
    Columns are counted with wcwidth (East Asian wide characters take two).
    """
    limit = width - 1  # a line that fills the last column leaves some terminals mid-wrap
    if limit <= len(CONTINUATION) + 1:
        return text  # too narrow to help
    out: list[str] = []
    for line in text.split("\n"):
        piece: list[str] = []
        cols = 0
        for ch in line:
            w = max(wcwidth(ch), 0) if ch.isprintable() else 1
            if cols + w > limit:
                out.append("".join(piece))
                piece, cols = [CONTINUATION], len(CONTINUATION)
            piece.append(ch)
            cols += w
        out.append("".join(piece))
    return "\n".join(out)


def _parse_ts(ts: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).astimezone()
    except (ValueError, AttributeError, TypeError):
        return None


def local_time(ts: str) -> str:
    """HH:MM:SS in the local zone, from the server's ISO-8601 UTC time."""
    when = _parse_ts(ts)
    return when.strftime("%H:%M:%S") if when else "--:--:--"


def local_when(ts: str, now: datetime) -> str:
    """HH:MM:SS when `ts` falls on the local day of `now`, else YYYY-MM-DD HH:MM:SS."""
    when = _parse_ts(ts)
    if when is None:
        return "--:--:--"
    today = now.astimezone().date()
    return when.strftime("%H:%M:%S" if when.date() == today else "%Y-%m-%d %H:%M:%S")


def text_width(text: str) -> int:
    """Columns `text` takes on a terminal (wide characters two, combining ones none)."""
    return sum(max(wcwidth(ch), 0) if ch.isprintable() else 1 for ch in text)


def format_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """Rows of already safe cells as aligned columns under `header`, two spaces apart.

    Widths are counted with wcwidth, so a name in wide characters keeps the columns
    after it aligned; the columns in `right` (numbers) are aligned to the right.
    """
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(text_width(r[i]) for r in table) for i in range(len(header))]
    right = set(right)
    out = []
    for r in table:
        cells = []
        for i, cell in enumerate(r):
            pad = " " * (widths[i] - text_width(cell))
            cells.append(pad + cell if i in right else cell + pad)
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def room_labels(names: dict[str, str], rooms: Iterable[str]) -> dict[str, str]:
    """What to call each of `rooms` in chat: its name (made safe), plus its id where two names clash."""
    rooms = list(dict.fromkeys(rooms))
    shown = {r: format_safe(names.get(r, r)) for r in rooms}
    counts: dict[str, int] = {}
    for label in shown.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        r: label if counts[label] == 1 else f"{label} ({format_safe(r)})"
        for r, label in shown.items()
    }


def format_message(m: dict[str, Any], tag: str | None = None) -> str:
    """`HH:MM:SS <user> body` (`HH:MM:SS [tag] <user> body` with a room tag, already safe).

    Each further line of the body is indented under it.
    """
    room = f"[{tag}] " if tag is not None else ""
    body = format_safe(m.get("body"), indent=CONTINUATION)
    return f"{local_time(m.get('ts', ''))} {room}<{format_safe(m.get('user'))}> {body}"


def format_event(
    frame: dict[str, Any], tag: str | None = None, name: str | None = None
) -> str | None:
    """One line for a notice frame, or None for frames a person need not see.

    `tag` (already safe) prefixes lines about one room when several are followed;
    `name` (already safe) is what to call the frame's room, by default its id.
    """
    kind = frame.get("type")
    room = f"[{tag}] " if tag is not None and frame.get("room") else ""
    user = format_safe(frame.get("user"))
    if kind == "message":
        return format_message(frame, tag)
    if kind == "member_joined":
        return f"-- {room}{user} joined"
    if kind == "member_left":
        return f"-- {room}{user} left"
    if kind == "presence":
        return f"-- {user} is {format_safe(frame.get('status'))}"
    if kind == "room_deleted":
        return f"-- room {name if name is not None else format_safe(frame.get('room'))} was deleted"
    return None


def format_room(r: dict[str, Any]) -> str:
    """One room on one line, as `rooms show` and `rooms join` print it."""
    flags = " private" if r.get("private") else ""
    count = r.get("member_count")
    members = (
        f" {format_safe(count)}/{format_safe(r.get('capacity'))} members"
        if count is not None
        else ""
    )
    online = f", {format_safe(r['online_count'])} online" if "online_count" in r else ""
    unread = f", {format_unread(r['unread'])} unread" if r.get("member") and "unread" in r else ""
    return (
        f"{format_safe(r['id'])}  {format_safe(r['name'])}"
        f"  (owner {format_safe(r['owner'])}{flags}{members}{online}{unread})"
    )


def format_unread(n: object) -> str:
    """An unread count; the server stops counting at UNREAD_MAX (100 by default): "99+"."""
    return "99+" if isinstance(n, int) and n > 99 else format_safe(n)


def format_rooms(rooms: list[dict[str, Any]]) -> str:
    """The room list as columns; `*` marks the rooms you are a member of, with their unread count."""
    rows = []
    for r in rooms:
        count = r.get("member_count")
        unread = r.get("unread") if r.get("member") else None
        rows.append(
            [
                format_safe(r.get("id")),
                format_safe(r.get("name")),
                format_safe(r.get("owner")),
                f"{format_safe(count)}/{format_safe(r.get('capacity'))}"
                if count is not None
                else "",
                "private" if r.get("private") else "public",
                format_unread(unread) if unread is not None else "",
            ]
        )
    header = ["ID", "NAME", "OWNER", "MEMBERS", "ACCESS", "UNREAD"]
    lines = format_table(header, rows, right=[5]).split("\n")
    marks = [" ", *("*" if r.get("member") else " " for r in rooms)]
    return "\n".join(f"{mark} {line}" for mark, line in zip(marks, lines, strict=True))


def _last_seen(u: dict[str, Any], now: datetime) -> str:
    seen = u.get("last_seen")
    return local_when(seen, now) if seen and u.get("status") != "online" else ""


def format_user(u: dict[str, Any], now: datetime) -> str:
    """One user on one line, as `status` prints it; the date shows when last seen before today."""
    seen = _last_seen(u, now)
    when = f", last seen {seen}" if seen else ""
    return f"{format_safe(u['username'])}  {format_safe(u['status'])}{when}"


def format_users(users: list[dict[str, Any]], now: datetime) -> str:
    """Everyone as columns: name, status and (when offline) when last seen."""
    rows = [
        [format_safe(u.get("username")), format_safe(u.get("status")), _last_seen(u, now)]
        for u in users
    ]
    return format_table(["USER", "STATUS", "LAST SEEN"], rows)


def format_members(members: list[dict[str, Any]]) -> str:
    """A room's members as columns: name and status."""
    rows = [[format_safe(m.get("username")), format_safe(m.get("status"))] for m in members]
    return format_table(["USER", "STATUS"], rows)


def format_error(code: str, message: str, room: str | None = None, user: str | None = None) -> str:
    """A one-line explanation; room and user make the common refusals concrete."""
    room = format_safe(room) if room is not None else None
    user = format_safe(user) if user is not None else None
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
    message = format_safe(message)
    return known.get(code) or message[:1].lower() + message[1:].rstrip(".")


def as_json(obj: Any) -> str:
    """One line of JSON; the characters a terminal could act on are \\u-escaped.

    json.dumps escapes C0 controls but, with ensure_ascii=False (kept so that
    text stays readable), leaves DEL, C1, bidi controls, U+2028/U+2029 and lone
    surrogates raw. They can only occur inside strings, so escaping them keeps
    the document valid and its values unchanged.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
