"""A cheap WebSocket client for load generation: gevent over raw sockets, no JSON decoding.

Frames are parsed with a few slice operations; a message's seq and send time are
pulled out of its bytes with one regex. Client frames carry a zero mask (legal, and
XOR with zero leaves the payload as it is), so sending costs no per-byte Python work.
"""

from __future__ import annotations

import base64
import os
import re
import struct
from collections.abc import Callable

import gevent
import gevent.socket

MESSAGE = re.compile(rb'"seq":\s*(\d+).*?"body":\s*"(\d+)')
ZERO_MASK = b"\x00\x00\x00\x00"


def frame(payload: bytes, opcode: int = 0x1, mask: bytes = ZERO_MASK) -> bytes:
    """One final client frame; a zero mask leaves the payload as it is (and costs nothing)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    if mask != ZERO_MASK:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + payload


class Conn:
    """One client connection; on_text(payload) runs on its reader greenlet."""

    def __init__(
        self, host: str, port: int, path: str, headers: dict[str, str] | None = None
    ) -> None:
        self.sock = gevent.socket.create_connection((host, port), timeout=30)
        self.sock.settimeout(None)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during handshake")
            buf += chunk
        head, _, self._buf = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        self.on_text: Callable[[bytes], None] = lambda payload: None
        self.closed = False
        self._reader: gevent.Greenlet | None = None

    def start(self) -> None:
        self._reader = gevent.spawn(self._read_loop)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def _read_loop(self) -> None:
        buf = self._buf
        sock = self.sock
        try:
            while True:
                pos = 0
                end = len(buf)
                while end - pos >= 2:
                    b0 = buf[pos]
                    n = buf[pos + 1] & 0x7F
                    head = 2
                    if n == 126:
                        if end - pos < 4:
                            break
                        n = (buf[pos + 2] << 8) | buf[pos + 3]
                        head = 4
                    elif n == 127:
                        if end - pos < 10:
                            break
                        n = struct.unpack_from("!Q", buf, pos + 2)[0]
                        head = 10
                    if end - pos < head + n:
                        break
                    payload = buf[pos + head : pos + head + n]
                    pos += head + n
                    op = b0 & 0x0F
                    if op == 0x1:
                        self.on_text(payload)
                    elif op == 0x9:
                        sock.sendall(frame(payload, 0xA))
                    elif op == 0x8:
                        self.closed = True
                        return
                buf = buf[pos:]
                chunk = sock.recv(262144)
                if not chunk:
                    self.closed = True
                    return
                buf += chunk
        except OSError:
            self.closed = True

    def close(self) -> None:
        if self._reader is not None:
            self._reader.kill(block=False)
        try:
            self.sock.close()
        except OSError:
            pass
