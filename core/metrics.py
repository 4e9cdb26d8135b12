"""Prometheus metrics: what the platform and the features count, how it reaches prometheus_client, and GET /metrics.

The hot path never calls prometheus_client. Where the work happens, code adds to
plain ints on TALLY (per batch, per flush, per connection event, never per
delivery) and appends at most one sample per message or batch for a histogram. A
greenlet moves all of it into prometheus_client once a second (the worker answering
a scrape does it once more first), and reads the live gauges from probes that
app.py hands over (Live.gauges, the backplane's gauges).

One process (`python app.py`): prometheus_client's default registry, with its process
and Python collectors. Under gunicorn: gunicorn.conf.py points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker starts, each worker
writes its values there, and whichever worker answers a scrape reads every worker's
files (prometheus_client's multiprocess mode). Counters and histograms are summed
over workers, dead ones included, so a total never goes back when a worker is
replaced; gauges are summed over live workers (`livesum`), except
greenroom_backplane_connected, the minimum over live workers (`livemin`: 0 when any
worker has lost Redis). prometheus_client picks its mode when it is first imported,
so it is imported only when metrics start, in the worker, never at build time.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
from flask import Flask, Response, jsonify, request

from core.clock import Clock
from core.errors import ChatError
from core.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# Samples kept for a histogram between two flushes; past it, more are dropped (a
# flush a second observes them all, so this only bounds memory if the flusher stalls).
MAX_SAMPLES = 200_000
# Histogram buckets: latencies in seconds, batch sizes in messages.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# A probe returns live values by gauge name (the keys of _Exported.gauges).
Probe = Callable[[], Mapping[str, float]]


class Tally:
    """Plain counts and samples; the metrics greenlet moves them into prometheus_client.

    Counters only grow here and are zeroed by the flush that exports them; nothing
    between the read and the reset yields, so no count is lost. Samples are kept
    only while metrics run (`enabled`), so with GREENROOM_METRICS=0 nothing grows.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.ws_opened = 0  # never reset: open = opened - closed
        self.ws_closed = 0
        self.ws_closes: dict[str, int] = {}  # close code the server sent, or "peer" -> count
        self.messages_stored = 0
        self.store_failures = 0
        self.frames_delivered = 0
        self.rate_limited: dict[str, int] = {}  # limit name -> refusals
        self.login_failures = 0
        self.limit_trips: dict[str, int] = {}  # hostile-client limit name -> times it tripped
        self.http_responses: dict[int, int] = {}  # status -> count
        self.bp_payloads = 0
        self.bp_messages = 0
        self.bp_failures = 0
        self.bp_dropped = 0
        self.bp_received = 0
        self.bp_resubscribed = 0
        self.gap_fills = 0
        self.gap_filled = 0
        self.resyncs = 0
        self.sweeps = 0
        self.sessions_expired = 0
        # Histogram samples since the last flush.
        self.batch_sizes: list[float] = []
        self.commit_s: list[float] = []
        self.ack_s: list[float] = []
        self.publish_lag_s: list[float] = []

    def sample(self, into: list[float], value: float) -> None:
        """One histogram sample (only while metrics run)."""
        if self.enabled and len(into) < MAX_SAMPLES:
            into.append(value)


TALLY = Tally()


def bump(counts: dict[Any, int], key: Any, n: int = 1) -> None:
    """Add n to a labelled count on TALLY."""
    counts[key] = counts.get(key, 0) + n


