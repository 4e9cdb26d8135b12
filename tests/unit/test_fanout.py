"""Per-room ordering of live messages (chat.fanout), with a fake registry, clock, timers and DB.

Nothing here sleeps or spawns: timers are recorded and fired by the test, and
fetch reads a dict. Frames are b"room#seq", so every delivery can be checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import chat.fanout
from chat.fanout import Fanout

GAP_WAIT_S = 0.5


def frame(room: str, seq: int) -> bytes:
    return f"{room}#{seq}".encode()


def msg(room: str, seq: int) -> tuple[str, int, bytes]:
    return room, seq, frame(room, seq)


class FakeConn:
    """Records every delivery; a corked frame counts as queued unless `accept` is False."""

    def __init__(self, name: str, accept: bool = True) -> None:
        self.name = name
        self.accept = accept
        self.got: list[tuple[str, int, bytes, bool]] = []
        self.flushes = 0
        self.log: list[str] | None = None  # shared event log, when a test wants the order

    def deliver(self, room: str, seq: int, frame: bytes, cork: bool) -> bool:
        self.got.append((room, seq, frame, cork))
        if self.log is not None:
            self.log.append(f"deliver {self.name} {room} {seq}")
        return cork and self.accept

    def flush(self) -> None:
        self.flushes += 1
        if self.log is not None:
            self.log.append(f"flush {self.name}")

    def seqs(self, room: str) -> list[int]:
        return [seq for r, seq, _, _ in self.got if r == room]

    def __repr__(self) -> str:
        return self.name


class FakeRegistry:
    """Room -> subscribed connections, as much of chat.rooms.RoomRegistry as Fanout uses."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[FakeConn]] = {}

    def subscribe(self, room: str, conn: FakeConn) -> None:
        self.rooms.setdefault(room, []).append(conn)

    def clear(self, room: str) -> None:
        self.rooms.pop(room, None)

    def has_subscribers(self, room: str) -> bool:
        return bool(self.rooms.get(room))

    def subscribers(self, room: str) -> list[FakeConn]:
        return list(self.rooms.get(room, ()))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    """A fake schedule: records (delay, fn); the test fires them."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def schedule(self, delay: float, fn: Callable[[], None]) -> object:
        self.pending.append((delay, fn))
        return object()

    def take(self) -> list[tuple[float, Callable[[], None]]]:
        due, self.pending = self.pending, []
        return due

    def fire(self) -> int:
        """Run the timers scheduled so far (not those they schedule); return how many ran."""
        due = self.take()
        for _, fn in due:
            fn()
        return len(due)

    def fire_all(self, rounds: int = 50) -> None:
        """Fire until no timer is left (bounded: a timer loop fails rather than hangs)."""
        for _ in range(rounds):
            if not self.fire():
                return
        raise AssertionError("timers keep rescheduling themselves")

    def delays(self) -> list[float]:
        return [delay for delay, _ in self.pending]


class FakeDatabase:
    """Stored messages per room; fetch() behaves like store.messages_between."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[int, bytes]] = {}
        self.calls: list[tuple[str, int, int | None, int]] = []
        self.failures = 0  # the next this many fetches raise
        self.during_fetch: Callable[[], None] | None = None  # runs inside the next fetch

    def store(self, room: str, *seqs: int) -> None:
        for seq in seqs:
            self.rooms.setdefault(room, {})[seq] = frame(room, seq)

    def fetch(
        self, room: str, after: int, before: int | None, limit: int
    ) -> list[tuple[int, bytes]]:
        self.calls.append((room, after, before, limit))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        if self.during_fetch is not None:
            hook, self.during_fetch = self.during_fetch, None
            hook()
        upper = before if before is not None else 2**62
        stored = self.rooms.get(room, {})
        seqs = sorted(s for s in stored if after < s < upper)[:limit]
        return [(s, stored[s]) for s in seqs]


class Rig:
    """A Fanout wired to the fakes."""

    def __init__(self) -> None:
        self.registry = FakeRegistry()
        self.clock = FakeClock()
        self.timers = Timers()
        self.db = FakeDatabase()
        self.fanout = Fanout(
            self.registry, self.db.fetch, GAP_WAIT_S, self.clock, self.timers.schedule
        )

    def join(self, room: str, last_seq: int, *conns: FakeConn) -> None:
        """Subscribe conns the way a join does: watch, then the history read sets the baseline."""
        for conn in conns:
            self.registry.subscribe(room, conn)
        self.fanout.watch(room)
        self.fanout.baseline(room, last_seq)

    def feed(self, room: str, *seqs: int) -> None:
        self.fanout.feed([msg(room, s) for s in seqs])


