"""REST routes for user status: everyone with status and last_seen (in pages), or one user."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from core.errors import not_found
from core.openapi import BEARER, PageQuery, api, page_args, responses
from core.paging import encode_cursor
from core.web import login_required, service
from presence.api_models import UserPage, UserStatus
from presence.tracker import Presence

bp = Blueprint("presence", __name__, url_prefix="/api/users")


@bp.get("")
@login_required
@api.validate(
    query=PageQuery,
    resp=responses({200: UserPage}, e400="bad_request", e401="unauthorized"),
    tags=["users"],
    security=BEARER,
    operation_id="list_users",
)
def list_users(query: PageQuery) -> Response:
    """Every user with status and last_seen, one page at a time."""
    limit, after = page_args(query, (str,))
    page = service(Presence).users(after, limit)
    return jsonify({"users": page.items, "next_cursor": encode_cursor(page.next_key)})


@bp.get("/<username>")
@login_required
@api.validate(
    resp=responses({200: UserStatus}, e401="unauthorized", e404="user_not_found"),
    tags=["users"],
    security=BEARER,
    path_parameter_descriptions={"username": "In any case."},
    operation_id="get_user",
)
def get_user(username: str) -> Response:
    """One user's status and last_seen."""
    user = service(Presence).user(username)
    if user is None:
        raise not_found("user_not_found", f"There is no user {username}.")
    return jsonify(user)
