"""Hostile WebSocket peers on bare sockets: hand-built frames and a flooder that reads only when asked."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from typing import Any

from tests.support.servers import ServerProcess


def ws_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455); the mask is fixed, which the server may not mind."""
    mask = b"\x37\xfa\x21\x3d"
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class WsAttacker:
    """A hostile WebSocket peer on a bare socket: floods frames, hangs up, and reads only if asked.

    `start_reading()` starts a thread that reads and counts what the server sends
    (by opcode, and text frames by their JSON type) and notes its close code.
    """

    def __init__(
        self, server: ServerProcess, token: str | None = None, rcvbuf: int | None = None
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # the kernel then holds little of what the server sends us
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", server.port))
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        self._buf = head.split(b"\r\n\r\n", 1)[1]  # frames that came with the handshake
        self.sent_frames = 0
        self.received: dict[Any, int] = {}  # opcode, or the JSON type of a text frame -> count
        self.close_code: int | None = None
        self.closed = threading.Event()  # the server sent a close frame or ended the connection
        self.closed_at: float | None = None
        self._reader: threading.Thread | None = None

    def flood(self, frame: bytes, seconds: float) -> int:
        """Send `frame` back to back for up to `seconds`; stop early when the server stops taking them.

        A server that pushes back makes a send time out, a closed one makes it fail:
        both end the flood. Returns the number of frames sent.
        """
        chunk = frame * max(1, 16384 // len(frame))
        per_chunk = len(chunk) // len(frame)
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.5)
        try:
            while time.monotonic() < deadline and not self.closed.is_set():
                self.sock.sendall(chunk)
                self.sent_frames += per_chunk
        except OSError:
            pass
        return self.sent_frames

    def start_reading(self) -> WsAttacker:
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()
        return self

    def wait_closed(self, timeout: float) -> int | None:
        """Read until the server closes; its close code, or None if it only ended the TCP connection."""
        if self._reader is None:
            self.start_reading()
        assert self._reader is not None
        self._reader.join(timeout)
        if not self.closed.is_set():
            raise AssertionError(f"the server did not close the connection within {timeout} s")
        return self.close_code

    def _read_all(self) -> None:
        buf = self._buf
        sock = socket.socket(fileno=os.dup(self.sock.fileno()))  # its own timeout
        sock.settimeout(30)
        try:
            while True:
                while len(buf) >= 2:
                    n = buf[1] & 0x7F
                    start = 2 + (2 if n == 126 else 8 if n == 127 else 0)
                    if len(buf) < start:
                        break
                    if n == 126:
                        n = struct.unpack("!H", buf[2:4])[0]
                    elif n == 127:
                        n = struct.unpack("!Q", buf[2:10])[0]
                    if len(buf) < start + n:
                        break
                    opcode, payload = buf[0] & 0x0F, buf[start : start + n]
                    buf = buf[start + n :]
                    if opcode == 0x8:
                        self.close_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
                        return
                    key: Any = json.loads(payload).get("type") if opcode == 0x1 else opcode
                    self.received[key] = self.received.get(key, 0) + 1
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
        except OSError:  # reset, or still open after 30 s
            return
        finally:
            sock.close()
            self.closed_at = time.monotonic()
            self.closed.set()

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # also wakes the reading thread's copy
        except OSError:
            pass
        self.sock.close()
        if self._reader is not None:
            self._reader.join(5)
