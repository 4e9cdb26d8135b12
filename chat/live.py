"""This worker's WebSocket users: connect, join with replay, send, typing, read markers, and the room events they see.

chat/ws.py parses frames and calls in here. A send goes straight down: Live.send
queues a Draft on the writer; the writer stores it and hands it to the Publisher,
which feeds chat.fanout (this worker's subscribers), the backplane (other workers)
and the sender's ack. What happens to rooms on any worker (joins, leaves,
deletions, typing, logouts, presence changes) arrives here as backplane events,
through one dispatch table (subscribe()).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from chat import store
from chat.connection import Connection
from chat.errors import not_joined, too_many_connections
from chat.fanout import Fanout
from chat.membership import Rooms
from chat.models import Draft, ReadMarker
from chat.protocol import error_frame, marker_json, message_json, read_frame
from chat.rooms import RoomRegistry
from chat.writer import MessageWriter
from core.backplane import LocalBackplane
from core.clock import Clock
from core.database import Database
from core.errors import ChatError
from core.events import (
    MemberJoined,
    MemberLeft,
    Messages,
    PresenceChanged,
    ReadMarked,
    Resubscribed,
    RoomDeleted,
    SessionClosed,
    SessionIdle,
    Typing,
    UserOffline,
    UserOnline,
)
from core.settings import Settings
from core.status import Statuses
from core.wire import CLOSE_UNAUTHORIZED, dumps, text_frame

log = logging.getLogger(__name__)


def fit_bytes(messages: list[dict[str, object]], max_bytes: int) -> list[dict[str, object]]:
    """The newest messages whose encoded size fits in max_bytes (a joined frame must fit the outbox)."""
    total = 0
    for i in range(len(messages) - 1, -1, -1):
        total += len(dumps(messages[i])) + 1
        if total > max_bytes:
            return messages[i + 1 :]
    return messages


@dataclasses.dataclass(frozen=True, slots=True)
class Replay:
    """What a join reads in one transaction: the room's last seq, the history as wire JSON
    (made on the database thread, off the hub), whether older messages are left out, the
    member names and the user's read marker."""

    last_seq: int
    history: list[dict[str, object]]
    truncated: bool
    names: list[str]
    read: ReadMarker | None