@pytest.fixture
def rig() -> Rig:
    return Rig()


@pytest.fixture
def conn(rig: Rig) -> FakeConn:
    c = FakeConn("c")
    rig.join("r", 0, c)
    return c


# ---- in order, duplicates -------------------------------------------------


def test_in_order_messages_pass_straight_through(rig: Rig, conn: FakeConn) -> None:
    """Consecutive seqs are delivered at once, with their own frames; no timer, no database read."""
    rig.feed("r", 1)
    rig.feed("r", 2, 3)
    assert conn.got[0] == ("r", 1, b"r#1", False)
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.fanout.position("r") == 3
    assert rig.timers.pending == [] and rig.db.calls == []


def test_duplicates_are_dropped(rig: Rig, conn: FakeConn) -> None:
    """A seq at or below the position (own echo, redelivery) is never delivered twice."""
    rig.feed("r", 1, 2)
    rig.feed("r", 2, 1)
    rig.feed("r", 3, 3, 2)
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.timers.pending == []


def test_rooms_are_independent(rig: Rig, conn: FakeConn) -> None:
    """A gap in one room holds nothing back in another."""
    other = FakeConn("o")
    rig.join("s", 10, other)
    rig.fanout.feed([msg("r", 2), msg("s", 11), msg("r", 1), msg("s", 12)])
    assert conn.seqs("r") == [1, 2]
    assert other.seqs("s") == [11, 12]
    assert other.seqs("r") == [] and conn.seqs("s") == []


# ---- gaps -----------------------------------------------------------------


def test_out_of_order_is_held_until_the_gap_closes(rig: Rig, conn: FakeConn) -> None:
    """Later seqs wait for the missing one, then all go out in order; the timer does nothing."""
    rig.feed("r", 3)
    rig.feed("r", 2)
    assert conn.got == []
    assert rig.fanout.position("r") == 0
    assert rig.timers.delays() == [GAP_WAIT_S]  # one timer per gap, not per held message
    rig.feed("r", 1)
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.fanout.position("r") == 3
    rig.timers.fire_all()
    assert rig.db.calls == []
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.fanout.filled == 0


def test_a_stale_timer_does_not_fill_a_newer_gap_early(rig: Rig, conn: FakeConn) -> None:
    """The first gap's timer, firing while a second gap is open, leaves the second its full wait."""
    rig.db.store("r", 1, 2, 3, 4, 5)
    rig.feed("r", 2)
    [(_, first_timer)] = rig.timers.take()
    rig.feed("r", 1)  # the first gap closed
    rig.clock.now += 1.0
    rig.feed("r", 4)  # a second gap (3 missing) opens later
    assert rig.timers.delays() == [GAP_WAIT_S]
    first_timer()
    assert rig.db.calls == []
    assert conn.seqs("r") == [1, 2]
    rig.timers.fire()  # the second gap's own timer
    assert rig.db.calls == [("r", 2, 4, chat.fanout.FILL_PAGE)]
    assert conn.seqs("r") == [1, 2, 3, 4]
    assert rig.fanout.filled == 1


def test_a_gap_that_never_closes_is_read_from_the_database(rig: Rig, conn: FakeConn) -> None:
    """After GAP_WAIT_S the missing messages are fetched and everything goes out in order."""
    rig.db.store("r", 1, 2, 3, 4, 5)
    rig.feed("r", 3, 5)
    assert conn.got == []
    assert rig.timers.delays() == [GAP_WAIT_S]
    rig.timers.fire()
    # The first gap (1..2) is read up to the first held message; the next gap gets its own timer.
    assert rig.db.calls == [("r", 0, 3, chat.fanout.FILL_PAGE)]
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.timers.delays() == [GAP_WAIT_S]
    rig.timers.fire()
    assert rig.db.calls[1] == ("r", 3, 5, chat.fanout.FILL_PAGE)
    assert conn.seqs("r") == [1, 2, 3, 4, 5]
    assert [f for _, _, f, _ in conn.got] == [frame("r", s) for s in range(1, 6)]
    assert rig.fanout.position("r") == 5
    assert rig.fanout.filled == 3
    assert rig.timers.pending == []


