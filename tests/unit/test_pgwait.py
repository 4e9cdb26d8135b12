"""core.pgwait: psycopg's wait protocol run on gevent io watchers, with a socket pair for PostgreSQL."""

from __future__ import annotations

import socket
import time
from collections.abc import Generator

import gevent
import pytest
from psycopg import errors
from psycopg.waiting import READY_R, Wait

from core import pgwait


def reads(conn: socket.socket) -> Generator[Wait, int, bytes]:
    """A psycopg-style generator: wait until readable, then read."""
    while True:
        ready = yield Wait.R
        if ready & READY_R:
            return conn.recv(100)


def test_a_wait_parks_only_its_greenlet_until_the_socket_is_ready() -> None:
    left, right = socket.socketpair()
    ticks: list[float] = []

    def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    # Timers count from libev's idea of now, stale if this process's hub sat idle
    # (other tests ran): refreshed, the send comes 0.1 s from now, not at once.
    gevent.get_hub().loop.update_now()
    ticker = gevent.spawn(tick)
    gevent.spawn_later(0.1, right.send, b"row")
    try:
        assert pgwait.wait(reads(left), left.fileno(), timeout=5) == b"row"
    finally:
        ticker.kill()
        left.close()
        right.close()
    assert len(ticks) >= 5  # the others ran while this one waited


def test_a_ready_socket_is_answered_without_the_hub() -> None:
    left, right = socket.socketpair()
    right.send(b"row")
    try:
        assert pgwait.ready_now(left.fileno(), Wait.RW) & READY_R
        assert pgwait.wait(reads(left), left.fileno()) == b"row"
    finally:
        left.close()
        right.close()


def test_a_wait_ends_at_its_timeout() -> None:
    left, right = socket.socketpair()
    started = time.monotonic()
    try:
        with pytest.raises(errors._WaitTimeout):
            pgwait.wait(reads(left), left.fileno(), timeout=0.05)
    finally:
        left.close()
        right.close()
    assert time.monotonic() - started < 2


def test_a_closed_peer_is_reported_as_readable() -> None:
    """A hang-up must wake the wait, so that libpq reads and reports the failure."""
    left, right = socket.socketpair()
    right.close()
    try:
        assert pgwait.wait(reads(left), left.fileno(), timeout=5) == b""
    finally:
        left.close()
