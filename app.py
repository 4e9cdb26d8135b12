"""Process set-up and wiring: build() makes the services, start() sets them going, main() serves.

`python app.py` patches the standard library for gevent before anything else is
imported; gunicorn's gevent worker has patched by the time it loads build_app().
Imported any other way (tests building the services in process), nothing is patched.
"""

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import dataclasses  # noqa: E402
import errno  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from types import FrameType  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import gevent.socket  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402
from flask.json.provider import DefaultJSONProvider  # noqa: E402

from auth.passwords import Passwords  # noqa: E402
from auth.routes import bp as auth_bp  # noqa: E402
from auth.service import Auth  # noqa: E402
from chat.connection import Connection  # noqa: E402
from chat.fanout import Fanout  # noqa: E402
from chat.history import StoredFrames  # noqa: E402
from chat.live import Live  # noqa: E402
from chat.membership import Rooms  # noqa: E402
from chat.publisher import Publisher  # noqa: E402
from chat.rooms import RoomRegistry  # noqa: E402
from chat.routes import bp as rooms_bp  # noqa: E402
from chat.writer import MessageWriter  # noqa: E402
from chat.ws import bp as ws_bp  # noqa: E402
from chat.ws import server_options, sock  # noqa: E402
from core import access, logs, metrics  # noqa: E402
from core.backplane import LocalBackplane, open_backplane  # noqa: E402
from core.claim import ClaimError, claim_database  # noqa: E402
from core.clock import SYSTEM, Clock  # noqa: E402
from core.database import Database, open_database  # noqa: E402
from core.errors import ChatError  # noqa: E402
from core.health import Readiness  # noqa: E402
from core.openapi import bp as openapi_bp  # noqa: E402
from core.ratelimit import RateLimiter, SharedRateLimiter, SyncedRateLimiter  # noqa: E402
from core.server import Limits, Server, is_upgrade  # noqa: E402
from core.settings import Settings, SettingsError, load_settings  # noqa: E402
from core.status import Statuses  # noqa: E402
from core.web import (  # noqa: E402
    Authenticator,
    error_response,
    provide,
    register_error_handlers,
)
from core.wire import CLOSE_GOING_AWAY  # noqa: E402
from presence.routes import bp as users_bp  # noqa: E402
from presence.sweeper import Sweeper  # noqa: E402
from presence.tracker import Presence  # noqa: E402
from web import bp as web_bp  # noqa: E402

log = logging.getLogger("greenroom")

NOT_STARTED = ChatError(
    503,
    "unavailable",
    "The server was built but not started: under gunicorn, run it from the repository "
    "root so gunicorn.conf.py starts each worker.",
)


DRAINING = ChatError(
    503,
    "unavailable",
    "The server is shutting down: connect again in a moment (to another worker).",
)


def configure_logging(settings: Settings) -> None:
    """Log lines to stderr at GREENROOM_LOG_LEVEL in GREENROOM_LOG_FORMAT, under python app.py
    and gunicorn alike (gunicorn's own logger writes the same format: gunicorn.conf.py).

    The text format escapes control characters in what it logs and the JSON format
    writes ASCII only, so no value a client sent can forge a log line.
    """
    logs.configure(
        settings.LOG_FORMAT,
        settings.LOG_LEVEL,
        settings.WS_LOG_LEVEL,
        [logging.getLogger("gunicorn.error")],
    )


@dataclasses.dataclass
class Greenroom:
    """Everything one app instance owns, built by build() and set going by start()."""

    settings: Settings
    clock: Clock
    db: Database
    backplane: LocalBackplane
    auth: Auth
    presence: Presence
    rooms: Rooms
    live: Live
    writer: MessageWriter
    sweeper: Sweeper[Connection]
    claim: object = None
    started: bool = False
    shutting_down: bool = False
    # Set when shutdown() has finished, for a second caller (a signal handler and main()).
    drained: gevent.event.Event = dataclasses.field(default_factory=gevent.event.Event)


