"""REST routes for rooms, membership, invites, messages and read markers."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request

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
from core.errors import bad_request
from core.paging import encode_cursor, parse_page_args
from core.settings import Settings
from core.web import current_session, json_body, login_required, no_content, service

bp = Blueprint("rooms", __name__, url_prefix="/api/rooms")

# str.isdigit() also accepts characters like "²" that int() refuses.
ASCII_DIGITS = re.compile(r"[0-9]+")


def _user() -> str:
    return current_session().username


def _room_id(room_id: str) -> str:
    if len(room_id) > MAX_ROOM_ID_CHARS:
        raise room_not_found(room_id[:MAX_ROOM_ID_CHARS] + "...")
    return room_id


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not ASCII_DIGITS.fullmatch(raw) or len(raw) > 18:
        raise bad_request(f"{name} must be a whole number, 0 or more.")
    return int(raw)


def _page_args(shape: tuple[type, ...]) -> tuple[int, tuple[object, ...] | None]:
    s = service(Settings)
    return parse_page_args(request.args, shape, s.LIST_PAGE_SIZE, s.LIST_MAX_PAGE_SIZE)


@bp.post("")
@login_required
def create_room() -> tuple[Response, int]:
    body = json_body()
    room = service(Rooms).create_room(
        _user(), body.get("name"), body.get("capacity"), body.get("private")
    )
    return jsonify(room_json(room)), 201


@bp.get("")
@login_required
def list_rooms() -> Response:
    limit, after = _page_args((float, str))
    page = service(Rooms).list_rooms(_user(), after, limit)
    return jsonify(
        {
            "rooms": [listed_room_json(r) for r in page.items],
            "next_cursor": encode_cursor(page.next_key),
        }
    )


@bp.get("/<room_id>")
@login_required
def get_room(room_id: str) -> Response:
    return jsonify(room_view_json(service(Rooms).get_room(_user(), _room_id(room_id))))


@bp.delete("/<room_id>")
@login_required
def delete_room(room_id: str) -> Response:
    service(Rooms).delete_room(_user(), _room_id(room_id))
    return no_content()


@bp.post("/<room_id>/join")
@login_required
def join(room_id: str) -> Response:
    return jsonify(room_view_json(service(Rooms).join(_user(), _room_id(room_id))))


@bp.post("/<room_id>/leave")
@login_required
def leave(room_id: str) -> Response:
    service(Rooms).leave(_user(), _room_id(room_id))
    return no_content()


@bp.get("/<room_id>/members")
@login_required
def members(room_id: str) -> Response:
    limit, after = _page_args((str,))
    page = service(Rooms).members(_user(), _room_id(room_id), after, limit)
    return jsonify({"members": page.items, "next_cursor": encode_cursor(page.next_key)})


@bp.post("/<room_id>/read")
@login_required
def mark_read(room_id: str) -> Response:
    marker, _ = service(Rooms).mark_read(_user(), _room_id(room_id), json_body().get("seq"))
    frame = read_frame(marker)
    del frame["type"]
    return jsonify(frame)


@bp.post("/<room_id>/invites")
@login_required
def invite(room_id: str) -> Response:
    service(Rooms).invite(_user(), _room_id(room_id), json_body().get("username"))
    return no_content()


@bp.get("/<room_id>/messages")
@login_required
def history(room_id: str) -> Response:
    page = service(Rooms).history(
        _user(), _room_id(room_id), _int_arg("before"), _int_arg("after"), _int_arg("limit")
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
def post_message(room_id: str) -> tuple[Response, int]:
    body = json_body()
    message, retry = service(Rooms).post(
        _user(), _room_id(room_id), body.get("body"), body.get("client_msg_id")
    )
    return jsonify(message_json(message)), 200 if retry else 201
