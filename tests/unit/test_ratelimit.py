"""Token-bucket limits with a fake clock."""

from __future__ import annotations

from core.ratelimit import RateLimiter


def test_burst_then_refill() -> None:
    """A full bucket allows `burst` actions at once, then one per 1/rate seconds."""
    lim = RateLimiter(rate_per_s=2.0, burst=3)
    assert [lim.acquire("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert lim.acquire("k", 0.0) == 0.5
    assert lim.acquire("k", 0.5) == 0.0
    assert lim.acquire("k", 0.5) > 0


def test_keys_are_independent() -> None:
    """One user's sends never use another user's tokens."""
    lim = RateLimiter(rate_per_s=1.0, burst=1)
    assert lim.acquire("a", 0.0) == 0.0
    assert lim.acquire("b", 0.0) == 0.0
    assert lim.acquire("a", 0.0) > 0


def test_charge_counts_failures_and_wait_time_peeks() -> None:
    """Login failures are charged; wait_time says when the next try is allowed without taking one."""
    lim = RateLimiter(rate_per_s=1 / 60, burst=2)
    lim.charge("bob", 0.0)
    assert lim.wait_time("bob", 0.0) == 0.0
    lim.charge("bob", 0.0)
    assert 59.9 < lim.wait_time("bob", 0.0) <= 60.0
    assert lim.wait_time("bob", 60.0) == 0.0


def test_prune_forgets_full_buckets() -> None:
    """Buckets that refilled are dropped so the map does not grow with every user ever seen."""
    lim = RateLimiter(rate_per_s=1.0, burst=2)
    lim.acquire("a", 0.0)
    lim.acquire("b", 9.5)
    assert lim.prune(10.0) == 1
    assert len(lim) == 1
