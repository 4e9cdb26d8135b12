"""The chat feature's data as the store returns it: rooms, and messages from draft to stored.

Timestamps are seconds since the epoch here; chat.protocol alone turns these into
wire JSON and frames.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from core.errors import ChatError


class Sender(Protocol):
    """Whoever waits for a draft's ack or error: the sending WebSocket connection."""

    def send(self, obj: dict[str, object]) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A stored message; chat.protocol alone turns it into wire JSON and frames."""

    room: str
    seq: int
    user: str
    body: str
    ts: float  # seconds since the epoch
    client_msg_id: str | None


def message_row(row: Any) -> Message:
    """A Message from a messages row (sqlite3.Row or core.postgres.Row)."""
    return Message(
        row["room_id"], row["seq"], row["username"], row["body"], row["ts"], row["client_msg_id"]
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Draft:
    """A message waiting to be stored, and who waits for the outcome."""

    room: str
    user: str
    body: str
    client_msg_id: str | None
    ts: float
    # The WebSocket connection that gets the ack or error (None for REST posts).
    sender: Sender | None = None
    # When the send frame was read (monotonic), for the send-to-ack latency metric.
    received: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of storing one draft: the message, whether it existed already, or an error."""

    message: Message | None = None
    duplicate: bool = False
    error: ChatError | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Room:
    id: str
    name: str
    owner: str
    capacity: int
    private: bool
    created_at: float  # seconds since the epoch
    last_seq: int


def room_row(row: Any) -> Room:
    """A Room from a rooms row (sqlite3.Row or core.postgres.Row)."""
    return Room(
        row["id"],
        row["name"],
        row["owner"],
        row["capacity"],
        bool(row["private"]),
        row["created_at"],
        row["last_seq"],
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ReadMarker:
    """A member's read marker in a room, and how many messages from others lie after it."""

    room: str
    last_read_seq: int
    unread: int


@dataclasses.dataclass(frozen=True, slots=True)
class ListedRoom:
    """A room in GET /api/rooms: with its member count and whether the caller is a member."""

    room: Room
    member_count: int
    member: bool
    read: ReadMarker | None = None  # only for members


@dataclasses.dataclass(frozen=True, slots=True)
class RoomView:
    """One room as its page shows it (GET /api/rooms/<id>, join): with who is in it."""

    room: Room
    member: bool
    member_count: int
    online_count: int
    read: ReadMarker | None = None  # only for members
