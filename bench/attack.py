"""The "under attack" scenario's hostile clients, in their own process (`python -m bench.attack`).

Two attackers run side by side in one gevent process, pinned to the load generator's CPU
at the lowest priority (nice 19):

- the unauthenticated flooder opens /ws without credentials and writes small masked
  frames back to back as fast as the socket takes them (ping control frames, text
  `{"type":"ping"}` and binary frames, mixed), reconnecting whenever the server closes it;
- the ping flooder authenticates with a bearer token (so no auth deadline ends it: it
  is a logged-in user, the case that tests the outbox bounds on pongs) and writes masked
  ping control frames nonstop without ever reading, reconnecting when a write fails.

Both stop on SIGTERM or after --seconds, whichever comes first; every connect and
handshake has a timeout, so a frozen server cannot hang them. The last stdout line is
a JSON object of counts. Traffic goes to 127.0.0.1 only. `Attackers` starts and stops
the process from the benchmark.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket

from bench.wsclient import frame

HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
STREAM_BYTES = 16384  # one sendall's worth of frames
READY_TIMEOUT_S = 15.0


def flood_stream(mask: bytes, size: int = STREAM_BYTES) -> tuple[bytes, int]:
    """The unauthenticated flooder's bytes: pings, text pings and binary frames, mixed.

    Returns (bytes, frames in them); the buffer is written again and again.
    """
    pattern = [
        frame(b"ping", 0x9, mask),
        frame(b'{"type":"ping"}', 0x1, mask),
        frame(b"ping", 0x9, mask),
        frame(b"\x00\x01\x02\x03\x04\x05\x06\x07", 0x2, mask),
    ]
    return _repeat(pattern, size)


def ping_stream(mask: bytes, size: int = STREAM_BYTES) -> tuple[bytes, int]:
    """The ping flooder's bytes: ping control frames with the largest payload allowed (125 bytes)."""
    return _repeat([frame(b"p" * 125, 0x9, mask)], size)


def _repeat(pattern: list[bytes], size: int) -> tuple[bytes, int]:
    out, frames = [], 0
    total = 0
    while total < size:
        for f in pattern:
            out.append(f)
            total += len(f)
            frames += 1
    return b"".join(out), frames


class Flooder:
    """One attacker: connect, handshake, write its stream until closed, reconnect; counts."""

    def __init__(self, port: int, path: str, token: str, stream: tuple[bytes, int], reads: bool):
        self.port, self.path, self.token, self.reads = port, path, token, reads
        self.data, self.frames_per_write = stream
        self.stats = {"connections": 0, "refused": 0, "connect_failed": 0, "bytes": 0, "frames": 0}

    def run(self, stop: gevent.event.Event) -> None:
        while not stop.is_set():
            sock = self._connect()
            if sock is None:
                stop.wait(0.05)  # the server is not accepting; don't spin
                continue
            reader = gevent.spawn(self._drain, sock) if self.reads else None
            try:
                while not stop.is_set():
                    sock.sendall(self.data)
                    self.stats["bytes"] += len(self.data)
                    self.stats["frames"] += self.frames_per_write
            except OSError:
                pass  # closed by the server (or by _drain on EOF): reconnect
            finally:
                if reader is not None:
                    reader.kill(block=False)
                sock.close()

    def _connect(self) -> gevent.socket.socket | None:
        try:
            sock = gevent.socket.create_connection((HOST, self.port), timeout=CONNECT_TIMEOUT_S)
        except OSError:
            self.stats["connect_failed"] += 1
            return None
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        try:
            sock.sendall(
                (
                    f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    f"Sec-WebSocket-Version: 13\r\n{auth}\r\n"
                ).encode()
            )
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during handshake")
                buf += chunk
        except (OSError, ConnectionError):
            self.stats["connect_failed"] += 1
            sock.close()
            return None
        if not buf.startswith(b"HTTP/1.1 101"):
            self.stats["refused"] += 1
            sock.close()
            return None
        sock.settimeout(None)
        self.stats["connections"] += 1
        return sock

    @staticmethod
    def _drain(sock: gevent.socket.socket) -> None:
        """Read and drop whatever the server sends; on EOF close, which ends the writer's sendall."""
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
        sock.close()


KINDS = ("unauthenticated", "ping")


def attack_main(
    port: int, path: str, token: str, seconds: float, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    """Run the attackers (both by default) until SIGTERM or `seconds`; return their counts."""
    mask = os.urandom(4)
    unauth = Flooder(port, path, "", flood_stream(mask), reads=True)
    pinger = Flooder(port, path, token, ping_stream(mask), reads=False)
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    started = time.monotonic()
    workers = [
        gevent.spawn(f.run, stop)
        for kind, f in (("unauthenticated", unauth), ("ping", pinger))
        if kind in kinds
    ]
    print("ready", flush=True)
    stop.wait(seconds)
    stop.set()
    gevent.joinall(workers, timeout=1.0)
    gevent.killall(workers, block=True, timeout=2.0)
    return {
        "seconds": round(time.monotonic() - started, 2),
        "unauthenticated": unauth.stats,
        "ping": pinger.stats,
    }


class Attackers:
    """The attack process, seen from the benchmark: start it, stop it, read its counts."""

    def __init__(
        self, port: int, token: str, max_s: float, cpu: int | None, kinds: tuple[str, ...] = KINDS
    ) -> None:
        self.port, self.token, self.max_s, self.cpu = port, token, max_s, cpu
        self.kinds = kinds
        self.proc: subprocess.Popen[bytes] | None = None

    def _pin(self) -> None:
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {self.cpu})
        # The attackers share the load generator's CPU. At the lowest priority they get
        # only what it leaves idle, so their busy loops cannot delay its receive
        # timestamps: the scenario measures what they cost the server.
        os.nice(19)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.attack",
                str(self.port),
                "/ws",
                str(self.max_s),
                ",".join(self.kinds),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            env={**os.environ, "BENCH_ATTACK_TOKEN": self.token},
            stdout=subprocess.PIPE,
            preexec_fn=self._pin,
        )
        assert self.proc.stdout is not None
        with gevent.Timeout(READY_TIMEOUT_S, TimeoutError("attack process did not start")):
            line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"attack process failed to start: {line!r}")

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then its counts ({} if it had to be killed)."""
        if self.proc is None:
            return {}
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            return {}
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            return json.loads(lines[-1]) if lines else {}
        except ValueError:
            return {}


if __name__ == "__main__":
    port_arg, path_arg, seconds_arg, kinds_arg = sys.argv[1:5]
    counts = attack_main(
        int(port_arg),
        path_arg,
        os.environ.get("BENCH_ATTACK_TOKEN", ""),
        float(seconds_arg),
        tuple(kinds_arg.split(",")),
    )
    print(json.dumps(counts), flush=True)
