"""Which sessions a login ends past MAX_SESSIONS_PER_USER (auth/sessions.py), without a database."""

from __future__ import annotations

from auth.sessions import find_sessions_to_end


def test_the_least_recently_active_sessions_end_first() -> None:
    """Past the cap, sessions end in order of last activity, not of creation."""
    sessions = [("a", 10.0, 1.0), ("b", 5.0, 2.0), ("c", 20.0, 3.0), ("d", 7.0, 4.0)]
    assert find_sessions_to_end(sessions, frozenset(), 2) == ["b", "d"]


def test_within_the_cap_nothing_ends() -> None:
    """A user at or under the cap keeps every session."""
    sessions = [("a", 1.0, 1.0), ("b", 2.0, 2.0)]
    assert find_sessions_to_end(sessions, frozenset(), 2) == []
    assert find_sessions_to_end([], frozenset(), 0) == []


def test_sessions_with_an_open_connection_end_last() -> None:
    """A session with a live socket counts as active now; among live ones the oldest activity ends first."""
    sessions = [("old-live", 1.0, 1.0), ("idle", 5.0, 2.0), ("new-live", 9.0, 3.0)]
    assert find_sessions_to_end(sessions, {"old-live", "new-live"}, 2) == ["idle"]
    assert find_sessions_to_end(sessions, {"old-live", "new-live"}, 1) == ["idle", "old-live"]


def test_ties_in_activity_end_the_older_session() -> None:
    """Two sessions last active at the same moment: the one created first ends first."""
    sessions = [("newer", 5.0, 2.0), ("older", 5.0, 1.0)]
    assert find_sessions_to_end(sessions, frozenset(), 1) == ["older"]
