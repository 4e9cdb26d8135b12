"""One WebSocket connection: a bounded outbox drained by a single writer greenlet, and a fair, budgeted reader.

simple-websocket lets any greenlet write to the socket, which is unsafe when two do
at once and truncates frames under a slow reader. So the socket inside the
simple-websocket object is replaced by a proxy: its own pong and close replies go
into our outbox too, bounded like everything else, and only the writer greenlet
ever writes to the socket. Broadcasts only append encoded frames here and never
wait on a socket.

The handler's own greenlet reads (receive()): simple-websocket's reader thread is
never started (NoThread), and its frame parsing (wsproto, and its _handle_events
for pings, the close handshake and message assembly) runs inline. One greenlet per
connection instead of two, and no hand-over through an event per frame: measured,
that was most of the cost of a small room's message. Before each read it yields to
the hub (a socket with data waiting never blocks, so the reader would otherwise
never let anyone else run) and waits while the client is over its inbound budget
(chat/budget.py), which leaves TCP to push back. A client that stays over budget is
closed with 4029. While the handler works on a frame (a join's database read, say),
nothing more is read: one read of at most 4 KB and the frames in it at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import gevent
from gevent.event import Event
from wsproto.events import CloseConnection
from wsproto.utilities import LocalProtocolError

from chat.budget import FrameCounter, InboundBudget
from core.clock import Clock, Timer
from core.metrics import TALLY, bump, trip
from core.settings import Settings
from core.wire import CLOSE_TOO_MANY_FRAMES, CLOSE_TOO_SLOW, PING_FRAME, text_frame

if TYPE_CHECKING:
    from simple_websocket import Server

log = logging.getLogger(__name__)

# How the reader yields before each read. A timer, however short, makes the hub go
# round its loop and poll I/O; gevent.sleep(0) only ran other callbacks: measured
# under a ping flood, another user's request took 0.5-0.9 s with sleep(0) and
# 50-90 ms with this (about 30 ms with the default inbound budget).
READ_YIELD_S = 0.00001


@dataclasses.dataclass(frozen=True)
class InboundLimits:
    """What one connection may send (the GREENROOM_INBOUND_* and AUTH_* settings)."""

    frames_per_s: float
    burst_frames: int
    bytes_per_s: float
    burst_bytes: int
    over_budget_close_s: float
    # Before authentication a client needs one frame: it gets this much in all, spread
    # over the auth deadline, and reads no bigger than what is left of it.
    auth_frames: int
    auth_bytes: int
    auth_timeout_s: float

    @classmethod
    def from_settings(cls, s: Settings) -> InboundLimits:
        return cls(
            s.INBOUND_FRAMES_PER_S,
            s.INBOUND_BURST_FRAMES,
            s.INBOUND_BYTES_PER_S,
            s.INBOUND_BURST_BYTES,
            s.INBOUND_OVER_BUDGET_CLOSE_S,
            s.AUTH_MAX_FRAMES,
            s.AUTH_MAX_BYTES,
            s.AUTH_TIMEOUT_S,
        )

    def budget(self, authenticated: bool, now: float) -> InboundBudget:
        if authenticated:
            return InboundBudget(
                self.frames_per_s, self.burst_frames, self.bytes_per_s, self.burst_bytes, now
            )
        return InboundBudget(
            self.auth_frames / self.auth_timeout_s,
            self.auth_frames,
            self.auth_bytes / self.auth_timeout_s,
            self.auth_bytes,
            now,
        )


class NoThread:
    """simple-websocket's `thread_class`: its reader thread is never started.

    The handler's greenlet reads instead (Connection.receive), so a connection costs
    one greenlet, not two, and a frame reaches the handler without a switch.
    """

    name = "greenroom-reader"

    def __init__(self, target: Callable[[], None]) -> None:
        pass

    def start(self) -> None:
        pass


class _HandshakeDone:
    """What wsproto's WSConnection keeps as its handshake once the connection is open."""

    @staticmethod
    def events() -> Iterator[object]:
        return iter(())


_HANDSHAKE_DONE = _HandshakeDone()


