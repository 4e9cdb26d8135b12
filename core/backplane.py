"""The backplane between workers: what one worker publishes, every other worker receives.

Without REDIS_URL there are no other workers: LocalBackplane hands each event to
this worker's own handler and publishes nothing. With REDIS_URL, RedisBackplane
also publishes every message batch and event on one Redis pub/sub channel, and a
subscriber greenlet hands other workers' traffic to the same handlers.

Redis pub/sub keeps each publisher's order but loses whatever is published while
a subscriber is disconnected. So the subscriber reports every (re)subscription
(`on_connected`), after which the chat core reads what it missed from the
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
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event

log = logging.getLogger(__name__)

Items = list[tuple[str, int, bytes]]  # (room, seq, encoded frame)
OnMessages = Callable[[Items], None]
OnEvent = Callable[[str, dict[str, Any]], None]  # (origin worker id, event)
Hook = Callable[[], None]

# Publishes kept while Redis is unreachable; beyond this the oldest are dropped
# (other workers still find those messages by seq, from the database).
MAX_BACKLOG = 100_000
PUBLISH_BATCH = 256
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
    """One worker alone: events go to its own handler; nothing leaves the process."""

    clustered = False

    def __init__(self) -> None:
        self.worker_id = secrets.token_hex(6)
        self.connected = True
        self._on_messages: OnMessages = lambda items: None
        self._on_event: OnEvent = lambda origin, event: None
        self._on_connected: Hook = lambda: None
        self._on_tick: Callable[[float], None] = lambda now: None

    def start(
        self,
        on_messages: OnMessages,
        on_event: OnEvent,
        on_connected: Hook,
        on_tick: Callable[[float], None],
    ) -> None:
        """Take the handlers: other workers' messages and events, reconnections, heartbeats."""
        self._on_messages = on_messages
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_tick = on_tick

    def publish_messages(self, items: Items) -> None:
        """This worker delivers its own messages itself; nobody else needs them."""

    def emit(self, event: dict[str, Any]) -> None:
        """Handle an event here, and on every other worker."""
        self._on_event(self.worker_id, event)

    def publish(self, event: dict[str, Any]) -> None:
        """Tell the other workers only."""

    def stop(self) -> None:
        pass


class _Silent(Exception):
    """The subscription heard nothing, not even our own heartbeats: the link is dead."""


class RedisBackplane(LocalBackplane):
    """Publishes to and subscribes on one Redis channel; reconnects and reports every reconnection."""

    clustered = True

    def __init__(self, url: str, channel: str, heartbeat_s: float) -> None:
        super().__init__()
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
        self._backlog: deque[bytes] = deque()
        self._wake = Event()
        self._greenlets: list[gevent.Greenlet] = []
        self._heard_at = time.monotonic()
        self.dropped = 0

    def start(
        self,
        on_messages: OnMessages,
        on_event: OnEvent,
        on_connected: Hook,
        on_tick: Callable[[float], None],
    ) -> None:
        super().start(on_messages, on_event, on_connected, on_tick)
        self._greenlets = [
            gevent.spawn(self._publish_loop),
            gevent.spawn(self._subscribe_loop),
            gevent.spawn(self._tick_loop),
        ]

    def stop(self) -> None:
        """Send what is queued (briefly), then stop."""
        deadline = time.monotonic() + 2.0
        while self._backlog and self.connected and time.monotonic() < deadline:
            gevent.sleep(0.01)
        gevent.killall(self._greenlets, block=False)

    def publish_messages(self, items: Items) -> None:
        if items:
            self._queue(encode_messages(self.worker_id, items))

    def emit(self, event: dict[str, Any]) -> None:
        self._on_event(self.worker_id, event)
        self.publish(event)

    def publish(self, event: dict[str, Any]) -> None:
        self._queue(encode_event(self.worker_id, event))

    def _queue(self, payload: bytes) -> None:
        self._backlog.append(payload)
        if len(self._backlog) > MAX_BACKLOG:
            self._backlog.popleft()
            self.dropped += 1
            if self.dropped % 10_000 == 1:
                log.error("backplane: Redis unreachable, dropped %d old publishes", self.dropped)
        self._wake.set()

    def _publish_loop(self) -> None:
        delay = 0.05
        failing_since: float | None = None
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._backlog:
                n = min(len(self._backlog), PUBLISH_BATCH)
                batch = [self._backlog.popleft() for _ in range(n)]
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for payload in batch:
                        pipe.publish(self._channel, payload)
                    pipe.execute()
                    delay = 0.05
                    if failing_since is not None:
                        log.warning(
                            "backplane: publishing again after %.1f s",
                            time.monotonic() - failing_since,
                        )
                        failing_since = None
                except self._errors as exc:
                    # Put them back in order, and try again: late beats lost.
                    self._backlog.extendleft(reversed(batch))
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.warning("backplane: publish failed (%s); keeping and retrying", exc)
                    gevent.sleep(delay)
                    delay = min(delay * 2, 1.0)

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
                self._heard_at = time.monotonic()
                log.info("backplane: subscribed to %s as worker %s", self._channel, self.worker_id)
                self._run_hook(self._on_connected)
                self._receive(pubsub)
            except (*self._errors, _Silent) as exc:
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
            now = time.monotonic()
            if msg is None:
                if now - self._heard_at > silent_after:
                    raise _Silent(f"nothing heard for {now - self._heard_at:.1f} s")
                continue
            self._heard_at = now
            if msg.get("type") == "message":
                self._dispatch(msg["data"])

    def _dispatch(self, data: bytes) -> None:
        try:
            kind, origin, body = decode(data)
        except (ValueError, UnicodeDecodeError):
            log.warning("backplane: ignored a malformed message (%d bytes)", len(data))
            return
        if origin == self.worker_id:
            return  # handled here when it was sent
        try:
            if kind == "M":
                self._on_messages(body)  # type: ignore[arg-type]
            else:
                self._on_event(origin, body)  # type: ignore[arg-type]
        except Exception:
            log.exception("backplane: handling a %s from worker %s failed", kind, origin)

    def _tick_loop(self) -> None:
        while True:
            gevent.sleep(self._heartbeat_s)
            try:
                self._on_tick(time.monotonic())
            except Exception:
                log.exception("backplane: heartbeat failed")

    @staticmethod
    def _run_hook(hook: Hook) -> None:
        try:
            hook()
        except Exception:
            log.exception("backplane: reconnect hook failed")


def open_backplane(redis_url: str, channel: str, heartbeat_s: float) -> LocalBackplane:
    """RedisBackplane when REDIS_URL is set, else the single-worker LocalBackplane."""
    if redis_url:
        return RedisBackplane(redis_url, channel, heartbeat_s)
    return LocalBackplane()