def trip(limit: str) -> None:
    """A hostile-client limit tripped (docs/security.md lists them)."""
    TALLY.limit_trips[limit] = TALLY.limit_trips.get(limit, 0) + 1


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Exported:
    """The prometheus_client metrics, made once per process (its registry is global)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

        # No *_created series: they double the exposition and nobody here graphs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in 0.26

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels)

        self.ws_closes = counter(
            "greenroom_ws_closes",
            "WebSocket closes by the code the server sent (peer: the client closed or hung up first)",
            ("code",),
        )
        self.messages_stored = counter(
            "greenroom_messages_stored", "Messages stored (REST and WebSocket)"
        )
        self.store_failures = counter(
            "greenroom_message_store_failures", "Messages whose batch failed to store"
        )
        self.frames_delivered = counter(
            "greenroom_message_frames_delivered",
            "Message frames handed to local WebSocket subscribers",
        )
        self.rate_limited = counter(
            "greenroom_rate_limited", "Requests and frames refused by a rate limit", ("limit",)
        )
        self.login_failures = counter(
            "greenroom_login_failures", "Logins refused for a wrong username or password"
        )
        self.limit_trips = counter(
            "greenroom_limit_trips", "Hostile-client limits that tripped", ("limit",)
        )
        self.http_responses = counter(
            "greenroom_http_responses", "HTTP responses from the app, by status", ("status",)
        )
        self.bp_payloads = counter(
            "greenroom_backplane_publishes", "Payloads published to the other workers"
        )
        self.bp_messages = counter(
            "greenroom_backplane_published_messages", "Messages published to the other workers"
        )
        self.bp_failures = counter(
            "greenroom_backplane_publish_failures", "Publish round trips that failed (retried)"
        )
        self.bp_dropped = counter(
            "greenroom_backplane_dropped", "Publishes dropped while Redis was unreachable"
        )
        self.bp_received = counter(
            "greenroom_backplane_received", "Payloads received from the other workers"
        )
        self.bp_resubscribed = counter(
            "greenroom_backplane_resubscriptions", "Subscriptions to the backplane (re)made"
        )
        self.gap_fills = counter(
            "greenroom_fanout_gap_fills", "Gaps in a room's messages read from the database"
        )
        self.gap_filled = counter(
            "greenroom_fanout_gap_filled_messages", "Messages read from the database to fill gaps"
        )
        self.resyncs = counter(
            "greenroom_fanout_resyncs", "Catch-ups of every feed after a backplane reconnection"
        )
        self.sweeps = counter("greenroom_sweeps", "Sweeper runs")
        self.sessions_expired = counter(
            "greenroom_sessions_expired", "Idle sessions ended by the sweeper"
        )
        self.batch_size = Histogram(
            "greenroom_db_batch_messages",
            "Messages stored per group commit",
            buckets=BATCH_BUCKETS,
        )
        self.commit_s = Histogram(
            "greenroom_db_commit_seconds",
            "Time to store one group commit",
            buckets=LATENCY_BUCKETS,
        )
        self.ack_s = Histogram(
            "greenroom_send_ack_seconds",
            "From reading a send frame to queueing its ack",
            buckets=LATENCY_BUCKETS,
        )
        self.publish_lag_s = Histogram(
            "greenroom_backplane_publish_lag_seconds",
            "From a publish being queued to its round trip to Redis completing",
            buckets=LATENCY_BUCKETS,
        )
        self.gauges: dict[str, Gauge] = {
            "ws_connections": Gauge(
                "greenroom_ws_connections",
                "Open WebSocket connections (authenticated or not)",
                multiprocess_mode="livesum",
            ),
            "ws_users": Gauge(
                "greenroom_ws_users",
                "Users with an authenticated WebSocket (per worker, summed)",
                multiprocess_mode="livesum",
            ),
            "rooms_live": Gauge(
                "greenroom_rooms_live",
                "Rooms with live subscribers (per worker, summed)",
                multiprocess_mode="livesum",
            ),
            "outbox_bytes": Gauge(
                "greenroom_outbox_bytes",
                "Bytes queued for WebSocket clients",
                multiprocess_mode="livesum",
            ),
            "backplane_backlog": Gauge(
                "greenroom_backplane_backlog",
                "Publishes waiting to go to Redis",
                multiprocess_mode="livesum",
            ),
            "backplane_connected": Gauge(
                "greenroom_backplane_connected",
                "1 while subscribed to the backplane (the minimum over workers)",
                multiprocess_mode="livemin",
            ),
        }
        self.counts: list[tuple[str, Counter]] = [
            ("messages_stored", self.messages_stored),
            ("store_failures", self.store_failures),
            ("frames_delivered", self.frames_delivered),
            ("login_failures", self.login_failures),
            ("bp_payloads", self.bp_payloads),
            ("bp_messages", self.bp_messages),
            ("bp_failures", self.bp_failures),
            ("bp_dropped", self.bp_dropped),
            ("bp_received", self.bp_received),
            ("bp_resubscribed", self.bp_resubscribed),
            ("gap_fills", self.gap_fills),
            ("gap_filled", self.gap_filled),
            ("resyncs", self.resyncs),
            ("sweeps", self.sweeps),
            ("sessions_expired", self.sessions_expired),
        ]
        self.labelled: list[tuple[str, Counter]] = [
            ("ws_closes", self.ws_closes),
            ("rate_limited", self.rate_limited),
            ("limit_trips", self.limit_trips),
            ("http_responses", self.http_responses),
        ]
        self.samples: list[tuple[str, Histogram]] = [
            ("batch_sizes", self.batch_size),
            ("commit_s", self.commit_s),
            ("ack_s", self.ack_s),
            ("publish_lag_s", self.publish_lag_s),
        ]
        # Known label values start at 0, so a scrape shows them before they first happen.
        for code in (
            "1000",
            "1001",
            "1009",
            "1011",
            "4001",
            "4002",
            "4008",
            "4009",
            "4029",
            "peer",
        ):
            self.ws_closes.labels(code)
        for limit in ("send", "login", "register", "create-room"):
            self.rate_limited.labels(limit)


_exported: _Exported | None = None


def _metrics() -> _Exported:
    global _exported
    if _exported is None:
        _exported = _Exported()
    return _exported


def flush(probes: list[Probe], tally: Tally = TALLY) -> None:
    """Move what TALLY counted into prometheus_client, and set the gauges from the probes."""
    m = _metrics()
    for name, counter in m.counts:
        n = getattr(tally, name)
        if n:
            setattr(tally, name, 0)
            counter.inc(n)
    for name, family in m.labelled:
        counts: dict[Any, int] = getattr(tally, name)
        if counts:
            setattr(tally, name, {})
            for key, n in counts.items():
                family.labels(str(key)).inc(n)
    for name, histogram in m.samples:
        samples: list[float] = getattr(tally, name)
        if samples:
            setattr(tally, name, [])
            observe = histogram.observe
            for value in samples:
                observe(value)
    m.gauges["ws_connections"].set(tally.ws_opened - tally.ws_closed)
    for probe in probes:
        for name, value in probe().items():
            m.gauges[name].set(value)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (every worker's, in multiprocess mode)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    registry: CollectorRegistry = REGISTRY
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped in 0.26
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Metrics:
    """This app's metrics: the flusher greenlet and its probes."""

    def __init__(self, settings: Settings, probes: list[Probe], clock: Clock) -> None:
        self.token = settings.METRICS_TOKEN
        self._probes = probes
        self._clock = clock
        self._greenlet: gevent.Greenlet[..., None] | None = None

    @property
    def running(self) -> bool:
        return self._greenlet is not None

    def start(self) -> None:
        _metrics()  # made in the worker, after gunicorn.conf.py chose the mode
        TALLY.enabled = True
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def flush(self) -> None:
        flush(self._probes)

    def _run(self) -> None:
        while True:
            self._clock.sleep(FLUSH_INTERVAL_S)
            try:
                self.flush()
            except Exception:
                log.exception("exporting metrics failed")

    def scrape(self) -> Response:
        self.flush()
        body, content_type = exposition()
        return Response(body, content_type=content_type)


