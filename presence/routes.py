"""REST routes for user status: everyone with status and last_seen, or one user."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from auth.routes import login_required
from chat.errors import not_found
from chat.http import services

bp = Blueprint("presence", __name__, url_prefix="/api/users")


@bp.get("")
@login_required
def list_users() -> Response:
    return jsonify({"users": services().presence.users()})


@bp.get("/<username>")
@login_required
def get_user(username: str) -> Response:
    user = services().presence.user(username)
    if user is None:
        raise not_found("user_not_found", f"There is no user {username}.")
    return jsonify(user)
