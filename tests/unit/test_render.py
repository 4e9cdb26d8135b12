"""The CLI's renderer shows other people's text without letting the terminal act on it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from client.render import (
    CONTINUATION,
    as_json,
    format_error,
    format_event,
    format_lines,
    format_members,
    format_message,
    format_room,
    format_rooms,
    format_safe,
    format_user,
    format_users,
    local_when,
    room_labels,
    text_width,
    wrap_lines,
)

TS = "2024-05-01T12:00:00.000Z"
# What a terminal would act on: C0 (tab aside), DEL, C1, bidi controls, lone surrogates.
RAW = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    "\u2028\u2029\ud800-\udfff]"
)
HOSTILE = "hi\x1b]0;pwned\x07\x1b[2J\x1b[31mred\u202eevil\n09:00:00 <admin> hi"


def lines_of(text: str) -> list[str]:
    return text.split("\n")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "^[[31mred^[[0m"),  # colour
        ("\x1b]0;pwned\x07", "^[]0;pwned^G"),  # OSC: set the window title
        ("\x1b]0;pwned\x1b\\", "^[]0;pwned^[\\"),  # OSC ended by ST
        ("\x1b[2J\x1b[H", "^[[2J^[[H"),  # clear the screen, cursor home
        ("\x9b31m", "<U+009B>31m"),  # C1 CSI: colour without an ESC
        ("\x9d0;t\x9c", "<U+009D>0;t<U+009C>"),  # C1 OSC and ST
        ("a\u202eevil", "a<U+202E>evil"),  # right-to-left override
        ("\u2066\u2067\u2068\u2069", "<U+2066><U+2067><U+2068><U+2069>"),  # isolates
        ("\u200e\u200f\u061c", "<U+200E><U+200F><U+061C>"),  # LRM, RLM, ALM
        ("\u202a\u202b\u202c\u202d", "<U+202A><U+202B><U+202C><U+202D>"),
        ("bell\x07 back\x08 del\x7f nul\x00", "bell^G back^H del^? nul^@"),
        ("a\tb", "a    b"),
        ("bad \ud800 half", "bad <U+D800> half"),
        ("plain café 漢字 🙂", "plain café 漢字 🙂"),
    ],
)
def test_controls_are_shown_never_executed(raw: str, shown: str) -> None:
    """ESC, C0, DEL, C1, bidi controls and lone surrogates become visible text; the rest stays."""
    assert format_safe(raw) == shown
    assert format_safe(raw, indent=CONTINUATION) == shown
    assert not RAW.search(format_safe(raw))


def test_format_safe_is_idempotent_and_takes_any_value() -> None:
    """Text already made safe passes the last guard unchanged; a non-string is shown as its str()."""
    assert format_safe(format_safe(HOSTILE)) == format_safe(HOSTILE)
    once = format_safe(HOSTILE, indent=CONTINUATION)
    assert format_lines(once) == once
    assert format_safe(None) == "None" and format_safe(7) == "7"


def test_a_fake_prefix_after_a_newline_is_an_indented_continuation() -> None:
    """A body with a newline and a forged `HH:MM:SS <admin>` cannot print a line of its own."""
    line = format_message({"ts": TS, "user": "mallory", "body": HOSTILE})
    first, second = lines_of(line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d <mallory> hi\^\[\]0;pwned.*<U\+202E>evil", first)
    assert second == CONTINUATION + "09:00:00 <admin> hi"
    assert not RAW.search(line.replace("\n", ""))


@pytest.mark.parametrize(
    "brk", ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x0b", "\x0c", "\x85"], ids=repr
)
def test_every_kind_of_line_break_starts_one_indented_line(brk: str) -> None:
    """LF, CR, CRLF, VT, FF, NEL, U+2028 and U+2029 each start one continuation line."""
    assert format_safe(f"one{brk}two{brk}three", indent="  ") == "one\n  two\n  three"


def test_one_line_fields_show_line_breaks_visibly() -> None:
    """Names and error messages stay on one line: their line breaks are shown, not made."""
    assert format_safe("a\r\nb\u2028c\x85d") == "a^M^Jb<U+2028>c<U+0085>d"
    room = {"id": "r1", "name": "x\n09:00:00 <admin> hi", "owner": "eve\x1b[2J"}
    assert format_room(room) == "r1  x^J09:00:00 <admin> hi  (owner eve^[[2J)"
    now = datetime.now().astimezone()
    assert format_user({"username": "a\u202eb", "status": "online"}, now) == "a<U+202E>b  online"
    assert format_members([{"username": "m", "status": "on\x1b[5mline"}]).splitlines()[1] == (
        "m     on^[[5mline"
    )


def test_notices_and_errors_are_made_safe() -> None:
    """Presence and join notices, and a server's error message, never carry raw controls."""
    for frame in (
        {"type": "presence", "user": "e\x1bve", "status": "away\x07"},
        {"type": "member_joined", "room": "r\x9b", "user": "a\nb"},
        {"type": "room_deleted", "room": "\u202er"},
        {"type": "message", "room": "r", "user": "u", "body": HOSTILE, "ts": TS},
    ):
        shown = format_event(frame, tag="t")
        assert shown is not None and not RAW.search(shown.replace("\n" + CONTINUATION, ""))
    err = format_error("weird", "Bad\x1b]0;x\x07 thing\n09:00:00 <admin> ok.")
    assert err == "bad^[]0;x^G thing^J09:00:00 <admin> ok"
    assert format_error("room_not_found", "", room="\x1b[2J") == "no such room: ^[[2J"


