"""The live half of the client: one WebSocket that reconnects by itself and loses nothing.

It resumes every room from the last seq it printed (join with `since`, then REST
for anything the server's replay left out), and re-sends unacknowledged messages
with their original client_msg_id, so a retry never doubles a message. The seq
bookmarks and the unacknowledged messages are kept on disk (ChatState), so this
holds across restarts of the client too.

What it printed is marked as read (client.marks), and an outage is reported once when
the connection drops and once when it is back, however many attempts it takes.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from client.api import Api, ClientError
from client.config import ChatState
from client.marks import ReadMarker

# Refusals after which re-sending the same message can never succeed.
PERMANENT_SEND_ERRORS = {
    "invalid_message",
    "invalid_frame",
    "client_msg_id_reused",
    "not_a_member",
    "room_not_found",
    "room_restricted",
}
# Refusals of a join: the room cannot be followed at all.
JOIN_ERRORS = {"room_not_found", "room_restricted", "room_full", "not_a_member"}
CLOSE_UNAUTHORIZED = 4001
REPLAY_PAGE = 500
# How long closing (or /leave) waits for the server to confirm the last read markers.
FLUSH_WAIT_S = 2.0


def ws_url(server: str) -> str:
    return (
        ("wss://" if server.startswith("https://") else "ws://") + server.split("://", 1)[1] + "/ws"
    )


class LiveSession:
    """Runs the WebSocket on a background thread; the caller sends lines and gets events back."""

    def __init__(
        self,
        api: Api,
        state: ChatState,
        rooms: list[str],
        on_event: Callable[[dict[str, Any]], None],
        on_status: Callable[[str], None],
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self._api = api
        self._state = state
        self.rooms: list[str] = list(dict.fromkeys(rooms))
        self._on_event = on_event
        self._on_status = on_status
        self._backoff_s = backoff_s
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ws: ClientConnection | None = None
        self._joined: set[str] = set()  # rooms joined on the current connection
        self._since: dict[str, int | None] = {}  # room -> since sent with the pending join
        self._stop = threading.Event()
        self.fatal: ClientError | None = None
        self.connected = threading.Event()
        # True from the moment an outage is reported until the connection is back.
        self.offline = False
        self._confirmed: dict[str, int] = {}  # room -> newest marker a `read` frame reported
        self.marks = ReadMarker(self._send_read)
        self._thread = threading.Thread(target=self._run, name="greenroom-ws", daemon=True)

    # ---- used by the caller ---------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def send(self, room: str, body: str) -> bool:
        """Queue a message (kept on disk until acked) and send it if the room is joined.

        True when it waits for the connection to come back (the caller says so).
        """
        item = {"room": room, "body": body, "client_msg_id": uuid.uuid4().hex}
        with self._lock:
            self._state.pending.append(item)
            self._state.save()
            if room in self._joined:
                self._send_frame({"type": "send", **item})
            return self.offline

    def join(self, room: str) -> None:
        with self._lock:
            if room not in self.rooms:
                self.rooms.append(room)
            if self._ws is not None and self.connected.is_set():
                self._send_join(room)

    def leave(self, room: str) -> None:
        """Stop following a room the caller has left over REST (which unsubscribes us too)."""
        with self._lock:
            if room in self.rooms:
                self.rooms.remove(room)
            self._joined.discard(room)

    def flush_read(self, rooms: list[str] | None = None, timeout: float = FLUSH_WAIT_S) -> bool:
        """Send the read markers still waiting, and wait (bounded) until the server has them."""
        sent = self.marks.flush(rooms)

        def confirmed() -> bool:
            return all(self._confirmed.get(r, 0) >= seq for r, seq in sent.items())

        with self._changed:
            return self._changed.wait_for(
                lambda: confirmed() or self.fatal is not None or not self.connected.is_set(),
                timeout,
            )

    def pending_count(self) -> int:
        with self._lock:
            return len(self._state.pending)

    def wait_until_synced(self, timeout: float | None = None) -> bool:
        """Block until every room is joined (its history printed) and every message acked."""

        def synced() -> bool:
            return set(self.rooms) <= self._joined and not self._state.pending

        with self._changed:
            self._changed.wait_for(
                lambda: synced() or self.fatal is not None or self._stop.is_set(), timeout
            )
            return synced()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def close(self) -> None:
        if self.fatal is None:
            self.flush_read()
        self.marks.close()
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        ws = self._ws
        if ws is not None:
            ws.close()
        self._thread.join(5)

    # ---- the connection thread ------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                with connect(
                    ws_url(self._api.server),
                    additional_headers={"Authorization": f"Bearer {self._api.token}"},
                    open_timeout=10,
                    max_size=2**23,
                ) as ws:
                    self._ws = ws
                    attempt = 0
                    self._serve(ws)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code == CLOSE_UNAUTHORIZED:
                    self._fail(ClientError("unauthorized", "session ended"))
                    return
            except InvalidStatus as exc:
                if 400 <= exc.response.status_code < 500:
                    self._fail(
                        ClientError(
                            "bad_server",
                            f"the server refused the WebSocket ({exc.response.status_code})",
                        )
                    )
                    return
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            finally:
                with self._lock:
                    self._ws = None
                    self._joined.clear()
                    self.connected.clear()
            if self._stop.is_set():
                break
            attempt += 1
            low, high = self._backoff_s
            delay = min(high, low * 2 ** min(attempt - 1, 10)) * random.uniform(0.5, 1.0)
            if not self.offline:  # one line per outage, not one per attempt
                self.offline = True
                self._on_status(
                    "connection lost: reconnecting; lines you type meanwhile are queued"
                )
            self._stop.wait(delay)

    def _fail(self, err: ClientError) -> None:
        self.fatal = err
        self._stop.set()
        with self._changed:
            self._changed.notify_all()

    def _serve(self, ws: ClientConnection) -> None:
        for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "ready":
                self._on_ready()
            elif kind == "joined":
                self._on_joined(frame)
            elif kind == "message":
                self._on_message(frame)
            elif kind == "ack":
                self._drop_pending(frame["client_msg_id"])
            elif kind == "error":
                self._on_error(frame)
            elif kind == "read":
                self._on_read(frame)
            elif kind in ("room_deleted", "left"):
                self._forget_room(frame["room"])
                self._on_event(frame)
            else:
                self._on_event(frame)

    def _on_ready(self) -> None:
        with self._lock:
            self.connected.set()
            self.offline = False
            self._on_status("connected")
            for room in self.rooms:
                self._send_join(room)

    def _send_join(self, room: str) -> None:
        since = self._state.last_seq.get(room)
        self._since[room] = since
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        self._send_frame(frame)

    def _send_frame(self, frame: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            ws.send(json.dumps(frame))
        except (ConnectionClosed, OSError):
            return False  # the connection thread notices and reconnects
        return True

    def _send_read(self, room: str, seq: int) -> bool:
        with self._lock:
            if not self.connected.is_set() or room not in self.rooms:
                return False
            return self._send_frame({"type": "read", "room": room, "seq": seq})

    def _on_read(self, frame: dict[str, Any]) -> None:
        room, marker = frame.get("room"), frame.get("last_read_seq")
        if not isinstance(room, str) or not isinstance(marker, int):
            return
        self.marks.known(room, marker)
        with self._changed:
            self._confirmed[room] = max(marker, self._confirmed.get(room, 0))
            self._changed.notify_all()

    def _on_joined(self, frame: dict[str, Any]) -> None:
        room = frame["room"]
        history = frame["history"]
        if "last_read_seq" in frame:  # the server keeps read markers
            self.marks.enabled = True
            self.marks.known(room, frame["last_read_seq"])
        since = self._since.get(room)
        if frame["truncated"] and since is not None:
            # The replay left out older messages we have not printed: fetch them over REST.
            first = history[0]["seq"] if history else frame["last_seq"] + 1
            history = self._fetch_between(room, since, first) + history
        for m in history:
            self._on_message({"type": "message", **m}, mark=False)
        # Printed by an earlier run (or before a drop) but perhaps never marked.
        self.marks.printed(room, self._state.last_seq.get(room, 0))
        with self._changed:
            self._joined.add(room)
            if room not in self.rooms:
                self.rooms.append(room)
            for item in list(self._state.pending):
                if item["room"] == room:
                    self._send_frame({"type": "send", **item})
            self._changed.notify_all()
        self._on_event({"type": "joined", "room": room, "members": frame["members"]})

    def _fetch_between(self, room: str, after: int, before: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while after + 1 < before:
            try:
                page = self._api.history(room, limit=REPLAY_PAGE, after=after, before=before)
            except ClientError as err:
                self._on_status(f"could not fetch older messages of {room}: {err.message}")
                break
            if not page["messages"]:
                break
            out += page["messages"]
            after = page["messages"][-1]["seq"]
        return out

    def _on_message(self, frame: dict[str, Any], mark: bool = True) -> None:
        room, seq = frame["room"], frame["seq"]
        with self._lock:
            if seq <= self._state.last_seq.get(room, 0):
                return  # printed before (a replay overlapping what we saw)
            self._state.last_seq[room] = seq
            self._state.save()
        if mark:
            # Noted before it is printed: once the line shows, the user may quit at once,
            # and the exit's flush (on the main thread) must already know of it.
            self.marks.printed(room, seq)
        self._on_event(frame)

    def _drop_pending(self, client_msg_id: str) -> dict[str, Any] | None:
        with self._changed:
            for i, item in enumerate(self._state.pending):
                if item["client_msg_id"] == client_msg_id:
                    del self._state.pending[i]
                    self._state.save()
                    self._changed.notify_all()
                    return item
        return None

    def _on_error(self, frame: dict[str, Any]) -> None:
        cmid = frame.get("client_msg_id")
        code = frame.get("code", "error")
        if cmid and code in PERMANENT_SEND_ERRORS:
            self._drop_pending(cmid)
        elif cmid and code == "rate_limited":
            delay = float(frame.get("retry_after_s", 1))
            threading.Timer(delay, self._resend, args=(cmid,)).start()
            return  # retried quietly
        elif code == "not_joined":
            return  # sent again after the join completes
        elif code == "unauthorized":
            return  # the 4001 close that follows ends the session, with its own message
        elif not cmid and frame.get("room") in self.rooms and code in JOIN_ERRORS:
            self._forget_room(frame["room"])
        self._on_event(frame)

    def _forget_room(self, room: str) -> None:
        """A room we can no longer be in: stop following it and drop what was queued for it."""
        with self._changed:
            if room in self.rooms:
                self.rooms.remove(room)
            self._joined.discard(room)
            dropped = [p for p in self._state.pending if p["room"] == room]
            if dropped:
                self._state.pending = [p for p in self._state.pending if p["room"] != room]
                self._state.save()
                self._on_status(f"{len(dropped)} unsent message(s) to room {room} dropped")
            self._changed.notify_all()

    def _resend(self, client_msg_id: str) -> None:
        with self._lock:
            for item in self._state.pending:
                if item["client_msg_id"] == client_msg_id and item["room"] in self._joined:
                    self._send_frame({"type": "send", **item})
