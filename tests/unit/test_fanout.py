"""chat.fanout: each room's live messages reach local subscribers once, in seq order; gaps wait, then fill."""

from __future__ import annotations

import logging

import pytest

import chat.fanout
from tests.support.fanout import GAP_WAIT_S, FakeConn, Rig, frame, msg

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
    [first_timer] = rig.timers.take()
    rig.feed("r", 1)  # the first gap closed
    rig.clock.advance(1.0)
    rig.feed("r", 4)  # a second gap (3 missing) opens later
    assert rig.timers.delays() == [GAP_WAIT_S]
    first_timer.fn()
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
