"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the routes' models, covering every REST route."""

from __future__ import annotations

import json
from typing import Any

from app import build_app
from tests.support import Api, User, assert_error


def _doc(api: Api) -> dict[str, Any]:
    r = api.get("/api/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def _api_routes() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every /api route the app has, built in process."""
    app = build_app()
    out = set()
    for rule in app.url_map.iter_rules():
        path = str(rule).replace("<", "{").replace(">", "}")
        if not path.startswith("/api/") or path == "/api/openapi.json":
            continue
        out |= {(m.lower(), path) for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
    return out


def test_the_document_is_openapi_3_1_and_needs_no_auth(api: Api) -> None:
    """The document answers without a token, says openapi 3.1.x, and names a bearer scheme."""
    doc = _doc(api)
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"] == "Greenroom"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from login.",
    }


def test_every_rest_route_is_described(api: Api) -> None:
    """Every /api route of the app, and nothing else, is an operation with an operationId."""
    doc = _doc(api)
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert described == _api_routes()
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), ids
    assert "/ws" not in doc["paths"]


def test_every_operation_says_what_each_status_returns(api: Api) -> None:
    """Each operation lists its success and every documented error status, errors in the one JSON shape."""
    doc = _doc(api)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert statuses & {"200", "201", "204"}, (method, path)
            assert {"413", "500"} <= statuses, (method, path)
            needs_auth = bool(op.get("security"))
            assert needs_auth == ("401" in statuses) or path == "/api/auth/login", (method, path)
            for status, response in op["responses"].items():
                if status == "204":
                    assert "content" not in response
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert (ref == "#/components/schemas/ErrorBody") == (int(status) >= 400), (
                    method,
                    path,
                    status,
                )


def test_auth_routes_say_so_and_others_do_not(api: Api) -> None:
    """Register and login need no token; every other operation asks for the bearer scheme."""
    doc = _doc(api)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            public = path in ("/api/auth/register", "/api/auth/login")
            assert (op.get("security") or []) == ([] if public else [{"bearer": []}]), (
                method,
                path,
            )


def test_request_models_are_in_the_document(api: Api) -> None:
    """The models that validate bodies and queries are the document's schemas."""
    doc = _doc(api)
    post = doc["paths"]["/api/rooms/{room_id}/messages"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/PostBody"}
    body = doc["components"]["schemas"]["PostBody"]
    assert body["required"] == ["body"]
    assert body["properties"]["client_msg_id"]["anyOf"][0]["maxLength"] == 64
    params = {p["name"]: p for p in doc["paths"]["/api/rooms"]["get"]["parameters"]}
    assert params["limit"]["schema"]["type"] == "integer"
    assert params["limit"]["schema"]["minimum"] == 1


def test_a_body_that_fits_no_model_gets_our_error_not_the_library_s(api: Api, alice: User) -> None:
    """A validation failure is our 400 with its specific code, never spectree's 422 list."""
    r = api.post("/api/rooms", alice.token, json={"name": "r", "capacity": "ten"})
    err = assert_error(r, 400, "invalid_room")
    assert set(err) == {"code", "message"}
    assert_error(api.get("/api/users?limit=x", alice.token), 400, "bad_request")
    assert_error(api.post("/api/auth/login", json={"username": 1}), 400, "bad_request")


def test_the_document_is_plain_json_without_outside_links(api: Api) -> None:
    """No URL to a CDN or anywhere else: the document is self-contained."""
    text = json.dumps(_doc(api))
    assert "http://" not in text and "https://" not in text
