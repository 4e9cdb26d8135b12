"""Token-bucket rate limits keyed by a string (user, login name). Pure: the caller passes `now`."""

from __future__ import annotations


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
