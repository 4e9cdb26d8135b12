"""SharedRateLimiter and SyncedRateLimiter against a real Redis: buckets shared by workers, the fallback.

Each test uses its own random key prefix and deletes its keys afterwards. Without
Redis these tests are skipped, unless GREENROOM_REQUIRE_SERVICES is set (as in CI),
when they fail. The fallback test needs no Redis: it points at a closed port.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterator

import pytest
import redis

from core.ratelimit import SharedRateLimiter, SyncedRateLimiter
from tests.support import REDIS_URL, redis_unavailable, require_service
from tests.support.fakes import FakeClock


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    require_service(redis_unavailable())
    conn = redis.Redis.from_url(REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix no other test (or run) uses; its keys are deleted afterwards."""
    value = f"greenroom-test:{os.getpid()}:{secrets.token_hex(6)}:"
    yield value
    keys = list(client.scan_iter(match=value + "*"))
    if keys:
        client.delete(*keys)


def test_burst_then_refusal(client: redis.Redis, prefix: str) -> None:
    """`burst` takes succeed at once; the next is refused with a wait in (0, 1/rate]."""
    lim = SharedRateLimiter(client, prefix, rate_per_s=1.0, burst=3)
    assert [lim.acquire("alice", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.acquire("alice", 0.0)
    assert 0.0 < wait <= 1.0
    assert lim.acquire("bob", 0.0) == 0.0  # keys are independent
    # The bucket lives in Redis under the prefix, with an expiry; nothing is kept in memory.
    assert client.exists(prefix + "alice") == 1
    assert 0 < client.pttl(prefix + "alice") <= 3 * 1000 + 1000
    assert len(lim) == 0


def test_two_workers_share_one_bucket(client: redis.Redis, prefix: str) -> None:
    """Two limiters with the same prefix (two workers) draw from the same tokens."""
    w1 = SharedRateLimiter(client, prefix, rate_per_s=0.5, burst=3)
    w2 = SharedRateLimiter(client, prefix, rate_per_s=0.5, burst=3)
    assert w1.acquire("alice", 0.0) == 0.0
    assert w2.acquire("alice", 0.0) == 0.0
    assert w1.acquire("alice", 0.0) == 0.0
    assert w2.acquire("alice", 0.0) > 0
    assert w1.acquire("alice", 0.0) > 0
    assert w1.wait_time("alice", 0.0) > 0 and w2.wait_time("alice", 0.0) > 0


def test_other_prefixes_have_their_own_buckets(client: redis.Redis, prefix: str) -> None:
    """Send and login limits (different prefixes) never share tokens."""
    send = SharedRateLimiter(client, prefix + "send:", rate_per_s=0.5, burst=1)
    login = SharedRateLimiter(client, prefix + "login:", rate_per_s=0.5, burst=1)
    assert send.acquire("alice", 0.0) == 0.0
    assert send.acquire("alice", 0.0) > 0
    assert login.acquire("alice", 0.0) == 0.0


def test_charge_counts_even_when_empty(client: redis.Redis, prefix: str) -> None:
    """Each charge takes a token (failed logins); an empty bucket stays empty, not negative."""
    lim = SharedRateLimiter(client, prefix, rate_per_s=1 / 60, burst=2)
    lim.charge("bob", 0.0)
    assert lim.wait_time("bob", 0.0) == 0.0
    lim.charge("bob", 0.0)
    assert 59.0 < lim.wait_time("bob", 0.0) <= 60.0
    lim.charge("bob", 0.0)  # a third failure: still one token's wait, not two
    assert 59.0 < lim.wait_time("bob", 0.0) <= 60.0
    assert lim.acquire("bob", 0.0) > 0


def test_wait_time_peeks_without_taking(client: redis.Redis, prefix: str) -> None:
    """wait_time() neither takes a token nor creates the bucket."""
    lim = SharedRateLimiter(client, prefix, rate_per_s=0.5, burst=1)
    assert [lim.wait_time("carol", 0.0) for _ in range(5)] == [0.0] * 5
    assert client.exists(prefix + "carol") == 0
    assert lim.acquire("carol", 0.0) == 0.0
    first = lim.wait_time("carol", 0.0)
    assert 0.0 < first <= 2.0
    assert 0.0 < lim.wait_time("carol", 0.0) <= first  # peeking again took nothing


def test_tokens_come_back_over_real_time(client: redis.Redis, prefix: str) -> None:
    """At 50 per second an emptied bucket has a token again within moments (Redis's own clock)."""
    lim = SharedRateLimiter(client, prefix, rate_per_s=50.0, burst=1)
    assert lim.acquire("dave", 0.0) == 0.0
    wait = lim.acquire("dave", 0.0)
    assert 0.0 < wait <= 1 / 50
    deadline = time.monotonic() + 2.0
    while (wait := lim.acquire("dave", 0.0)) > 0:
        assert time.monotonic() < deadline, "no token came back within 2 s"
        time.sleep(0.01)
    assert wait == 0.0


def test_unreachable_redis_falls_back_to_per_worker_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down the limiter still limits, from memory with the caller's clock, and warns."""
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        lim = SharedRateLimiter(down, "greenroom-test:", rate_per_s=1.0, burst=2)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
            assert lim.wait_time("alice", 1000.0) == 0.0
            assert lim.acquire("alice", 1000.0) == 0.0
            assert lim.acquire("alice", 1000.0) == 0.0
            assert lim.acquire("alice", 1000.0) == 1.0
            assert lim.wait_time("alice", 1000.0) == 1.0
            assert lim.acquire("alice", 1001.0) == 0.0
            lim.charge("bob", 1001.0)
            lim.charge("bob", 1001.0)
            assert lim.wait_time("bob", 1001.0) == 1.0
        assert time.monotonic() - started < 3.0
        assert len(lim) == 2  # the in-memory buckets
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once, not once per call
    finally:
        down.close()


def test_concurrent_checks_share_one_pipeline_and_one_bucket(
    client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 greenlets asking at once: one Redis round trip, and exactly the burst gets through."""
    import gevent

    lim = SharedRateLimiter(client, prefix, rate_per_s=0.001, burst=10)
    executes = []
    real = redis.client.Pipeline.execute

    def counting(self: redis.client.Pipeline, *args: object, **kwargs: object) -> object:
        executes.append(len(self.command_stack))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    waits = [g.get() for g in [gevent.spawn(lim.acquire, "k", 1000.0) for _ in range(20)]]
    assert sorted(w == 0 for w in waits).count(True) == 10
    assert all(w > 0 for w in waits if w != 0)
    assert executes == [20]


# ---- SyncedRateLimiter: the send limit, local first ----------------------------


class CountingClient:
    """A redis client whose scripts count their calls (how many round trips the limiter makes)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.calls: list[int] = []  # keys per script call

    def register_script(self, source: str) -> object:
        script = self.client.register_script(source)

        def call(keys: list[str], args: list[object]) -> object:
            self.calls.append(len(keys))
            return script(keys=keys, args=args)

        return call


def test_synced_limiter_decides_locally_and_settles_once_per_interval(
    client: redis.Redis, prefix: str
) -> None:
    """Checks cost no Redis call; one script call per interval reports every key's takes."""
    clock = FakeClock()
    counting = CountingClient(client)
    lim = SyncedRateLimiter(counting, prefix, rate_per_s=1.0, burst=3, sync_s=0.5, clock=clock)
    now = clock.time()
    assert [lim.acquire("alice", now) for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]
    assert lim.acquire("bob", now) == 0.0
    assert counting.calls == [] and client.exists(prefix + "alice") == 0
    clock.advance(0.5)
    assert counting.calls == [2]  # alice and bob, in one call
    assert float(client.hget(prefix + "alice", "tokens") or 9) < 0.5
    assert float(client.hget(prefix + "bob", "tokens") or 0) > 1.5
    assert 0 < client.pttl(prefix + "alice") <= 4000
    clock.advance(5.0)
    assert counting.calls == [2]  # nothing taken, nothing to settle
    assert lim.acquire("alice", clock.time()) == 0.0  # refilled meanwhile


def test_synced_limiters_on_two_workers_overshoot_once_then_share_the_debt(
    client: redis.Redis, prefix: str
) -> None:
    """Two workers each grant a burst before they settle (the documented bound); then both owe it."""
    clock = FakeClock()
    w1 = SyncedRateLimiter(client, prefix, rate_per_s=1.0, burst=3, sync_s=0.5, clock=clock)
    w2 = SyncedRateLimiter(client, prefix, rate_per_s=1.0, burst=3, sync_s=0.5, clock=clock)
    now = clock.time()
    granted = [w.acquire("alice", now) == 0.0 for w in (w1, w2) for _ in range(4)]
    assert granted.count(True) == 6  # burst + (N-1) * burst, within burst + rate*sync more
    clock.advance(0.5)  # both settle: the shared level is now about 3 - 6 = -3
    # The worker that settled last knows the whole debt; the other learns it at its next check.
    first = w1.acquire("alice", clock.time())
    assert 0 < first <= 1.0 and 3.0 < w2.acquire("alice", clock.time()) <= 4.0
    clock.advance(0.5)
    # Alone, w1 would have a token now; sharing the debt it waits for 4 more (Redis's own
    # clock, which refills the shared bucket, has hardly moved).
    assert 3.0 < w1.acquire("alice", clock.time()) <= 4.0


def test_synced_limiter_without_redis_limits_per_worker(caplog: pytest.LogCaptureFixture) -> None:
    """If the settling fails, each worker keeps its own buckets and warns once."""
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    clock = FakeClock()
    try:
        lim = SyncedRateLimiter(
            down, "greenroom-test:", rate_per_s=1.0, burst=2, sync_s=0.5, clock=clock
        )
        with caplog.at_level(logging.WARNING, logger="core.ratelimit"):
            now = clock.time()
            assert [lim.acquire("alice", now) for _ in range(3)] == [0.0, 0.0, 1.0]
            clock.advance(0.5)
            assert lim.acquire("alice", clock.time()) == 0.5
            assert lim.acquire("bob", clock.time()) == 0.0
            clock.advance(0.5)
        warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        down.close()
