"""One WebSocket connection's outgoing side: a bounded outbox drained by a single writer greenlet.

simple-websocket lets any greenlet write to the socket, which is unsafe when two do
at once and truncates frames under a slow reader. So the socket inside the
simple-websocket object is replaced by a proxy: its own pong and close replies go
into our outbox too, and only the writer greenlet ever writes to the socket.
Broadcasts only append encoded frames here and never wait on a socket.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable

import gevent
from gevent.event import Event
from wsproto.events import CloseConnection
from wsproto.utilities import LocalProtocolError

from chat.protocol import PING_FRAME, text_frame

log = logging.getLogger(__name__)

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_UNAUTHORIZED = 4001
CLOSE_TIMEOUT = 4002
CLOSE_TOO_SLOW = 4008


class _SocketProxy:
    """What simple-websocket sees as its socket: reads count as signs of life, writes are queued."""

    def __init__(self, sock: socket.socket, conn: Connection) -> None:
        self._sock = sock
        self._conn = conn

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        self._conn.heard()
        return data

    def send(self, data: bytes) -> int:
        self._conn.push_control(data)
        return len(data)

    def close(self) -> None:
        self._conn.reader_done()

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class Connection:
    """An authenticated WebSocket client as the chat core sees it."""

    def __init__(
        self,
        ws: object,
        max_frames: int,
        max_bytes: int,
        close_timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ws = ws
        self._sock: socket.socket = ws.sock  # type: ignore[attr-defined]
        # gevent's socket wraps the OS socket; the fast path in push() uses it directly.
        self._raw: socket.socket = getattr(self._sock, "_sock", self._sock)
        self._writing = False
        self._partial_head = False  # the outbox starts with the rest of a half-written frame
        # Frames are written as soon as they are queued; Nagle would hold small ones back.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws.sock = _SocketProxy(self._sock, self)  # type: ignore[attr-defined]
        self._clock = clock
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._close_timeout_s = close_timeout_s
        self.username: str | None = None
        self.session: str | None = None
        self.delivered: dict[str, int] = {}  # room id -> highest seq queued to this client
        # room id -> (seq, frame) of live messages held back while a join reads history
        self.pending: dict[str, list[tuple[int, bytes]]] = {}
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self.last_heard = clock()
        self.last_ping = self.last_heard
        self.close_code: int | None = None
        self._close_reason = ""
        self._reader_finished = False
        self._writer_finished = False
        self._wake = Event()
        self.done = Event()
        self._abort_timer: gevent.Greenlet | None = None
        # Spawned on first need: with the fast path in push(), an idle or keeping-up
        # connection never needs one, which saves a greenlet (~12 KB) per connection.
        self._writer: gevent.Greenlet | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.username} fd={self._fileno()}>"

    def _fileno(self) -> int:
        try:
            return self._sock.fileno()
        except OSError:
            return -1

    @property
    def open(self) -> bool:
        return self.close_code is None and not self._reader_finished

    def heard(self) -> None:
        self.last_heard = self._clock()

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
        log.warning(
            "closing slow client %s: %d frames, %d bytes queued",
            self.username,
            len(self._outbox),
            self._outbox_bytes,
        )
        self.close(CLOSE_TOO_SLOW, "too slow: reconnect and join with since")

    def push_control(self, data: bytes) -> None:
        """Bytes simple-websocket wants written (pong, close reply): small, never bounded."""
        if not self._writer_finished:
            self._outbox.append(data)
            self._wake_writer()

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
        if (
            len(self._outbox) >= self._max_frames
            or self._outbox_bytes + len(frame) > self._max_bytes
        ):
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
        # A client that stops reading could hold the writer in sendall forever.
        self._abort_timer = gevent.spawn_later(self._close_timeout_s, self.abort)

    def abort(self) -> None:
        """Cut the TCP connection now; the reader and writer both end."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reader_done(self) -> None:
        self._reader_finished = True
        self._wake_writer()

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
                    try:
                        self._sock.sendall(data)
                    finally:
                        self._writing = False
                if self.close_code is not None or self._reader_finished:
                    break
            if not self._reader_finished:
                self._send_close()
                self.ws.thread.join(self._close_timeout_s)  # type: ignore[attr-defined]
        except OSError:
            pass
        finally:
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
        try:
            data = self.ws.ws.send(CloseConnection(self.close_code, self._close_reason))  # type: ignore[attr-defined]
        except LocalProtocolError:
            return
        self._sock.sendall(data)

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)
