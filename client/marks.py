"""Read markers for `chat`: what it printed is marked as read, without a frame per message.

After a room's messages are printed, the newest printed seq goes to the server in a
`read` frame, at most once per `interval_s` per room: a burst of messages costs one
frame now and one when the interval is over. `flush` sends what is still waiting (on
/leave and at exit). The server's own marker (from `joined` and `read` frames) is
remembered, so a seq it already has is never sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

READ_INTERVAL_S = 1.0


class Cancellable(Protocol):
    """A scheduled call that can be called off (a threading.Timer is one)."""

    def cancel(self) -> None: ...


def thread_timer(delay_s: float, fn: Callable[[], None]) -> Cancellable:
    timer = threading.Timer(delay_s, fn)
    timer.daemon = True
    timer.start()
    return timer


class ReadMarker:
    """Debounces `read` frames per room; `send(room, seq)` says whether the frame went out."""

    def __init__(
        self,
        send: Callable[[str, int], bool],
        interval_s: float = READ_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        schedule: Callable[[float, Callable[[], None]], Cancellable] = thread_timer,
    ) -> None:
        self._send = send
        self._interval_s = interval_s
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._printed: dict[str, int] = {}  # room -> newest seq printed
        self._marked: dict[str, int] = {}  # room -> newest seq the server has (or was sent)
        self._sent_at: dict[str, float] = {}  # room -> when its last read frame went out
        self._timers: dict[str, Cancellable] = {}  # room -> the call that sends what waits
        # Off until the server shows it keeps read markers (a `joined` with last_read_seq).
        self.enabled = False

    def printed(self, room: str, seq: int) -> None:
        """`seq` of `room` was printed: mark it now, or once the room's interval is over."""
        with self._lock:
            if seq > self._printed.get(room, 0):
                self._printed[room] = seq
            if not self.enabled or self._printed.get(room, 0) <= self._marked.get(room, 0):
                return
            wait = self._sent_at.get(room, float("-inf")) + self._interval_s - self._clock()
            if wait > 0:
                if room not in self._timers:
                    self._timers[room] = self._schedule(wait, lambda: self._due(room))
                return
        self.flush([room])

    def known(self, room: str, last_read_seq: object) -> None:
        """The server's marker for `room` (from a `joined` or `read` frame)."""
        if isinstance(last_read_seq, int) and not isinstance(last_read_seq, bool):
            with self._lock:
                if last_read_seq > self._marked.get(room, 0):
                    self._marked[room] = last_read_seq

    def waiting(self, room: str) -> int | None:
        """The seq printed in `room` but not yet marked, if any."""
        with self._lock:
            seq = self._printed.get(room, 0)
            return seq if self.enabled and seq > self._marked.get(room, 0) else None

    def flush(self, rooms: list[str] | None = None) -> dict[str, int]:
        """Send every waiting mark (of `rooms`, else of all) now; returns room -> seq sent."""
        with self._lock:
            todo = {}
            for room in list(self._printed) if rooms is None else rooms:
                timer = self._timers.pop(room, None)
                if timer is not None:
                    timer.cancel()
                seq = self._printed.get(room, 0)
                if self.enabled and seq > self._marked.get(room, 0):
                    todo[room] = seq
        sent = {}
        for room, seq in todo.items():  # outside the lock: sending takes the session's
            if self._send(room, seq):
                sent[room] = seq
        with self._lock:
            now = self._clock()
            for room, seq in sent.items():
                self._marked[room] = max(seq, self._marked.get(room, 0))
                self._sent_at[room] = now
        return sent

    def _due(self, room: str) -> None:
        with self._lock:
            self._timers.pop(room, None)
        self.flush([room])

    def close(self) -> None:
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
