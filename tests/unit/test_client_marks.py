"""`chat` marks what it printed as read with at most one `read` frame per room per second."""

from __future__ import annotations

from collections.abc import Callable

from client.marks import ReadMarker


class FakeTimer:
    def __init__(self, at: float, fn: Callable[[], None]) -> None:
        self.at, self.fn, self.cancelled = at, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Rig:
    """A ReadMarker with a clock and timers the test drives, and a record of what it sent."""

    def __init__(self, connected: bool = True) -> None:
        self.now = 100.0
        self.connected = connected
        self.sent: list[tuple[str, int]] = []
        self.timers: list[FakeTimer] = []
        self.marker = ReadMarker(self.send, 1.0, lambda: self.now, self.schedule)
        self.marker.enabled = True

    def send(self, room: str, seq: int) -> bool:
        if self.connected:
            self.sent.append((room, seq))
        return self.connected

    def schedule(self, delay: float, fn: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, fn)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t.at <= self.now]
        self.timers = [t for t in self.timers if t.at > self.now]
        for timer in due:
            if not timer.cancelled:
                timer.fn()


def test_a_burst_costs_one_frame_now_and_one_after_the_interval() -> None:
    """Ten messages printed at once send the first seq at once and the newest one second later."""
    rig = Rig()
    for seq in range(1, 11):
        rig.marker.printed("r", seq)
    assert rig.sent == [("r", 1)]
    rig.advance(0.5)
    assert rig.sent == [("r", 1)]
    rig.advance(0.5)
    assert rig.sent == [("r", 1), ("r", 10)]
    rig.advance(5)
    assert rig.sent == [("r", 1), ("r", 10)]  # nothing new: nothing sent
    rig.marker.printed("r", 11)  # the interval is over: at once
    assert rig.sent[-1] == ("r", 11)


def test_rooms_are_debounced_separately_and_flush_sends_what_waits() -> None:
    """Each room has its own interval; flush sends the waiting marks at once and cancels their timers."""
    rig = Rig()
    rig.marker.printed("a", 1)
    rig.marker.printed("b", 4)
    rig.marker.printed("a", 2)
    rig.marker.printed("b", 5)
    assert rig.sent == [("a", 1), ("b", 4)]
    assert rig.marker.flush() == {"a": 2, "b": 5}
    rig.advance(2)
    assert rig.sent == [("a", 1), ("b", 4), ("a", 2), ("b", 5)]  # the timers were cancelled
    assert rig.marker.flush() == {}


def test_what_the_server_already_has_is_not_sent_again() -> None:
    """A marker the server reports (joined, or read from another client) at or past the seq sends nothing."""
    rig = Rig()
    rig.marker.known("r", 7)
    rig.marker.printed("r", 5)
    rig.marker.printed("r", 7)
    assert rig.sent == [] and rig.marker.waiting("r") is None
    rig.marker.known("r", True)  # not a seq: ignored
    rig.marker.printed("r", 8)
    assert rig.sent == [("r", 8)]


def test_a_mark_that_could_not_go_out_is_sent_once_connected() -> None:
    """Offline, the newest printed seq keeps waiting; the next flush after reconnecting sends it."""
    rig = Rig(connected=False)
    rig.marker.printed("r", 3)
    assert rig.sent == [] and rig.marker.waiting("r") == 3
    rig.connected = True
    rig.marker.printed("r", 3)  # what the session does after a new `joined`
    assert rig.sent == [("r", 3)] and rig.marker.waiting("r") is None


def test_nothing_is_sent_to_a_server_without_read_markers() -> None:
    """Until a `joined` frame shows last_read_seq, no `read` frame is sent (an older server refuses it)."""
    rig = Rig()
    rig.marker.enabled = False
    rig.marker.printed("r", 3)
    assert rig.marker.flush() == {} and rig.sent == []
