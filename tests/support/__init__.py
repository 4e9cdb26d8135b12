"""Shared test helpers, one module per purpose; no test module imports from another.

- common    the repo root, the test password, unique names, free ports, polling (`wait_for`)
- services  PostgreSQL schemas, Redis, a private redis-server, and `require_service`
            (skip without the service, fail under GREENROOM_REQUIRE_SERVICES as in CI)
- servers   the server as a real process: `python app.py`, the Procfile's gunicorn, a cluster
- clients   real HTTP (`Api`, `User`) and WebSocket (`WS`, `RawClient`) clients; every frame
            they receive is checked against docs/ws-frames.schema.json (`checked_frame`)
- rest      the REST contract's checks: `assert_error`, `ISO_UTC`, non-object bodies
- attack    hostile WebSocket peers on bare sockets (`ws_frame`, `WsAttacker`)

The fakes for in-process tests, and the harnesses for one group of tests, are imported
from their own module:
- fakes     `FakeClock`: the core.clock.Clock interface, with time and timers the test drives
- fanout    the rig for chat.fanout's unit tests: fake connections, registry and database
- cli       the `greenroom` command run in-process or as a subprocess (`Term`, `ok`, ...)
- terminal  `greenroom chat` as a piped subprocess or in a pseudo-terminal read into a screen
- cluster   followers and senders that read and write one WebSocket each on a thread
- delivery  pipelined sends with their acks and a ping as a barrier, for /ws delivery tests
- browser   the web client in Debian's chromium (Playwright): console watch, sign-up, screenshots

The names below are importable from `tests.support` itself.
"""

from tests.support.attack import WsAttacker, ws_frame
from tests.support.clients import WS, Api, RawClient, User
from tests.support.common import (
    PASSWORD,
    RECV_TIMEOUT_S,
    ROOT,
    free_port,
    unique_name,
    wait_for,
)
from tests.support.rest import ISO_UTC, NOT_AN_OBJECT, assert_error, raw_post
from tests.support.servers import (
    CLUSTER_SETTINGS,
    FAST_SETTINGS,
    Cluster,
    GunicornProcess,
    ServerProcess,
    procfile_web_command,
    server_rss_kib,
)
from tests.support.services import (
    POSTGRES_URL,
    REDIS_URL,
    RedisServer,
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    redis_unavailable,
    require_service,
)

__all__ = [
    "CLUSTER_SETTINGS",
    "FAST_SETTINGS",
    "ISO_UTC",
    "NOT_AN_OBJECT",
    "PASSWORD",
    "POSTGRES_URL",
    "RECV_TIMEOUT_S",
    "REDIS_URL",
    "ROOT",
    "WS",
    "Api",
    "Cluster",
    "GunicornProcess",
    "RawClient",
    "RedisServer",
    "ServerProcess",
    "User",
    "WsAttacker",
    "assert_error",
    "drop_postgres_schemas",
    "free_port",
    "new_postgres_schema",
    "postgres_unavailable",
    "raw_post",
    "redis_unavailable",
    "require_service",
    "procfile_web_command",
    "server_rss_kib",
    "unique_name",
    "wait_for",
    "ws_frame",
]
