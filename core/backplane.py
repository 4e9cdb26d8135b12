"""The backplane between workers: what one worker publishes, every other worker receives.

It is also the event bus inside one worker: chat, auth and presence subscribe to
event types (core.events) and never call each other. Without REDIS_URL there are no
other workers: LocalBackplane hands each event to this worker's own handlers and
publishes nothing. With REDIS_URL, RedisBackplane also publishes every message
batch and wire event on one Redis pub/sub channel, and a subscriber greenlet hands
other workers' traffic to the same handlers.

Publishing is batched per tick: the publisher greenlet wakes on the first publish,
waits PUBLISH_WINDOW_S for more, then sends everything queued in one round trip,
with the message batches queued between two events joined into one M payload, so
each worker receives and decodes once per tick rather than once per writer batch.
Order is kept: events and message batches go out in the order they were queued.

Redis pub/sub keeps each publisher's order but loses whatever is published while
a subscriber is disconnected. So the subscriber reports every (re)subscription
(a Resubscribed event), after which chat reads what it missed from the
database; message seqs reveal any other gap (chat.fanout). A publish that fails
is kept and retried in order, so other workers get it late rather than never.

Wire format, one pub/sub message each:
  b"M" + worker id + b"\\n" + (room b" " seq b" " length b"\\n" frame)...   message batches
  b"E" + worker id + b"\\n" + JSON object                                 events
A message's frame is the encoded WebSocket frame itself: nobody re-encodes it.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent.event import Event as Flag

from core import events
from core.clock import Clock
from core.events import Event, Messages, Resubscribed, Tick
from core.metrics import TALLY

log = logging.getLogger(__name__)

Items = list[tuple[str, int, bytes]]  # (room, seq, encoded frame)
E = TypeVar("E", bound=Event)
Handler = Callable[[str, E], None]  # (origin worker id, event)

# Publishes kept while Redis is unreachable; beyond this the oldest are dropped
# (other workers still find those messages by seq, from the database).
MAX_BACKLOG = 100_000
PUBLISH_BATCH = 256  # payloads per round trip
PUBLISH_WINDOW_S = 0.005  # the publishing tick: how long a publish waits for company
PAYLOAD_MAX_ITEMS = 1_000  # messages joined into one M payload at most
PAYLOAD_MAX_BYTES = 1_048_576  # ... and their frames' bytes
POOL_SIZE = 32  # Redis command connections per worker (rate limits, publishing)


def encode_messages(origin: str, items: Items) -> bytes:
    parts = [b"M", origin.encode(), b"\n"]
    for room, seq, frame in items:
        parts.append(b"%s %d %d\n" % (room.encode(), seq, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def encode_event(origin: str, event: dict[str, Any]) -> bytes:
    return b"E" + origin.encode() + b"\n" + json.dumps(event, separators=(",", ":")).encode()


def decode(data: bytes) -> tuple[str, str, Items | dict[str, Any]]:
    """(kind "M" or "E", origin worker id, items or event); ValueError when malformed."""
    head, sep, body = data.partition(b"\n")
    if not sep or len(head) < 2 or head[:1] not in (b"M", b"E"):
        raise ValueError("not a backplane message")
    kind, origin = head[:1].decode(), head[1:].decode()
    if kind == "E":
        event = json.loads(body)
        if not isinstance(event, dict) or not isinstance(event.get("k"), str):
            raise ValueError("an event is a JSON object with a string k")
        return kind, origin, event
    items: Items = []
    pos = 0
    while pos < len(body):
        end = body.index(b"\n", pos)
        room, seq, size = body[pos:end].split(b" ")
        if not seq.isdigit() or not size.isdigit():
            raise ValueError("seq and length are whole numbers")
        start = end + 1
        stop = start + int(size)
        if stop > len(body):
            raise ValueError("a frame runs past the end")
        items.append((room.decode(), int(seq), body[start:stop]))
        pos = stop
    return kind, origin, items


class LocalBackplane:
    """One worker alone, and the in-process event bus every backplane is.

    Handlers subscribe by event type; emit() runs them here and (with Redis) on every
    other worker, publish() only elsewhere, local() only here.
    """

    clustered = False

    def __init__(self, clock: Clock) -> None:
        self.worker_id = secrets.token_hex(6)
        self.connected = True
        self._clock = clock
        self._handlers: dict[type[Event], list[Handler[Any]]] = {}

    def subscribe(self, kind: type[E], handler: Handler[E]) -> None:
        """Call handler(origin worker id, event) for every event of this kind, from any worker."""
        self._handlers.setdefault(kind, []).append(handler)

    def local(self, event: Event) -> None:
        """Handle an event on this worker only."""
        self._dispatch_event(self.worker_id, event)

    def emit(self, event: Event) -> None:
        """Handle an event here, and on every other worker."""
        self._dispatch_event(self.worker_id, event)

    def publish(self, event: Event) -> None:
        """Tell the other workers only."""

    def publish_messages(self, items: Items) -> None:
        """This worker delivers its own messages itself; nobody else needs them."""

    def gauges(self) -> dict[str, float]:
        """Live values for core.metrics: alone, nothing waits and nothing is cut off."""
        return {"backplane_backlog": 0, "backplane_connected": 1}

    def start(self) -> None:
        """Start talking to the other workers (nothing to do alone)."""

    def stop(self) -> None:
        pass

    def _dispatch_event(self, origin: str, event: Event) -> None:
        for handler in self._handlers.get(type(event), ()):
            handler(origin, event)


class _Batch:
    """Message batches queued together, published as one M payload."""

    __slots__ = ("items", "size")

    def __init__(self) -> None:
        self.items: Items = []
        self.size = 0

    def fits(self, items: Items) -> bool:
        return (
            len(self.items) + len(items) <= PAYLOAD_MAX_ITEMS
            and self.size + sum(len(frame) for _, _, frame in items) <= PAYLOAD_MAX_BYTES
        )

    def add(self, items: Items) -> None:
        self.items.extend(items)
        self.size += sum(len(frame) for _, _, frame in items)


class _Silent(Exception):
    """The subscription heard nothing, not even our own heartbeats: the link is dead."""


class RedisBackplane(LocalBackplane):
    """Publishes to and subscribes on one Redis channel; reconnects and reports every reconnection."""

    clustered = True

    def __init__(
        self,
        url: str,
        channel: str,
        heartbeat_s: float,
        clock: Clock,
        publish_window_s: float = PUBLISH_WINDOW_S,
    ) -> None:
        super().__init__(clock)
        # Imported here, after app.py's patch_all(): redis-py is then cooperative.
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        options = {"socket_connect_timeout": 2.0, "socket_timeout": max(5.0, 3 * heartbeat_s)}
        # Greenlets wait for a free connection instead of failing: redis-py's default pool
        # refuses the 101st concurrent caller ("Too many connections").
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=5.0, retry=Retry(NoBackoff(), 1), **options
        )
        self.client = redis.Redis(connection_pool=pool)
        # The subscriber must see every disconnection (to catch up), so it never retries silently.
        self._sub_client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        self._channel = channel
        self._heartbeat_s = heartbeat_s
        self.connected = False
        # Encoded events, and message batches still open to more items (with their bytes).
        self._backlog: deque[bytes | _Batch] = deque()
        self._publish_window_s = publish_window_s
        self._own_header = self.worker_id.encode() + b"\n"  # after the kind byte
        self._wake = Flag()
        self._greenlets: list[gevent.Greenlet[..., None]] = []
        self._heard_at = self._clock.monotonic()
        self._queued_at = self._heard_at  # when the backlog last went from empty to not
        self.dropped = 0

    def gauges(self) -> dict[str, float]:
        return {"backplane_backlog": len(self._backlog), "backplane_connected": int(self.connected)}

    def start(self) -> None:
        self._greenlets = [
            gevent.spawn(self._publish_loop),
            gevent.spawn(self._subscribe_loop),
            gevent.spawn(self._tick_loop),
        ]

    def stop(self) -> None:
        """Send what is queued (briefly), then stop."""
        deadline = self._clock.monotonic() + 2.0
        while self._backlog and self.connected and self._clock.monotonic() < deadline:
            gevent.sleep(0.01)
        gevent.killall(self._greenlets, block=False)

    def publish_messages(self, items: Items) -> None:
        if not items:
            return
        last = self._backlog[-1] if self._backlog else None
        TALLY.bp_messages += len(items)
        if isinstance(last, _Batch) and last.fits(items):
            last.add(items)  # one payload for every batch since the last event
            return
        batch = _Batch()
        batch.add(items)
        self._queue(batch)

    def emit(self, event: Event) -> None:
        self._dispatch_event(self.worker_id, event)
        self.publish(event)

    def publish(self, event: Event) -> None:
        self._queue(encode_event(self.worker_id, events.encode(event)))

    def _queue(self, entry: bytes | _Batch) -> None:
        if not self._backlog:
            self._queued_at = self._clock.monotonic()
        self._backlog.append(entry)
        if len(self._backlog) > MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped += 1
            TALLY.bp_dropped += 1
            if self.dropped % 10_000 == 1:
                log.error("backplane: Redis unreachable, dropped %d old publishes", self.dropped)
        self._wake.set()

    def _publish_loop(self) -> None:
        delay = 0.05
        failing_since: float | None = None
        while True:
            self._wake.wait()
            if self._publish_window_s:
                # The tick: what is published meanwhile goes out in the same round trip
                # (a yield of a few ms, not a timeout: a fake clock must not move for it).
                gevent.sleep(self._publish_window_s)
            self._wake.clear()
            while self._backlog:
                n = min(len(self._backlog), PUBLISH_BATCH)
                entries = [self._backlog.popleft() for _ in range(n)]
                try:
                    self._send(entries)
                    TALLY.bp_payloads += n
                    TALLY.sample(TALLY.publish_lag_s, self._clock.monotonic() - self._queued_at)
                    delay = 0.05
                    if failing_since is not None:
                        log.warning(
                            "backplane: publishing again after %.1f s",
                            self._clock.monotonic() - failing_since,
                        )
                        failing_since = None
                except self._errors as exc:
                    # Put them back in order, and try again: late beats lost.
                    self._backlog.extendleft(reversed(entries))
                    TALLY.bp_failures += 1
                    if failing_since is None:
                        failing_since = self._clock.monotonic()
                        log.warning("backplane: publish failed (%s); keeping and retrying", exc)
                    gevent.sleep(delay)
                    delay = min(delay * 2, 1.0)

    def _send(self, entries: list[bytes | _Batch]) -> None:
        payloads = [
            e if isinstance(e, bytes) else encode_messages(self.worker_id, e.items) for e in entries
        ]
        if len(payloads) == 1:
            self.client.publish(self._channel, payloads[0])
            return
        pipe = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(self._channel, payload)
        pipe.execute()

    def _subscribe_loop(self) -> None:
        delay = 0.05
        while True:
            pubsub = self._sub_client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                # Wait for the confirmation: from here on nothing published is missed.
                if pubsub.get_message(timeout=5.0) is None:
                    raise _Silent("no subscribe confirmation")
                self.connected = True
                delay = 0.05
                self._heard_at = self._clock.monotonic()
                TALLY.bp_resubscribed += 1
                log.info("backplane: subscribed to %s as worker %s", self._channel, self.worker_id)
                self._run_hook(Resubscribed())
                self._receive(pubsub)
            except self._errors + (_Silent,) as exc:
                if self.connected:
                    log.warning("backplane: lost the subscription (%s); reconnecting", exc)
            finally:
                self.connected = False
                try:
                    pubsub.close()
                except self._errors:
                    pass
            gevent.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _receive(self, pubsub: Any) -> None:
        # Our own heartbeats come back too: hearing nothing for this long means the link is dead.
        silent_after = 3 * self._heartbeat_s + 1.0
        while True:
            msg = pubsub.get_message(timeout=self._heartbeat_s)
            now = self._clock.monotonic()
            if msg is None:
                if now - self._heard_at > silent_after:
                    raise _Silent(f"nothing heard for {now - self._heard_at:.1f} s")
                continue
            self._heard_at = now
            if msg.get("type") == "message":
                self._dispatch(msg["data"])

    def _dispatch(self, data: bytes) -> None:
        if data.startswith(self._own_header, 1):
            return  # our own publish, back from Redis: handled here when it was sent
        try:
            kind, origin, body = decode(data)
        except (ValueError, UnicodeDecodeError):
            log.warning("backplane: ignored a malformed message (%d bytes)", len(data))
            return
        if origin == self.worker_id:
            return  # handled here when it was sent
        TALLY.bp_received += 1
        try:
            event = Messages(body) if isinstance(body, list) else events.decode(body)
        except ValueError as exc:
            log.warning("backplane: ignored an event from worker %s: %s", origin, exc)
            return
        try:
            self._dispatch_event(origin, event)
        except Exception:
            log.exception("backplane: handling a %s from worker %s failed", kind, origin)

    def _tick_loop(self) -> None:
        while True:
            self._clock.sleep(self._heartbeat_s)
            try:
                self._dispatch_event(self.worker_id, Tick(self._clock.monotonic()))
            except Exception:
                log.exception("backplane: heartbeat failed")

    def _run_hook(self, event: Event) -> None:
        try:
            self._dispatch_event(self.worker_id, event)
        except Exception:
            log.exception("backplane: reconnect hook failed")


def open_backplane(
    redis_url: str, channel: str, heartbeat_s: float, clock: Clock
) -> LocalBackplane:
    """RedisBackplane when REDIS_URL is set, else the single-worker LocalBackplane.

    Neither connects before start().
    """
    if redis_url:
        return RedisBackplane(redis_url, channel, heartbeat_s, clock)
    return LocalBackplane(clock)
