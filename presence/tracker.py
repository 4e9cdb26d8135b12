"""Presence state: online while any worker holds a live connection of the user; last_seen in the database.

Each worker announces its own users' comings and goings on the backplane and keeps
an OnlineMap of every worker's users from what the others announce. Every worker
pushes `presence` frames to its own connections of users who share a room with
the one who changed. A worker that stops sending heartbeats (killed, cut off) is
forgotten after WORKER_TIMEOUT_S, and its users go offline unless another worker
holds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue

from auth import store as user_store
from chat import store as room_store
from chat.protocol import iso, text_frame
from chat.rooms import RoomRegistry
from core.backplane import LocalBackplane
from core.database import Database
from core.paging import ListPage
from presence.cluster import OnlineMap
from presence.rules import status

log = logging.getLogger(__name__)

PRESENCE_EVENTS = frozenset({"online", "offline", "hb", "hello", "state", "want", "bye"})


class Presence:
    """The cluster-wide online map; writes last_seen; notifies co-members on this worker."""

    def __init__(
        self,
        db: Database,
        registry: RoomRegistry[Any],
        backplane: LocalBackplane,
        worker_timeout_s: float,
        clock: Callable[[], float] = time.time,
        on_session_ended: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._registry = registry
        self._backplane = backplane
        self._worker_timeout_s = worker_timeout_s
        self._clock = clock
        self._on_session_ended = on_session_ended
        self.online = OnlineMap(backplane.worker_id)
        self._changes: gevent.queue.Queue[tuple[str, str, bool]] = gevent.queue.Queue()
        self._notifier: gevent.Greenlet | None = None

    def is_online(self, username: str) -> bool:
        return self.online.is_online(username)

    def status(self, username: str) -> str:
        return status(self.is_online(username))

    # ---- this worker's own users -----------------------------------------------

    def came_online(self, username: str) -> None:
        """The user's first connection on this worker opened."""
        # The map changes first, before anything yields: whoever got `ready` and asks at
        # once must already see the user online.
        self._backplane.emit({"k": "online", "u": username})
        self._db.run(user_store.set_last_seen, username, self._clock())

    def went_offline(self, username: str) -> None:
        """The user's last connection on this worker closed."""
        self._backplane.emit({"k": "offline", "u": username})
        self._db.run(user_store.set_last_seen, username, self._clock())

    def session_ended(self, session: str) -> None:
        """The session's last connection closed: its idle clock starts now."""
        if self._on_session_ended is not None:
            self._on_session_ended(session)

    # ---- the backplane ------------------------------------------------------------

    def on_event(self, origin: str, event: dict[str, Any]) -> None:
        """An event from any worker (this one included)."""
        kind = event["k"]
        now = time.monotonic()
        self.online.heard(origin, now)
        me = self.online.me
        if kind == "online" and isinstance(event.get("u"), str):
            if self.online.add(origin, event["u"]):
                self._changed(event["u"], "online")
        elif kind == "offline" and isinstance(event.get("u"), str):
            if self.online.remove(origin, event["u"]):
                self._changed(event["u"], "offline")
        elif kind == "hb":
            # Events from one worker arrive in order, so a count that differs means we missed some.
            if event.get("n") != self.online.count(origin):
                self._backplane.publish({"k": "want", "w": origin})
        elif kind == "hello" or (kind == "want" and event.get("w") == me):
            self._publish_state()
        elif kind == "state" and isinstance(event.get("u"), list):
            came, went = self.online.replace(origin, [u for u in event["u"] if isinstance(u, str)])
            for user in came:
                self._changed(user, "online")
            for user in went:
                self._changed(user, "offline")
        elif kind == "bye":
            for user in self.online.forget(origin):
                self._changed(user, "offline", set_last_seen=True)

    def connected(self) -> None:
        """The backplane (re)subscribed: announce ourselves and ask everyone for their users."""
        # Nobody could be heard while we were cut off; judge peers from now on.
        self.online.hear_all(time.monotonic())
        self._publish_state()
        self._backplane.publish({"k": "hello"})

    def tick(self, now: float) -> None:
        """Every heartbeat: tell the others we live, and forget the peers that went silent."""
        self._backplane.publish({"k": "hb", "n": self.online.count(self.online.me)})
        if not self._backplane.connected:
            return  # we hear nobody right now: that says nothing about them
        for worker, held, went in self.online.expire(now, self._worker_timeout_s):
            log.warning(
                "worker %s silent for over %.0f s: presumed dead; %d of its %d users now offline",
                worker,
                self._worker_timeout_s,
                len(went),
                held,
            )
            for user in went:
                self._changed(user, "offline", set_last_seen=True)

    def goodbye(self) -> None:
        self._backplane.publish({"k": "bye"})

    def _publish_state(self) -> None:
        self._backplane.publish({"k": "state", "u": self.online.users_of(self.online.me)})

    def _changed(self, username: str, state: str, set_last_seen: bool = False) -> None:
        # The database work happens on the notifier greenlet, in order: the backplane's
        # receiving greenlet must never wait on it.
        self._changes.put((username, state, set_last_seen))
        if self._notifier is None:
            self._notifier = gevent.spawn(self._notify_loop)

    def _notify_loop(self) -> None:
        while True:
            username, state, set_last_seen = self._changes.get()
            try:
                if set_last_seen:
                    self._db.run(user_store.set_last_seen, username, self._clock())
                self._notify(username, state)
                log.info("%s is %s", username, state)
            except Exception:
                log.exception("pushing presence of %s failed", username)

    def _notify(self, username: str, state: str) -> None:
        frame = text_frame({"type": "presence", "user": username, "status": state})
        for other in self._db.run(room_store.co_members, username):
            for conn in self._registry.connections_of(other):
                conn.push(frame)

    # ---- reads --------------------------------------------------------------------

    def describe(self, username: str, last_seen: float | None) -> dict[str, object]:
        online = self.is_online(username)
        seen = self._clock() if online else last_seen
        return {
            "username": username,
            "status": status(online),
            "last_seen": iso(seen) if seen is not None else None,
        }

    def users(self, after: tuple[object, ...] | None, limit: int) -> ListPage[dict[str, object]]:
        page = self._db.run(user_store.list_users, after, limit)
        return ListPage(
            [self.describe(r["username"], r["last_seen"]) for r in page.items], page.next_key
        )

    def user(self, username: str) -> dict[str, object] | None:
        row = self._db.run(user_store.find_user, username)
        return None if row is None else self.describe(row["username"], row["last_seen"])
