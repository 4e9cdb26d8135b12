"""REST routes for accounts and sessions: register, login, logout, me."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from auth.service import Session
from auth.tokens import parse_bearer
from core.web import json_body, no_content, services

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

F = TypeVar("F", bound=Callable[..., Any])

# The reason a session's sockets get when a newer login ends it (MAX_SESSIONS_PER_USER).
TOO_MANY_SESSIONS = "Session ended: too many sessions for this user, the oldest end first."


def login_required(view: F) -> F:
    """Authenticate the bearer token before the view runs; the session is in g.session."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = parse_bearer(request.headers.get("Authorization"))
        g.session = services().auth.authenticate(token)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def current_session() -> Session:
    return g.session


@bp.post("/register")
def register() -> tuple[Response, int]:
    body = json_body()
    username = services().auth.register(
        body.get("username"), body.get("password"), request.remote_addr or ""
    )
    return jsonify({"username": username}), 201


@bp.post("/login")
def login() -> Response:
    body = json_body()
    svc = services()
    token, username, ended = svc.auth.login(
        body.get("username"), body.get("password"), request.remote_addr or ""
    )
    for token_hash in ended:
        svc.chat.close_session(token_hash, TOO_MANY_SESSIONS)
    return jsonify(
        {
            "token": token,
            "username": username,
            "session_idle_timeout_s": svc.settings.SESSION_IDLE_TIMEOUT_S,
        }
    )


@bp.post("/logout")
@login_required
def logout() -> Response:
    svc = services()
    session = current_session()
    svc.auth.logout(session)
    svc.chat.close_session(session.token_hash, "Logged out.")
    return no_content()


@bp.get("/me")
@login_required
def me() -> Response:
    username = current_session().username
    return jsonify({"username": username, "status": services().presence.status(username)})
