"""The inbound budget of one WebSocket connection: frames and bytes per second, each with a burst.

Pure: no I/O and no clock reads; the caller passes `now`. The connection's reader
asks `wait_s(now)` before each read and sleeps that long instead of reading (TCP
then pushes back on the client); after each read it `charge`s what came in. A
read may take the buckets into debt (one read holds at most a few KB), which the
next `wait_s` pays off. `held_s(now)` says how long the reader has been held back
without a break, so a client that stays over budget can be closed.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second up to `burst`; the level may go below zero (debt)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self._at = now

    def refill(self, now: float) -> None:
        if now > self._at:
            self.level = min(self.burst, self.level + (now - self._at) * self.rate)
        self._at = max(self._at, now)

    def debt_s(self) -> float:
        """Seconds until the level is back to zero (0 when it is not below zero)."""
        return -self.level / self.rate if self.level < 0 else 0.0


class InboundBudget:
    """Two token buckets (frames, bytes) and how long the reader has been held back."""

    def __init__(
        self,
        frames_per_s: float,
        burst_frames: int,
        bytes_per_s: float,
        burst_bytes: int,
        now: float,
    ) -> None:
        self.frames = TokenBucket(frames_per_s, burst_frames, now)
        self.bytes = TokenBucket(bytes_per_s, burst_bytes, now)
        self._held_since: float | None = None
        self.holds = 0  # times the reader began to be held back (for the metrics)
        self._waited = False  # the last wait_s asked the reader to wait

    def wait_s(self, now: float) -> float:
        """How long to wait before the next read; 0 means read now."""
        self.frames.refill(now)
        self.bytes.refill(now)
        wait = max(self.frames.debt_s(), self.bytes.debt_s())
        if wait > 0:
            if self._held_since is None:
                self._held_since = now
                self.holds += 1
        elif not self._waited:
            # Only a read that did not have to wait first ends the hold: a flood that is
            # read as fast as the budget allows is still over budget.
            self._held_since = None
        self._waited = wait > 0
        return wait

    def charge(self, now: float, frames: int, nbytes: int) -> None:
        """Count what one read brought in."""
        self.frames.refill(now)
        self.bytes.refill(now)
        self.frames.level -= frames
        self.bytes.level -= nbytes

    def held_s(self, now: float) -> float:
        """How long the client has been over budget: since a read last went ahead without waiting."""
        return 0.0 if self._held_since is None else now - self._held_since


class FrameCounter:
    """Counts WebSocket frames in a byte stream by their headers (RFC 6455 section 5.2).

    Every frame counts: data, continuation and control frames alike. Bytes arrive in
    reads of any size, so a header or a payload may be split across reads.
    """

    def __init__(self) -> None:
        self._head = b""  # the start of a header split across reads
        self._skip = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> int:
        """The number of frames whose header completes in `data`."""
        count = 0
        pos = 0
        end = len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            head = self._head + data[pos : pos + 14]
            if len(head) < 2:
                self._head = head
                break
            b1 = head[1]
            size = b1 & 0x7F
            length = 2 + (2 if size == 126 else 8 if size == 127 else 0) + (4 if b1 & 0x80 else 0)
            if len(head) < length:
                self._head = head
                break
            if size == 126:
                size = int.from_bytes(head[2:4], "big")
            elif size == 127:
                size = int.from_bytes(head[2:10], "big")
            pos += length - len(self._head)
            self._head = b""
            self._skip = size
            count += 1
        return count
