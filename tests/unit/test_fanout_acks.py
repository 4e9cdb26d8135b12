"""chat.fanout: acks after their message, resync after a reconnection, and corked batches."""

from __future__ import annotations

import logging

import pytest

import chat.fanout
from tests.support.fanout import GAP_WAIT_S, FakeConn, Rig, msg, when_passed

# ---- when_passed ------------------------------------------------------------


def test_when_passed_runs_at_once_when_already_passed(rig: Rig, conn: FakeConn) -> None:
    """Passed seqs, unknown rooms and unknown positions all call back immediately."""
    calls: list[str] = []
    rig.feed("r", 1, 2)
    when_passed(rig, "r", 2, lambda: calls.append("passed"))
    when_passed(rig, "nowhere", 5, lambda: calls.append("no feed"))
    rig.registry.subscribe("u", FakeConn("u"))
    rig.fanout.watch("u")
    when_passed(rig, "u", 5, lambda: calls.append("no position"))
    assert calls == ["passed", "no feed", "no position"]


def test_when_passed_waits_for_the_gap_to_close(rig: Rig, conn: FakeConn) -> None:
    """A callback for a held seq runs once, after that seq was delivered and flushed."""
    events: list[str] = []
    conn.log = events
    rig.feed("r", 2, 3)
    when_passed(rig, "r", 2, lambda: events.append("ack 2"))
    when_passed(rig, "r", 4, lambda: events.append("ack 4"))
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
    when_passed(rig, "r", 2, lambda: calls.append(2))
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
    when_passed(rig, "r", 5, boom)
    when_passed(rig, "r", 6, lambda: calls.append(6))
    with caplog.at_level(logging.ERROR, logger="chat.fanout"):
        rig.fanout.drop("r")
    assert calls == [6]
    assert "sending an ack failed" in caplog.text


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
