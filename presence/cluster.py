"""Who is online across all workers: each worker's set of users with a live connection there.

Pure: no I/O, and the caller passes `now`. A user is online while any worker's set
holds them. Each worker keeps this map from the backplane's online/offline/state
events; a peer not heard from (its heartbeats) for longer than the worker timeout
is presumed dead, and its users count as offline unless another worker has them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class OnlineMap:
    """Users online per worker, with the time each peer was last heard from."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._workers: dict[str, set[str]] = {me: set()}
        self._heard: dict[str, float] = {}
        self._count: Counter[str] = Counter()  # user -> how many workers hold them

    def heard(self, worker: str, now: float) -> None:
        if worker != self.me:
            self._heard[worker] = now
            self._workers.setdefault(worker, set())

    def add(self, worker: str, user: str) -> bool:
        """The user is online on worker; True when they were offline everywhere before."""
        users = self._workers.setdefault(worker, set())
        if user in users:
            return False
        users.add(user)
        self._count[user] += 1
        return self._count[user] == 1

    def remove(self, worker: str, user: str) -> bool:
        """The user left worker; True when they are now offline everywhere."""
        users = self._workers.get(worker)
        if users is None or user not in users:
            return False
        users.discard(user)
        self._count[user] -= 1
        if self._count[user] <= 0:
            del self._count[user]
            return True
        return False

    def replace(self, worker: str, users: Iterable[str]) -> tuple[list[str], list[str]]:
        """A worker's full set (its state reply); returns (came online, went offline) everywhere."""
        new = set(users)
        old = self._workers.get(worker, set())
        went = [u for u in sorted(old - new) if self.remove(worker, u)]
        came = [u for u in sorted(new - old) if self.add(worker, u)]
        return came, went

    def forget(self, worker: str) -> list[str]:
        """A worker is gone; returns the users now offline everywhere."""
        if worker == self.me:
            return []
        users = sorted(self._workers.get(worker, ()))
        went = [u for u in users if self.remove(worker, u)]
        self._workers.pop(worker, None)
        self._heard.pop(worker, None)
        return went

    def expire(self, now: float, timeout: float) -> list[tuple[str, int, list[str]]]:
        """Forget peers silent for longer than timeout: (worker, users it held, users now offline)."""
        dead = [w for w, t in self._heard.items() if now - t > timeout]
        out = []
        for worker in dead:
            held = len(self._workers.get(worker, ()))
            out.append((worker, held, self.forget(worker)))
        return out

    def hear_all(self, now: float) -> None:
        """Count every known peer as heard now (after our own outage, before judging anyone)."""
        for worker in self._heard:
            self._heard[worker] = now

    def is_online(self, user: str) -> bool:
        return user in self._count

    def users_of(self, worker: str) -> list[str]:
        return sorted(self._workers.get(worker, ()))

    def count(self, worker: str) -> int:
        return len(self._workers.get(worker, ()))

    def peers(self) -> list[str]:
        return sorted(self._heard)
