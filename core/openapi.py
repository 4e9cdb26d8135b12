"""The REST contract as code: the spectree instance that validates bodies and queries and writes /api/openapi.json.

Each feature declares its request and response models (`*/api_models.py`) and hangs
them on its routes with `api.validate`; the OpenAPI 3.1 document is generated from
those, never written beside them. What this module adds around spectree:

- a body must be a JSON object (400 `bad_request`), checked before any model, with the
  chunked-body size limit that Werkzeug does not enforce on its own (413);
- input that does not fit a model becomes the documented refusal, with its own code
  (`invalid_room`, `invalid_username`, ...) where the feature has one: `Input.refusal`;
  never spectree's 422 list of pydantic errors;
- responses are not re-validated on every request: the e2e suite and schemathesis check
  them against this same document, and a drift must not turn a good answer into a 500.

Why spectree (3.0): it decorates plain Flask views and blueprints (flask-openapi3 wants
its own app and blueprint classes), emits OpenAPI 3.1, skips flask-sock's WebSocket
route, hands a failed validation to a hook that can raise our ChatError, and needs no
UI or CDN: we serve only the JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from spectree import Response as Responses
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.flask_plugin import FlaskPlugin
from werkzeug.exceptions import RequestEntityTooLarge

from core.errors import ChatError, bad_request
from core.paging import decode_cursor
from core.settings import Settings
from core.web import service

SPEC_PATH = "/api/openapi.json"
VERSION = "0.1.0"  # pyproject.toml's version

F = TypeVar("F", bound=Callable[..., Any])

# The security requirement of every route that needs `Authorization: Bearer <token>`.
BEARER: dict[str, list[str]] = {"bearer": []}


# ---- errors ------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine code and one readable sentence."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable snake_case code: branch on it.", pattern=r"^[a-z_]+$")
    message: str = Field(description="One sentence for humans; it may change.")
    retry_after_s: int | Absent = Field(
        None, ge=1, description="rate_limited only: seconds to wait (also in Retry-After)."
    )


class ErrorBody(BaseModel):
    """Every error, on every route: `{"error": {"code", "message"}}`."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


