"""The cluster tests' harness: sockets on given processes, REST views, and threads that follow one WebSocket.

A `Follower` reads every frame of one WebSocket on its own thread, so no buffer fills
while a test waits; a `Sender` sends through a followed socket, one message at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed

from tests.support.clients import WS, Api, User
from tests.support.servers import ServerProcess


def connect(user: User, server: ServerProcess, opened: list[WS]) -> WS:
    """A WebSocket of `user` (whose token is valid on every process) to `server`."""
    ws = WS.open(server.ws_url, user.token)
    opened.append(ws)
    return ws


def statuses(api: Api, user: User) -> dict[str, str]:
    """username -> online/offline, as GET /api/users on api's process says."""
    return {u["username"]: u["status"] for u in api.list_all("/api/users", user.token, "users")}


def health(server: ServerProcess) -> dict[str, Any]:
    return requests.get(f"{server.url}/healthz", timeout=5).json()


def history(api: Api, user: User, room: str) -> list[dict[str, Any]]:
    """Every stored message of the room, oldest first, paged forward over REST."""
    messages: list[dict[str, Any]] = []
    while True:
        after = messages[-1]["seq"] if messages else 0
        r = api.get(f"/api/rooms/{room}/messages?after={after}&limit=500", user.token)
        assert r.status_code == 200, r.text
        messages += r.json()["messages"]
        if not r.json()["has_more"]:
            return messages


def expect_presence(ws: WS, user: str, status: str, timeout: float = 5.0) -> None:
    """Read until a presence frame says `user` is `status` (other frames are passed over)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = ws.recv(max(0.01, deadline - time.monotonic()))
        if frame["type"] == "presence" and (frame["user"], frame["status"]) == (user, status):
            return


def key(message: dict[str, Any]) -> tuple[Any, ...]:
    """What must be identical about a message wherever it is read."""
    return (message["seq"], message["user"], message["body"], message["client_msg_id"])


class Follower:
    """Reads every frame of one WebSocket on its own thread, so no buffer fills while a test waits.

    Tests wait on what it has read (`wait`), never on the clock.
    """

    def __init__(self, ws: WS, name: str) -> None:
        self.ws = ws
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self.acks: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.presence: list[tuple[float, str, str]] = []  # (monotonic time, user, status)
        self.pongs = 0
        self.ended = False
        self.close_code: int | None = None
        self.failure: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                with self._cond:
                    self._record(frame)
                    self._cond.notify_all()
        except ConnectionClosed:
            self.close_code = self.ws.conn.close_code
        except BaseException as exc:  # reported by wait()
            self.failure = exc
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def _record(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message":
            self.messages.append(frame)
        elif kind == "ack":
            self.acks[frame["client_msg_id"]] = frame["seq"]
        elif kind == "error":
            self.errors.append(frame)
        elif kind == "presence":
            self.presence.append((time.monotonic(), frame["user"], frame["status"]))
        elif kind == "pong":
            self.pongs += 1

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.messages]

    def wait(self, predicate: Callable[[Follower], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if self.failure is not None or self.ended or remaining <= 0:
                    raise AssertionError(
                        f"{self.name}: {what} not seen within {timeout} s (reader failure "
                        f"{self.failure!r}, closed {self.close_code}, last seqs "
                        f"{self.seqs()[-5:]} of {len(self.messages)}, errors {self.errors[-3:]})"
                    )
                self._cond.wait(remaining)

    def wait_seq(self, seq: int, timeout: float = 15) -> None:
        self.wait(
            lambda f: bool(f.messages) and f.messages[-1]["seq"] >= seq, f"seq {seq}", timeout
        )

    def sync(self) -> None:
        """Round-trip a ping: whatever the server had queued for this socket has been read."""
        with self._cond:
            before = self.pongs
        self.ws.send({"type": "ping"})
        self.wait(lambda f: f.pongs > before, "pong")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class Sender:
    """Sends one message at a time through a followed WebSocket, each after the previous answer.

    It paces itself (`pause` between sends: a rate, not an ordering) so that what piles up
    while a test breaks something stays the same on a faster machine.
    """

    def __init__(
        self, follower: Follower, room: str, prefix: str, limit: int = 2000, pause: float = 0.01
    ) -> None:
        self.follower = follower
        self.room = room
        self.prefix = prefix
        self.limit = limit
        self.pause = pause
        self.acked: dict[str, int] = {}
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"send-{prefix}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i in range(self.limit):
                if self._stop.wait(self.pause if i else 0):
                    return
                cmid = f"{self.prefix}-{i}"
                self.follower.ws.send(
                    {"type": "send", "room": self.room, "body": f"{cmid}!", "client_msg_id": cmid}
                )
                self.follower.wait(
                    lambda f, c=cmid: (
                        c in f.acks or any(e.get("client_msg_id") == c for e in f.errors)
                    ),
                    f"the answer to {cmid}",
                )
                if cmid not in self.follower.acks:
                    raise AssertionError(f"{cmid} refused: {self.follower.errors[-1]}")
                self.acked[cmid] = self.follower.acks[cmid]
        except BaseException as exc:
            self.failure = exc

    def stop(self) -> dict[str, int]:
        """Stop after the message in flight is answered; return client_msg_id -> seq of every ack."""
        self._stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive(), f"sender {self.prefix} did not stop"
        if self.failure is not None:
            raise AssertionError(f"sender {self.prefix} failed: {self.failure!r}")
        return dict(self.acked)
