"""REST routes for rooms, membership, invites, messages and read markers."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from chat.api_models import (
    CreateRoomBody,
    History,
    HistoryQuery,
    InviteBody,
    MemberPage,
    MessageOut,
    PostBody,
    ReadBody,
    ReadMarker,
    RoomOut,
    RoomPage,
    RoomView,
)
from chat.errors import room_not_found
from chat.membership import Rooms
from chat.protocol import (
    MAX_ROOM_ID_CHARS,
    listed_room_json,
    message_json,
    read_frame,
    room_json,
    room_view_json,
)
from core.openapi import BEARER, PageQuery, api, page_args, responses
from core.paging import encode_cursor
from core.web import current_session, login_required, no_content, service

bp = Blueprint("rooms", __name__, url_prefix="/api/rooms")

ROOM_ID = {"room_id": "The room id (a path id over 64 characters is 404 room_not_found)."}


def _user() -> str:
    return current_session().username


def _room_id(room_id: str) -> str:
    if len(room_id) > MAX_ROOM_ID_CHARS:
        raise room_not_found(room_id[:MAX_ROOM_ID_CHARS] + "...")
    return room_id


@bp.post("")
@login_required
@api.validate(
    json=CreateRoomBody,
    resp=responses(
        {201: RoomOut},
        e400="bad_request, invalid_room",
        e401="unauthorized",
        e409="too_many_rooms",
        e429="rate_limited",
    ),
    tags=["rooms"],
    security=BEARER,
    operation_id="create_room",
)
def create_room(json: CreateRoomBody) -> tuple[Response, int]:
    """Create a room; you own it and are its first member."""
    room = service(Rooms).create_room(_user(), json.name, json.capacity, json.private)
    return jsonify(room_json(room)), 201


@bp.get("")
@login_required
@api.validate(
    query=PageQuery,
    resp=responses({200: RoomPage}, e400="bad_request", e401="unauthorized"),
    tags=["rooms"],
    security=BEARER,
    operation_id="list_rooms",
)
def list_rooms(query: PageQuery) -> Response:
    """The rooms you can see, oldest first, one page at a time."""
    limit, after = page_args(query, (float, str))
    page = service(Rooms).list_rooms(_user(), after, limit)
    return jsonify(
        {
            "rooms": [listed_room_json(r) for r in page.items],
            "next_cursor": encode_cursor(page.next_key),
        }
    )


@bp.get("/<room_id>")
@login_required
@api.validate(
    resp=responses(
        {200: RoomView}, e401="unauthorized", e403="room_restricted", e404="room_not_found"
    ),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="get_room",
)
def get_room(room_id: str) -> Response:
    """One room, with your membership and how many members are online."""
    return jsonify(room_view_json(service(Rooms).get_room(_user(), _room_id(room_id))))


@bp.delete("/<room_id>")
@login_required
@api.validate(
    resp=responses({204: None}, e401="unauthorized", e403="not_room_owner", e404="room_not_found"),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="delete_room",
)
def delete_room(room_id: str) -> Response:
    """Delete a room you own."""
    service(Rooms).delete_room(_user(), _room_id(room_id))
    return no_content()


@bp.post("/<room_id>/join")
@login_required
@api.validate(
    resp=responses(
        {200: RoomView},
        e401="unauthorized",
        e403="room_restricted",
        e404="room_not_found",
        e409="room_full",
    ),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="join_room",
)
def join(room_id: str) -> Response:
    """Become a member of a room."""
    return jsonify(room_view_json(service(Rooms).join(_user(), _room_id(room_id))))


@bp.post("/<room_id>/leave")
@login_required
@api.validate(
    resp=responses({204: None}, e401="unauthorized", e403="not_a_member", e404="room_not_found"),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="leave_room",
)
def leave(room_id: str) -> Response:
    """Stop being a member of a room."""
    service(Rooms).leave(_user(), _room_id(room_id))
    return no_content()


@bp.get("/<room_id>/members")
@login_required
@api.validate(
    query=PageQuery,
    resp=responses(
        {200: MemberPage},
        e400="bad_request",
        e401="unauthorized",
        e403="not_a_member",
        e404="room_not_found",
    ),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="list_members",
)
def members(room_id: str, query: PageQuery) -> Response:
    """A room's members with their status, one page at a time."""
    limit, after = page_args(query, (str,))
    page = service(Rooms).members(_user(), _room_id(room_id), after, limit)
    return jsonify({"members": page.items, "next_cursor": encode_cursor(page.next_key)})


@bp.post("/<room_id>/read")
@login_required
@api.validate(
    json=ReadBody,
    resp=responses(
        {200: ReadMarker},
        e400="bad_request",
        e401="unauthorized",
        e403="not_a_member",
        e404="room_not_found",
    ),
    tags=["messages"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="mark_read",
)
def mark_read(room_id: str, json: ReadBody) -> Response:
    """Move your read marker forward (never back)."""
    marker, _ = service(Rooms).mark_read(_user(), _room_id(room_id), json.seq)
    frame = read_frame(marker)
    del frame["type"]
    return jsonify(frame)


@bp.post("/<room_id>/invites")
@login_required
@api.validate(
    json=InviteBody,
    resp=responses(
        {204: None},
        e400="bad_request",
        e401="unauthorized",
        e403="not_room_owner",
        e404="room_not_found, user_not_found",
    ),
    tags=["rooms"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="invite",
)
def invite(room_id: str, json: InviteBody) -> Response:
    """Invite a user to a private room you own."""
    service(Rooms).invite(_user(), _room_id(room_id), json.username)
    return no_content()


@bp.get("/<room_id>/messages")
@login_required
@api.validate(
    query=HistoryQuery,
    resp=responses(
        {200: History},
        e400="bad_request",
        e401="unauthorized",
        e403="not_a_member",
        e404="room_not_found",
    ),
    tags=["messages"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="history",
)
def history(room_id: str, query: HistoryQuery) -> Response:
    """A room's stored messages, newest page first unless `after` is given."""
    page = service(Rooms).history(
        _user(), _room_id(room_id), query.before, query.after, query.limit
    )
    return jsonify(
        {
            "messages": [message_json(m) for m in page.messages],
            "has_more": page.has_more,
            "last_seq": page.last_seq,
        }
    )


@bp.post("/<room_id>/messages")
@login_required
@api.validate(
    json=PostBody,
    resp=responses(
        {200: MessageOut, 201: MessageOut},
        e400="bad_request, invalid_message",
        e401="unauthorized",
        e403="not_a_member",
        e404="room_not_found",
        e409="client_msg_id_reused",
        e429="rate_limited",
    ),
    tags=["messages"],
    security=BEARER,
    path_parameter_descriptions=ROOM_ID,
    operation_id="post_message",
)
def post_message(room_id: str, json: PostBody) -> tuple[Response, int]:
    """Post a message: 201 when stored, 200 when a retry with the same client_msg_id."""
    message, retry = service(Rooms).post(_user(), _room_id(room_id), json.body, json.client_msg_id)
    return jsonify(message_json(message)), 200 if retry else 201