def build(settings: Settings, clock: Clock = SYSTEM) -> Greenroom:
    """Make the services and wire them together through the backplane's events.

    Nothing here starts a greenlet, opens a connection, takes the claim or touches
    signals and logging: start() does, so tests can build everything in process.
    """
    db = open_database(settings.DATABASE_URL)
    backplane = open_backplane(
        settings.REDIS_URL, settings.BACKPLANE_CHANNEL, settings.HEARTBEAT_S, clock
    )
    passwords = Passwords(
        settings.ARGON2_TIME_COST, settings.ARGON2_MEMORY_KIB, settings.ARGON2_PARALLELISM
    )
    auth = Auth(
        db,
        passwords,
        settings,
        _limiter(backplane, settings, "login"),
        _limiter(backplane, settings, "login-address"),
        _limiter(backplane, settings, "register"),
        backplane,
        clock,
    )
    presence = Presence(db, backplane, settings.WORKER_TIMEOUT_S, clock)
    registry: RoomRegistry[Connection] = RoomRegistry()
    auth.live_sessions = registry.live_sessions
    fanout = Fanout(registry, StoredFrames(db), settings.GAP_WAIT_S, clock)
    writer = MessageWriter(db, settings.ROOM_HISTORY_LIMIT, Publisher(fanout, backplane, clock))
    rooms = Rooms(
        db,
        settings,
        backplane,
        writer,
        presence,
        _limiter(backplane, settings, "send", clock),
        _limiter(backplane, settings, "create-room"),
        clock,
    )
    live = Live(db, settings, registry, fanout, writer, rooms, backplane, presence, clock)
    # Live first: after a reconnection, feeds catch up before presence says hello.
    live.subscribe()
    presence.subscribe()
    auth.subscribe()
    sweeper = Sweeper(live, auth.expire_idle, [rooms.prune, live.prune], settings, clock)
    return Greenroom(settings, clock, db, backplane, auth, presence, rooms, live, writer, sweeper)


