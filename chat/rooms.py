"""The live room map: which connections are open, for whom, and which rooms each one follows.

Plain Python with no I/O. Under gevent, code that does no I/O never yields, so
these dicts need no lock: each method runs to completion before another greenlet
can touch them. Callers that send while iterating take a copy first
(`subscribers` returns one), because every send is a yield point.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


class RoomRegistry(Generic[C]):
    """Connections by room, by user and by session."""

    def __init__(self) -> None:
        self._rooms: dict[
            str, dict[C, None]
        ] = {}  # room id -> subscribed connections, in join order
        self._follows: dict[C, set[str]] = {}  # connection -> room ids it follows
        self._owner: dict[C, tuple[str, str]] = {}  # connection -> (username, session token hash)
        self._users: dict[str, set[C]] = {}  # username -> live connections
        self._sessions: dict[str, set[C]] = {}  # session token hash -> live connections

    def add(self, conn: C, username: str, session: str) -> bool:
        """Register a live connection; True when it is the user's first (they came online)."""
        self._owner[conn] = (username, session)
        self._follows[conn] = set()
        self._sessions.setdefault(session, set()).add(conn)
        conns = self._users.setdefault(username, set())
        conns.add(conn)
        return len(conns) == 1

    def remove(self, conn: C) -> bool:
        """Forget a connection and its subscriptions; True when it was the user's last one."""
        owner = self._owner.pop(conn, None)
        if owner is None:
            return False
        for room in self._follows.pop(conn, set()):
            self._discard(room, conn)
        username, session = owner
        self._pop_from(self._sessions, session, conn)
        return self._pop_from(self._users, username, conn)

    @staticmethod
    def _pop_from(index: dict[str, set[C]], key: str, conn: C) -> bool:
        conns = index.get(key)
        if conns is None:
            return False
        conns.discard(conn)
        if not conns:
            del index[key]
            return True
        return False

    def _discard(self, room: str, conn: C) -> None:
        subs = self._rooms.get(room)
        if subs is not None:
            subs.pop(conn, None)
            if not subs:
                del self._rooms[room]

    def subscribe(self, room: str, conn: C) -> None:
        if conn not in self._owner:
            raise KeyError("subscribe of a connection that is not registered")
        self._rooms.setdefault(room, {})[conn] = None
        self._follows[conn].add(room)

    def unsubscribe(self, room: str, conn: C) -> None:
        self._discard(room, conn)
        follows = self._follows.get(conn)
        if follows is not None:
            follows.discard(room)

    def unsubscribe_user(self, room: str, username: str) -> list[C]:
        """Drop every connection of the user from the room; return those that were in it."""
        dropped = [c for c in self._users.get(username, ()) if c in self._rooms.get(room, {})]
        for conn in dropped:
            self.unsubscribe(room, conn)
        return dropped

    def drop_room(self, room: str) -> list[C]:
        """Remove a room entirely; return the connections that followed it."""
        subs = list(self._rooms.pop(room, {}))
        for conn in subs:
            self._follows[conn].discard(room)
        return subs

    def has_subscribers(self, room: str) -> bool:
        return room in self._rooms

    def is_subscribed(self, room: str, conn: C) -> bool:
        return conn in self._rooms.get(room, {})

    def subscribers(self, room: str) -> list[C]:
        """A copy, safe to iterate while sending."""
        return list(self._rooms.get(room, ()))

    def follows(self, conn: C) -> set[str]:
        return set(self._follows.get(conn, ()))

    def owner(self, conn: C) -> tuple[str, str] | None:
        return self._owner.get(conn)

    def is_online(self, username: str) -> bool:
        return username in self._users

    def online_users(self) -> set[str]:
        return set(self._users)

    def connections_of(self, username: str) -> list[C]:
        return list(self._users.get(username, ()))

    def connections_of_session(self, session: str) -> list[C]:
        return list(self._sessions.get(session, ()))

    def live_sessions(self) -> set[str]:
        return set(self._sessions)

    def connections(self) -> list[C]:
        return list(self._owner)

    def sizes(self) -> tuple[int, int]:
        """(users with a live connection, rooms with a subscriber): for the metrics."""
        return len(self._users), len(self._rooms)

    def __len__(self) -> int:
        return len(self._owner)
