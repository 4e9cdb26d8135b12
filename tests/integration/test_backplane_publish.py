"""RedisBackplane's publishing against a real Redis: one payload per tick, in order, not echoed back.

Skipped without Redis, unless GREENROOM_REQUIRE_SERVICES is set (as in CI). This
process is not monkey-patched, so a subscriber greenlet would block it: the test runs
the publishing greenlet alone, reads the channel itself, and hands what it read to
the workers' dispatch as their subscriber greenlets would.
"""

from __future__ import annotations

import secrets
from typing import Any

import gevent
import redis

from core.backplane import RedisBackplane, decode
from core.clock import SYSTEM
from core.events import MemberJoined, Messages
from tests.support import REDIS_URL, redis_unavailable, require_service


def test_a_tick_of_batches_goes_out_as_one_payload_per_run_between_events() -> None:
    """Batches queued in one tick join into one M payload; an event between them keeps its place.

    Another worker handles them in that order; the publisher ignores its own coming back.
    """
    require_service(redis_unavailable())
    channel = f"greenroom-test:{secrets.token_hex(6)}"
    listener = redis.Redis.from_url(REDIS_URL).pubsub()
    listener.subscribe(channel)
    assert listener.get_message(timeout=5.0) is not None
    one, other = (RedisBackplane(REDIS_URL, channel, 1.0, SYSTEM, 0.05) for _ in range(2))
    heard: list[list[Any]] = [[], []]
    for bp, log in ((one, heard[0]), (other, heard[1])):
        bp.subscribe(Messages, lambda origin, event, log=log: log.extend(event.items))
        bp.subscribe(MemberJoined, lambda origin, event, log=log: log.append(event))
    publisher = gevent.spawn(one._publish_loop)
    try:
        one.publish_messages([("r", 1, b"one")])
        one.publish_messages([("r", 2, b"two"), ("s", 1, b"three")])
        one.publish(MemberJoined("r", "alice"))
        one.publish_messages([("r", 3, b"four")])
        with gevent.Timeout(5.0, AssertionError("nothing published")):
            while one._backlog:
                gevent.sleep(0.01)
        payloads = []
        while (msg := listener.get_message(timeout=0.5)) is not None:
            payloads.append(msg["data"])
        assert [decode(data) for data in payloads] == [
            ("M", one.worker_id, [("r", 1, b"one"), ("r", 2, b"two"), ("s", 1, b"three")]),
            ("E", one.worker_id, {"k": "joined", "r": "r", "u": "alice"}),
            ("M", one.worker_id, [("r", 3, b"four")]),
        ]
        for data in payloads:
            other._dispatch(data)
            one._dispatch(data)
        assert heard[1] == [
            ("r", 1, b"one"),
            ("r", 2, b"two"),
            ("s", 1, b"three"),
            MemberJoined("r", "alice"),
            ("r", 3, b"four"),
        ]
        assert heard[0] == []  # handled where it was sent, never again
    finally:
        publisher.kill()
        listener.close()
