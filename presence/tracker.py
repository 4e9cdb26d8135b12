"""Presence state: online while a user has a live connection, last_seen kept in the database.

Changes are pushed as `presence` frames to everyone who shares a room with the user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from auth import store as user_store
from chat import store as room_store
from chat.database import Database
from chat.protocol import iso, text_frame
from chat.rooms import RoomRegistry
from presence.rules import status

log = logging.getLogger(__name__)


class Presence:
    """Reads online state from the live registry; writes last_seen; notifies co-members."""

    def __init__(
        self,
        db: Database,
        registry: RoomRegistry[Any],
        clock: Callable[[], float] = time.time,
        on_session_ended: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self._clock = clock
        self._on_session_ended = on_session_ended

    def status(self, username: str) -> str:
        return status(self._registry.is_online(username))

    def came_online(self, username: str) -> None:
        self._db.run(user_store.set_last_seen, username, self._clock())
        self._notify(username, "online")
        log.info("%s is online", username)

    def went_offline(self, username: str) -> None:
        self._db.run(user_store.set_last_seen, username, self._clock())
        self._notify(username, "offline")
        log.info("%s is offline", username)

    def session_ended(self, session: str) -> None:
        """The session's last connection closed: its idle clock starts now."""
        if self._on_session_ended is not None:
            self._on_session_ended(session)

    def _notify(self, username: str, state: str) -> None:
        frame = text_frame({"type": "presence", "user": username, "status": state})
        for other in self._db.run(room_store.co_members, username):
            for conn in self._registry.connections_of(other):
                conn.push(frame)

    def describe(self, username: str, last_seen: float | None) -> dict[str, object]:
        online = self._registry.is_online(username)
        seen = self._clock() if online else last_seen
        return {
            "username": username,
            "status": status(online),
            "last_seen": iso(seen) if seen is not None else None,
        }

    def users(self) -> list[dict[str, object]]:
        return [
            self.describe(r["username"], r["last_seen"])
            for r in self._db.run(user_store.list_users)
        ]

    def user(self, username: str) -> dict[str, object] | None:
        row = self._db.run(user_store.find_user, username)
        return None if row is None else self.describe(row["username"], row["last_seen"])
