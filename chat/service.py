"""The chat core: rooms, membership, messages and live delivery, shared by the REST routes and /ws.

Routes and the WebSocket loop parse input and call in here; this module owns the
rules and who gets which frame. SQL lives in chat.store, the live map in chat.rooms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from auth.service import USERNAME_RE
from chat import store
from chat.connection import CLOSE_UNAUTHORIZED, Connection
from chat.fanout import Fanout
from chat.protocol import (
    check_body,
    check_client_msg_id,
    dumps,
    error_frame,
    is_utf8,
    text_frame,
)
from chat.rooms import RoomRegistry
from chat.writer import MessageWriter
from core.backplane import Items, LocalBackplane
from core.database import Database
from core.errors import (
    ChatError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    rate_limited,
)
from core.paging import ListPage
from core.ratelimit import RateLimiter
from core.settings import Settings
from presence.tracker import PRESENCE_EVENTS, Presence

log = logging.getLogger(__name__)


def invalid_room(message: str) -> ChatError:
    return bad_request(message, code="invalid_room")


def too_many_connections(limit: int) -> ChatError:
    return conflict(
        "too_many_connections",
        f"You already have {limit} connections open here: close one and connect again.",
    )


def not_joined(room_id: str, **echo: object) -> ChatError:
    return forbidden("not_joined", f"Join room {room_id} on this connection first.").with_extra(
        **echo
    )


def fit_bytes(messages: list[dict[str, object]], max_bytes: int) -> list[dict[str, object]]:
    """The newest messages whose encoded size fits in max_bytes (a joined frame must fit the outbox)."""
    total = 0
    for i in range(len(messages) - 1, -1, -1):
        total += len(dumps(messages[i])) + 1
        if total > max_bytes:
            return messages[i + 1 :]
    return messages


class Chat:
    """Rooms and messages, and the live connections that follow them."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        registry: RoomRegistry[Connection],
        presence: Presence,
        backplane: LocalBackplane,
        send_limits: RateLimiter,
        create_limits: RateLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self.registry = registry
        self.presence = presence
        self.backplane = backplane
        self.fanout = Fanout(registry, self._fetch_frames, settings.GAP_WAIT_S)
        self.writer = MessageWriter(db, settings.ROOM_HISTORY_LIMIT, self._publish_messages)
        self.send_limits = send_limits
        self.create_limits = create_limits  # rooms created per user
        self._typing: dict[tuple[str, str], float] = {}  # (user, room) -> when last forwarded

    # ---- rooms -------------------------------------------------------------

    def create_room(
        self, username: str, name: object, capacity: object, private: object
    ) -> dict[str, object]:
        s = self._settings
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name) > s.MAX_ROOM_NAME_CHARS
            or not is_utf8(name)
        ):
            raise invalid_room(f"A room name is 1 to {s.MAX_ROOM_NAME_CHARS} characters.")
        if capacity is None:
            capacity = s.DEFAULT_ROOM_CAPACITY
        if (
            isinstance(capacity, bool)
            or not isinstance(capacity, int)
            or not 1 <= capacity <= s.MAX_ROOM_CAPACITY
        ):
            raise invalid_room(f"capacity is a whole number from 1 to {s.MAX_ROOM_CAPACITY}.")
        if private is None:
            private = False
        if not isinstance(private, bool):
            raise invalid_room("private is true or false.")
        wait = self.create_limits.acquire(username, self._clock())
        if wait > 0:
            raise rate_limited(wait)
        room = self._db.run(
            store.create_room,
            username,
            name.strip(),
            capacity,
            private,
            self._clock(),
            s.MAX_ROOMS_OWNED,
        )
        log.info(
            "room %s created by %s (capacity %d, private %s)",
            room["id"],
            username,
            capacity,
            private,
        )
        return room

    def list_rooms(
        self, username: str, after: tuple[object, ...] | None, limit: int
    ) -> ListPage[dict[str, object]]:
        return self._db.run(store.list_rooms, username, after, limit)

    def get_room(self, username: str, room_id: str) -> dict[str, object]:
        room, names = self._db.run(store.get_room, room_id, username)
        return self._with_counts(room, names)

    def _with_counts(self, room: dict[str, object], names: list[str]) -> dict[str, object]:
        online = sum(1 for n in names if self.presence.is_online(n))
        return {**room, "member_count": len(names), "online_count": online}

    def delete_room(self, username: str, room_id: str) -> None:
        self._db.run(store.delete_room, room_id, username)
        self.backplane.emit({"k": "deleted", "r": room_id})
        log.info("room %s deleted by %s", room_id, username)

    def join(self, username: str, room_id: str) -> dict[str, object]:
        room, names, new = self._db.run(store.join_room, room_id, username, self._clock())
        if new:
            self.backplane.emit({"k": "joined", "r": room_id, "u": username})
            log.info("%s joined room %s", username, room_id)
        return self._with_counts(room, names)

    def leave(self, username: str, room_id: str) -> None:
        self._db.run(store.leave_room, room_id, username)
        self.backplane.emit({"k": "left", "r": room_id, "u": username})
        log.info("%s left room %s", username, room_id)

    def members(
        self, username: str, room_id: str, after: tuple[object, ...] | None, limit: int
    ) -> ListPage[dict[str, object]]:
        page = self._db.run(store.member_page, room_id, username, after, limit)
        items = [{"username": n, "status": self.presence.status(n)} for n in page.items]
        return ListPage(items, page.next_key)

    def invite(self, username: str, room_id: str, invitee: object) -> str:
        if not isinstance(invitee, str) or not invitee:
            raise bad_request("Send a JSON object with a string field username.")
        if not USERNAME_RE.fullmatch(invitee):
            raise not_found("user_not_found", "There is no user by that name.")
        return self._db.run(store.invite, room_id, username, invitee)

    def history(
        self, username: str, room_id: str, before: int | None, after: int | None, limit: int | None
    ) -> store.Page:
        s = self._settings
        limit = s.HISTORY_PAGE_SIZE if limit is None else limit
        if not 1 <= limit <= s.HISTORY_MAX_PAGE_SIZE:
            raise bad_request(f"limit is from 1 to {s.HISTORY_MAX_PAGE_SIZE}.")
        for name, value in (("before", before), ("after", after)):
            if value is not None and value < 0:
                raise bad_request(f"{name} is a sequence number, 0 or more.")
        return self._db.run(store.read_page, room_id, username, before, after, limit)

    def post(
        self, username: str, room_id: str, body: object, client_msg_id: object
    ) -> tuple[dict[str, object], bool]:
        """Store a message sent over REST; return (message, whether it was a retry)."""
        body = check_body(body, self._settings.MAX_MESSAGE_CHARS)
        if client_msg_id is not None:
            client_msg_id = check_client_msg_id(client_msg_id)
        self._check_rate(username)
        stored = self.writer.store(
            store.Draft(room_id, username, body, client_msg_id, self._clock())
        )
        if stored.error is not None:
            raise stored.error
        assert stored.message is not None
        return stored.message, stored.duplicate

    def _check_rate(self, username: str, **echo: object) -> None:
        wait = self.send_limits.acquire(username, self._clock())
        if wait > 0:
            raise rate_limited(wait).with_extra(**echo)

    # ---- live delivery ----------------------------------------------------

    def _publish_messages(self, messages: list[dict[str, object]]) -> None:
        """Runs on the writer greenlet in commit order: encode each message once, for every
        local subscriber and every other worker."""
        items: Items = [
            (m["room"], m["seq"], text_frame({"type": "message", **m}))  # type: ignore[misc]
            for m in messages
        ]
        self.fanout.feed(items)
        self.backplane.publish_messages(items)

    def _fetch_frames(
        self, room_id: str, after: int, before: int | None, limit: int
    ) -> list[tuple[int, bytes]]:
        """Stored messages a feed missed, as frames (chat.fanout reads them to close gaps)."""
        rows = self._db.run(store.messages_between, room_id, after, before, limit)
        return [(m["seq"], text_frame({"type": "message", **m})) for m in rows]  # type: ignore[misc]

    # ---- the backplane: what happened on any worker, delivered to this one's connections

    def on_messages(self, items: Items) -> None:
        """Another worker's stored messages."""
        self.fanout.feed(items)

    def on_event(self, origin: str, event: dict[str, object]) -> None:
        """An event from any worker, this one included."""
        kind = event["k"]
        if kind in PRESENCE_EVENTS:
            self.presence.on_event(origin, event)
            return
        room = event.get("r")
        user = event.get("u")
        if kind == "joined":
            self._notify_room(room, {"type": "member_joined", "room": room, "user": user})  # type: ignore[arg-type]
        elif kind == "left":
            self._notify_room(room, {"type": "member_left", "room": room, "user": user})  # type: ignore[arg-type]
            for conn in self.registry.unsubscribe_user(room, user):  # type: ignore[arg-type]
                conn.delivered.pop(room, None)  # type: ignore[arg-type]
        elif kind == "deleted":
            frame = text_frame({"type": "room_deleted", "room": room})
            self.fanout.drop(room)  # type: ignore[arg-type]
            for conn in self.registry.drop_room(room):  # type: ignore[arg-type]
                conn.delivered.pop(room, None)  # type: ignore[arg-type]
                conn.push(frame)
        elif kind == "typing":
            frame = text_frame({"type": "typing", "room": room, "user": user})
            for other in self.registry.subscribers(room):  # type: ignore[arg-type]
                if other.username != user:
                    other.push(frame)
        elif kind == "logout":
            reason = str(event.get("why") or "Logged out.")
            for conn in self.registry.connections_of_session(str(event.get("s"))):
                conn.send(error_frame(ChatError(401, "unauthorized", reason)))
                conn.close(CLOSE_UNAUTHORIZED, reason)
        else:
            log.warning("ignored a backplane event of unknown kind %r from %s", kind, origin)

    def connected(self) -> None:
        """The backplane (re)subscribed: whatever was published meanwhile is read from the database."""
        self.fanout.resync()
        self.presence.connected()

    def _notify_room(self, room_id: str, obj: dict[str, object]) -> None:
        frame = text_frame(obj)
        for conn in self.registry.subscribers(room_id):
            conn.push(frame)

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
            self.presence.came_online(username)
        log.info("connected %s (%d connections)", username, len(self.registry))

    def disconnect(self, conn: Connection) -> None:
        if conn.username is None or self.registry.owner(conn) is None:
            return
        session_still_live = len(self.registry.connections_of_session(conn.session or "")) > 1
        if self.registry.remove(conn):
            self.presence.went_offline(conn.username)
        if not session_still_live and conn.session:
            self.presence.session_ended(conn.session)
        log.info("disconnected %s (%d connections)", conn.username, len(self.registry))

    def ws_join(self, conn: Connection, room_id: str, since: int | None) -> None:
        username = conn.username
        assert username is not None
        self.join(username, room_id)
        # Subscribe before reading history, and hold live messages back until `joined`
        # is queued: then nothing falls between history and live, and deliver() drops repeats.
        conn.pending[room_id] = []
        self.registry.subscribe(room_id, conn)
        self.fanout.watch(room_id)
        try:
            page, truncated, names = self._db.run(self._replay, room_id, username, since)
            self.fanout.baseline(room_id, page.last_seq)
            last = self._catch_up(conn, room_id, page)
        except BaseException:
            conn.pending.pop(room_id, None)
            self.registry.unsubscribe(room_id, conn)
            raise
        if last > page.last_seq:
            kept = fit_bytes(page.messages, self._settings.REPLAY_MAX_BYTES)
            truncated = truncated or len(kept) < len(page.messages)
            page.messages = kept
        held = conn.pending.pop(room_id)
        conn.delivered[room_id] = last
        conn.send(
            {
                "type": "joined",
                "room": room_id,
                "last_seq": last,
                "history": page.messages,
                "members": self._member_sample(names),
                "member_count": len(names),
                "truncated": truncated,
            }
        )
        for seq, frame in held:
            conn.deliver(room_id, seq, frame, cork=True)
        conn.flush()

    def _catch_up(self, conn: Connection, room_id: str, page: store.Page) -> int:
        """Add to the history what this worker passed on to the room since the read began.

        Usually the held-back list already starts right after the history. It may not
        when another join set the room's position past this read (two first joins at
        once); then the messages in between are read again, so none falls between.
        """
        last = page.last_seq
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
            page.messages.extend(extra)
            last = extra[-1]["seq"]  # type: ignore[assignment]

    def _member_sample(self, names: list[str]) -> list[dict[str, object]]:
        """Up to JOINED_MAX_MEMBERS members, online ones first: a joined frame must stay small."""
        online = [n for n in names if self.presence.is_online(n)]
        offline = [n for n in names if not self.presence.is_online(n)]
        picked = (online + offline)[: self._settings.JOINED_MAX_MEMBERS]
        return [{"username": n, "status": self.presence.status(n)} for n in picked]

    def _replay(
        self, db_conn: object, room_id: str, username: str, since: int | None
    ) -> tuple[store.Page, bool, list[str]]:
        s = self._settings
        limit = s.HISTORY_PAGE_SIZE if since is None else s.REPLAY_MAX_MESSAGES
        page = store.read_page(db_conn, room_id, username, None, None, limit)  # type: ignore[arg-type]
        wanted = page.messages if since is None else [m for m in page.messages if m["seq"] > since]  # type: ignore[operator]
        page.messages = fit_bytes(wanted, s.REPLAY_MAX_BYTES)
        truncated = False
        if since is not None and since < page.last_seq:
            # Older messages the client asked for are gone (retention) or left out (caps).
            first_sent = page.messages[0]["seq"] if page.messages else page.last_seq + 1
            truncated = since + 1 < first_sent  # type: ignore[operator]
        names = store.member_names(db_conn, room_id, username)  # type: ignore[arg-type]
        return page, truncated, names

    def ws_leave(self, conn: Connection, room_id: str) -> None:
        assert conn.username is not None
        self.leave(conn.username, room_id)
        conn.send({"type": "left", "room": room_id})

    def ws_send(self, conn: Connection, room_id: str, body: str, client_msg_id: str) -> None:
        """Queue a message; the ack (or error) is sent from the writer after the commit."""
        echo = {"room": room_id, "client_msg_id": client_msg_id}
        if not self.registry.is_subscribed(room_id, conn):
            raise not_joined(room_id, **echo)
        assert conn.username is not None
        self._check_rate(conn.username, **echo)

        def done(stored: store.Stored) -> None:
            if stored.error is not None:
                conn.send(error_frame(stored.error.with_extra(**echo)))
            else:
                assert stored.message is not None
                seq: int = stored.message["seq"]  # type: ignore[assignment]
                ack = {"type": "ack", "room": room_id, "client_msg_id": client_msg_id, "seq": seq}
                # The ack follows the message frame, even when an earlier message from
                # another worker holds this one back for a moment.
                self.fanout.when_passed(room_id, seq, lambda: conn.send(ack))

        self.writer.submit(
            store.Draft(room_id, conn.username, body, client_msg_id, self._clock()), done
        )

    def ws_typing(self, conn: Connection, room_id: str) -> None:
        if not self.registry.is_subscribed(room_id, conn):
            raise not_joined(room_id, room=room_id)
        assert conn.username is not None
        now = self._clock()
        key = (conn.username, room_id)
        if now - self._typing.get(key, 0.0) < self._settings.TYPING_INTERVAL_S:
            return  # typing is a hint: extra ones are dropped, not refused
        self._typing[key] = now
        self.backplane.emit({"k": "typing", "r": room_id, "u": conn.username})

    def prune(self, now: float) -> None:
        """Forget rate-limit and typing state that no longer matters."""
        self.send_limits.prune(now)
        self.create_limits.prune(now)
        self.fanout.prune()
        horizon = now - self._settings.TYPING_INTERVAL_S
        for key in [k for k, t in self._typing.items() if t < horizon]:
            del self._typing[key]

    def close_session(self, session: str, reason: str) -> None:
        """Close the session's sockets with 4001 on every worker (logout)."""
        self.backplane.emit({"k": "logout", "s": session, "why": reason})

    def close_all(self, code: int, reason: str) -> list[Connection]:
        conns = self.registry.connections()
        for conn in conns:
            conn.close(code, reason)
        return conns
