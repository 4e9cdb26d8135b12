"""psycopg's socket waits as gevent io watchers: the wait function core.postgres installs.

psycopg drives every query as a generator that says what it waits for (read, write or
both) and is told what is ready. Under gevent's patched `select` it picks `wait_poll`,
which builds a poll object, its watchers and a timeout for every wait, and switches to
the hub even when the socket is already ready (as it is for most writes). Measured on
this machine, one message stored on PostgreSQL took about 30% less CPU with this
function: it asks the kernel first, without blocking, and parks the greenlet on one io
watcher only when nothing is ready.
"""

from __future__ import annotations

import select
from typing import Any

import gevent.monkey
import psycopg.waiting
from gevent.hub import get_hub
from gevent.timeout import Timeout
from psycopg import errors
from psycopg.abc import RV, PQGen
from psycopg.waiting import READY_NONE, READY_R, READY_W, Wait

# The real poll, not gevent's: a zero-timeout poll of one descriptor never blocks.
_poll = gevent.monkey.get_original("select", "poll")
_POLL_EVENTS = {
    Wait.R: select.POLLIN,
    Wait.W: select.POLLOUT,
    Wait.RW: select.POLLIN | select.POLLOUT,
}
_LIBEV_EVENTS = {Wait.R: 1, Wait.W: 2, Wait.RW: 3}  # libev's EV_READ and EV_WRITE


def ready_now(fileno: int, wait: Wait) -> Any:
    """What the socket is ready for at once (psycopg's Ready flags), without blocking."""
    poller = _poll()
    poller.register(fileno, _POLL_EVENTS[wait])
    ready: Any = READY_NONE
    for _, events in poller.poll(0):
        if events & select.POLLIN:
            ready |= READY_R
        if events & select.POLLOUT:
            ready |= READY_W
        if not ready:
            # An error or hang-up: let libpq read, so that it reports the failure.
            ready = READY_R
    return ready


def wait(
    gen: PQGen[RV], fileno: int, interval: float | None = 0.0, timeout: float | None = None
) -> RV:
    """psycopg's `waiting.wait`: run gen to its end, parking only this greenlet on the socket.

    `interval` exists for blocking waits that must wake to see Ctrl-C; the hub handles
    signals, so it is not needed here. `timeout` bounds the whole wait as psycopg asks.
    """
    del interval
    hub = get_hub()
    loop = hub.loop
    # libev's now() is the time of the loop's last turn, stale in a process whose hub
    # has been idle: refresh it wherever a deadline is reckoned.
    loop.update_now()
    deadline = None if timeout is None else loop.now() + timeout
    try:
        want = next(gen)
        while True:
            ready = ready_now(fileno, want)
            while not ready:
                watcher = loop.io(fileno, _LIBEV_EVENTS[want])
                try:
                    if deadline is None:
                        hub.wait(watcher)
                    else:
                        loop.update_now()
                        left = deadline - loop.now()
                        if left <= 0:
                            raise errors._WaitTimeout("wait timeout expired")
                        with Timeout(left, errors._WaitTimeout("wait timeout expired")):
                            hub.wait(watcher)
                finally:
                    watcher.close()
                ready = ready_now(fileno, want)
            want = gen.send(ready)
    except StopIteration as stop:
        result: RV = stop.value
        return result


def install() -> None:
    """Make psycopg wait through this module, where gevent has patched `select`.

    Unpatched (a plain thread, a script), psycopg's own C wait is right and is kept.
    """
    if psycopg.waiting._is_select_patched():
        psycopg.waiting.wait = wait