class _SocketProxy:
    """What simple-websocket sees as its socket: its writes (pongs, a close reply) are queued.

    It never reads from it: Connection.receive reads the real socket.
    """

    def __init__(self, sock: socket.socket, conn: Connection) -> None:
        self._sock = sock
        self._conn = conn

    def send(self, data: bytes) -> int:
        self._conn.push_control(data)
        return len(data)

    def close(self) -> None:
        self._conn.reader_done()  # the socket itself is closed by the writer, once

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class Connection:
    """An authenticated WebSocket client as the chat core sees it."""

    def __init__(
        self,
        ws: Server,
        max_frames: int,
        max_bytes: int,
        close_timeout_s: float,
        inbound: InboundLimits,
        clock: Clock,
    ) -> None:
        self.ws = ws
        assert ws.sock is not None  # simple-websocket's Server always starts with its socket
        self._sock: socket.socket = ws.sock
        # gevent's socket wraps the OS socket; the fast path in push() uses it directly.
        self._raw: socket.socket = getattr(self._sock, "_sock", self._sock)
        self._writing = False
        self._inflight = 0  # bytes the writer has taken from the outbox and not yet written
        self._partial_head = False  # the outbox starts with the rest of a half-written frame
        try:
            # Frames are written as soon as they are queued; Nagle would hold small ones back.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the client is already gone: the reader's first recv will say so
        ws.sock = cast(socket.socket, _SocketProxy(self._sock, self))  # it stands in for the socket
        # The handshake is over: wsproto keeps its HTTP parser (h11) for good, about 2.7 KiB
        # a connection that nothing reads again. Only events() still asks it for events.
        if ws.ws.connection is not None:
            ws.ws.handshake = _HANDSHAKE_DONE  # type: ignore[assignment]  # events() only
        # Liveness and budgets run on monotonic time.
        self._clock = clock
        self._limits = inbound
        self._authenticated = False
        self._budget = self._limits.budget(False, self._clock.monotonic())
        self._frames = FrameCounter()
        self._reader_wake = Event()  # set when the reader may have something new to check
        self._stopped_reading = False  # we ended the reader (closing), not the client
        # simple-websocket's list of assembled messages; only receive() fills and empties it.
        self._inbox: list[str | bytes] = ws.input_buffer
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._close_timeout_s = close_timeout_s
        self.username: str | None = None
        self.session: str | None = None
        self.delivered: dict[str, int] = {}  # room id -> highest seq queued to this client
        # room id -> (seq, frame) of live messages held back while a join reads history
        self.pending: dict[str, list[tuple[int, bytes]]] = {}
        # Appended to and emptied whole, never popped from the front: a list is enough, and
        # an empty one is 56 bytes where a deque is 760 (every idle connection holds one).
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self.last_heard = self._clock.monotonic()
        self.last_ping = self.last_heard
        self.close_code: int | None = None
        self._close_reason = ""
        self._reader_finished = False
        self._reader_gone = Event()  # set once receive() has read for the last time
        self._writer_finished = False
        self._wake = Event()
        self.done = Event()
        self._abort_timer: Timer | None = None
        # Spawned on first need: with the fast path in push(), an idle or keeping-up
        # connection never needs one, which saves a greenlet (~12 KB) per connection.
        self._writer: gevent.Greenlet[..., None] | None = None
        # The close code simple-websocket sent on its own (1009: a message over the limit).
        self._library_close: int | None = None
        TALLY.ws_opened += 1

    def __repr__(self) -> str:
        return f"<Connection {self.username} fd={self._fileno()}>"

    def _fileno(self) -> int:
        try:
            return self._sock.fileno()
        except OSError:
            return -1

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting in the outbox or being written (the outbox_bytes gauge)."""
        return self._outbox_bytes + self._inflight

    @property
    def open(self) -> bool:
        return self.close_code is None and not self._reader_finished

    def heard(self) -> None:
        self.last_heard = self._clock.monotonic()

    def before_read(self) -> bool:
        """Wait until this connection may read; False: stop reading for good.

        The reader waits while the client is over its inbound budget. A client over
        budget for over_budget_close_s is closed with 4029. Once the connection is
        closing, a reader that would have to wait stops instead: nobody handles what it
        reads.
        """
        limits = self._limits
        while True:
            now = self._clock.monotonic()
            holds = self._budget.holds
            wait = self._budget.wait_s(now)
            if wait <= 0:
                break
            if self._budget.holds != holds:
                trip("inbound_budget" if self._authenticated else "auth_budget")
            if self.close_code is not None:
                self._stopped_reading = True
                return False
            if self._budget.held_s(now) >= limits.over_budget_close_s:
                log.info(
                    "closing %s: over the inbound budget for %.1f s",
                    self.username or "an unauthenticated client",
                    self._budget.held_s(now),
                )
                self.close(CLOSE_TOO_MANY_FRAMES, "too many frames: slow down")
                self._stopped_reading = True
                return False
            self._reader_wake.clear()
            self._reader_wake.wait(wait)
        return True

    def authenticated(self) -> None:
        """The client proved who it is: from now on it reads within the full inbound budget."""
        self._authenticated = True
        self._budget = self._limits.budget(True, self._clock.monotonic())
        self._reader_wake.set()

    def read_size(self, size: int) -> int:
        """How much the next read may take: before authentication, no more than is left of that budget.

        So a flood of tiny frames costs at most one small read's parsing before the
        handler sees its first frame and closes the connection.
        """
        if self._authenticated:
            return size
        return max(1, min(size, int(self._budget.bytes.level)))

    def after_read(self, data: bytes) -> None:
        """Count what one read brought in against the budget (a sign of life too)."""
        now = self._clock.monotonic()
        self.last_heard = now
        self._budget.charge(now, self._frames.feed(data), len(data))

    def push(self, frame: bytes) -> bool:
        """Write or queue an encoded frame; close with 4008 instead when the outbox is full.

        When nothing is queued and the writer is not mid-write, the frame is written at
        once with a non-blocking send: no greenlet switch, and still one writer at a time,
        because this code does not yield. Whatever the kernel does not take is queued for
        the writer greenlet, ahead of anything later.
        """
        if not self.open:
            return False
        if not self._outbox and not self._writing:
            try:
                sent = self._raw.send(frame, socket.MSG_DONTWAIT)
            except OSError:
                sent = 0  # EAGAIN, or a dead socket that the writer's sendall will report
            if sent == len(frame):
                return True
            if sent:
                # Half a frame is on the wire: the rest must follow whatever the bounds say.
                self._queue_remainder(frame[sent:])
                return True
        if self._queue(frame):
            self._wake_writer()
            return True
        return False

    def _queue_remainder(self, rest: bytes) -> None:
        self._outbox.append(rest)
        self._outbox_bytes += len(rest)
        self._partial_head = True
        self._wake_writer()

    def _too_slow(self) -> None:
        if self.close_code is None:
            trip("outbox_full")
        log.warning(
            "closing slow client %s: %d frames, %d bytes queued",
            self.username,
            len(self._outbox),
            self._outbox_bytes,
        )
        self.close(CLOSE_TOO_SLOW, "too slow: reconnect and join with since")

    def push_control(self, data: bytes) -> None:
        """Bytes simple-websocket wants written (pongs, a close reply): bounded like any frame.

        A client that sends pings and never reads the pongs fills the outbox and is
        closed with 4008 like any slow client.
        """
        if self._writer_finished:
            return
        if self._full(len(data)):
            self._too_slow()
            return
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._wake_writer()

    def _full(self, more: int) -> bool:
        """Whether `more` bytes would take what is queued or being written past the bounds."""
        return (
            len(self._outbox) >= self._max_frames
            or self._outbox_bytes + self._inflight + more > self._max_bytes
        )

    def send(self, obj: dict[str, object]) -> bool:
        return self.push(text_frame(obj))

    def deliver(self, room: str, seq: int, frame: bytes, cork: bool = False) -> bool:
        """Send a room message once, in seq order; held back while this room's join reads history.

        With cork, the frame is only queued and the caller flush()es after its batch, so
        a batch costs one system call per connection. True when corked frames were queued.
        """
        held = self.pending.get(room)
        if held is not None:
            if len(held) >= self._max_frames:
                self.close(CLOSE_TOO_SLOW, "too slow: reconnect and join with since")
            held.append((seq, frame))
            return False
        if seq <= self.delivered.get(room, 0):
            return False
        self.delivered[room] = seq
        if not cork:
            self.push(frame)
            return False
        return self._queue(frame)

    def _queue(self, frame: bytes) -> bool:
        if not self.open:
            return False
        if self._full(len(frame)):
            self._too_slow()
            return False
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        return True

    def flush(self) -> None:
        """Write everything queued with one non-blocking send; the writer greenlet takes the rest.

        After a batch of messages, each connection costs one system call, not one per message.
        """
        if not self._outbox or self._writing or not self.open:
            if self._outbox:
                self._wake_writer()
            return
        data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
        try:
            sent = self._raw.send(data, socket.MSG_DONTWAIT)
        except OSError:
            sent = 0
        self._outbox.clear()
        self._outbox_bytes = 0
        if sent == len(data):
            return
        if sent:
            self._queue_remainder(data[sent:])
        else:
            self._outbox.append(data)
            self._outbox_bytes = len(data)
            self._wake_writer()

    def ping(self, now: float) -> None:
        self.last_ping = now
        self.push(PING_FRAME)

    def close(self, code: int, reason: str = "") -> None:
        """Close after what is queued is written (a slow client's queue is dropped instead)."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._close_reason = reason
        if self._library_close is not None:
            bump(TALLY.ws_closes, str(self._library_close))
        elif self._reader_finished and not self._stopped_reading:
            bump(TALLY.ws_closes, "peer")  # the client closed or hung up first
        else:
            bump(TALLY.ws_closes, str(code))
        if code == CLOSE_TOO_SLOW:
            # Drop what is queued, except the rest of a frame already half written:
            # the close frame must start on a frame boundary.
            head = self._outbox[0] if self._partial_head and self._outbox else None
            self._outbox.clear()
            self._outbox_bytes = 0
            if head is not None:
                self._outbox.append(head)
                self._outbox_bytes = len(head)
        self._wake_writer()
        self._reader_wake.set()
        # A client that stops reading could hold the writer in sendall forever.
        self._abort_timer = self._clock.call_later(self._close_timeout_s, self.abort)

    def abort(self) -> None:
        """Cut the TCP connection now; the reader and writer both end."""
        self._reader_wake.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reader_done(self) -> None:
        self._reader_finished = True
        self._reader_gone.set()
        self._wake_writer()

    def receive(self, timeout: float | None = None) -> str | bytes | None:
        """The client's next message, read on the caller's greenlet; None once reading is over,
        or when nothing came within `timeout` seconds."""
        if timeout is None:
            return self._receive()
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            return self._receive()
        except gevent.Timeout as fired:
            if fired is not timer:
                raise
            if not self._authenticated:
                trip("auth_deadline")
            return None
        finally:
            timer.close()

    def drain(self) -> None:
        """After the handler's last frame: read on (dropping messages) until the client's
        close reply or the end of the stream, so the close handshake completes."""
        while self._receive() is not None:
            pass

    def _receive(self) -> str | bytes | None:
        ws = self.ws
        while not self._inbox:
            if self._reader_finished:
                return None
            if not ws.connected or not self.before_read():
                self.reader_done()
                return None
            size = self.read_size(ws.receive_bytes)
            try:
                data = self._raw.recv(size, socket.MSG_DONTWAIT)
                # The data was already waiting, so nothing has let the hub run since the
                # last read: yield now, or a flood would hold it. (A read that has to wait
                # below lets everyone else run while it waits.)
                gevent.sleep(READ_YIELD_S)
            except BlockingIOError:
                try:
                    data = self._sock.recv(size)
                except OSError:
                    data = b""
            except OSError:
                data = b""
            if not data:
                ws.connected = False
                self.reader_done()
                return None
            self.after_read(data)
            try:
                ws.ws.receive_data(data)
                # Pings, pongs, the close handshake, message assembly and its size limit.
                ws.connected = ws._handle_events()  # type: ignore[attr-defined]  # private, not in the stubs
            except LocalProtocolError:
                ws.connected = False
            if not ws.connected and self._over_size_limit():
                self._library_close = 1009
                trip("oversized_message")
        return self._inbox.pop(0)

    def _over_size_limit(self) -> bool:
        """Whether simple-websocket stopped because a message grew past MAX_FRAME_BYTES (it sent 1009)."""
        limit: int | None = getattr(self.ws, "max_message_size", None)
        return limit is not None and getattr(self.ws, "incoming_message_len", 0) > limit

    def _wake_writer(self) -> None:
        if self._writer is None:
            self._writer = gevent.spawn(self._write_loop)
        self._wake.set()

    def _write_loop(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    self._outbox_bytes = 0
                    self._partial_head = False  # sendall writes all of it, or the socket dies
                    self._writing = True
                    self._inflight = len(data)
                    try:
                        self._sock.sendall(data)
                    finally:
                        self._writing = False
                        self._inflight = 0
                if self.close_code is not None or self._reader_finished:
                    break
            if not self._reader_finished or self._stopped_reading:
                self._send_close()
            if not self._reader_finished:
                self._reader_gone.wait(self._close_timeout_s)
        except OSError:
            pass
        finally:
            TALLY.ws_closed += 1
            self._writer_finished = True
            self.abort()
            try:
                self._sock.close()
            except OSError:
                pass
            if self._abort_timer is not None:
                self._abort_timer.kill(block=False)
            self.done.set()

    def _send_close(self) -> None:
        assert self.close_code is not None  # close() set it, or the reader stopped after it did
        try:
            data = self.ws.ws.send(CloseConnection(self.close_code, self._close_reason))
        except LocalProtocolError:
            return
        self._sock.sendall(data)

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)
