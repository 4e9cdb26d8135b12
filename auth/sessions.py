"""Which sessions a login ends to keep one user within MAX_SESSIONS_PER_USER: pure, no I/O."""

from __future__ import annotations

from collections.abc import Collection, Iterable


def find_sessions_to_end(
    sessions: Iterable[tuple[str, float, float]], live: Collection[str], keep: int
) -> list[str]:
    """The token hashes to end so that at most `keep` sessions remain, least recently active first.

    `sessions` holds (token hash, last_active, created_at). A session with an open
    connection counts as active now: it ends only when no other is left to end, so a
    script logging in again and again cannot cut a socket that is in use while older
    unused sessions remain.
    """
    ranked = sorted(sessions, key=lambda s: (s[0] in live, s[1], s[2]))
    excess = len(ranked) - max(0, keep)
    return [s[0] for s in ranked[: max(0, excess)]]
