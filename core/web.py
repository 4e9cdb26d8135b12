"""What every route shares: the app's services by type, the auth decorator, JSON errors.

Bodies and queries are validated by core.openapi (spectree, on the routes' models).

Features find their services with service(Type), never by importing each other:
app.py registers each service under its class (and the authenticator under the
Authenticator protocol) when it builds the app.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing.exceptions import WebsocketMismatch

from core.errors import ChatError
from core.server import is_upgrade

if TYPE_CHECKING:
    from typing_extensions import TypeForm

log = logging.getLogger(__name__)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Principal(Protocol):
    """Who a request or socket authenticated as (auth.service.Session)."""

    @property
    def username(self) -> str: ...

    @property
    def token_hash(self) -> str: ...


class Authenticator(Protocol):
    """What routes and the WebSocket ask of auth."""

    def authenticate(self, token: str | None) -> Principal: ...

    def address_wait(self, client: str) -> float: ...

    def failed_socket_auth(self, client: str) -> None: ...


def provide(app: Flask, services: dict[type[Any], object]) -> None:
    """Make each service findable by service(its type) in this app's requests."""
    app.extensions.setdefault("greenroom", {}).update(services)


def service(kind: TypeForm[T]) -> T:
    """The app's service of this type (see provide())."""
    # TypeForm, not type[T]: a protocol (Authenticator, Statuses) is a key too, and a
    # type checker refuses a protocol where a concrete class is expected.
    return cast(T, current_app.extensions["greenroom"][kind])


def parse_bearer(header: str | None) -> str | None:
    """The token from an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def login_required(view: F) -> F:
    """Authenticate the bearer token before the view runs; current_session() is then set."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        token = parse_bearer(request.headers.get("Authorization"))
        g.session = service(Authenticator).authenticate(token)
        return view(*args, **kwargs)

    return cast(F, wrapped)


def current_session() -> Principal:
    return cast(Principal, g.session)


def no_content() -> Response:
    """A 204 with no body and no (HTML) content type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def error_response(err: ChatError) -> tuple[Response, int]:
    response = jsonify({"error": err.to_dict()})
    if err.status == 429 and "retry_after_s" in err.extra:
        response.headers["Retry-After"] = str(err.extra["retry_after_s"])
    return response, err.status


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    if isinstance(exc, WebsocketMismatch):
        return error_response(
            ChatError(400, "bad_request", "This is a WebSocket endpoint: send an Upgrade request.")
        )
    status = exc.code or 500
    code = {
        404: "not_found",
        405: "method_not_allowed",
        408: "request_timeout",
        413: "payload_too_large",
        414: "uri_too_long",
        415: "bad_request",
        431: "headers_too_large",
    }.get(status, "bad_request" if status < 500 else "internal_error")
    message = {
        404: "There is no such route.",
        405: "That method is not allowed on this route.",
        408: "The request body did not arrive in time.",
        413: "The request body is too large.",
    }.get(status, exc.description or exc.name)
    return error_response(ChatError(status, code, message))


def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(ChatError(500, "internal_error", "Something went wrong on the server."))


def _refuse_doubled_slashes() -> tuple[Response, int] | None:
    """404 for //path: Werkzeug's matcher strips leading slashes, so //healthz would be served."""
    path = request.environ.get("PATH_INFO", "")
    if path.startswith("/") and not path.startswith("//"):
        return None
    return error_response(ChatError(404, "not_found", "There is no such route."))


def _announce_close_after_upgrade(response: Response) -> Response:
    """Say `Connection: close` on a refused upgrade: the server layer closes that connection.

    Without it a keep-alive client may send its next request on the socket just as it
    closes, and see the connection dropped instead of an answer.
    """
    if response.status_code != 101 and is_upgrade(request.environ):
        response.headers["Connection"] = "close"
    return response


def register_error_handlers(app: Flask) -> None:
    """JSON for every refusal, and a 404 for paths Werkzeug would otherwise quietly normalise."""
    app.before_request(_refuse_doubled_slashes)
    app.after_request(_announce_close_after_upgrade)
    app.register_error_handler(ChatError, error_response)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
