"""Token-bucket rate limits keyed by a string (user, login name): per worker, or shared through Redis.

RateLimiter is pure (the caller passes `now`). SharedRateLimiter keeps the buckets
in Redis, so a limit holds exactly across every worker, at one Redis round trip per
check (login and registration limits: rare, and never to be overshot).
SyncedRateLimiter (the send limit) decides at once from this worker's buckets and
settles with Redis once per sync interval, for every key used meanwhile; its bound
is in its docstring and in docs/deployment.md.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from gevent.event import AsyncResult

from core.clock import Clock, Timer
from core.metrics import TALLY, bump

log = logging.getLogger(__name__)


class RateLimiter:
    """`burst` tokens per key, refilled at `rate_per_s`; one action costs one token."""

    def __init__(self, rate_per_s: float, burst: int, name: str = "") -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.name = name  # the `limit` label of greenroom_rate_limited_total; "" counts nothing
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
            self.refused()
            return (1 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def refused(self) -> None:
        """Count a refusal for the metrics (callers that only peek with wait_time call it too)."""
        if self.name:
            bump(TALLY.rate_limited, self.name)

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

    def __init__(
        self, client: Any, prefix: str, rate_per_s: float, burst: int, name: str = ""
    ) -> None:
        super().__init__(rate_per_s, burst, name)
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
        if wait is None:
            return super().acquire(key, now)
        if wait > 0:
            self.refused()
        return wait

    def charge(self, key: str, now: float) -> None:
        if self._shared("charge", key, now) is None:
            super().charge(key, now)


# Settle one worker's takes into the shared buckets, for many keys in one call. The
# shared level may go below zero: that debt is what the workers took before hearing of
# each other, and every worker then waits it out. Same hash fields as _BUCKET_LUA.
# KEYS: the buckets; ARGV: rate, burst, then tokens taken per key. Returns the levels.
_SETTLE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate) - tonumber(ARGV[i + 2])
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
  out[i] = tostring(tokens)
end
return out
"""
SETTLE_CHUNK = 500  # keys per script call, so that one call never holds Redis for long


class SyncedRateLimiter(RateLimiter):
    """Local-first buckets, settled with Redis every `sync_s`: no round trip per check.

    acquire() decides at once from this worker's bucket, as RateLimiter does, and
    notes the take. At most `sync_s` later one script call reports every key's takes
    to the shared bucket in Redis and learns its level, which now counts every
    worker's takes; this worker's bucket drops to that level (minus what it took while
    the answer was on its way), so what other workers took is taken here too. A key
    refused here is settled too (taking nothing), to learn the shared level.

    The bound: with N workers taking for one key, each grants from its own bucket
    until its next sync, so over any window of T seconds at most
    burst + rate*T + (N-1)*(burst + rate*sync_s) takes succeed. The excess comes at
    once (worst case: a full burst on every worker together) and is paid back: the
    shared level goes below zero by that much, and every worker refuses the key until
    it has refilled, so the long-run rate stays `rate`. With one worker the limit is
    exact. If Redis is unreachable, the takes are dropped and limits hold per worker.
    """

    def __init__(
        self,
        client: Any,
        prefix: str,
        rate_per_s: float,
        burst: int,
        sync_s: float,
        clock: Clock,
        name: str = "",
    ) -> None:
        super().__init__(rate_per_s, burst, name)
        self.sync_s = sync_s
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._script = client.register_script(_SETTLE_LUA)
        self._taken: dict[str, int] = {}  # key -> tokens taken here since the last sync
        self._timer: Timer | None = None
        self._warned_at = float("-inf")

    def acquire(self, key: str, now: float) -> float:
        wait = super().acquire(key, now)
        # A refusal takes nothing, but the next sync fetches the shared level for it too:
        # a worker that has refused stops granting until other workers' excess is paid.
        self._note(key, 1 if wait == 0.0 else 0)
        return wait

    def charge(self, key: str, now: float) -> None:
        super().charge(key, now)
        self._note(key, 1)

    def _note(self, key: str, taken: int) -> None:
        self._taken[key] = self._taken.get(key, 0) + taken
        if self._timer is None:
            self._timer = self._clock.call_later(self.sync_s, self.sync)

    def sync(self) -> None:
        """Report the takes since the last sync and take on the shared levels (the timer calls it)."""
        self._timer = None
        taken, self._taken = self._taken, {}
        if not taken:
            return
        keys = list(taken)
        levels: list[float] = []
        try:
            for i in range(0, len(keys), SETTLE_CHUNK):
                chunk = keys[i : i + SETTLE_CHUNK]
                args = [self.rate_per_s, self.burst, *(taken[k] for k in chunk)]
                names = [self._prefix + k for k in chunk]
                levels.extend(float(v) for v in self._script(keys=names, args=args))
        except Exception as exc:  # any failure: limit per worker rather than fail the senders
            now = self._clock.monotonic()
            if now - self._warned_at > 10:
                self._warned_at = now
                log.warning("rate limits: Redis unreachable (%s); limiting per worker", exc)
            return
        now = self._clock.time()
        for key, level in zip(keys, levels, strict=False):
            # Takes made here while the script ran are not in `level` yet.
            shared = level - self._taken.get(key, 0)
            tokens = self._tokens(key, now)
            if shared < tokens:
                self._buckets[key] = (shared, now)
