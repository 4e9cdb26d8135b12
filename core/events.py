"""The events that features exchange, as frozen dataclasses, and their wire form between workers.

chat, auth and presence never call each other: each emits events on the backplane
(core.backplane) and subscribes to the kinds it cares about. Events with a `WIRE`
name cross to other workers as a JSON object {"k": name, <short key>: value, ...};
the others (`WIRE` None) stay inside this process. decode() checks every field's
type, so a malformed event from Redis is dropped, never half-handled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    # The event's name on the wire, and its fields' short keys; WIRE None: local only.
    WIRE: ClassVar[str | None] = None
    KEYS: ClassVar[dict[str, str]] = {}


# ---- membership and live rooms (chat) -------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MemberJoined(Event):
    WIRE: ClassVar[str | None] = "joined"
    KEYS: ClassVar[dict[str, str]] = {"room": "r", "user": "u"}
    room: str
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class MemberLeft(Event):
    WIRE: ClassVar[str | None] = "left"
    KEYS: ClassVar[dict[str, str]] = {"room": "r", "user": "u"}
    room: str
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class RoomDeleted(Event):
    WIRE: ClassVar[str | None] = "deleted"
    KEYS: ClassVar[dict[str, str]] = {"room": "r"}
    room: str


@dataclasses.dataclass(frozen=True, slots=True)
class ReadMarked(Event):
    """A user's read marker in a room moved: every connection of theirs is told."""

    WIRE: ClassVar[str | None] = "read"
    KEYS: ClassVar[dict[str, str]] = {"user": "u", "room": "r", "seq": "s", "unread": "n"}
    user: str
    room: str
    seq: int
    unread: int


@dataclasses.dataclass(frozen=True, slots=True)
class Typing(Event):
    WIRE: ClassVar[str | None] = "typing"
    KEYS: ClassVar[dict[str, str]] = {"room": "r", "user": "u"}
    room: str
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class Messages(Event):
    """Another worker's stored messages: (room, seq, encoded frame), in commit order.

    They cross as the backplane's own compact batch format, not as JSON.
    """

    items: list[tuple[str, int, bytes]]


# ---- sessions (auth, chat) --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SessionClosed(Event):
    """Logout or a newer login ended the session: its sockets close with 4001 everywhere."""

    WIRE: ClassVar[str | None] = "logout"
    KEYS: ClassVar[dict[str, str]] = {"session": "s", "reason": "why"}
    session: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class SessionIdle(Event):
    """The session's last connection on this worker closed: its idle clock starts now."""

    session: str


# ---- presence ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class UserOnline(Event):
    """The user's first connection on the sending worker opened."""

    WIRE: ClassVar[str | None] = "online"
    KEYS: ClassVar[dict[str, str]] = {"user": "u"}
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class UserOffline(Event):
    """The user's last connection on the sending worker closed."""

    WIRE: ClassVar[str | None] = "offline"
    KEYS: ClassVar[dict[str, str]] = {"user": "u"}
    user: str


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceChanged(Event):
    """The user's cluster-wide status changed: tell their co-members on this worker."""

    user: str
    status: str


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat(Event):
    """A worker lives, holding `count` users."""

    WIRE: ClassVar[str | None] = "hb"
    KEYS: ClassVar[dict[str, str]] = {"count": "n"}
    count: int


@dataclasses.dataclass(frozen=True, slots=True)
class Hello(Event):
    """A worker (re)subscribed: everyone answers with their WorkerState."""

    WIRE: ClassVar[str | None] = "hello"


@dataclasses.dataclass(frozen=True, slots=True)
class StateWanted(Event):
    """A worker missed some of `worker`'s presence events: `worker` should send its state."""

    WIRE: ClassVar[str | None] = "want"
    KEYS: ClassVar[dict[str, str]] = {"worker": "w"}
    worker: str


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerState(Event):
    """Every user the sending worker holds."""

    WIRE: ClassVar[str | None] = "state"
    KEYS: ClassVar[dict[str, str]] = {"users": "u"}
    users: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Goodbye(Event):
    """The sending worker is shutting down: its users are offline unless held elsewhere."""

    WIRE: ClassVar[str | None] = "bye"


# ---- the backplane's own, local only -----------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Resubscribed(Event):
    """The backplane (re)subscribed: whatever was published meanwhile was missed."""


@dataclasses.dataclass(frozen=True, slots=True)
class Tick(Event):
    """A backplane heartbeat period passed (monotonic `now`)."""

    now: float


WIRE_KINDS: dict[str, type[Event]] = {
    cls.WIRE: cls
    for cls in (
        MemberJoined,
        MemberLeft,
        RoomDeleted,
        ReadMarked,
        Typing,
        SessionClosed,
        UserOnline,
        UserOffline,
        Heartbeat,
        Hello,
        StateWanted,
        WorkerState,
        Goodbye,
    )
    if cls.WIRE is not None
}


def encode(event: Event) -> dict[str, Any]:
    """The event's JSON object for other workers."""
    if event.WIRE is None:
        raise ValueError(f"{type(event).__name__} stays inside the process")
    out: dict[str, Any] = {"k": event.WIRE}
    for field, key in event.KEYS.items():
        value = getattr(event, field)
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def decode(obj: dict[str, Any]) -> Event:
    """An event from its JSON object; ValueError for an unknown kind or a field of the wrong type."""
    kind = obj.get("k")
    # Any JSON value may arrive: a list or object as k must not reach the dict lookup.
    cls = WIRE_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event kind {obj.get('k')!r}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        value: Any = obj.get(cls.KEYS[field.name])
        if field.type == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif field.type == "tuple[str, ...]":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"{cls.WIRE}: {cls.KEYS[field.name]} has the wrong type")
        values[field.name] = value
    return cls(**values)