UNAUTHORIZED = ChatError(
    401, "unauthorized", "GET /metrics needs Authorization: Bearer <GREENROOM_METRICS_TOKEN>."
)


def install(app: Flask, settings: Settings, probes: list[Probe], clock: Clock) -> None:
    """Serve GET /metrics and count HTTP responses, unless GREENROOM_METRICS=0 (then /metrics is a 404).

    Nothing starts here: start(app) sets the flusher going.
    """
    if not settings.METRICS:
        return
    metrics = Metrics(settings, probes, clock)
    app.extensions["greenroom.metrics"] = metrics
    expected = settings.METRICS_TOKEN.encode()

    @app.get("/metrics")
    def scrape() -> Response | tuple[Response, int]:
        if expected:
            # core.web.parse_bearer's rule; core.web imports core.server, which imports this module.
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            ok = scheme.lower() == "bearer" and given.strip() != ""
            if not hmac.compare_digest(given.strip().encode() if ok else b"", expected):
                response = jsonify({"error": UNAUTHORIZED.to_dict()})
                response.headers["WWW-Authenticate"] = "Bearer"
                return response, 401
        return metrics.scrape()

    @app.after_request
    def count_response(response: Response) -> Response:
        counts = TALLY.http_responses
        status = response.status_code
        counts[status] = counts.get(status, 0) + 1
        return response


def start(app: Flask) -> None:
    """Set this app's metrics going (nothing when they are off)."""
    metrics: Metrics | None = app.extensions.get("greenroom.metrics")
    if metrics is not None:
        metrics.start()


def stop(app: Flask) -> None:
    """Export once more and stop (on shutdown: under gunicorn the counts outlive the worker)."""
    metrics: Metrics | None = app.extensions.get("greenroom.metrics")
    if metrics is not None and metrics.running:
        metrics.stop()
        try:
            metrics.flush()
        except Exception:
            log.exception("exporting metrics failed")
