"""The benchmark scenarios: fan-out at fixed rates, many rooms, idle connections, saturation.

Every message body is the sender's perf_counter_ns, so a receiver in this same
process computes latency without clock skew. Receivers check seq order, so loss
and duplicates are counted per member.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool

from bench.procstat import rss_kib
from bench.targets import Target
from bench.wsclient import MESSAGE, Conn

DRAIN_TIMEOUT_S = 10.0
# A one-room scenario's messages come from its first members in turn: one socket sending
# thousands of messages a second is not a client, and Greenroom's per-socket inbound
# budget (100 frames/s by default) would measure itself instead of the fan-out.
FANOUT_SENDERS = 32


class Receiver:
    """Counts what one member receives."""

    __slots__ = ("last", "count", "dups", "gaps", "latencies")

    def __init__(self, last: int = 0) -> None:
        self.last = last  # the room's seq before this run: the next message is last + 1
        self.count = 0
        self.dups = 0
        self.gaps = 0
        self.latencies: list[int] = []

    def on_text(self, payload: bytes) -> None:
        m = MESSAGE.search(payload)
        if m is None:
            return
        now = time.perf_counter_ns()
        seq = int(m.group(1))
        if seq <= self.last:
            self.dups += 1
            return
        if seq != self.last + 1:
            self.gaps += seq - self.last - 1
        self.last = seq
        self.count += 1
        self.latencies.append(now - int(m.group(2)))


@dataclasses.dataclass
class Room:
    id: str
    conns: list[Conn]
    receivers: list[Receiver]
    sent: int = 0  # messages sent to this room in earlier runs


@dataclasses.dataclass
class Result:
    server: str
    scenario: str
    offered_msgs_per_s: float
    members: int
    sent: int
    delivered: int
    expected: int
    seconds: float
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    duplicated: int
    out_of_order: int
    cpu_us_per_delivery: float
    server_cpu_pct: float
    rss_kib: int
    peak_rss_kib: int
    rss_per_conn_kib: float
    loadgen_cpu_pct: float
    loadgen_bound: bool
    # idle only: server CPU to open, authenticate and join each connection (accounts
    # and rooms are made before, so password hashing is left out).
    connect_cpu_us_per_conn: float = math.nan

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "clean": self.clean}


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i] / 1e6


def open_rooms(
    target: Target,
    rooms: int,
    members: int,
    progress: Callable[[str], None],
    room_ids: list[str] | None = None,
) -> list[Room]:
    """rooms of members connections each, joined; in room_ids when given (made beforehand)."""
    target.prepare(rooms * members)
    pool = gevent.pool.Pool(64)
    out = []
    for n in range(rooms):
        room_id = room_ids[n] if room_ids else target.new_room()
        conns = list(pool.imap(lambda i, r=room_id: target.open(i, r), range(members)))
        receivers = [Receiver() for _ in conns]
        for conn, rec in zip(conns, receivers, strict=True):
            handler = rec.on_text
            wrap = getattr(target, "wrap", None)
            conn.on_text = wrap(conn, handler) if wrap else handler
        out.append(Room(room_id, conns, receivers))
        if len(out) % 10 == 0 or len(out) == rooms:
            progress(f"  {target.name}: {len(out) * members} connections open")
    return out


def close_rooms(rooms: list[Room]) -> None:
    for room in rooms:
        for conn in room.conns:
            conn.close()


def _usage_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def drive(
    target: Target,
    scenario: str,
    rooms: list[Room],
    rate: float,
    seconds: float,
    conn_baseline_rss: int | None = None,
) -> Result:
    """Send `rate` messages/s spread over the rooms' members for `seconds`, then drain and measure."""
    for room in rooms:
        for rec in room.receivers:
            rec.__init__(room.sent)  # type: ignore[misc]
    total = int(rate * seconds)
    senders = [(room, conn) for room in rooms for conn in room.conns]
    per_room_sent = {room.id: 0 for room in rooms}
    cpu0, usage0, t0 = target.cpu_seconds(), _usage_s(), time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        room, conn = (
            senders[(i * 7919) % len(senders)]
            if len(rooms) > 1
            else (rooms[0], rooms[0].conns[i % FANOUT_SENDERS])
        )
        per_room_sent[room.id] += 1
        try:
            conn.send(target.send_payload(room.id, str(time.perf_counter_ns()), i))
        except OSError:
            pass
    expected = sum(per_room_sent[room.id] * len(room.receivers) for room in rooms)
    for room in rooms:
        room.sent += per_room_sent[room.id]
    deadline = time.perf_counter() + DRAIN_TIMEOUT_S
    while time.perf_counter() < deadline:
        if sum(rec.count for room in rooms for rec in room.receivers) >= expected:
            break
        gevent.sleep(0.02)
    elapsed = time.perf_counter() - t0
    cpu = target.cpu_seconds() - cpu0
    loadgen = (_usage_s() - usage0) / elapsed
    receivers = [rec for room in rooms for rec in room.receivers]
    delivered = sum(r.count for r in receivers)
    lats = sorted(x for r in receivers for x in r.latencies)
    rss, peak = rss_kib(target.pid)
    conns = sum(len(room.conns) for room in rooms)
    return Result(
        server=target.name,
        scenario=scenario,
        offered_msgs_per_s=rate,
        members=conns,
        sent=total,
        delivered=delivered,
        expected=expected,
        seconds=round(elapsed, 3),
        delivered_per_s=round(delivered / elapsed, 1),
        p50_ms=round(percentile(lats, 0.50), 3),
        p99_ms=round(percentile(lats, 0.99), 3),
        max_ms=round(lats[-1] / 1e6, 3) if lats else float("nan"),
        lost=expected - delivered - 0,
        duplicated=sum(r.dups for r in receivers),
        out_of_order=sum(r.gaps for r in receivers),
        cpu_us_per_delivery=round(cpu * 1e6 / delivered, 2) if delivered else float("nan"),
        server_cpu_pct=round(100 * cpu / elapsed, 1),
        rss_kib=rss,
        peak_rss_kib=peak,
        rss_per_conn_kib=round((rss - conn_baseline_rss) / conns, 2)
        if conn_baseline_rss
        else float("nan"),
        loadgen_cpu_pct=round(100 * loadgen, 1),
        loadgen_bound=loadgen > 0.9,
    )
