"""docs/ws-frames.schema.json: a valid JSON Schema that agrees with protocol.md's frame tables, examples and chat.protocol."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from chat.models import Message, ReadMarker
from chat.protocol import ack_frame, error_frame, message_json, read_frame
from core.errors import bad_request, rate_limited
from tests.support.common import ROOT

SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "ws-frames.schema.json").read_text())
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def _validator(which: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/$defs/{which}", "$defs": SCHEMA["$defs"]})


SERVER = _validator("ServerFrame")
CLIENT = _validator("ClientFrame")


def _section(title: str) -> str:
    start = PROTOCOL.index(f"### {title}\n")
    return PROTOCOL[start : PROTOCOL.index("\n### ", start + 1)]


def _examples(title: str) -> list[dict[str, Any]]:
    """The JSON objects, one a line, in the ```json blocks of a protocol.md section."""
    blocks = re.findall(r"```json\n(.*?)```", _section(title), re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def _table_types(title: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", _section(title), re.M))


def test_the_schema_is_valid_draft_2020_12() -> None:
    """The file is a JSON Schema by the 2020-12 meta-schema."""
    Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_names_every_frame_type_in_the_tables() -> None:
    """Each side's frame types are exactly those in protocol.md's tables."""
    defs = SCHEMA["$defs"]
    assert set(defs["ServerFrame"]["properties"]["type"]["enum"]) == _table_types(
        "Server → client frames"
    )
    assert set(defs["ClientFrame"]["properties"]["type"]["enum"]) == _table_types(
        "Client → server frames"
    )


def test_every_documented_example_validates() -> None:
    """protocol.md's example frames fit the schema: server examples and bad-frame errors, client examples."""
    server = _examples("Server → client frames") + _examples("Bad frames")
    client = _examples("Client → server frames")
    assert len(server) >= 13 and len(client) == 7
    for frame in server:
        assert not list(SERVER.iter_errors(frame)), frame
    for frame in client:
        assert not list(CLIENT.iter_errors(frame)), frame


def test_frames_built_by_chat_protocol_validate() -> None:
    """The frames chat.protocol builds for messages, acks, read markers and errors fit the schema."""
    m = Message("nv5bg24yzf", 3, "alice", "hi", 1764000000.25, None)
    frames = [
        {"type": "message", **message_json(m)},
        ack_frame(m, "c-1"),
        ack_frame(m, None),
        read_frame(ReadMarker("nv5bg24yzf", 3, 0)),
        error_frame(bad_request("nope")),
        error_frame(rate_limited(2.0).with_extra(room="nv5bg24yzf", client_msg_id="c-2")),
    ]
    for frame in frames:
        assert not list(SERVER.iter_errors(frame)), frame


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({"type": "shout"}, id="unknown-type"),
        pytest.param({"username": "bob"}, id="no-type"),
        pytest.param({"type": "ready"}, id="missing-field"),
        pytest.param({"type": "ready", "username": "bob", "extra": 1}, id="extra-field"),
        pytest.param(
            {"type": "ack", "room": "r", "client_msg_id": "c", "seq": "3"}, id="wrong-type"
        ),
        pytest.param({"type": "presence", "user": "bob", "status": "away"}, id="bad-enum"),
        pytest.param(
            {
                "type": "message",
                "room": "r",
                "seq": 1,
                "user": "a",
                "body": "x",
                "ts": "yesterday",
                "client_msg_id": None,
            },
            id="bad-timestamp",
        ),
        pytest.param(["type", "pong"], id="not-an-object"),
    ],
)
def test_a_frame_that_breaks_the_contract_is_caught(frame: Any) -> None:
    """A frame with an unknown type, a missing, extra or mistyped field, or a bad timestamp fails."""
    assert list(SERVER.iter_errors(frame))
