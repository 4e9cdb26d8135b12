"""The wire format: client frames parsed and validated into objects, server frames built. No I/O."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from chat.models import ListedRoom, Message, ReadMarker, Room, RoomView
from core.errors import ChatError
from core.wire import is_utf8, iso, text_frame

MAX_CLIENT_MSG_ID_CHARS = 64
MAX_ROOM_ID_CHARS = 64

# client frame type -> {field: (required, types)}
_FIELDS: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    "auth": {"token": (True, (str,))},
    "join": {"room": (True, (str,)), "since": (False, (int,))},
    "leave": {"room": (True, (str,))},
    "send": {"room": (True, (str,)), "body": (True, (str,)), "client_msg_id": (True, (str,))},
    "typing": {"room": (True, (str,))},
    "read": {"room": (True, (str,)), "seq": (True, (int,))},
    "ping": {},
}


@dataclasses.dataclass(frozen=True)
class Frame:
    """A validated client frame."""

    type: str
    room: str | None = None
    since: int | None = None
    seq: int | None = None
    body: str | None = None
    client_msg_id: str | None = None
    token: str | None = None


def invalid_frame(message: str, **echo: object) -> ChatError:
    return ChatError(400, "invalid_frame", message, **echo)


def _echo(obj: dict[str, object]) -> dict[str, object]:
    """The room and client_msg_id of a frame, repeated in an error it caused."""
    return {
        k: v for k in ("room", "client_msg_id") if isinstance(v := obj.get(k), str) and is_utf8(v)
    }


def parse_frame(text: str | bytes, max_message_chars: int) -> Frame:
    """Parse one client frame; raise ChatError (an error frame, connection stays open) if bad."""
    if isinstance(text, bytes):
        raise invalid_frame("Frames are JSON text, not binary.")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid_frame("The frame is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise invalid_frame("A frame is a JSON object with a type field.")
    echo = _echo(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise invalid_frame("A frame is a JSON object with a type field.", **echo)
    fields = _FIELDS.get(kind)
    if fields is None:
        raise ChatError(400, "unknown_type", f"Unknown frame type {kind[:40]!r}.", **echo)
    values: dict[str, Any] = {}  # field -> value, of one of the field's types (checked below)
    for name, (required, types) in fields.items():
        value = obj.get(name)
        if value is None:
            if required:
                raise invalid_frame(f"A {kind} frame needs the field {name}.", **echo)
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise invalid_frame(f"The field {name} of a {kind} frame has the wrong type.", **echo)
        if isinstance(value, str) and not is_utf8(value):
            raise invalid_frame(f"The field {name} is not valid Unicode text.", **echo)
        values[name] = value
    frame = Frame(type=kind, **values)
    if frame.room is not None:
        check_room_id(frame.room, echo)
    if frame.since is not None and frame.since < 0:
        raise invalid_frame("since is a sequence number, 0 or more.", **echo)
    if frame.seq is not None and frame.seq < 0:
        raise invalid_frame("seq is a sequence number, 0 or more.", **echo)
    if frame.client_msg_id is not None:
        check_client_msg_id(frame.client_msg_id, echo)
    if frame.body is not None:
        check_body(frame.body, max_message_chars, echo)
    return frame


def check_room_id(room: str, echo: dict[str, object] | None = None) -> str:
    if not room or len(room) > MAX_ROOM_ID_CHARS:
        raise invalid_frame("room is a room id.", **(echo or {}))
    return room


def check_client_msg_id(value: object, echo: dict[str, object] | None = None) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_CLIENT_MSG_ID_CHARS
        or not value.isprintable()
    ):
        raise ChatError(
            400,
            "invalid_message",
            f"client_msg_id is 1 to {MAX_CLIENT_MSG_ID_CHARS} printable characters.",
            **(echo or {}),
        )
    return value


def check_body(body: object, max_chars: int, echo: dict[str, object] | None = None) -> str:
    if not isinstance(body, str) or not body.strip() or not is_utf8(body):
        raise ChatError(
            400,
            "invalid_message",
            "A message body is non-empty, valid Unicode text.",
            **(echo or {}),
        )
    if len(body) > max_chars:
        raise ChatError(
            400,
            "invalid_message",
            f"A message body is at most {max_chars} characters.",
            **(echo or {}),
        )
    return body


def error_frame(err: ChatError) -> dict[str, object]:
    return {"type": "error", **err.to_dict()}


def message_json(m: Message) -> dict[str, object]:
    """A stored message as the API shows it (REST bodies, history, `message` frames)."""
    return {
        "room": m.room,
        "seq": m.seq,
        "user": m.user,
        "body": m.body,
        "ts": iso(m.ts),
        "client_msg_id": m.client_msg_id,
    }


def message_frame(m: Message) -> bytes:
    """The `message` frame, encoded once for every subscriber and every worker."""
    return text_frame({"type": "message", **message_json(m)})


def ack_frame(m: Message, client_msg_id: str | None) -> dict[str, object]:
    return {"type": "ack", "room": m.room, "client_msg_id": client_msg_id, "seq": m.seq}


def room_json(room: Room) -> dict[str, object]:
    """A room as the API shows it (POST /api/rooms answers just this)."""
    return {
        "id": room.id,
        "name": room.name,
        "owner": room.owner,
        "capacity": room.capacity,
        "private": room.private,
        "created_at": iso(room.created_at),
        "last_seq": room.last_seq,
    }


def marker_json(marker: ReadMarker | None) -> dict[str, object]:
    """A member's `last_read_seq` and `unread` (nothing for someone who is not a member)."""
    if marker is None:
        return {}
    return {"last_read_seq": marker.last_read_seq, "unread": marker.unread}


def read_frame(marker: ReadMarker) -> dict[str, object]:
    """The `read` frame (and the REST answer, without its type) for a read marker."""
    return {"type": "read", "room": marker.room, **marker_json(marker)}


def listed_room_json(listed: ListedRoom) -> dict[str, object]:
    return {
        **room_json(listed.room),
        "member_count": listed.member_count,
        "member": listed.member,
        **marker_json(listed.read),
    }


def room_view_json(view: RoomView) -> dict[str, object]:
    return {
        **room_json(view.room),
        "member": view.member,
        "member_count": view.member_count,
        "online_count": view.online_count,
        **marker_json(view.read),
    }