def test_long_text_keeps_every_character() -> None:
    """A long hostile body is escaped in full: no truncation, nothing raw, linear size."""
    body = ("\x1b[2J\u202e" + "x" * 50 + "\n") * 2000
    shown = format_safe(body, indent=CONTINUATION)
    assert shown.count("^[[2J") == 2000 and shown.count("<U+202E>") == 2000
    assert len(lines_of(shown)) == 2001
    assert not RAW.search(shown.replace("\n", ""))


def test_json_stays_valid_and_escapes_what_a_terminal_would_act_on() -> None:
    """--json output parses back to the same values and holds no raw ESC, C1, bidi or DEL."""
    obj = {"body": HOSTILE + "\x9b\x7f\u2028\ud800\\\u0085", "n": 1, "s": "café"}
    text = as_json(obj)
    assert "\n" not in text and not RAW.search(text)
    assert json.loads(text) == obj
    assert "café" in text  # readable text stays readable


def test_wrap_lines_never_lets_the_terminal_wrap_to_column_0() -> None:
    """A line longer than the terminal goes on at the continuation indent, not at column 0."""
    line = "12:00:00 <eve> " + "x" * 64 + "09:00:00 <admin> hi"
    wrapped = lines_of(wrap_lines(line, 80))
    assert len(wrapped) == 2 and all(len(w) < 80 for w in wrapped)
    assert wrapped[1].startswith(CONTINUATION) and "".join(wrapped).replace(
        CONTINUATION, ""
    ) == line.replace(CONTINUATION, "")
    wide = lines_of(wrap_lines("漢" * 50, 20))  # two columns each
    assert all(len(w.strip()) * 2 <= 19 for w in wide) and "".join(wide).count("漢") == 50
    assert wrap_lines("short\n    lines", 80) == "short\n    lines"


# ---- columns, dates and room names ------------------------------------------------