def build_app(settings: Settings | None = None, clock: Clock = SYSTEM) -> Flask:
    """The Flask app over freshly built services, not yet started (gunicorn loads this)."""
    settings = settings or load_settings()
    gr = build(settings, clock)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_REQUEST_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = server_options(settings.MAX_FRAME_BYTES)
    assert isinstance(app.json, DefaultJSONProvider)  # Flask's own, typed as the base JSONProvider
    app.json.sort_keys = False
    # Werkzeug would answer //api/rooms with an HTML redirect; a 404 JSON error is clearer.
    app.url_map.merge_slashes = False
    app.extensions["greenroom.app"] = gr
    provide(
        app,
        {
            Settings: settings,
            Clock: clock,
            Authenticator: gr.auth,
            Auth: gr.auth,
            Statuses: gr.presence,
            Presence: gr.presence,
            Rooms: gr.rooms,
            Live: gr.live,
        },
    )
    register_error_handlers(app)
    access.install(app, clock)
    readiness = Readiness(
        gr.db,
        (lambda: gr.backplane.connected) if gr.backplane.clustered else None,
        lambda: gr.shutting_down,
        settings.READY_DB_TIMEOUT_S,
        settings.READY_CACHE_S,
        clock,
    )

    @app.before_request
    def refuse_until_started() -> tuple[Response, int] | None:
        # Under gunicorn, start() comes from gunicorn.conf.py; run without it (another
        # working directory, another -c), nothing would store or deliver a message.
        if not gr.started:
            log.error("a request arrived before start(): run gunicorn from the repository root")
            return error_response(NOT_STARTED)
        # While draining the worker still answers (/readyz says 503, so the balancer
        # moves on), but a new WebSocket would only be closed again with 1001.
        if gr.shutting_down and is_upgrade(request.environ):
            return error_response(DRAINING)
        return None

    for bp in (auth_bp, rooms_bp, users_bp, ws_bp, web_bp, openapi_bp):
        app.register_blueprint(bp)
    sock.init_app(app)
    metrics.install(app, settings, [gr.live.gauges, gr.backplane.gauges], clock)

    @app.get("/healthz")
    def healthz() -> Response:
        """Alive: cheap, touches nothing outside the process (readiness is /readyz)."""
        body: dict[str, object] = {
            "status": "ok",
            "connections": len(gr.live.registry),
            "worker": gr.backplane.worker_id,
            "backplane": "redis" if gr.backplane.clustered else "none",
        }
        if gr.backplane.clustered:
            body["backplane_connected"] = gr.backplane.connected
        return jsonify(body)

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Ready for traffic: the database answers, the backplane is connected, not draining."""
        checks = readiness.checks()
        failing = sorted(name for name, state in checks.items() if state != "ok")
        if not failing:
            return jsonify({"status": "ready", "checks": checks}), 200
        return error_response(
            ChatError(
                503,
                "not_ready",
                f"Not ready for traffic: {', '.join(f'{n} {checks[n]}' for n in failing)}.",
                checks=checks,
            )
        )

    return app


def start(app: Flask, signals: bool = True) -> None:
    """Set the app going: logging, the database claim, storage, the backplane, greenlets, SIGTERM.

    python app.py calls it before listening; under gunicorn, gunicorn.conf.py's
    post_worker_init hook calls it in each worker.
    """
    gr: Greenroom = app.extensions["greenroom.app"]
    if gr.started:
        return
    gr.started = True
    settings = gr.settings
    configure_logging(settings)
    gr.claim = claim_database(
        settings.DATABASE_URL, bool(settings.REDIS_URL), settings.CLAIM_WAIT_S
    )
    gr.db.open()
    gr.writer.start()
    gr.backplane.start()
    gr.sweeper.start()
    metrics.start(app)
    if signals:
        _chain_sigterm(app)
    log.info(
        "greenroom ready on %s, %s",
        _redacted(settings.DATABASE_URL),
        f"backplane {_redacted(settings.REDIS_URL)}" if settings.REDIS_URL else "one worker",
    )


def _limiter(
    backplane: object, settings: Settings, what: str, clock: Clock = SYSTEM
) -> RateLimiter:
    """Per-worker buckets, or buckets shared in Redis when several workers serve one site.

    The send limit is checked on every message, so it decides locally and settles with
    Redis every SEND_LIMIT_SYNC_S (core.ratelimit.SyncedRateLimiter, with its bound).
    """
    s = settings
    if what == "send":
        rate, burst = s.SEND_RATE_PER_S, s.SEND_BURST
    else:
        count, window = {  # what -> (allowed, per this many seconds)
            "login": (s.LOGIN_MAX_FAILURES, s.LOGIN_WINDOW_S),
            "login-address": (s.LOGIN_ADDRESS_MAX_FAILURES, s.LOGIN_ADDRESS_WINDOW_S),
            "register": (s.REGISTER_MAX_PER_ADDRESS, s.REGISTER_WINDOW_S),
            "create-room": (s.ROOM_CREATE_MAX, s.ROOM_CREATE_WINDOW_S),
        }[what]
        rate, burst = count / window, count
    # "login-address" is counted as "login" (Auth counts a refused login once).
    name = "" if what == "login-address" else what
    client = getattr(backplane, "client", None)
    if client is None:
        return RateLimiter(rate, burst, name)
    if what == "send":
        prefix = f"{settings.BACKPLANE_CHANNEL}:send:"
        return SyncedRateLimiter(client, prefix, rate, burst, s.SEND_LIMIT_SYNC_S, clock, name)
    return SharedRateLimiter(client, f"{settings.BACKPLANE_CHANNEL}:{what}:", rate, burst, name)


def _redacted(url: str) -> str:
    """A URL without its password, for the log."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def shutdown(app: Flask) -> None:
    """Close every WebSocket with 1001 so clients reconnect elsewhere, and flush pending writes."""
    gr: Greenroom = app.extensions["greenroom.app"]
    if gr.shutting_down:
        # Return only once the drain is over: main() stops accepting after this returns.
        gr.drained.wait(gr.settings.SHUTDOWN_TIMEOUT_S + 1)
        return
    gr.shutting_down = True
    try:
        _drain(app, gr)
    finally:
        gr.drained.set()


