"""The room rules behind the REST routes: create, list, join, leave, invite, delete, history, post, read.

Routes parse input and call in here; this module owns the rules and emits what
happened (MemberJoined, MemberLeft, RoomDeleted, ReadMarked) on the backplane, where live
delivery (chat/live.py) picks it up on every worker. SQL lives in chat.store.
"""

from __future__ import annotations

import logging

from chat import store
from chat.errors import invalid_room, user_not_found
from chat.models import Draft, ListedRoom, Message, ReadMarker, Room, RoomView
from chat.protocol import check_body, check_client_msg_id
from chat.writer import MessageWriter
from core.backplane import LocalBackplane
from core.clock import Clock
from core.database import Database
from core.errors import bad_request, rate_limited
from core.events import MemberJoined, MemberLeft, ReadMarked, RoomDeleted
from core.paging import ListPage
from core.ratelimit import RateLimiter
from core.settings import Settings
from core.status import Statuses
from core.wire import USERNAME_RE, is_utf8

log = logging.getLogger(__name__)


class Rooms:
    """Rooms, membership and stored messages, as the REST API sees them."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        backplane: LocalBackplane,
        writer: MessageWriter,
        statuses: Statuses,
        send_limits: RateLimiter,
        create_limits: RateLimiter,
        clock: Clock,
    ) -> None:
        self._db = db
        self._settings = settings
        self._backplane = backplane
        self._writer = writer
        self._statuses = statuses
        self.send_limits = send_limits
        self.create_limits = create_limits  # rooms created per user
        self._clock = clock

    def create_room(self, username: str, name: object, capacity: object, private: object) -> Room:
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
        wait = self.create_limits.acquire(username, self._clock.time())
        if wait > 0:
            raise rate_limited(wait)
        room = self._db.run(
            store.create_room,
            username,
            name.strip(),
            capacity,
            private,
            self._clock.time(),
            s.MAX_ROOMS_OWNED,
        )
        log.info(
            "room %s created by %s (capacity %d, private %s)",
            room.id,
            username,
            capacity,
            private,
        )
        return room

    def list_rooms(
        self, username: str, after: tuple[object, ...] | None, limit: int
    ) -> ListPage[ListedRoom]:
        return self._db.run(store.list_rooms, username, after, limit, self._settings.UNREAD_MAX)

    def get_room(self, username: str, room_id: str) -> RoomView:
        room, names, marker = self._db.run(
            store.get_room, room_id, username, self._settings.UNREAD_MAX
        )
        return self._view(room, names, marker)

    def _view(self, room: Room, names: list[str], marker: ReadMarker | None) -> RoomView:
        online = sum(1 for n in names if self._statuses.is_online(n))
        return RoomView(room, marker is not None, len(names), online, marker)

    def delete_room(self, username: str, room_id: str) -> None:
        self._db.run(store.delete_room, room_id, username)
        self._backplane.emit(RoomDeleted(room_id))
        log.info("room %s deleted by %s", room_id, username)

    def join(self, username: str, room_id: str) -> RoomView:
        room, names, marker, new = self._db.run(
            store.join_room, room_id, username, self._clock.time(), self._settings.UNREAD_MAX
        )
        if new:
            self._backplane.emit(MemberJoined(room_id, username))
            log.info("%s joined room %s", username, room_id)
        return self._view(room, names, marker)

    def leave(self, username: str, room_id: str) -> None:
        self._db.run(store.leave_room, room_id, username)
        self._backplane.emit(MemberLeft(room_id, username))
        log.info("%s left room %s", username, room_id)

    def members(
        self, username: str, room_id: str, after: tuple[object, ...] | None, limit: int
    ) -> ListPage[dict[str, object]]:
        page = self._db.run(store.member_page, room_id, username, after, limit)
        items: list[dict[str, object]] = [
            {"username": n, "status": self._statuses.status(n)} for n in page.items
        ]
        return ListPage(items, page.next_key)

    def mark_read(self, username: str, room_id: str, seq: object) -> tuple[ReadMarker, bool]:
        """Move the user's read marker; return it and whether it moved.

        When it moved, every connection of the user, on every worker, hears of it
        (ReadMarked), so two tabs or a tab and a terminal agree on what is unread.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise bad_request("Send a JSON object with seq, a sequence number, 0 or more.")
        marker, moved = self._db.run(
            store.mark_read, room_id, username, seq, self._settings.UNREAD_MAX
        )
        if moved:
            self._backplane.emit(ReadMarked(username, room_id, marker.last_read_seq, marker.unread))
        return marker, moved

    def invite(self, username: str, room_id: str, invitee: object) -> str:
        if not isinstance(invitee, str) or not invitee:
            raise bad_request("Send a JSON object with a string field username.")
        if not USERNAME_RE.fullmatch(invitee):
            raise user_not_found()
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
    ) -> tuple[Message, bool]:
        """Store a message sent over REST; return (message, whether it was a retry)."""
        body = check_body(body, self._settings.MAX_MESSAGE_CHARS)
        if client_msg_id is not None:
            client_msg_id = check_client_msg_id(client_msg_id)
        self.check_rate(username)
        stored = self._writer.store(
            Draft(room_id, username, body, client_msg_id, self._clock.time())
        )
        if stored.error is not None:
            raise stored.error
        assert stored.message is not None
        return stored.message, stored.duplicate

    def check_rate(self, username: str, **echo: object) -> None:
        """Refuse a send past SEND_RATE_PER_S (REST and WebSocket share the bucket)."""
        wait = self.send_limits.acquire(username, self._clock.time())
        if wait > 0:
            raise rate_limited(wait).with_extra(**echo)

    def prune(self) -> None:
        """Forget rate-limit state that no longer matters."""
        now = self._clock.time()
        self.send_limits.prune(now)
        self.create_limits.prune(now)
