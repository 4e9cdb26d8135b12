"""Hostile clients: how many sessions and WebSocket connections one user may hold.

MAX_SESSIONS_PER_USER bounds the sessions table per account, MAX_CONNECTIONS_PER_USER
the sockets per account on one worker. One server with small caps serves the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import WS, Api, RawClient, ServerProcess, unique_name, wait_for

CAP = 3  # both caps: sessions per user and connections per user


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(
        tmp_path_factory.mktemp("caps"),
        {
            "GREENROOM_MAX_SESSIONS_PER_USER": str(CAP),
            "GREENROOM_MAX_CONNECTIONS_PER_USER": str(CAP),
            # A silent connection is cut by the sweeper within about three seconds.
            "GREENROOM_PING_INTERVAL_S": "0.5",
            "GREENROOM_PRESENCE_TIMEOUT_S": "3",
        },
        database=database,
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(capped: ServerProcess) -> Iterator[Api]:
    client = Api(capped)
    yield client
    wait_for(lambda: client.get("/healthz").json()["connections"] == 0, timeout=10)
    client.http.close()


def logins(api: Api, name: str, n: int) -> list[str]:
    tokens = []
    for _ in range(n):
        r = api.login(name)
        assert r.status_code == 200, r.text
        tokens.append(r.json()["token"])
    return tokens


def new_name(api: Api) -> str:
    name = unique_name("cap")
    assert api.register(name).status_code == 201
    return name


def works(api: Api, token: str) -> bool:
    return api.get("/api/auth/me", token).status_code == 200


def pong(ws: WS) -> dict[str, object]:
    ws.send({"type": "ping"})
    return ws.expect("pong")


def test_logins_past_the_cap_end_the_oldest_sessions(api: Api) -> None:
    """Five logins of one user leave exactly the three newest sessions working, and the log names no token."""
    name = new_name(api)
    tokens = logins(api, name, 5)
    assert [works(api, t) for t in tokens] == [False, False, True, True, True]
    assert all(
        api.get("/api/auth/me", t).json()["error"]["code"] == "unauthorized" for t in tokens[:2]
    )
    log = api.server.log()
    assert f"login {name}, ending 1 least recently active sessions" in log
    assert not [t for t in tokens if t in log]


def test_a_session_ended_by_newer_logins_closes_its_sockets_with_4001(api: Api) -> None:
    """Unused sessions end before sessions with an open socket; a socket whose session ends gets unauthorized and 4001."""
    name = new_name(api)
    t1, t2, t3 = logins(api, name, 3)
    with WS.open(api.server.ws_url, t1) as ws1, WS.open(api.server.ws_url, t3) as ws3:
        (t4,) = logins(api, name, 1)
        # t2 is newer than t1, but nothing uses it: it ends first.
        assert [works(api, t) for t in (t1, t2, t3, t4)] == [True, False, True, True]
        pong(ws1)
        with WS.open(api.server.ws_url, t4) as ws4:
            (t5,) = logins(api, name, 1)  # every session has a socket: the oldest, t1, ends
            error = ws1.recv()
            assert error["type"] == "error" and error["code"] == "unauthorized", error
            assert "too many sessions" in error["message"]
            assert ws1.expect_closed() == 4001
            assert [works(api, t) for t in (t1, t3, t4, t5)] == [False, True, True, True]
            pong(ws3)
            pong(ws4)
            with WS.open(api.server.ws_url, t1, expect_ready=False) as again:
                assert again.recv()["code"] == "unauthorized"
                assert again.expect_closed() == 4001


def test_a_connection_past_the_cap_is_refused_and_the_others_keep_working(api: Api) -> None:
    """The fourth socket of a user gets too_many_connections and close 4009 before ready; once one closes, a new one is accepted."""
    name = new_name(api)
    (token,) = logins(api, name, 1)
    url = api.server.ws_url
    with WS.open(url, token) as a, WS.open(url, token) as b, WS.open(url, token) as c:
        with WS.open(url, token, expect_ready=False) as extra:
            refused = extra.recv()
            assert refused["type"] == "error" and refused["code"] == "too_many_connections"
            assert extra.expect_closed() == 4009
        with WS.open(url, expect_ready=False) as by_frame:  # authenticating by frame alike
            by_frame.send({"type": "auth", "token": token})
            assert by_frame.recv()["code"] == "too_many_connections"
            assert by_frame.expect_closed() == 4009
        # The refused ones never counted: the three keep working, and only they are open.
        assert api.get("/healthz").json()["connections"] == CAP
        assert api.get(f"/api/users/{name}", token).json()["status"] == "online"
        for ws in (a, b, c):
            pong(ws)
        a.close()
        wait_for(lambda: api.get("/healthz").json()["connections"] == CAP - 1)
        with WS.open(url, token) as d:
            pong(d)
            pong(b)


def test_connections_cut_by_the_sweeper_free_their_places(api: Api) -> None:
    """Silent sockets that fill the cap are cut by the sweeper, and the user can connect again at once."""
    name = new_name(api)
    (token,) = logins(api, name, 1)
    silent = [RawClient(api.server, token) for _ in range(CAP)]
    try:
        for client in silent:  # each holds its place once it has its ready frame
            assert client.read_json()["type"] == "ready"
        with WS.open(api.server.ws_url, token, expect_ready=False) as extra:
            assert extra.recv()["code"] == "too_many_connections"
            assert extra.expect_closed() == 4009
        wait_for(lambda: api.get("/healthz").json()["connections"] == 0, timeout=10)
        with WS.open(api.server.ws_url, token) as ws:
            pong(ws)
    finally:
        for client in silent:
            client.close()