def _drain(app: Flask, gr: Greenroom) -> None:
    clock = gr.clock
    started = clock.monotonic()
    gr.sweeper.stop()
    conns = gr.live.close_all(CLOSE_GOING_AWAY, "server shutting down")
    deadline = started + gr.settings.SHUTDOWN_TIMEOUT_S
    for conn in conns:
        conn.wait_closed(max(0.0, deadline - clock.monotonic()))
    gr.writer.flush(max(0.0, deadline - clock.monotonic()))
    # Other workers drop our users at once instead of waiting out WORKER_TIMEOUT_S.
    gr.presence.goodbye()
    gr.backplane.stop()
    metrics.stop(app)  # a last export: what this worker counted survives it
    log.info("shutdown: closed %d connections in %.2f s", len(conns), clock.monotonic() - started)


def _chain_sigterm(app: Flask) -> None:
    """On SIGTERM drain first (close our sockets, flush), then let whoever else handles it go on.

    gunicorn's handler stops accepting at once; calling it after the drain keeps the
    worker answering meanwhile, so a balancer's probe sees /readyz say 503 (draining)
    rather than a refused connection.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def drain_then_exit(signum: int, frame: FrameType | None) -> None:
        try:
            shutdown(app)
        finally:
            if callable(previous):
                previous(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        gevent.spawn(drain_then_exit, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _listen(host: str, port: int) -> gevent.socket.socket:
    """The listening socket, or exit 1 with one line saying why (a port in use, say)."""
    listener = gevent.socket.socket(gevent.socket.AF_INET, gevent.socket.SOCK_STREAM)
    listener.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: pywsgi writes headers and body separately, and
    # with Nagle on, a keep-alive response waited ~40 ms for the client's delayed ACK.
    listener.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
        listener.listen(1024)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            why = "is in use by another process: stop it, or set PORT=... to another port"
        elif exc.errno == errno.EACCES:
            why = "needs privileges: use a port above 1023, or put a proxy in front"
        else:
            why = f"cannot be used: {exc.strerror or exc}"
        sys.exit(f"greenroom: cannot listen on {host}:{port}: the port {why}.")
    return listener


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"greenroom: {exc}")
    # Before the claim and storage: a taken port is the commonest start-up failure.
    listener = _listen(settings.HOST, settings.PORT)
    try:
        app = build_app(settings)
        start(app)
    except (SettingsError, ClaimError) as exc:
        sys.exit(f"greenroom: {exc}")
    # Our handler adds header/body/keep-alive deadlines, fairness between connections,
    # a closed connection after every WebSocket, and JSON refusals (core/server.py).
    server = Server(listener, app, Limits.from_settings(settings), log=None, error_log=log)
    server.start()
    assert isinstance(server.address, tuple)  # an AF_INET listener's (host, port)
    host, port = server.address[:2]
    log.info("listening on http://%s:%d", host, port)
    print(f"greenroom listening on http://{host}:{port}", flush=True)  # tests and humans read this

    stopping = gevent.event.Event()

    def stop() -> None:
        stopping.set()

    # Handled in the hub loop, so blocking work may follow on the main greenlet.
    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    stopping.wait()
    # Drain while still accepting: /readyz answers 503 meanwhile and new WebSockets
    # are refused, so a balancer moves traffic away before the port closes.
    shutdown(app)
    server.close()  # stop accepting
    server.stop(timeout=settings.SHUTDOWN_TIMEOUT_S)
    log.info("stopped")


if __name__ == "__main__":
    main()