class Live:
    """This worker's connections and the rooms they follow."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        registry: RoomRegistry[Connection],
        fanout: Fanout,
        writer: MessageWriter,
        rooms: Rooms,
        backplane: LocalBackplane,
        statuses: Statuses,
        clock: Clock,
    ) -> None:
        self._db = db
        self._settings = settings
        self.registry = registry
        self.fanout = fanout
        self._writer = writer
        self._rooms = rooms
        self._backplane = backplane
        self._statuses = statuses
        self._clock = clock
        self._typing: dict[tuple[str, str], float] = {}  # (user, room) -> when last forwarded

    def subscribe(self) -> None:
        """Take this worker's share of every event that changes what a connection sees."""
        table: dict[type[Any], Callable[[str, Any], None]] = {
            Messages: self._on_messages,
            MemberJoined: self._on_member_joined,
            MemberLeft: self._on_member_left,
            RoomDeleted: self._on_room_deleted,
            Typing: self._on_typing,
            ReadMarked: self._on_read_marked,
            SessionClosed: self._on_session_closed,
            PresenceChanged: self._on_presence_changed,
            Resubscribed: self._on_resubscribed,
        }
        for kind, handler in table.items():
            self._backplane.subscribe(kind, handler)

    # ---- connections ----------------------------------------------------------

    def admit(self, username: str) -> None:
        """Refuse a new connection past MAX_CONNECTIONS_PER_USER on this worker.

        Call it right before connect(), with nothing that yields in between, so two
        connections authenticating at once cannot both take the last place.
        """
        limit = self._settings.MAX_CONNECTIONS_PER_USER
        if len(self.registry.connections_of(username)) >= limit:
            log.info(
                "refused a connection for %s: %d open (MAX_CONNECTIONS_PER_USER)", username, limit
            )
            raise too_many_connections(limit)

    def connect(self, conn: Connection, username: str, session: str) -> None:
        conn.username = username
        conn.session = session
        if self.registry.add(conn, username, session):
            # Presence marks the user online before anything yields: whoever got
            # `ready` and asks at once must already see them online.
            self._backplane.emit(UserOnline(username))
        log.info("connected %s (%d connections)", username, len(self.registry))

    def disconnect(self, conn: Connection) -> None:
        if conn.username is None or self.registry.owner(conn) is None:
            return
        session_still_live = len(self.registry.connections_of_session(conn.session or "")) > 1
        if self.registry.remove(conn):
            self._backplane.emit(UserOffline(conn.username))
        if not session_still_live and conn.session:
            self._backplane.local(SessionIdle(conn.session))
        log.info("disconnected %s (%d connections)", conn.username, len(self.registry))

    def connections(self) -> list[Connection]:
        return self.registry.connections()

    def gauges(self) -> dict[str, float]:
        """This worker's live values for core.metrics (read once a second and at a scrape)."""
        users, rooms = self.registry.sizes()
        queued = sum(conn.queued_bytes for conn in self.registry.connections())
        return {"ws_users": users, "rooms_live": rooms, "outbox_bytes": queued}

    def close_all(self, code: int, reason: str) -> list[Connection]:
        conns = self.registry.connections()
        for conn in conns:
            conn.close(code, reason)
        return conns

    # ---- frames -----------------------------------------------------------------

    def join(self, conn: Connection, room_id: str, since: int | None) -> None:
        assert conn.username is not None
        self._rooms.join(conn.username, room_id)
        # Subscribe before reading history, and hold live messages back until `joined`
        # is queued: then nothing falls between history and live, and deliver() drops repeats.
        conn.pending[room_id] = []
        self.registry.subscribe(room_id, conn)
        self.fanout.watch(room_id)
        try:
            replay = self._db.run(self._replay, room_id, conn.username, since)
            self.fanout.baseline(room_id, replay.last_seq)
            last = self._catch_up(conn, room_id, replay)
        except BaseException:
            conn.pending.pop(room_id, None)
            self.registry.unsubscribe(room_id, conn)
            raise
        self._send_joined(conn, room_id, replay, last)

    def _send_joined(self, conn: Connection, room_id: str, replay: Replay, last: int) -> None:
        """The `joined` frame, then the live messages held back while it was read."""
        # Apart from join(): every connection handler waits in join()'s database read, and
        # each local kept there costs every connection's stack (measured: one more 4 KiB
        # page per connection when join() held these too).
        history = replay.history
        truncated = replay.truncated
        if last > replay.last_seq:
            kept = fit_bytes(history, self._settings.REPLAY_MAX_BYTES)
            truncated = truncated or len(kept) < len(history)
            history = kept
        held = conn.pending.pop(room_id)
        conn.delivered[room_id] = last
        conn.send(
            {
                "type": "joined",
                "room": room_id,
                "last_seq": last,
                "history": history,
                "members": self._member_sample(replay.names),
                "member_count": len(replay.names),
                "truncated": truncated,
                **marker_json(replay.read),
            }
        )
        for seq, frame in held:
            conn.deliver(room_id, seq, frame, cork=True)
        conn.flush()

    def _catch_up(self, conn: Connection, room_id: str, replay: Replay) -> int:
        """Add to the history what this worker passed on to the room since the read began.

        Usually the held-back list already starts right after the history. It may not
        when another join set the room's position past this read (two first joins at
        once); then the messages in between are read again, so none falls between.
        """
        last = replay.last_seq
        while True:
            held = conn.pending[room_id]
            first = held[0][0] if held else (self.fanout.position(room_id) or 0) + 1
            if first <= last + 1:
                return last
            extra = self._db.run(
                store.messages_between, room_id, last, first, self._settings.REPLAY_MAX_MESSAGES
            )
            if not extra:
                return last  # gone (retention, deletion): nothing left to add
            replay.history.extend(message_json(m) for m in extra)
            last = extra[-1].seq

    def _member_sample(self, names: list[str]) -> list[dict[str, object]]:
        """Up to JOINED_MAX_MEMBERS members, online ones first: a joined frame must stay small."""
        online = [n for n in names if self._statuses.is_online(n)]
        offline = [n for n in names if not self._statuses.is_online(n)]
        picked = (online + offline)[: self._settings.JOINED_MAX_MEMBERS]
        return [{"username": n, "status": self._statuses.status(n)} for n in picked]

    def _replay(self, db_conn: Any, room_id: str, username: str, since: int | None) -> Replay:
        s = self._settings
        limit = s.HISTORY_PAGE_SIZE if since is None else s.REPLAY_MAX_MESSAGES
        page = store.read_page(db_conn, room_id, username, None, None, limit)
        wanted = page.messages if since is None else [m for m in page.messages if m.seq > since]
        history = fit_bytes([message_json(m) for m in wanted], s.REPLAY_MAX_BYTES)
        truncated = False
        if since is not None and since < page.last_seq:
            # Older messages the client asked for are gone (retention) or left out (caps).
            first_sent = wanted[len(wanted) - len(history)].seq if history else page.last_seq + 1
            truncated = since + 1 < first_sent
        names = store.member_names(db_conn, room_id, username)
        return Replay(
            page.last_seq,
            history,
            truncated,
            names,
            store.read_marker(db_conn, room_id, username, s.UNREAD_MAX),
        )

    def leave(self, conn: Connection, room_id: str) -> None:
        assert conn.username is not None
        self._rooms.leave(conn.username, room_id)
        conn.send({"type": "left", "room": room_id})

    def send(self, conn: Connection, room_id: str, body: str, client_msg_id: str) -> None:
        """Queue a message; the Publisher acks it (or sends the error) after the commit."""
        if not self.registry.is_subscribed(room_id, conn):
            raise not_joined(room_id, room=room_id, client_msg_id=client_msg_id)
        assert conn.username is not None
        self._rooms.check_rate(conn.username, room=room_id, client_msg_id=client_msg_id)
        self._writer.submit(
            Draft(
                room_id,
                conn.username,
                body,
                client_msg_id,
                self._clock.time(),
                sender=conn,
                received=self._clock.monotonic(),
            )
        )

    def read(self, conn: Connection, room_id: str, seq: int) -> None:
        """Move the user's read marker. When it moves, ReadMarked tells every connection of
        theirs (this one too); when it does not, only this one gets its answer."""
        assert conn.username is not None
        marker, moved = self._rooms.mark_read(conn.username, room_id, seq)
        if not moved:
            conn.send(read_frame(marker))

    def typing(self, conn: Connection, room_id: str) -> None:
        if not self.registry.is_subscribed(room_id, conn):
            raise not_joined(room_id, room=room_id)
        assert conn.username is not None
        now = self._clock.monotonic()
        key = (conn.username, room_id)
        last = self._typing.get(key)
        if last is not None and now - last < self._settings.TYPING_INTERVAL_S:
            return  # typing is a hint: extra ones are dropped, not refused
        self._typing[key] = now
        self._backplane.emit(Typing(room_id, conn.username))

    def prune(self) -> None:
        """Forget feeds and typing state that no longer matter."""
        self.fanout.prune()
        horizon = self._clock.monotonic() - self._settings.TYPING_INTERVAL_S
        for key in [k for k, t in self._typing.items() if t < horizon]:
            del self._typing[key]

    # ---- events from any worker ----------------------------------------------------

    def _on_messages(self, origin: str, event: Messages) -> None:
        """Another worker's stored messages."""
        self.fanout.feed(event.items)

    def _on_resubscribed(self, origin: str, event: Resubscribed) -> None:
        """Whatever the backplane carried while we were cut off is read from the database."""
        self.fanout.resync()

    def _on_member_joined(self, origin: str, event: MemberJoined) -> None:
        self._notify_room(
            event.room, {"type": "member_joined", "room": event.room, "user": event.user}
        )

    def _on_member_left(self, origin: str, event: MemberLeft) -> None:
        self._notify_room(
            event.room, {"type": "member_left", "room": event.room, "user": event.user}
        )
        for conn in self.registry.unsubscribe_user(event.room, event.user):
            conn.delivered.pop(event.room, None)

    def _on_room_deleted(self, origin: str, event: RoomDeleted) -> None:
        frame = text_frame({"type": "room_deleted", "room": event.room})
        self.fanout.drop(event.room)
        for conn in self.registry.drop_room(event.room):
            conn.delivered.pop(event.room, None)
            conn.push(frame)

    def _on_typing(self, origin: str, event: Typing) -> None:
        frame = text_frame({"type": "typing", "room": event.room, "user": event.user})
        for other in self.registry.subscribers(event.room):
            if other.username != event.user:
                other.push(frame)

    def _on_read_marked(self, origin: str, event: ReadMarked) -> None:
        frame = text_frame(read_frame(ReadMarker(event.room, event.seq, event.unread)))
        for conn in self.registry.connections_of(event.user):
            conn.push(frame)

    def _on_session_closed(self, origin: str, event: SessionClosed) -> None:
        for conn in self.registry.connections_of_session(event.session):
            conn.send(error_frame(ChatError(401, "unauthorized", event.reason)))
            conn.close(CLOSE_UNAUTHORIZED, event.reason)

    def _on_presence_changed(self, origin: str, event: PresenceChanged) -> None:
        """Tell the user's co-members on this worker (runs on presence's notifier greenlet)."""
        frame = text_frame({"type": "presence", "user": event.user, "status": event.status})
        for other in self._db.run(store.co_members, event.user):
            for conn in self.registry.connections_of(other):
                conn.push(frame)

    def _notify_room(self, room_id: str, obj: dict[str, object]) -> None:
        frame = text_frame(obj)
        for conn in self.registry.subscribers(room_id):
            conn.push(frame)
