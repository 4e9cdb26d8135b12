"""The message writer: one greenlet that stores queued drafts in batches, then hands them on in commit order.

Many senders share one commit (group commit) because the queue fills while the
database thread is busy. The outcomes go to the Publisher (chat/publisher.py) in
commit order, so every room's messages reach subscribers in seq order, and acks go
out only after the commit.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, cast

import gevent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue

from chat.models import Draft, Stored
from chat.store import store_alone
from core.database import Database
from core.errors import ChatError
from core.metrics import TALLY

log = logging.getLogger(__name__)

MAX_BATCH = 512
# Yield to the connection writers after this many published messages, so a big
# batch drains into the sockets in slices instead of piling up in every outbox.
PUBLISH_SLICE = 32
STORE_FAILED = ChatError(503, "unavailable", "The message could not be stored: try again.")


class Publisher(Protocol):
    def publish(self, outcomes: list[tuple[Draft, Stored]]) -> None:
        """Pass on one slice of a committed batch, in commit order (runs on the writer greenlet)."""


class MessageWriter:
    """Accepts drafts from any greenlet; stores them and publishes them in commit order."""

    def __init__(self, db: Database, keep_per_room: int, publisher: Publisher) -> None:
        self._db = db
        self._keep = keep_per_room
        self._publisher = publisher
        self._queue: Queue[tuple[Draft, AsyncResult[Stored] | None]] = Queue()
        self._idle = Event()
        self._idle.set()
        self._greenlet: gevent.Greenlet[..., None] | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def submit(self, draft: Draft, waiter: AsyncResult[Stored] | None = None) -> None:
        """Queue a draft; its sender (if any) gets the ack or error from the publisher."""
        self._idle.clear()
        self._queue.put((draft, waiter))

    def store(self, draft: Draft) -> Stored:
        """Queue a draft and wait for its outcome (REST posts)."""
        result: AsyncResult[Stored] = AsyncResult()
        self.submit(draft, result)
        return cast(Stored, result.get())  # blocks until _write sets it (never to None)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._write(batch)
            if self._queue.empty():
                self._idle.set()

    def _write(self, batch: list[tuple[Draft, AsyncResult[Stored] | None]]) -> None:
        started = time.perf_counter()
        try:
            stored = self._db.run_alone(store_alone, [d for d, _ in batch], self._keep)
        except Exception:
            log.exception("storing a batch of %d messages failed", len(batch))
            stored = [Stored(error=STORE_FAILED)] * len(batch)
            TALLY.store_failures += len(batch)
        else:
            TALLY.messages_stored += sum(1 for s in stored if s.message is not None)
            TALLY.sample(TALLY.commit_s, time.perf_counter() - started)
            TALLY.sample(TALLY.batch_sizes, len(batch))
        outcomes = [(d, s) for (d, _), s in zip(batch, stored, strict=True)]
        for start in range(0, len(outcomes), PUBLISH_SLICE):
            if start:
                gevent.sleep(0)
            try:
                self._publisher.publish(outcomes[start : start + PUBLISH_SLICE])
            except Exception:
                log.exception("publishing stored messages failed")
        for (_, waiter), (_, outcome) in zip(batch, outcomes, strict=True):
            if waiter is not None:
                waiter.set(outcome)
        log.debug(
            "stored %d messages in %.1f ms", len(batch), (time.perf_counter() - started) * 1e3
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is stored and published."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()
