"""Process set-up and wiring: gevent patching, the app factory, and `python app.py` on gevent's server."""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.socket  # noqa: E402
from flask import Flask, Response, jsonify  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from auth.passwords import Passwords  # noqa: E402
from auth.routes import bp as auth_bp  # noqa: E402
from auth.service import Auth  # noqa: E402
from chat.connection import CLOSE_GOING_AWAY  # noqa: E402
from chat.database import open_database  # noqa: E402
from chat.http import Services, register_error_handlers  # noqa: E402
from chat.rooms import RoomRegistry  # noqa: E402
from chat.routes import bp as rooms_bp  # noqa: E402
from chat.service import Chat  # noqa: E402
from chat.settings import Settings, SettingsError, load_settings  # noqa: E402
from chat.ws import bp as ws_bp  # noqa: E402
from chat.ws import sock  # noqa: E402
from presence.routes import bp as users_bp  # noqa: E402
from presence.sweeper import Sweeper  # noqa: E402
from presence.tracker import Presence  # noqa: E402

log = logging.getLogger("greenroom")


def configure_logging(settings: Settings) -> None:
    """Log lines to stderr at GREENROOM_LOG_LEVEL, under python app.py and gunicorn alike."""
    logging.basicConfig(
        level=settings.LOG_LEVEL.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(settings.LOG_LEVEL.upper())


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app: storage, services, routes, and the sweeper greenlet."""
    settings = settings or load_settings()
    configure_logging(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_REQUEST_BYTES
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.MAX_FRAME_BYTES}
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Werkzeug would answer //api/rooms with an HTML redirect; a 404 JSON error is clearer.
    app.url_map.merge_slashes = False

    db = open_database(settings.DATABASE_URL)
    passwords = Passwords(
        settings.ARGON2_TIME_COST, settings.ARGON2_MEMORY_KIB, settings.ARGON2_PARALLELISM
    )
    auth = Auth(db, passwords, settings)
    registry: RoomRegistry = RoomRegistry()
    auth.live_sessions = registry.live_sessions
    presence = Presence(db, registry, on_session_ended=lambda s: auth.touch([s]))
    chat = Chat(db, settings, registry, presence)
    sweeper = Sweeper(chat, auth, settings)
    app.extensions["greenroom"] = Services(settings, db, auth, chat, presence, sweeper)

    register_error_handlers(app)
    for bp in (auth_bp, rooms_bp, users_bp, ws_bp):
        app.register_blueprint(bp)
    sock.init_app(app)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok", "connections": len(registry)})

    sweeper.start()
    _chain_sigterm(app)
    log.info("greenroom ready on %s", settings.DATABASE_URL)
    return app


def shutdown(app: Flask) -> None:
    """Close every WebSocket with 1001 so clients reconnect elsewhere, and flush pending writes."""
    svc: Services = app.extensions["greenroom"]
    if svc.shutting_down:
        return
    svc.shutting_down = True
    started = time.monotonic()
    svc.sweeper.stop()
    conns = svc.chat.close_all(CLOSE_GOING_AWAY, "server shutting down")
    deadline = started + svc.settings.SHUTDOWN_TIMEOUT_S
    for conn in conns:
        conn.wait_closed(max(0.0, deadline - time.monotonic()))
    svc.chat.writer.flush(max(0.0, deadline - time.monotonic()))
    log.info("shutdown: closed %d connections in %.2f s", len(conns), time.monotonic() - started)


def _chain_sigterm(app: Flask) -> None:
    """On SIGTERM close our sockets first, then let whoever else handles it (gunicorn) go on."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: object) -> None:
        gevent.spawn(shutdown, app)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"greenroom: {exc}")
    app = create_app(settings)
    listener = gevent.socket.socket(gevent.socket.AF_INET, gevent.socket.SOCK_STREAM)
    listener.setsockopt(gevent.socket.SOL_SOCKET, gevent.socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this: pywsgi writes headers and body separately, and
    # with Nagle on, a keep-alive response waited ~40 ms for the client's delayed ACK.
    listener.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
    listener.bind((settings.HOST, settings.PORT))
    listener.listen(1024)
    server = WSGIServer(listener, app, log=None, error_log=log)
    server.start()
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
    server.close()  # stop accepting
    shutdown(app)
    server.stop(timeout=settings.SHUTDOWN_TIMEOUT_S)
    log.info("stopped")


if __name__ == "__main__":
    main()
