"""A rig for chat.fanout's unit tests: fake connections, registry and database over a FakeClock.

Nothing here sleeps or spawns: timers are recorded and fired by the test, and
fetch reads a dict. Frames are b"room#seq", so every delivery can be checked.
"""

from __future__ import annotations

from collections.abc import Callable

from chat.fanout import Fanout
from tests.support.fakes import FakeClock

GAP_WAIT_S = 0.5


def frame(room: str, seq: int) -> bytes:
    return f"{room}#{seq}".encode()


def msg(room: str, seq: int) -> tuple[str, int, bytes]:
    return room, seq, frame(room, seq)


class FakeConn:
    """Records every delivery; a corked frame counts as queued unless `accept` is False."""

    def __init__(self, name: str, accept: bool = True) -> None:
        self.name = name
        self.accept = accept
        self.got: list[tuple[str, int, bytes, bool]] = []
        self.flushes = 0
        self.log: list[str] | None = None  # shared event log, when a test wants the order

    def deliver(self, room: str, seq: int, frame: bytes, cork: bool) -> bool:
        self.got.append((room, seq, frame, cork))
        if self.log is not None:
            self.log.append(f"deliver {self.name} {room} {seq}")
        return cork and self.accept

    def flush(self) -> None:
        self.flushes += 1
        if self.log is not None:
            self.log.append(f"flush {self.name}")

    def seqs(self, room: str) -> list[int]:
        return [seq for r, seq, _, _ in self.got if r == room]

    def __repr__(self) -> str:
        return self.name


class FakeRegistry:
    """Room -> subscribed connections, as much of chat.rooms.RoomRegistry as Fanout uses."""

    def __init__(self) -> None:
        self.rooms: dict[str, list[FakeConn]] = {}

    def subscribe(self, room: str, conn: FakeConn) -> None:
        self.rooms.setdefault(room, []).append(conn)

    def clear(self, room: str) -> None:
        self.rooms.pop(room, None)

    def has_subscribers(self, room: str) -> bool:
        return bool(self.rooms.get(room))

    def subscribers(self, room: str) -> list[FakeConn]:
        return list(self.rooms.get(room, ()))


class FakeDatabase:
    """Stored messages per room; fetch() behaves like store.messages_between."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[int, bytes]] = {}
        self.calls: list[tuple[str, int, int | None, int]] = []
        self.failures = 0  # the next this many fetches raise
        self.during_fetch: Callable[[], None] | None = None  # runs inside the next fetch

    def store(self, room: str, *seqs: int) -> None:
        for seq in seqs:
            self.rooms.setdefault(room, {})[seq] = frame(room, seq)

    def fetch(
        self, room: str, after: int, before: int | None, limit: int
    ) -> list[tuple[int, bytes]]:
        self.calls.append((room, after, before, limit))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        if self.during_fetch is not None:
            hook, self.during_fetch = self.during_fetch, None
            hook()
        upper = before if before is not None else 2**62
        stored = self.rooms.get(room, {})
        seqs = sorted(s for s in stored if after < s < upper)[:limit]
        return [(s, stored[s]) for s in seqs]


class Rig:
    """A Fanout wired to the fakes."""

    def __init__(self) -> None:
        self.registry = FakeRegistry()
        self.clock = FakeClock()
        self.timers = self.clock  # the clock records the timers too
        self.db = FakeDatabase()
        self.fanout = Fanout(self.registry, self.db.fetch, GAP_WAIT_S, self.clock)

    def join(self, room: str, last_seq: int, *conns: FakeConn) -> None:
        """Subscribe conns the way a join does: watch, then the history read sets the baseline."""
        for conn in conns:
            self.registry.subscribe(room, conn)
        self.fanout.watch(room)
        self.fanout.baseline(room, last_seq)

    def feed(self, room: str, *seqs: int) -> None:
        self.fanout.feed([msg(room, s) for s in seqs])


class Calls:
    """Stands in for a sender's connection: each ack it is sent runs fn."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn

    def send(self, obj: dict[str, object]) -> bool:
        self.fn()
        return True


def when_passed(rig: Rig, room: str, seq: int, fn: Callable[[], object]) -> None:
    rig.fanout.when_passed(room, seq, Calls(fn), {"type": "ack"})
