"""gunicorn settings for Greenroom (read by gunicorn from the working directory).

Rooms, presence and rate limits live in one worker's memory: with several workers a
message would reach only the members connected to the sender's worker. Until the
scale-out backplane exists, starting more than one worker fails at once instead.
"""

import sys


def on_starting(server) -> None:  # type: ignore[no-untyped-def]
    if server.cfg.workers > 1:
        message = (
            f"greenroom: refusing to start {server.cfg.workers} workers. Rooms live in one "
            "process's memory, so several workers would split every room. Run one worker "
            "(-w 1); it holds thousands of connections."
        )
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(1)
