"""The /ws frame contract against a real server: authentication, bad frames, room errors, size limits."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import WS, Api, ServerProcess, User, wait_for

# A dedicated server with small limits, shared by the tests in this module that need them.
LIMIT_FRAME_BYTES = 1024
LIMIT_MESSAGE_CHARS = 100
LIMIT_AUTH_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        Path(tmp_path_factory.mktemp("ws-limits")),
        {
            "GREENROOM_MAX_FRAME_BYTES": str(LIMIT_FRAME_BYTES),
            "GREENROOM_MAX_MESSAGE_CHARS": str(LIMIT_MESSAGE_CHARS),
            "GREENROOM_AUTH_TIMEOUT_S": str(LIMIT_AUTH_TIMEOUT_S),
        },
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def limits_api(limits_server: ServerProcess) -> Api:
    return Api(limits_server)


def assert_error(frame: dict[str, Any], code: str, **echo: Any) -> None:
    """An error frame with this code and a readable message, repeating exactly the given echo fields."""
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str) and frame["message"].strip(), frame
    for key in ("room", "client_msg_id"):
        if key in echo:
            assert frame.get(key) == echo[key], frame
        else:
            assert key not in frame, frame


def assert_usable(ws: WS, room: str | None = None) -> None:
    """The connection still answers a ping and, given a joined room, still stores a message."""
    ws.send({"type": "ping"})
    assert ws.expect("pong")["type"] == "pong"
    if room is not None:
        cmid = secrets.token_hex(6)
        ack = ws.say(room, "still here", cmid)
        assert ack["room"] == room and ack["client_msg_id"] == cmid and ack["seq"] >= 1


# ---- authentication ----------------------------------------------------------------


def test_header_auth_gets_ready(api: Api, alice: User) -> None:
    """A token in the Authorization header of the upgrade request is answered with a ready frame."""
    with WS.open(api.server.ws_url, alice.token, expect_ready=False) as ws:
        assert ws.recv() == {"type": "ready", "username": alice.name}
        assert_usable(ws)


def test_auth_frame_gets_ready(api: Api, alice: User) -> None:
    """Without a header, a first frame {"type": "auth", "token": ...} is answered with ready and the connection works."""
    room = api.create_room(alice, "auth-frame")["id"]
    with WS.open(api.server.ws_url) as ws:
        ws.send({"type": "auth", "token": alice.token})
        assert ws.recv() == {"type": "ready", "username": alice.name}
        joined = ws.join(room)
        assert joined["room"] == room
        assert_usable(ws, room)


def test_bad_token_in_header_is_unauthorized(api: Api) -> None:
    """A bad token in the Authorization header gets an unauthorized error frame, then close 4001."""
    with WS.open(api.server.ws_url, "not-a-real-token", expect_ready=False) as ws:
        assert_error(ws.recv(), "unauthorized")
        assert ws.expect_closed() == 4001


def test_bad_token_in_auth_frame_is_unauthorized(api: Api) -> None:
    """A bad token in the first auth frame gets an unauthorized error frame, then close 4001."""
    with WS.open(api.server.ws_url) as ws:
        ws.send({"type": "auth", "token": "not-a-real-token"})
        assert_error(ws.recv(), "unauthorized")
        assert ws.expect_closed() == 4001


def test_logged_out_token_is_unauthorized(api: Api) -> None:
    """A token whose session was logged out gets an unauthorized error frame, then close 4001, in the header or an auth frame."""
    carol = api.new_user("carol")
    assert api.post("/api/auth/logout", carol.token).status_code == 204
    with WS.open(api.server.ws_url, carol.token, expect_ready=False) as ws:
        assert_error(ws.recv(), "unauthorized")
        assert ws.expect_closed() == 4001
    with WS.open(api.server.ws_url) as ws:
        ws.send({"type": "auth", "token": carol.token})
        assert_error(ws.recv(), "unauthorized")
        assert ws.expect_closed() == 4001


def test_ready_is_first_even_when_co_members_connect_at_once(
    api: Api, alice: User, bob: User
) -> None:
    """ready is the first frame a client gets, even when a co-member comes online at the same moment."""
    room = api.create_room(alice, "same-moment")["id"]
    assert bob.join(room).status_code == 200

    def first_frame(user: User, barrier: threading.Barrier, by_frame: bool) -> dict[str, Any]:
        barrier.wait(timeout=5)
        token = None if by_frame else user.token
        with WS.open(api.server.ws_url, token, expect_ready=False) as ws:
            if by_frame:
                ws.send({"type": "auth", "token": user.token})
            return ws.recv()

    firsts: list[tuple[int, str, dict[str, Any]]] = []
    for trial in range(10):
        barrier = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            futures = {
                u.name: pool.submit(first_frame, u, barrier, trial % 2 == 1) for u in (alice, bob)
            }
            firsts += [(trial, name, f.result()) for name, f in futures.items()]
        # Both must be offline again before the next try, so each try brings them online anew.
        wait_for(lambda: api.get("/healthz").json()["connections"] == 0)
    not_ready = [(t, n, f) for t, n, f in firsts if f != {"type": "ready", "username": n}]
    assert not_ready == [], f"{len(not_ready)} of {len(firsts)} connections: {not_ready[:3]}"


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping"},
        {"type": "join", "room": "abc"},
        {"type": "auth"},
        {"type": "auth", "token": 12345},
        "not json",
        b"\x00\x01binary",
    ],
    ids=["ping", "join", "auth-no-token", "auth-token-number", "not-json", "binary"],
)
def test_first_frame_not_auth_is_unauthorized(api: Api, first: Any) -> None:
    """A first frame that is not a valid auth frame gets an unauthorized error frame, then close 4001."""
    with WS.open(api.server.ws_url) as ws:
        ws.send(first)
        assert_error(ws.recv(), "unauthorized")
        assert ws.expect_closed() == 4001


def test_silence_past_auth_timeout_is_unauthorized(limits_server: ServerProcess) -> None:
    """A client that sends nothing within GREENROOM_AUTH_TIMEOUT_S gets an unauthorized error frame, then close 4001."""
    started = time.monotonic()
    with WS.open(limits_server.ws_url) as ws:
        assert_error(ws.recv(timeout=LIMIT_AUTH_TIMEOUT_S + 5), "unauthorized")
        waited = time.monotonic() - started
        assert ws.expect_closed() == 4001
    assert waited >= LIMIT_AUTH_TIMEOUT_S * 0.8, waited


# ---- bad frames: an error frame, and the connection stays open and usable ------------------

# (id, frame built from the joined room id, expected code, echo fields built from the room id)
FrameCase = tuple[str, Callable[[str], Any], str, Callable[[str], dict[str, Any]]]

BAD_FRAMES: list[FrameCase] = [
    ("not-json", lambda r: "{this is not json", "invalid_frame", lambda r: {}),
    ("truncated-json", lambda r: '{"type": "ping"', "invalid_frame", lambda r: {}),
    ("binary", lambda r: b'{"type": "ping"}', "invalid_frame", lambda r: {}),
    ("json-array", lambda r: '[{"type": "ping"}]', "invalid_frame", lambda r: {}),
    ("json-string", lambda r: '"ping"', "invalid_frame", lambda r: {}),
    ("json-number", lambda r: "42", "invalid_frame", lambda r: {}),
    ("json-null", lambda r: "null", "invalid_frame", lambda r: {}),
    ("missing-type", lambda r: {"room": r}, "invalid_frame", lambda r: {"room": r}),
    (
        "type-not-string",
        lambda r: {"type": 7, "room": r, "client_msg_id": "c-type"},
        "invalid_frame",
        lambda r: {"room": r, "client_msg_id": "c-type"},
    ),
    (
        "unknown-type",
        lambda r: {"type": "dance", "room": r, "client_msg_id": "c-dance"},
        "unknown_type",
        lambda r: {"room": r, "client_msg_id": "c-dance"},
    ),
    ("join-missing-room", lambda r: {"type": "join"}, "invalid_frame", lambda r: {}),
    ("leave-missing-room", lambda r: {"type": "leave"}, "invalid_frame", lambda r: {}),
    ("typing-missing-room", lambda r: {"type": "typing"}, "invalid_frame", lambda r: {}),
    (
        "send-missing-body",
        lambda r: {"type": "send", "room": r, "client_msg_id": "c-nobody"},
        "invalid_frame",
        lambda r: {"room": r, "client_msg_id": "c-nobody"},
    ),
    (
        "send-missing-client-msg-id",
        lambda r: {"type": "send", "room": r, "body": "hi"},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "send-missing-room",
        lambda r: {"type": "send", "body": "hi", "client_msg_id": "c-noroom"},
        "invalid_frame",
        lambda r: {"client_msg_id": "c-noroom"},
    ),
    (
        "join-since-string",
        lambda r: {"type": "join", "room": r, "since": "3"},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "join-since-bool",
        lambda r: {"type": "join", "room": r, "since": True},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "join-since-float",
        lambda r: {"type": "join", "room": r, "since": 1.5},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "join-since-negative",
        lambda r: {"type": "join", "room": r, "since": -1},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "join-room-number",
        lambda r: {"type": "join", "room": 12345},
        "invalid_frame",
        lambda r: {},
    ),
    (
        "send-body-number",
        lambda r: {"type": "send", "room": r, "body": 42, "client_msg_id": "c-num"},
        "invalid_frame",
        lambda r: {"room": r, "client_msg_id": "c-num"},
    ),
    (
        "send-body-bool",
        lambda r: {"type": "send", "room": r, "body": True, "client_msg_id": "c-bool"},
        "invalid_frame",
        lambda r: {"room": r, "client_msg_id": "c-bool"},
    ),
    (
        "send-body-object",
        lambda r: {"type": "send", "room": r, "body": {"text": "hi"}, "client_msg_id": "c-obj"},
        "invalid_frame",
        lambda r: {"room": r, "client_msg_id": "c-obj"},
    ),
    (
        "send-client-msg-id-number",
        lambda r: {"type": "send", "room": r, "body": "hi", "client_msg_id": 7},
        "invalid_frame",
        lambda r: {"room": r},
    ),
    (
        "send-room-list",
        lambda r: {"type": "send", "room": [r], "body": "hi", "client_msg_id": "c-list"},
        "invalid_frame",
        lambda r: {"client_msg_id": "c-list"},
    ),
    (
        "send-empty-body",
        lambda r: {"type": "send", "room": r, "body": "", "client_msg_id": "c-empty"},
        "invalid_message",
        lambda r: {"room": r, "client_msg_id": "c-empty"},
    ),
    (
        "send-blank-body",
        lambda r: {"type": "send", "room": r, "body": " \n\t ", "client_msg_id": "c-blank"},
        "invalid_message",
        lambda r: {"room": r, "client_msg_id": "c-blank"},
    ),
    (
        "auth-after-ready",
        lambda r: {"type": "auth", "token": "anything"},
        "invalid_frame",
        lambda r: {},
    ),
]


@pytest.mark.parametrize(
    ("frame", "code", "echo"),
    [pytest.param(f, c, e, id=i) for i, f, c, e in BAD_FRAMES],
)
def test_bad_frame_gets_error_and_connection_survives(
    api: Api,
    alice: User,
    frame: Callable[[str], Any],
    code: str,
    echo: Callable[[str], dict[str, Any]],
) -> None:
    """A malformed frame is answered with an error frame (repeating its room and client_msg_id) and the connection stays usable."""
    room = api.create_room(alice, "bad-frames")["id"]
    with alice.ws() as ws:
        ws.join(room)
        ws.send(frame(room))
        assert_error(ws.expect("error"), code, **echo(room))
        assert_usable(ws, room)


def test_many_bad_frames_in_a_row_leave_the_connection_usable(api: Api, alice: User) -> None:
    """Every bad frame in a long run gets its own error frame, in order, and the connection still works."""
    room = api.create_room(alice, "bad-run")["id"]
    with alice.ws() as ws:
        ws.join(room)
        for _, frame, _, _ in BAD_FRAMES:
            ws.send(frame(room))
        for case_id, _, code, echo in BAD_FRAMES:
            got = ws.expect("error")
            assert got["code"] == code, (case_id, got)
            assert {k: got[k] for k in ("room", "client_msg_id") if k in got} == echo(room), (
                case_id,
                got,
            )
        assert_usable(ws, room)


def test_body_too_long_is_invalid_message(limits_api: Api) -> None:
    """A send whose body is over GREENROOM_MAX_MESSAGE_CHARS gets invalid_message; one at the limit is stored."""
    alice = limits_api.new_user("alice")
    room = limits_api.create_room(alice, "long")["id"]
    with alice.ws() as ws:
        ws.join(room)
        ws.send(
            {
                "type": "send",
                "room": room,
                "body": "x" * (LIMIT_MESSAGE_CHARS + 1),
                "client_msg_id": "c-long",
            }
        )
        assert_error(ws.expect("error"), "invalid_message", room=room, client_msg_id="c-long")
        ack = ws.say(room, "y" * LIMIT_MESSAGE_CHARS, "c-max")
        assert ack == {"type": "ack", "room": room, "client_msg_id": "c-max", "seq": 1}
        assert_usable(ws, room)
    r = limits_api.get(f"/api/rooms/{room}/messages", alice.token)
    cmids = [m["client_msg_id"] for m in r.json()["messages"]]
    assert cmids[0] == "c-max" and "c-long" not in cmids


def test_frame_over_size_limit_closes_with_1009(limits_api: Api) -> None:
    """A frame larger than GREENROOM_MAX_FRAME_BYTES closes the connection with 1009."""
    alice = limits_api.new_user("alice")
    room = limits_api.create_room(alice, "big")["id"]
    with alice.ws() as ws:
        ws.join(room)
        ws.send({"type": "ping", "room": room, "pad": "z" * (LIMIT_FRAME_BYTES * 2)})
        assert ws.expect_closed() == 1009


def test_binary_frame_over_size_limit_closes_with_1009(limits_api: Api) -> None:
    """A binary frame larger than GREENROOM_MAX_FRAME_BYTES also closes the connection with 1009."""
    alice = limits_api.new_user("alice")
    with alice.ws() as ws:
        ws.send(b"\x00" * (LIMIT_FRAME_BYTES * 3))
        assert ws.expect_closed() == 1009


# ---- room errors over /ws ----------------------------------------------------------------


def test_send_and_typing_to_room_not_joined(api: Api, alice: User) -> None:
    """send and typing to a room this connection has not joined get not_joined, repeating room and client_msg_id."""
    room = api.create_room(alice, "member-but-not-joined")["id"]
    other = api.create_room(alice, "joined")["id"]
    with alice.ws() as ws:
        ws.join(other)
        ws.send({"type": "send", "room": room, "body": "hi", "client_msg_id": "c-nj"})
        assert_error(ws.expect("error"), "not_joined", room=room, client_msg_id="c-nj")
        ws.send({"type": "typing", "room": room})
        assert_error(ws.expect("error"), "not_joined", room=room)
        ws.send({"type": "send", "room": "nosuchroom", "body": "hi", "client_msg_id": "c-nr"})
        assert_error(ws.expect("error"), "not_joined", room="nosuchroom", client_msg_id="c-nr")
        assert_usable(ws, other)
    r = api.get(f"/api/rooms/{room}/messages", alice.token)
    assert r.json()["messages"] == []


def test_join_unknown_room(api: Api, alice: User) -> None:
    """Joining a room that does not exist gets room_not_found with the room repeated, and the connection stays usable."""
    with alice.ws() as ws:
        ws.send({"type": "join", "room": "nosuchroom1"})
        assert_error(ws.expect("error"), "room_not_found", room="nosuchroom1")
        assert_usable(ws)


def test_join_private_room(api: Api, alice: User, bob: User) -> None:
    """Joining a private room without an invite gets room_restricted; after an invite the join succeeds."""
    room = api.create_room(alice, "secret", private=True)["id"]
    with bob.ws() as ws:
        ws.send({"type": "join", "room": room})
        assert_error(ws.expect("error"), "room_restricted", room=room)
        assert_usable(ws)
        r = api.post(f"/api/rooms/{room}/invites", alice.token, json={"username": bob.name})
        assert r.status_code == 204, r.text
        joined = ws.join(room)
        assert joined["room"] == room
        assert {m["username"] for m in joined["members"]} == {alice.name, bob.name}
        assert_usable(ws, room)


def test_join_full_room(api: Api, alice: User, bob: User) -> None:
    """Joining a room at capacity gets room_full, repeating the room, and the connection stays usable."""
    room = api.create_room(alice, "tiny", capacity=1)["id"]
    with bob.ws() as ws:
        ws.send({"type": "join", "room": room})
        assert_error(ws.expect("error"), "room_full", room=room)
        assert_usable(ws)
    r = api.get(f"/api/rooms/{room}/members", alice.token)
    assert [m["username"] for m in r.json()["members"]] == [alice.name]


def test_client_msg_id_reused_in_another_room(api: Api, alice: User) -> None:
    """A client_msg_id reused for a different room gets an error frame repeating the new frame's room and client_msg_id."""
    first = api.create_room(alice, "first")["id"]
    second = api.create_room(alice, "second")["id"]
    with alice.ws() as ws:
        ws.join(first)
        ws.join(second)
        assert ws.say(first, "hello", "reused-id")["seq"] == 1
        ws.send({"type": "send", "room": second, "body": "hello", "client_msg_id": "reused-id"})
        err = ws.expect("error", skip=("presence", "message"))
        assert err["room"] == second and err["client_msg_id"] == "reused-id", err
        assert_usable(ws, second)


def test_leave_room_not_a_member(api: Api, alice: User, bob: User) -> None:
    """Leaving a room you do not belong to gets an error frame repeating the room, and the connection stays usable."""
    room = api.create_room(alice, "not-yours")["id"]
    with bob.ws() as ws:
        ws.send({"type": "leave", "room": room})
        assert_error(ws.expect("error"), "not_a_member", room=room)
        assert_usable(ws)
