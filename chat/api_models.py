"""The chat routes' request and response models: what /api/openapi.json says of /api/rooms/*.

The checks that are rules of the chat (a name's length, a capacity's bound, a body's
characters) stay in chat/membership.py and chat/protocol.py, shared with /ws; these
models say the shapes, and a shape that does not fit gets the same code the rule gives.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from chat.errors import invalid_room
from chat.protocol import MAX_CLIENT_MSG_ID_CHARS
from core.errors import ChatError, bad_request
from core.openapi import Absent, JsonBody, Page, Query, WholeNumber

TIMESTAMP: JsonDict = {"format": "date-time"}


# ---- requests ----------------------------------------------------------------------


class CreateRoomBody(JsonBody):
    """A new room."""

    name: str = Field(min_length=1, description="1 to MAX_ROOM_NAME_CHARS characters, not blank.")
    capacity: int | None = Field(
        None, ge=1, description="1 to MAX_ROOM_CAPACITY; absent or null: DEFAULT_ROOM_CAPACITY."
    )
    private: bool | None = Field(None, description="Absent or null: false.")

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        return invalid_room(
            {
                "capacity": "capacity is a whole number, 1 or more, up to the room capacity limit.",
                "private": "private is true or false.",
            }.get(field, "A room name is a non-empty string.")
        )


class ReadBody(JsonBody):
    """Move your read marker."""

    seq: int = Field(ge=0, description="The newest seq you have read.")

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        return bad_request("Send a JSON object with seq, a sequence number, 0 or more.")


class InviteBody(JsonBody):
    """Invite a user to a private room you own."""

    username: str = Field(min_length=1, description="In any case.")

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        return bad_request("Send a JSON object with a string field username.")


class PostBody(JsonBody):
    """A message to post."""

    body: str = Field(
        min_length=1, description="1 to MAX_MESSAGE_CHARS characters, not only whitespace."
    )
    client_msg_id: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CLIENT_MSG_ID_CHARS,
        description="Your idempotency key: a retry with it returns the stored message (200).",
    )

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        if field == "client_msg_id":
            message = f"client_msg_id is 1 to {MAX_CLIENT_MSG_ID_CHARS} printable characters."
        else:
            message = "A message body is non-empty, valid Unicode text."
        return ChatError(400, "invalid_message", message)


class HistoryQuery(Query):
    """Which stored messages: before or after a seq, and how many."""

    before: WholeNumber | Absent = Field(None, description="Only messages with a smaller seq.")
    after: WholeNumber | Absent = Field(None, description="Only messages with a larger seq.")
    limit: WholeNumber | Absent = Field(
        None, description="1 to HISTORY_MAX_PAGE_SIZE; absent: HISTORY_PAGE_SIZE."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        return bad_request(f"{field} must be a whole number, 0 or more.")


# ---- responses ---------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoomOut(_Out):
    """A room as created."""

    id: str
    name: str
    owner: str
    capacity: int
    private: bool
    created_at: str = Field(json_schema_extra=TIMESTAMP)
    last_seq: int = Field(description="The newest seq stored in the room (0 if none).")


class ListedRoom(RoomOut):
    """A room in the list: your read marker only where you are a member."""

    member_count: int
    member: bool
    last_read_seq: int | Absent = Field(None, description="Sent only where member is true.")
    unread: int | Absent = Field(None, description="Sent only where member is true.")


class RoomView(RoomOut):
    """One room as you see it."""

    member: bool
    member_count: int
    online_count: int
    last_read_seq: int | Absent = Field(None, description="Sent only where member is true.")
    unread: int | Absent = Field(None, description="Sent only where member is true.")


class RoomPage(Page):
    rooms: list[ListedRoom]


class Member(_Out):
    username: str
    status: Literal["online", "offline"]


class MemberPage(Page):
    members: list[Member]


class ReadMarker(_Out):
    room: str
    last_read_seq: int
    unread: int


class MessageOut(_Out):
    """A stored message."""

    room: str
    seq: int
    user: str
    body: str
    ts: str = Field(json_schema_extra=TIMESTAMP)
    client_msg_id: str | None


class History(_Out):
    messages: list[MessageOut]
    has_more: bool
    last_seq: int
