"""REST routes for user status: everyone with status and last_seen (in pages), or one user."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from core.errors import not_found
from core.paging import encode_cursor, parse_page_args
from core.settings import Settings
from core.web import login_required, service
from presence.tracker import Presence

bp = Blueprint("presence", __name__, url_prefix="/api/users")


def _page_args(shape: tuple[type, ...]) -> tuple[int, tuple[object, ...] | None]:
    s = service(Settings)
    return parse_page_args(request.args, shape, s.LIST_PAGE_SIZE, s.LIST_MAX_PAGE_SIZE)


@bp.get("")
@login_required
def list_users() -> Response:
    limit, after = _page_args((str,))
    page = service(Presence).users(after, limit)
    return jsonify({"users": page.items, "next_cursor": encode_cursor(page.next_key)})


@bp.get("/<username>")
@login_required
def get_user(username: str) -> Response:
    user = service(Presence).user(username)
    if user is None:
        raise not_found("user_not_found", f"There is no user {username}.")
    return jsonify(user)