def test_messages_no_longer_stored_are_skipped(rig: Rig, conn: FakeConn) -> None:
    """Retention deleted the oldest missing ones: skip them, deliver the rest in order."""
    rig.db.store("r", 3, 4, 5)  # 1 and 2 are gone
    rig.feed("r", 5)
    rig.timers.fire()
    assert conn.seqs("r") == [3, 4, 5]
    assert rig.fanout.position("r") == 5
    assert rig.timers.pending == []


def test_a_wholly_missing_gap_is_skipped(rig: Rig, conn: FakeConn) -> None:
    """Nothing of the gap is stored: the held message goes out anyway, and later ones follow."""
    rig.feed("r", 4)
    rig.timers.fire()
    assert rig.db.calls == [("r", 0, 4, chat.fanout.FILL_PAGE)]
    assert conn.seqs("r") == [4]
    rig.feed("r", 5)
    assert conn.seqs("r") == [4, 5]


def test_a_message_arriving_during_the_fill_is_not_lost(rig: Rig, conn: FakeConn) -> None:
    """While the database is read (a yield under gevent), live messages keep coming."""
    rig.db.store("r", 1, 2, 3, 4)
    rig.feed("r", 3)
    rig.db.during_fetch = lambda: rig.feed("r", 4, 1)
    rig.timers.fire()
    assert conn.seqs("r") == [1, 2, 3, 4]
    assert rig.fanout.position("r") == 4


def test_a_timer_firing_during_a_fill_does_nothing(rig: Rig, conn: FakeConn) -> None:
    """check() while a fill is under way does not start a second read."""
    rig.db.store("r", 1, 2)
    rig.feed("r", 2)
    rig.db.during_fetch = lambda: rig.fanout.check("r")
    rig.timers.fire()
    assert len(rig.db.calls) == 1
    assert conn.seqs("r") == [1, 2]


def test_a_failed_fill_is_retried(
    rig: Rig, conn: FakeConn, caplog: pytest.LogCaptureFixture
) -> None:
    """fetch raising is logged and retried after GAP_WAIT_S; the retry delivers."""
    rig.db.store("r", 1, 2)
    rig.db.failures = 1
    rig.feed("r", 2)
    with caplog.at_level(logging.ERROR, logger="chat.fanout"):
        rig.timers.fire()
    assert "trying again" in caplog.text
    assert conn.got == []
    assert rig.timers.delays() == [GAP_WAIT_S]
    rig.timers.fire()
    assert conn.seqs("r") == [1, 2]
    assert len(rig.db.calls) == 2
    assert rig.timers.pending == []


