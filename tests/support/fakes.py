"""Fakes of the platform for in-process tests: a clock whose time and timers the test drives."""

from __future__ import annotations

from collections.abc import Callable


class FakeTimer:
    def __init__(self, clock: FakeClock, at: float, fn: Callable[[], object]) -> None:
        self.at = at
        self.fn = fn
        self.killed = False
        self._clock = clock

    def kill(self, block: bool = False) -> None:
        self.killed = True


class FakeClock:
    """core.clock.Clock's interface; time moves only when the test calls advance().

    call_later() only records a timer: advance() runs the ones that fall due, in order,
    and fire() runs every timer recorded so far, whatever its delay.
    """

    def __init__(self, wall: float = 1_800_000_000.0, monotonic: float = 100.0) -> None:
        self._wall = wall
        self._mono = monotonic
        self.pending: list[FakeTimer] = []

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def call_later(self, delay: float, fn: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(self, self._mono + delay, fn)
        self.pending.append(timer)
        return timer

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move both clocks on, running the timers that fall due on the way."""
        end = self._mono + seconds
        while True:
            due = [t for t in self.pending if t.at <= end and not t.killed]
            if not due:
                break
            timer = min(due, key=lambda t: t.at)
            self.pending.remove(timer)
            self._wall += timer.at - self._mono
            self._mono = max(self._mono, timer.at)
            timer.fn()
        self._wall += end - self._mono
        self._mono = end

    def take(self) -> list[FakeTimer]:
        due, self.pending = [t for t in self.pending if not t.killed], []
        return due

    def fire(self) -> int:
        """Run the timers recorded so far (not those they record); return how many ran."""
        due = self.take()
        for timer in due:
            timer.fn()
        return len(due)

    def fire_all(self, rounds: int = 50) -> None:
        """Fire until no timer is left (bounded: a timer loop fails rather than hangs)."""
        for _ in range(rounds):
            if not self.fire():
                return
        raise AssertionError("timers keep rescheduling themselves")

    def delays(self) -> list[float]:
        return [t.at - self._mono for t in self.pending if not t.killed]
