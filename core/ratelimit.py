"""Token-bucket rate limits keyed by a string (user, login name): per worker, or shared through Redis.

RateLimiter is pure (the caller passes `now`); SharedRateLimiter keeps the buckets
in Redis, so a limit holds across every worker.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from gevent.event import AsyncResult

log = logging.getLogger(__name__)


class RateLimiter:
    """`burst` tokens per key, refilled at `rate_per_s`; one action costs one token."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - updated) * self.rate_per_s)

    def wait_time(self, key: str, now: float) -> float:
        """Seconds until one token is available for key (0 when one is available now)."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate_per_s

    def acquire(self, key: str, now: float) -> float:
        """Take one token; return 0 on success, else the seconds to wait (nothing is taken)."""
        tokens = self._tokens(key, now)
        if tokens < 1:
            return (1 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def charge(self, key: str, now: float) -> None:
        """Take one token even if that leaves the bucket empty (used to count failures)."""
        self._buckets[key] = (max(0.0, self._tokens(key, now) - 1), now)

    def prune(self, now: float) -> int:
        """Forget keys whose bucket is full again, so the map does not grow without bound."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)


# One token bucket in a Redis hash, updated atomically; Redis's own clock, so the
# workers' clocks need not agree. ARGV: rate, burst, mode (peek | take | charge).
_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, mode = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if mode == 'peek' then return tostring(wait) end
if mode == 'take' then
  if wait > 0 then return tostring(wait) end
  tokens = tokens - 1
else
  tokens = math.max(0, tokens - 1)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimiter(RateLimiter):
    """The same buckets, kept in Redis so that every worker draws from them.

    If Redis cannot be reached, this worker falls back to its own in-memory buckets
    (the inherited ones) rather than refusing everyone: limits then hold per worker.
    """

    def __init__(self, client: Any, prefix: str, rate_per_s: float, burst: int) -> None:
        super().__init__(rate_per_s, burst)
        import redis

        self._no_script = redis.exceptions.NoScriptError
        self._client = client
        self._prefix = prefix
        self._sha = client.register_script(_BUCKET_LUA).sha
        self._warned_at = float("-inf")
        # Checks asked for meanwhile by other greenlets, sent together in one pipeline:
        # one Redis command per send cost more CPU in redis-py than the send itself.
        self._waiting: list[tuple[str, str, AsyncResult[float | None]]] = []
        self._flusher: gevent.Greenlet[..., None] | None = None

    def _shared(self, mode: str, key: str, now: float) -> float | None:
        result: AsyncResult[float | None] = AsyncResult()
        self._waiting.append((mode, key, result))
        if self._flusher is None:
            self._flusher = gevent.spawn(self._flush, now)
        return result.get()

    def _flush(self, now: float) -> None:
        batch: list[tuple[str, str, AsyncResult[float | None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    values: list[float | None] = self._run(batch)
                except Exception as exc:  # any failure: limit here rather than hang the callers
                    if now - self._warned_at > 10:
                        self._warned_at = now
                        log.warning("rate limits: Redis unreachable (%s); limiting per worker", exc)
                    values = [None] * len(batch)
                for (_, _, result), value in zip(batch, values, strict=True):
                    result.set(value)
        finally:
            self._flusher = None
            for _, _, result in batch:
                if not result.ready():
                    result.set(None)

    def _run(self, batch: list[tuple[str, str, AsyncResult[float | None]]]) -> list[float | None]:
        try:
            return self._eval(batch)
        except self._no_script:
            # Redis restarted and forgot the script: load it again, once.
            self._client.script_load(_BUCKET_LUA)
            return self._eval(batch)

    def _eval(self, batch: list[tuple[str, str, AsyncResult[float | None]]]) -> list[float | None]:
        pipe = self._client.pipeline(transaction=False)
        for mode, key, _ in batch:
            pipe.evalsha(self._sha, 1, self._prefix + key, self.rate_per_s, self.burst, mode)
        return [float(v) for v in pipe.execute()]

    def wait_time(self, key: str, now: float) -> float:
        wait = self._shared("peek", key, now)
        return super().wait_time(key, now) if wait is None else wait

    def acquire(self, key: str, now: float) -> float:
        wait = self._shared("take", key, now)
        return super().acquire(key, now) if wait is None else wait

    def charge(self, key: str, now: float) -> None:
        if self._shared("charge", key, now) is None:
            super().charge(key, now)
