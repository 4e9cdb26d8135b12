"""gunicorn settings for Greenroom (read by gunicorn from the working directory).

Without a backplane, rooms, presence and rate limits live in one worker's memory:
with several workers a message would reach only the members connected to the
sender's worker. So more than one worker needs REDIS_URL (the backplane) and a
PostgreSQL DATABASE_URL (SQLite serves one process); otherwise gunicorn refuses
to start, saying why.
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any, cast

from gunicorn.glogging import Logger

from core import logs

if TYPE_CHECKING:
    from flask import Flask
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

# The request-line and header limits `python app.py` applies too (core/server.py), so a
# request is refused the same way, with the same JSON 414 or 431, under either server.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Greenroom writes its own access line for every request (core/access.py: the route,
# the user, the request id, the same line as under `python app.py`), so gunicorn's
# access log stays off, even if --access-logfile is given.
accesslog = None


class GreenroomLogger(Logger):
    """gunicorn's own lines (the arbiter's and each worker's) in Greenroom's log format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        kind = os.environ.get("GREENROOM_LOG_FORMAT") or "text"
        for handler in self.error_log.handlers:
            logs.use_format(handler, kind if kind in logs.FORMATS else "text")

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Never a second access line: core/access.py writes the one line per request."""


logger_class = GreenroomLogger


def on_starting(server: Arbiter) -> None:
    _refuse_workers_without_backplane(server.cfg.workers)
    _refuse_a_taken_port(server.cfg.address)
    _fresh_metrics_dir()


def _refuse_a_taken_port(addresses: list[Any]) -> None:
    """One line and exit 1 when a port is taken, as under python app.py.

    gunicorn would log five retries a second apart and then give up; trying the bind
    here first (with the SO_REUSEADDR gunicorn sets too) says it once, at once.
    """
    for address in addresses:
        if not isinstance(address, tuple):
            continue  # a unix socket path: gunicorn's own message is clear enough
        host, port = address[0], address[1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                why = (
                    "the port is in use by another process"
                    if exc.errno == errno.EADDRINUSE
                    else exc.strerror
                )
                print(
                    f"greenroom: cannot listen on {host}:{port}: {why}", file=sys.stderr, flush=True
                )
                raise SystemExit(1) from None


def _refuse_workers_without_backplane(workers: int) -> None:
    if workers <= 1:
        return
    missing = []
    if not os.environ.get("REDIS_URL"):
        missing.append("REDIS_URL=redis://... (the backplane that shares rooms between workers)")
    if not os.environ.get("DATABASE_URL", "").startswith(("postgresql://", "postgres://")):
        missing.append("DATABASE_URL=postgresql://... (SQLite serves one process)")
    if missing:
        message = (
            f"greenroom: refusing to start {workers} workers without "
            + " and ".join(missing)
            + ". Without them, several workers would split every room. Set both, or run "
            "one worker (-w 1); it holds thousands of connections."
        )
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(1)


# Metrics (core/metrics.py): every worker writes its values as files in one directory,
# and whichever worker answers GET /metrics reads them all (prometheus_client's
# multiprocess mode). The directory must be set before a worker first imports
# prometheus_client (workers import it when their app starts), and must start empty:
# files left by an earlier run would add its totals to this one's.
_made_metrics_dir: str | None = None


def _fresh_metrics_dir() -> None:
    global _made_metrics_dir
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)
        return
    _made_metrics_dir = tempfile.mkdtemp(prefix="greenroom-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _made_metrics_dir


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A worker ended: its live gauges (connections, rooms, ...) leave the sums; its counts stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # untyped in 0.26


def on_exit(server: Arbiter) -> None:
    if _made_metrics_dir is not None:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


def post_worker_init(worker: Worker) -> None:
    """Start the worker's app (app.build_app() only builds it): the claim, storage, greenlets."""
    from app import start

    # worker.wsgi may be wrapped (core.server.GeventWorker bounds body reads); this is
    # the Flask app itself (the Procfile's app:build_app()), loaded once per worker.
    start(cast("Flask", worker.app.wsgi()))
