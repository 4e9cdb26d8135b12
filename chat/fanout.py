"""Live delivery on this worker: each room's messages reach its local subscribers once, in seq order.

Messages come from this worker's writer and, with the Redis backplane, from other
workers, in any interleaving: worker B may commit seq 5 and hand it over before
worker A's seq 4 arrives through Redis. So each room with local subscribers has a
feed that remembers the last seq it passed on (its position). A message after a gap
is held until the gap closes; if it has not closed within GAP_WAIT_S (a message
lost in a Redis restart or network blip), the missing ones are read from the
database. Nothing is dropped and nothing is reordered.

A feed is made when a room gets its first local subscriber, with no position yet:
the first join's history read sets it (`baseline`). A room without local
subscribers has no feed, and its messages are ignored here.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from typing import Any

from chat.models import Sender
from core.clock import Clock
from core.metrics import TALLY

log = logging.getLogger(__name__)

# What fetch(room, after, before, limit) returns: (seq, frame) pairs, oldest first.
Fetch = Callable[[str, int, int | None, int], list[tuple[int, bytes]]]

FILL_PAGE = 500


class _Feed:
    __slots__ = ("position", "held", "gap", "gap_since", "filling", "refill", "waiters")

    def __init__(self, position: int | None) -> None:
        self.position = position  # the last seq passed on; None until a join's read sets it
        self.held: dict[int, bytes] = {}  # seq -> frame, arrived ahead of a gap
        self.gap: int | None = None  # the armed gap timer's token
        self.gap_since = 0.0
        self.filling = False
        self.refill = False  # a catch-up was asked for while a fill ran: run it after
        self.waiters: list[tuple[int, Sender, dict[str, object]]] = []


class Fanout:
    """Per-room feeds over the live room map; `fetch` reads missing messages from the database."""

    def __init__(
        self,
        registry: Any,
        fetch: Fetch,
        gap_wait_s: float,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._fetch = fetch
        self._gap_wait_s = gap_wait_s
        self._clock = clock
        self._schedule = clock.call_later
        self._feeds: dict[str, _Feed] = {}
        self._tokens = itertools.count(1)
        self.filled = 0  # messages read from the database to close gaps (for logs and tests)

    # ---- input ------------------------------------------------------------

    def feed(self, items: list[tuple[str, int, bytes]]) -> None:
        """Messages (room, seq, frame) from anywhere, in the order they arrived."""
        out: list[tuple[str, int, bytes]] = []
        for room, seq, frame in items:
            self._accept(room, seq, frame, out)
        self._emit(out)

    def _accept(self, room: str, seq: int, frame: bytes, out: list[tuple[str, int, bytes]]) -> None:
        feed = self._feeds.get(room)
        if not self._registry.has_subscribers(room):
            if feed is not None:
                self._drop(room)
            return
        if feed is None:
            # Subscribers without a feed cannot happen through watch(); be safe anyway.
            feed = self._feeds[room] = _Feed(None)
        if feed.position is None:
            feed.held[seq] = frame
            return
        if seq <= feed.position:
            return
        if seq > feed.position + 1:
            feed.held[seq] = frame
            self._gap_opened(room, feed)
            return
        feed.position = seq
        out.append((room, seq, frame))
        self._drain(room, feed, out)

    def _drain(self, room: str, feed: _Feed, out: list[tuple[str, int, bytes]]) -> None:
        """Pass on held messages that now follow the position; note a gap that remains."""
        assert feed.position is not None
        if not feed.held:
            feed.gap = None
            return
        for seq in [s for s in feed.held if s <= feed.position]:
            del feed.held[seq]
        advanced = False
        while (frame := feed.held.pop(feed.position + 1, None)) is not None:
            feed.position += 1
            out.append((room, feed.position, frame))
            advanced = True
        if advanced or not feed.held:
            feed.gap = None  # that gap closed; a later one gets its own full wait
        if feed.held:
            self._gap_opened(room, feed)

    def _gap_opened(self, room: str, feed: _Feed) -> None:
        if feed.gap is None:
            token = feed.gap = next(self._tokens)
            feed.gap_since = self._clock.monotonic()
            self._schedule(self._gap_wait_s, lambda: self.check(room, token))

    # ---- joins --------------------------------------------------------------

    def watch(self, room: str) -> None:
        """A local connection is subscribing: make the room's feed (position unknown) if needed."""
        if room not in self._feeds:
            self._feeds[room] = _Feed(None)

    def baseline(self, room: str, last_seq: int) -> None:
        """A join read the room's history up to last_seq: a feed without a position starts there."""
        feed = self._feeds.get(room)
        if feed is None or feed.position is not None:
            return
        feed.position = last_seq
        out: list[tuple[str, int, bytes]] = []
        self._drain(room, feed, out)
        self._emit(out)

    def position(self, room: str) -> int | None:
        feed = self._feeds.get(room)
        return None if feed is None else feed.position

    def when_passed(self, room: str, seq: int, to: Sender, ack: dict[str, object]) -> None:
        """Send `ack` to `to` once seq has been passed on to the room's subscribers (at once if it has).

        So a sender's ack follows its message frame, even when an earlier message from
        another worker holds this one back for a moment.
        """
        feed = self._feeds.get(room)
        if feed is None or feed.position is None or feed.position >= seq:
            to.send(ack)
        else:
            feed.waiters.append((seq, to, ack))

    def drop(self, room: str) -> None:
        """The room is gone (deleted): forget its feed."""
        self._drop(room)

    def _drop(self, room: str) -> None:
        feed = self._feeds.pop(room, None)
        if feed is not None:
            self._call_waiters(feed, all_=True)

    # ---- gaps ---------------------------------------------------------------

    def check(self, room: str, token: int | None = None) -> None:
        """The gap timer: if the room still waits for that gap, read what is missing from the database."""
        feed = self._feeds.get(room)
        if feed is None or feed.filling or not feed.held or feed.position is None:
            return
        if token is not None and feed.gap != token:
            return  # that gap closed; a newer one has its own timer
        log.info(
            "room %s: seq %d still missing after %.2f s; reading it from the database",
            room,
            feed.position + 1,
            self._clock.monotonic() - feed.gap_since,
        )
        TALLY.gap_fills += 1
        self._fill(room, feed, min(feed.held))

    def resync(self) -> None:
        """Backplane traffic may have been lost (Redis reconnected): catch every feed up from the database."""
        TALLY.resyncs += 1
        for room, feed in list(self._feeds.items()):
            if feed.position is not None:
                self._schedule(0, functools.partial(self._refill, room, feed, None))

    def _refill(self, room: str, feed: _Feed, before: int | None) -> None:
        if self._feeds.get(room) is not feed:
            return
        if feed.filling:
            feed.refill = True
            return
        self._fill(room, feed, before)

    def _fill(self, room: str, feed: _Feed, before: int | None) -> None:
        feed.filling = True
        token = feed.gap
        try:
            while feed.position is not None and self._feeds.get(room) is feed:
                if before is not None and feed.position + 1 >= before:
                    break
                after = feed.position
                rows = self._fetch(room, after, before, FILL_PAGE)
                if self._feeds.get(room) is not feed or feed.position is None:
                    return
                if rows and rows[0][0] > feed.position + 1:
                    log.warning(
                        "room %s: messages %d..%d are no longer stored; skipping them",
                        room,
                        feed.position + 1,
                        rows[0][0] - 1,
                    )
                    feed.position = rows[0][0] - 1
                elif not rows and before is not None and feed.position + 1 < before:
                    log.warning(
                        "room %s: messages %d..%d are not stored; skipping them",
                        room,
                        feed.position + 1,
                        before - 1,
                    )
                    feed.position = before - 1
                self.filled += len(rows)
                TALLY.gap_filled += len(rows)
                out: list[tuple[str, int, bytes]] = []
                for seq, frame in rows:
                    if seq == feed.position + 1:
                        feed.position = seq
                        out.append((room, seq, frame))
                self._drain(room, feed, out)
                self._emit(out)
                if len(rows) < FILL_PAGE:
                    break
            if self._feeds.get(room) is feed and feed.held and feed.gap == token:
                # A gap remains whose timer has already fired: it gets a wait of its own.
                feed.gap = None
                self._gap_opened(room, feed)
        except Exception:
            log.exception("reading missed messages of room %s failed; trying again", room)
            if before is None:
                self._schedule(self._gap_wait_s, lambda: self._refill(room, feed, None))
            else:
                self._schedule(self._gap_wait_s, lambda: self.check(room))
        finally:
            feed.filling = False
            if feed.refill:
                feed.refill = False
                self._schedule(0, lambda: self._refill(room, feed, None))

    # ---- output -------------------------------------------------------------

    def _emit(self, out: list[tuple[str, int, bytes]]) -> None:
        """Queue each message to every local subscriber; then write each touched connection once."""
        if not out:
            return
        touched: dict[Any, None] = {}
        # A lone message goes straight out; corking only pays when there is something to join.
        cork = len(out) > 1
        rooms: dict[str, None] = {}
        handed = 0
        for room, seq, frame in out:
            rooms[room] = None
            subscribers = self._registry.subscribers(room)
            handed += len(subscribers)
            for conn in subscribers:
                if conn.deliver(room, seq, frame, cork):
                    touched[conn] = None
        TALLY.frames_delivered += handed
        for conn in touched:
            conn.flush()
        for room in rooms:
            feed = self._feeds.get(room)
            if feed is not None and feed.waiters:
                self._call_waiters(feed)

    @staticmethod
    def _call_waiters(feed: _Feed, all_: bool = False) -> None:
        due = [w for w in feed.waiters if all_ or feed.position is None or w[0] <= feed.position]
        if not due:
            return
        feed.waiters = [] if all_ else [w for w in feed.waiters if w not in due]
        for _, to, ack in due:
            try:
                to.send(ack)
            except Exception:
                log.exception("sending an ack failed")

    def prune(self) -> int:
        """Forget the feeds of rooms nobody here follows any more (a quiet room never drops its own)."""
        idle = [r for r in self._feeds if not self._registry.has_subscribers(r)]
        for room in idle:
            self._drop(room)
        return len(idle)

    def __len__(self) -> int:
        return len(self._feeds)
