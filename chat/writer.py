"""The message writer: one greenlet that stores queued messages in batches, then publishes them in order.

Many senders share one commit (group commit) because the queue fills while the
database thread is busy. Publishing happens here, in commit order, so every room's
messages reach subscribers in seq order; acks go out only after the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
from gevent.event import AsyncResult
from gevent.queue import Queue

from chat.store import Draft, Stored, store_messages
from core.database import Database
from core.errors import ChatError

log = logging.getLogger(__name__)

MAX_BATCH = 512
# Yield to the connection writers after this many published messages, so a big
# batch drains into the sockets in slices instead of piling up in every outbox.
PUBLISH_SLICE = 32
STORE_FAILED = ChatError(503, "unavailable", "The message could not be stored: try again.")

Callback = Callable[[Stored], None]


class MessageWriter:
    """Accepts drafts from any greenlet; stores them and calls back in commit order."""

    def __init__(
        self, db: Database, keep_per_room: int, publish: Callable[[list[dict[str, object]]], None]
    ) -> None:
        self._db = db
        self._keep = keep_per_room
        self._publish = publish
        self._queue: Queue[tuple[Draft, Callback]] = Queue()
        self._idle = gevent.event.Event()
        self._idle.set()
        self._greenlet = gevent.spawn(self._run)

    def submit(self, draft: Draft, done: Callback) -> None:
        """Queue a draft; `done` runs on the writer greenlet after the commit (it must not block)."""
        self._idle.clear()
        self._queue.put((draft, done))

    def store(self, draft: Draft) -> Stored:
        """Queue a draft and wait for its outcome (REST posts)."""
        result: AsyncResult[Stored] = AsyncResult()
        self.submit(draft, result.set)
        return result.get()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._write(batch)
            if self._queue.empty():
                self._idle.set()

    def _write(self, batch: list[tuple[Draft, Callback]]) -> None:
        started = time.perf_counter()
        try:
            outcomes = self._db.run(store_messages, [d for d, _ in batch], self._keep)
        except Exception:
            log.exception("storing a batch of %d messages failed", len(batch))
            outcomes = [None] * len(batch)
        results = [
            (done, stored if stored is not None else Stored(error=STORE_FAILED))
            for (_, done), stored in zip(batch, outcomes, strict=True)
        ]
        for start in range(0, len(results), PUBLISH_SLICE):
            if start:
                gevent.sleep(0)
            part = results[start : start + PUBLISH_SLICE]
            # Messages first, then the acks: a sender sees its message before its ack.
            self._publish([s.message for _, s in part if s.message is not None and not s.duplicate])
            for done, stored in part:
                try:
                    done(stored)
                except Exception:
                    log.exception("message callback failed")
        log.debug(
            "stored %d messages in %.1f ms", len(batch), (time.perf_counter() - started) * 1e3
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is stored and published."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        self._greenlet.kill()
