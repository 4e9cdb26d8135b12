"""Presence state: online while any worker holds a live connection of the user; last_seen in the database.

Each worker announces its own users' comings and goings on the backplane and keeps
an OnlineMap of every worker's users from what the others announce. Every change
of a user's status is announced on this worker as a PresenceChanged event (chat
pushes `presence` frames to the user's co-members from it). A worker that stops sending heartbeats (killed, cut off) is
forgotten after WORKER_TIMEOUT_S, and its users go offline unless another worker
holds them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
import gevent.queue

from core.backplane import LocalBackplane
from core.clock import Clock
from core.database import Database
from core.events import (
    Goodbye,
    Heartbeat,
    Hello,
    PresenceChanged,
    Resubscribed,
    StateWanted,
    Tick,
    UserOffline,
    UserOnline,
    WorkerState,
)
from core.paging import ListPage
from core.wire import iso
from presence import store
from presence.cluster import OnlineMap
from presence.rules import status

log = logging.getLogger(__name__)


class Presence:
    """The cluster-wide online map; writes last_seen; announces each change on this worker."""

    def __init__(
        self,
        db: Database,
        backplane: LocalBackplane,
        worker_timeout_s: float,
        clock: Clock,
    ) -> None:
        self._db = db
        self._backplane = backplane
        self._worker_timeout_s = worker_timeout_s
        self._clock = clock
        self.online = OnlineMap(backplane.worker_id)
        self._changes: gevent.queue.Queue[tuple[str, str, bool]] = gevent.queue.Queue()
        self._notifier: gevent.Greenlet[..., None] | None = None

    def subscribe(self) -> None:
        """Take the presence events from every worker, this one included."""
        table: dict[type[Any], Callable[[str, Any], None]] = {
            UserOnline: self._on_online,
            UserOffline: self._on_offline,
            Heartbeat: self._on_heartbeat,
            Hello: self._on_hello,
            StateWanted: self._on_state_wanted,
            WorkerState: self._on_state,
            Goodbye: self._on_goodbye,
            Resubscribed: self._on_resubscribed,
            Tick: self._on_tick,
        }
        for kind, handler in table.items():
            self._backplane.subscribe(kind, handler)

    def is_online(self, username: str) -> bool:
        return self.online.is_online(username)

    def status(self, username: str) -> str:
        return status(self.is_online(username))

    # ---- events from every worker -----------------------------------------------------

    def _heard(self, origin: str) -> None:
        self.online.heard(origin, self._clock.monotonic())

    def _on_online(self, origin: str, event: UserOnline) -> None:
        """The user's first connection on `origin` opened."""
        # The map changes first, before anything yields: whoever got `ready` and asks at
        # once must already see the user online.
        self._heard(origin)
        if self.online.add(origin, event.user):
            self._changed(event.user, "online")
        if origin == self.online.me:
            self._db.run(store.set_last_seen, event.user, self._clock.time())

    def _on_offline(self, origin: str, event: UserOffline) -> None:
        """The user's last connection on `origin` closed."""
        self._heard(origin)
        if self.online.remove(origin, event.user):
            self._changed(event.user, "offline")
        if origin == self.online.me:
            self._db.run(store.set_last_seen, event.user, self._clock.time())

    def _on_heartbeat(self, origin: str, event: Heartbeat) -> None:
        self._heard(origin)
        # Events from one worker arrive in order, so a count that differs means we missed some.
        if event.count != self.online.count(origin):
            self._backplane.publish(StateWanted(origin))

    def _on_hello(self, origin: str, event: Hello) -> None:
        self._heard(origin)
        self._publish_state()

    def _on_state_wanted(self, origin: str, event: StateWanted) -> None:
        self._heard(origin)
        if event.worker == self.online.me:
            self._publish_state()

    def _on_state(self, origin: str, event: WorkerState) -> None:
        self._heard(origin)
        came, went = self.online.replace(origin, list(event.users))
        for user in came:
            self._changed(user, "online")
        for user in went:
            self._changed(user, "offline")

    def _on_goodbye(self, origin: str, event: Goodbye) -> None:
        self._heard(origin)
        for user in self.online.forget(origin):
            self._changed(user, "offline", set_last_seen=True)

    def _on_resubscribed(self, origin: str, event: Resubscribed) -> None:
        """The backplane (re)subscribed: announce ourselves and ask everyone for their users."""
        # Nobody could be heard while we were cut off; judge peers from now on.
        self.online.hear_all(self._clock.monotonic())
        self._publish_state()
        self._backplane.publish(Hello())

    def _on_tick(self, origin: str, event: Tick) -> None:
        """Every heartbeat: tell the others we live, and forget the peers that went silent."""
        self._backplane.publish(Heartbeat(self.online.count(self.online.me)))
        if not self._backplane.connected:
            return  # we hear nobody right now: that says nothing about them
        for worker, held, went in self.online.expire(event.now, self._worker_timeout_s):
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
        """This worker is shutting down: the others drop our users at once."""
        self._backplane.publish(Goodbye())

    def _publish_state(self) -> None:
        self._backplane.publish(WorkerState(tuple(self.online.users_of(self.online.me))))

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
                    self._db.run(store.set_last_seen, username, self._clock.time())
                self._backplane.local(PresenceChanged(username, state))
                log.info("%s is %s", username, state)
            except Exception:
                log.exception("pushing presence of %s failed", username)

    # ---- reads --------------------------------------------------------------------

    def describe(self, username: str, last_seen: float | None) -> dict[str, object]:
        online = self.is_online(username)
        seen = self._clock.time() if online else last_seen
        return {
            "username": username,
            "status": status(online),
            "last_seen": iso(seen) if seen is not None else None,
        }

    def users(self, after: tuple[object, ...] | None, limit: int) -> ListPage[dict[str, object]]:
        page = self._db.run(store.list_users, after, limit)
        return ListPage(
            [self.describe(r["username"], r["last_seen"]) for r in page.items], page.next_key
        )

    def user(self, username: str) -> dict[str, object] | None:
        row = self._db.run(store.find_user, username)
        return None if row is None else self.describe(row["username"], row["last_seen"])