def test_lists_are_aligned_columns_counted_in_terminal_cells() -> None:
    """`rooms`, `users` and `members` line up their columns, wide characters counting two cells."""
    rooms = [
        {
            "id": "aaaa2",
            "name": "漢字",
            "owner": "eve",
            "capacity": 5,
            "private": True,
            "member_count": 2,
            "member": True,
            "unread": 12,
        },
        {
            "id": "bbbb3",
            "name": "lobby-big",
            "owner": "alice",
            "capacity": 10000,
            "private": False,
            "member_count": 1,
            "member": False,
        },
        {
            "id": "cccc4",
            "name": "x\x1b[2J",
            "owner": "bob",
            "capacity": 9,
            "private": False,
            "member_count": 1,
            "member": True,
            "unread": 0,
        },
    ]
    lines = format_rooms(rooms).splitlines()
    assert lines == [
        "  ID     NAME       OWNER  MEMBERS  ACCESS   UNREAD",
        "* aaaa2  漢字       eve    2/5      private      12",
        "  bbbb3  lobby-big  alice  1/10000  public",
        "* cccc4  x^[[2J     bob    1/9      public        0",
    ]
    # Every column starts at the same terminal cell on every line.
    starts = {
        text_width(line[: line.index(cell)])
        for line, cell in zip(lines, ["NAME", "漢字", "lobby-big", "x^[[2J"], strict=True)
    }
    assert len(starts) == 1

    users = [
        {"username": "ünïcode", "status": "online", "last_seen": None},
        {"username": "bo", "status": "offline", "last_seen": None},
    ]
    now = datetime.now().astimezone()
    assert format_users(users, now).splitlines() == [
        "USER     STATUS   LAST SEEN",
        "ünïcode  online",
        "bo       offline",
    ]


def test_last_seen_shows_the_date_unless_it_is_today() -> None:
    """A time from today is HH:MM:SS; from another day it carries its local date."""
    now = datetime.now().astimezone().replace(hour=12, minute=0, second=0, microsecond=0)
    today = now.replace(hour=9, minute=30, second=5)
    earlier = now - timedelta(days=3)
    utc = "%Y-%m-%dT%H:%M:%S.000Z"
    today_ts = today.astimezone(UTC).strftime(utc)
    earlier_ts = earlier.astimezone(UTC).strftime(utc)
    assert local_when(today_ts, now) == "09:30:05"
    assert local_when(earlier_ts, now) == earlier.strftime("%Y-%m-%d 12:00:00")
    user = {"username": "bob", "status": "offline", "last_seen": earlier_ts}
    assert (
        format_user(user, now) == f"bob  offline, last seen {earlier.strftime('%Y-%m-%d')} 12:00:00"
    )
    assert format_users([user], now).splitlines()[1].endswith(earlier.strftime("%Y-%m-%d 12:00:00"))
    assert local_when("nonsense", now) == "--:--:--"


def test_rooms_are_called_by_name_with_the_id_only_where_names_clash() -> None:
    """Chat tags lines with room names; two followed rooms of the same name also show their ids."""
    names = {"r1": "lobby", "r2": "lobby", "r3": "dev\x1b[2J", "r4": "lobby"}
    assert room_labels(names, ["r1", "r3"]) == {"r1": "lobby", "r3": "dev^[[2J"}
    assert room_labels(names, ["r1", "r2", "r3"]) == {
        "r1": "lobby (r1)",
        "r2": "lobby (r2)",
        "r3": "dev^[[2J",
    }
    assert room_labels({}, ["zz9"]) == {"zz9": "zz9"}  # a room whose name is unknown
    frame = {"type": "message", "room": "r1", "user": "u", "body": "hi", "ts": TS}
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d \[lobby \(r1\)\] <u> hi", format_event(frame, tag="lobby (r1)") or ""
    )
    assert (
        format_event({"type": "room_deleted", "room": "r1"}, name="lobby")
        == "-- room lobby was deleted"
    )


def test_unread_counts_past_the_servers_cap_show_as_99_plus() -> None:
    """The server stops counting at UNREAD_MAX (100): the list says 99+, not a count it does not know."""
    room = {"id": "r1", "name": "busy", "owner": "bob", "capacity": 9, "private": False}
    listed = format_rooms([{**room, "member_count": 1, "member": True, "unread": 100}])
    assert listed.splitlines()[1].endswith("99+")
    assert format_rooms([{**room, "member_count": 1, "member": True, "unread": 99}]).endswith("99")


def test_the_chat_help_fits_an_80_column_terminal() -> None:
    """A longer line wraps on a standard terminal, and /help reads as a broken list."""
    from client.chat import HELP

    assert max(len(line) for line in HELP.splitlines()) < 80
