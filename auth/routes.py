"""REST routes for accounts and sessions: register, login, logout, me."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from auth.api_models import LoggedIn, LoginBody, Me, RegisterBody, Registered
from auth.service import Auth
from core.openapi import BEARER, api, responses
from core.settings import Settings
from core.status import Statuses
from core.web import current_session, login_required, no_content, service

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/register")
@api.validate(
    json=RegisterBody,
    resp=responses(
        {201: Registered},
        e400="bad_request, invalid_username, invalid_password",
        e409="username_taken",
        e429="rate_limited",
    ),
    tags=["auth"],
    operation_id="register",
)
def register(json: RegisterBody) -> tuple[Response, int]:
    """Create an account."""
    username = service(Auth).register(json.username, json.password, request.remote_addr or "")
    return jsonify({"username": username}), 201


@bp.post("/login")
@api.validate(
    json=LoginBody,
    resp=responses(
        {200: LoggedIn},
        e400="bad_request, invalid_password",
        e401="invalid_credentials",
        e429="rate_limited",
    ),
    tags=["auth"],
    operation_id="login",
)
def login(json: LoginBody) -> Response:
    """Start a session: the token is shown only this once."""
    token, username = service(Auth).login(json.username, json.password, request.remote_addr or "")
    return jsonify(
        {
            "token": token,
            "username": username,
            "session_idle_timeout_s": service(Settings).SESSION_IDLE_TIMEOUT_S,
        }
    )


@bp.post("/logout")
@login_required
@api.validate(
    resp=responses({204: None}, e401="unauthorized"),
    tags=["auth"],
    security=BEARER,
    operation_id="logout",
)
def logout() -> Response:
    """End the session of the token used; its WebSockets close with 4001."""
    service(Auth).logout(current_session())
    return no_content()


@bp.get("/me")
@login_required
@api.validate(
    resp=responses({200: Me}, e401="unauthorized"),
    tags=["auth"],
    security=BEARER,
    operation_id="me",
)
def me() -> Response:
    """Who the token belongs to."""
    username = current_session().username
    return jsonify({"username": username, "status": service(Statuses).status(username)})