def test_a_gap_wider_than_a_page_is_filled_completely(
    rig: Rig, conn: FakeConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing messages 1..9 with a page of 3: every page is read, and 10 and later ones go out."""
    monkeypatch.setattr(chat.fanout, "FILL_PAGE", 3)
    rig.db.store("r", *range(1, 12))
    rig.feed("r", 10)
    rig.timers.fire_all()
    rig.feed("r", 11)
    rig.timers.fire_all()
    # Actual: [1, 2, 3]; position stays 3, no timer is pending, and 10, 11 are held for ever.
    assert conn.seqs("r") == list(range(1, 12))


# ---- joins and baselines ---------------------------------------------------


def test_unknown_position_buffers_until_baseline(rig: Rig) -> None:
    """Before the join's history read messages are held (no timer); baseline sends later ones."""
    c = FakeConn("c")
    rig.registry.subscribe("r", c)
    rig.fanout.watch("r")
    assert rig.fanout.position("r") is None
    rig.feed("r", 7, 5, 6)
    assert c.got == [] and rig.timers.pending == []
    rig.fanout.baseline("r", 5)
    assert c.seqs("r") == [6, 7]
    assert rig.fanout.position("r") == 7
    rig.fanout.baseline("r", 2)  # a later join's read does not move a known position
    assert rig.fanout.position("r") == 7
    rig.feed("r", 4, 5, 8)
    assert c.seqs("r") == [6, 7, 8]


def test_baseline_with_a_gap_after_it_starts_the_timer(rig: Rig) -> None:
    """Held messages beyond baseline + 1 wait for the gap like any other."""
    c = FakeConn("c")
    rig.registry.subscribe("r", c)
    rig.fanout.watch("r")
    rig.db.store("r", 11, 12)
    rig.feed("r", 12)
    rig.fanout.baseline("r", 10)
    assert c.got == []
    assert rig.timers.delays() == [GAP_WAIT_S]
    rig.timers.fire()
    assert c.seqs("r") == [11, 12]


def test_baseline_and_watch_of_unknown_or_known_rooms(rig: Rig, conn: FakeConn) -> None:
    """baseline() without a feed is ignored; watch() keeps an existing feed's position."""
    rig.fanout.baseline("nowhere", 3)
    assert rig.fanout.position("nowhere") is None
    assert len(rig.fanout) == 1
    rig.feed("r", 1)
    rig.fanout.watch("r")
    assert rig.fanout.position("r") == 1


def test_rooms_without_subscribers_are_ignored(rig: Rig) -> None:
    """No local subscriber: no feed is made and nothing is held."""
    rig.feed("r", 1, 3)
    assert len(rig.fanout) == 0
    assert rig.fanout.position("r") is None
    assert rig.timers.pending == []


def test_a_feed_whose_subscribers_left_is_dropped(rig: Rig, conn: FakeConn) -> None:
    """The next message for a room nobody here follows any more forgets its feed (and held ones)."""
    rig.feed("r", 1, 3)
    rig.registry.clear("r")
    rig.feed("r", 2)
    assert len(rig.fanout) == 0
    assert conn.seqs("r") == [1]
    rig.timers.fire_all()  # the gap timer of the dropped feed
    assert rig.db.calls == []


def test_drop_forgets_the_room(rig: Rig, conn: FakeConn) -> None:
    """After drop() (room deleted), a new subscriber starts from an unknown position again."""
    rig.feed("r", 1)
    rig.fanout.drop("r")
    assert len(rig.fanout) == 0
    rig.fanout.drop("r")  # twice is harmless
    rig.feed("r", 2)  # still subscribed in the fake registry: a feed is made, position unknown
    assert rig.fanout.position("r") is None
    assert conn.seqs("r") == [1]


# ---- when_passed ------------------------------------------------------------


def test_when_passed_runs_at_once_when_already_passed(rig: Rig, conn: FakeConn) -> None:
    """Passed seqs, unknown rooms and unknown positions all call back immediately."""
    calls: list[str] = []
    rig.feed("r", 1, 2)
    rig.fanout.when_passed("r", 2, lambda: calls.append("passed"))
    rig.fanout.when_passed("nowhere", 5, lambda: calls.append("no feed"))
    rig.registry.subscribe("u", FakeConn("u"))
    rig.fanout.watch("u")
    rig.fanout.when_passed("u", 5, lambda: calls.append("no position"))
    assert calls == ["passed", "no feed", "no position"]


def test_when_passed_waits_for_the_gap_to_close(rig: Rig, conn: FakeConn) -> None:
    """A callback for a held seq runs once, after that seq was delivered and flushed."""
    events: list[str] = []
    conn.log = events
    rig.feed("r", 2, 3)
    rig.fanout.when_passed("r", 2, lambda: events.append("ack 2"))
    rig.fanout.when_passed("r", 4, lambda: events.append("ack 4"))
    assert events == []
    rig.feed("r", 1)
    assert events == [
        "deliver c r 1",
        "deliver c r 2",
        "deliver c r 3",
        "flush c",
        "ack 2",
    ]
    rig.feed("r", 4)
    assert events[-1] == "ack 4"
    assert events.count("ack 2") == 1


def test_when_passed_runs_when_the_gap_is_filled(rig: Rig, conn: FakeConn) -> None:
    """A fill from the database also releases callbacks."""
    calls: list[int] = []
    rig.db.store("r", 1, 2)
    rig.feed("r", 2)
    rig.fanout.when_passed("r", 2, lambda: calls.append(2))
    rig.timers.fire()
    assert calls == [2]


def test_when_passed_runs_on_drop_and_a_failing_callback_spares_the_others(
    rig: Rig, conn: FakeConn, caplog: pytest.LogCaptureFixture
) -> None:
    """Dropping a room runs every waiting callback; one raising is logged and the rest still run."""
    calls: list[int] = []

    def boom() -> None:
        raise RuntimeError("callback failed")

    rig.feed("r", 5)
    rig.fanout.when_passed("r", 5, boom)
    rig.fanout.when_passed("r", 6, lambda: calls.append(6))
    with caplog.at_level(logging.ERROR, logger="chat.fanout"):
        rig.fanout.drop("r")
    assert calls == [6]
    assert "a delivery callback failed" in caplog.text


# ---- resync -----------------------------------------------------------------


def test_resync_reads_everything_after_the_position_in_pages(
    rig: Rig, conn: FakeConn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a backplane reconnect each known feed is caught up from the database, page by page."""
    monkeypatch.setattr(chat.fanout, "FILL_PAGE", 3)
    other = FakeConn("o")
    rig.join("s", 4, other)
    rig.registry.subscribe("u", FakeConn("u"))
    rig.fanout.watch("u")  # position unknown: nothing to catch up from
    rig.db.store("r", *range(1, 9))
    rig.db.store("s", *range(1, 8))
    rig.fanout.resync()
    assert rig.timers.delays() == [0, 0]
    assert rig.db.calls == []  # the reads run on their own greenlets, not in resync()
    rig.timers.fire()
    assert [c for c in rig.db.calls if c[0] == "r"] == [
        ("r", 0, None, 3),
        ("r", 3, None, 3),
        ("r", 6, None, 3),
    ]
    # Exactly a page (5, 6, 7) must be followed by one more read, which finds nothing.
    assert [c for c in rig.db.calls if c[0] == "s"] == [("s", 4, None, 3), ("s", 7, None, 3)]
    assert conn.seqs("r") == list(range(1, 9))
    assert other.seqs("s") == [5, 6, 7]
    assert rig.fanout.filled == 8 + 3
    assert rig.timers.pending == []


def test_resync_skips_rooms_dropped_before_the_read(rig: Rig, conn: FakeConn) -> None:
    """A feed forgotten between resync() and its read is not read."""
    rig.db.store("r", 1)
    rig.fanout.resync()
    rig.fanout.drop("r")
    rig.timers.fire()
    assert rig.db.calls == []


def test_resync_delivers_held_messages_after_the_catch_up(rig: Rig, conn: FakeConn) -> None:
    """Held messages beyond the read are passed on once the read reaches them."""
    rig.db.store("r", 1, 2)
    rig.feed("r", 4, 3)
    rig.timers.take()  # the gap timer: not fired here
    rig.fanout.resync()
    rig.timers.fire()
    assert conn.seqs("r") == [1, 2, 3, 4]


def test_a_failed_resync_is_retried(rig: Rig, conn: FakeConn) -> None:
    """A resync read that raises is scheduled again after GAP_WAIT_S and then succeeds."""
    rig.db.store("r", 1, 2, 3)
    rig.db.failures = 1
    rig.fanout.resync()
    rig.timers.fire()
    assert conn.got == []
    assert rig.timers.delays() == [GAP_WAIT_S]
    rig.timers.fire()
    assert conn.seqs("r") == [1, 2, 3]
    assert rig.db.calls == [("r", 0, None, chat.fanout.FILL_PAGE)] * 2


# ---- corking ----------------------------------------------------------------


def test_a_batch_is_corked_and_each_connection_flushed_once(rig: Rig) -> None:
    """Several messages: deliver(cork=True) for each, then one flush per connection that queued."""
    a, b, slow = FakeConn("a"), FakeConn("b"), FakeConn("slow", accept=False)
    rig.join("r", 0, a, b, slow)
    rig.join("s", 0, a)
    rig.fanout.feed([msg("r", 1), msg("s", 1), msg("r", 2)])
    assert a.got == [
        ("r", 1, b"r#1", True),
        ("s", 1, b"s#1", True),
        ("r", 2, b"r#2", True),
    ]
    assert [cork for *_, cork in b.got] == [True, True]
    assert (a.flushes, b.flushes) == (1, 1)
    assert slow.flushes == 0  # deliver() said nothing was queued


def test_a_lone_message_is_not_corked(rig: Rig, conn: FakeConn) -> None:
    """One message goes straight out: cork=False and no flush."""
    rig.feed("r", 1)
    assert conn.got == [("r", 1, b"r#1", False)]
    assert conn.flushes == 0


def test_a_released_gap_is_delivered_as_one_corked_batch(rig: Rig, conn: FakeConn) -> None:
    """The message closing a gap and the held ones behind it are one batch."""
    rig.feed("r", 2, 3)
    rig.feed("r", 1)
    assert [(seq, cork) for _, seq, _, cork in conn.got] == [(1, True), (2, True), (3, True)]
    assert conn.flushes == 1