# Which codes each error status carries on every route that can answer it.
_COMMON = {
    401: "unauthorized",
    413: "payload_too_large",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def responses(ok: Mapping[int, type[BaseModel] | None], **errors: str) -> Responses:
    """spectree's Response: the success models, then each error status with its codes.

    `errors` is keyed `e400="bad_request, invalid_room"`; every route can also answer
    413 for a body over MAX_REQUEST_BYTES, 500 for a server bug, and 503 before the
    worker has started, so those are always listed.
    """
    codes: dict[str, Any] = {f"HTTP_{status}": model for status, model in ok.items()}
    listed = {int(key[1:]): value for key, value in errors.items()}
    for status in (413, 500, 503):
        listed.setdefault(status, _COMMON[status])
    for status, names in sorted(listed.items()):
        names = names or _COMMON.get(status, "")
        codes[f"HTTP_{status}"] = (ErrorBody, f"Error: {names}")
    return Responses(**codes)


# ---- inputs ------------------------------------------------------------------------


class Input(BaseModel):
    """A request body or query: what does not fit becomes `refusal(field)`, a documented ChatError."""

    model_config = ConfigDict(extra="ignore")
    _by_name: ClassVar[dict[str, type[Input]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # pydantic names a ValidationError after the model's class: that is how the
        # hook below finds the model, so two inputs must not share a name.
        assert cls.__name__ not in Input._by_name, f"two input models named {cls.__name__}"
        Input._by_name[cls.__name__] = cls

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        """The error for a request whose `field` does not fit (override for a specific code)."""
        return bad_request(f"{field} is missing or has the wrong type or value.")


class JsonBody(Input):
    """A JSON object body, taken as sent: "5" is not 5, and 1 is not true."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Query(Input):
    """Query arguments: strings on the wire, read by the validators each field names."""


_DIGITS = re.compile(r"[0-9]{1,18}")


def _whole_number(value: object) -> object:
    # str.isdigit() also accepts "²", and int() accepts " 5", "+5" and "1_000": only ASCII digits.
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("a whole number, 0 or more")
        return int(value)
    return value


# A whole number in a query argument: ASCII digits only, at most 18 of them. (Field
# before the validator: the other way round, pydantic writes `ge` into the JSON Schema
# as it is instead of `minimum`.)
WholeNumber = Annotated[int, Field(ge=0, le=10**18 - 1), BeforeValidator(_whole_number)]
PageSize = Annotated[int, Field(ge=1, le=10**18 - 1), BeforeValidator(_whole_number)]
# An optional query argument or response field: absent rather than null on the wire.
Absent = SkipJsonSchema[None]


class PageQuery(Query):
    """`limit` and `cursor` of a paged list (GET /api/rooms, /api/users, .../members)."""

    limit: PageSize | Absent = Field(
        None,
        description="Page size, 1 to LIST_MAX_PAGE_SIZE (default 500); absent: LIST_PAGE_SIZE.",
    )
    cursor: str | Absent = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="The next_cursor of the previous page, passed back as it is.",
    )

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        if field == "limit":
            return _limit_refusal(service(Settings))
        return bad_request("cursor is malformed: pass next_cursor from the previous page as it is.")


def _limit_refusal(settings: Settings) -> ChatError:
    return bad_request(f"limit is a whole number from 1 to {settings.LIST_MAX_PAGE_SIZE}.")


def page_args(query: PageQuery, shape: tuple[type, ...]) -> tuple[int, tuple[object, ...] | None]:
    """(limit, key to start after): the page size within LIST_MAX_PAGE_SIZE, the cursor decoded."""
    s: Settings = service(Settings)
    limit = s.LIST_PAGE_SIZE if query.limit is None else query.limit
    if limit > s.LIST_MAX_PAGE_SIZE:
        raise _limit_refusal(s)
    return limit, decode_cursor(query.cursor, shape)


class Page(BaseModel):
    """The paging field every list response adds."""

    model_config = ConfigDict(extra="forbid")

    next_cursor: str | None = Field(
        description="Pass it back as `cursor` for the next page; null on the last page."
    )


# ---- spectree, adapted -------------------------------------------------------------


def _require_json_object() -> None:
    """400 bad_request unless the body is a JSON object; 413 for a chunked body past the limit."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    # A chunked body has no Content-Length: Werkzeug stops reading at the limit without
    # raising, so a body that fills the limit exactly is taken as one that went past it.
    if request.content_length is None and len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # deeply nested JSON: not ValueError, so silent does not catch it
        data = None
    if not isinstance(data, dict):
        raise bad_request("The body must be a JSON object (Content-Type: application/json).")


class _Plugin(FlaskPlugin):
    """spectree's Flask plugin with our body check first and no per-request response check."""

    def request_validation(
        self, request: Any, query: Any, json: Any, form: Any, headers: Any, cookies: Any
    ) -> None:
        if json is not None:
            _require_json_object()
        super().request_validation(request, query, json, form, headers, cookies)  # type: ignore[no-untyped-call]

    def validate_response(
        self, resp: Any, resp_model: Any, skip_validation: bool, force_resp_serialize: bool
    ) -> Any:
        # The tests check every response against the document; here it would only cost
        # a parse per request and turn a drift into a 500.
        return super().validate_response(resp, resp_model, True, force_resp_serialize)


def _refuse(
    req: object, resp: object, error: Exception | None, instance: object, adapter: object
) -> None:
    """spectree's `before` hook: a body or query that fits no model is our documented refusal."""
    if error is None:
        return
    assert isinstance(error, ValidationError)
    model = Input._by_name.get(error.title)
    errors = error.errors(include_url=False)
    field = ".".join(str(part) for part in errors[0]["loc"][:1]) if errors else ""
    if model is None:
        raise bad_request("The request does not fit this route.")
    raise model.refusal(field)


api = SpecTree(
    backend=_Plugin,
    before=_refuse,
    validation_error_status=400,
    validation_error_model=ErrorBody,
    mode="strict",
    title="Greenroom",
    description=(
        "The REST half of Greenroom's protocol (docs/protocol.md has the prose, "
        "docs/ws-frames.schema.json the WebSocket frames). Generated from the models in the code."
    ),
    version=VERSION,
    page_templates={},
    # Plain class names (unique across features) make readable generated clients.
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(
                type=SecureType.HTTP, scheme="bearer", description="A token from login."
            ),
        )
    ],
)


# ---- the document ------------------------------------------------------------------

bp = Blueprint("openapi", __name__)


@bp.get(SPEC_PATH)
def openapi_json() -> Response:
    """The OpenAPI 3.1 document, built once per app from the routes' models."""
    return jsonify(document(current_app))


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of the routes that `api.validate` decorates.

    spectree builds it once and keeps it: every app has the same blueprints.
    """
    with app.app_context():
        return dict(api.spec)
