"""Fakes for in-process tests: a clock whose time and timers the test drives, and a WebSocket connection."""

from __future__ import annotations

import json
from collections.abc import Callable


class FakeTimer:
    def __init__(self, at: float, fn: Callable[[], object]) -> None:
        self.at = at
        self.fn = fn
        self.killed = False

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
        timer = FakeTimer(self._mono + delay, fn)
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


class FakeSocket:
    """A WebSocket connection as chat.live and the sweeper use it (chat.connection.Connection).

    Every frame it is given is decoded and queued; next() takes them in order, with a
    timeout. It hears from its client only when the test says so (heard()).
    """

    def __init__(self, clock: FakeClock) -> None:
        import gevent.queue

        self._clock = clock
        self.username: str | None = None
        self.session: str | None = None
        self.delivered: dict[str, int] = {}
        self.pending: dict[str, list[tuple[int, bytes]]] = {}
        self.last_heard = clock.monotonic()
        self.last_ping = self.last_heard
        self.pings = 0
        self.close_code: int | None = None
        self.frames: gevent.queue.Queue[dict[str, object]] = gevent.queue.Queue()

    @property
    def open(self) -> bool:
        return self.close_code is None

    def heard(self) -> None:
        self.last_heard = self._clock.monotonic()

    def push(self, frame: bytes) -> bool:
        self.frames.put(json.loads(_payload(frame)))
        return True

    def send(self, obj: dict[str, object]) -> bool:
        self.frames.put(json.loads(json.dumps(obj)))
        return True

    def deliver(self, room: str, seq: int, frame: bytes, cork: bool = False) -> bool:
        held = self.pending.get(room)
        if held is not None:
            held.append((seq, frame))
        elif seq > self.delivered.get(room, 0):
            self.delivered[room] = seq
            self.push(frame)
        return False

    def flush(self) -> None:
        pass

    def ping(self, now: float) -> None:
        self.last_ping = now
        self.pings += 1

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code

    def next(self, timeout: float = 5.0) -> dict[str, object]:
        """The next frame this connection was sent (gevent.queue.Empty after timeout)."""
        return self.frames.get(timeout=timeout)

    def next_of(self, kind: str, timeout: float = 5.0) -> dict[str, object]:
        """The next frame of this type, skipping others."""
        while True:
            frame = self.next(timeout)
            if frame["type"] == kind:
                return frame

    def drain(self) -> list[dict[str, object]]:
        """Every frame queued so far, without waiting."""
        out = []
        while not self.frames.empty():
            out.append(self.frames.get_nowait())
        return out


def _payload(frame: bytes) -> bytes:
    """The payload of one unmasked server text frame."""
    n = frame[1] & 0x7F
    if n == 126:
        return frame[4 : 4 + int.from_bytes(frame[2:4], "big")]
    if n == 127:
        return frame[10 : 10 + int.from_bytes(frame[2:10], "big")]
    return frame[2 : 2 + n]
