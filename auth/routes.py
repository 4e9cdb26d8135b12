"""REST routes for accounts and sessions: register, login, logout, me."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from auth.service import Auth
from core.settings import Settings
from core.status import Statuses
from core.web import current_session, json_body, login_required, no_content, service

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/register")
def register() -> tuple[Response, int]:
    body = json_body()
    username = service(Auth).register(
        body.get("username"), body.get("password"), request.remote_addr or ""
    )
    return jsonify({"username": username}), 201


@bp.post("/login")
def login() -> Response:
    body = json_body()
    token, username = service(Auth).login(
        body.get("username"), body.get("password"), request.remote_addr or ""
    )
    return jsonify(
        {
            "token": token,
            "username": username,
            "session_idle_timeout_s": service(Settings).SESSION_IDLE_TIMEOUT_S,
        }
    )


@bp.post("/logout")
@login_required
def logout() -> Response:
    service(Auth).logout(current_session())
    return no_content()


@bp.get("/me")
@login_required
def me() -> Response:
    username = current_session().username
    return jsonify({"username": username, "status": service(Statuses).status(username)})
