"""Stored messages as ready-made frames, for chat.fanout to close gaps and catch up from the database."""

from __future__ import annotations

from chat import store
from chat.protocol import message_frame
from core.database import Database


class StoredFrames:
    """fetch(room, after, before, limit) -> [(seq, frame)], oldest first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def __call__(
        self, room_id: str, after: int, before: int | None, limit: int
    ) -> list[tuple[int, bytes]]:
        rows = self._db.run(store.messages_between, room_id, after, before, limit)
        return [(m.seq, message_frame(m)) for m in rows]
