"""Who is online across workers (presence.cluster.OnlineMap), with explicit times. No I/O."""

from __future__ import annotations

from presence.cluster import OnlineMap

ME, A, B = "me", "wa", "wb"


def test_online_on_the_first_worker_offline_after_the_last() -> None:
    """add() is True only when no worker had the user; remove() only when none has them left."""
    m = OnlineMap(ME)
    assert m.add(ME, "alice") is True
    assert m.add(A, "alice") is False
    assert m.add(A, "alice") is False  # twice on one worker counts once
    assert m.is_online("alice")
    assert m.remove(ME, "alice") is False
    assert m.is_online("alice")
    assert m.remove(A, "alice") is True
    assert not m.is_online("alice")
    assert m.remove(A, "alice") is False  # twice is harmless
    assert m.remove("unknown", "alice") is False
    assert m.add(B, "alice") is True  # back online


def test_users_of_and_count() -> None:
    """Each worker's own set, sorted; unknown workers hold nobody."""
    m = OnlineMap(ME)
    for user in ("carol", "alice", "bob"):
        m.add(A, user)
    m.add(ME, "alice")
    assert m.users_of(A) == ["alice", "bob", "carol"]
    assert m.count(A) == 3 and m.count(ME) == 1
    assert m.users_of("nobody") == [] and m.count("nobody") == 0
    assert m.users_of(ME) == ["alice"]


def test_replace_reports_transitions_everywhere() -> None:
    """A worker's full set: users it gained that nobody had came online; users it lost that nobody
    else has went offline."""
    m = OnlineMap(ME)
    m.add(A, "alice")
    m.add(A, "bob")
    m.add(ME, "bob")
    came, went = m.replace(A, ["bob", "dave", "carol"])
    assert came == ["carol", "dave"]
    assert went == ["alice"]
    assert m.users_of(A) == ["bob", "carol", "dave"]
    came, went = m.replace(A, [])
    assert came == [] and went == ["carol", "dave"]  # bob is still on me
    assert m.is_online("bob") and not m.is_online("carol")
    came, went = m.replace(B, iter(["bob", "erin"]))  # a worker not seen before; any iterable
    assert came == ["erin"] and went == []


def test_replace_with_the_same_set_changes_nothing() -> None:
    m = OnlineMap(ME)
    m.replace(A, ["alice", "bob"])
    assert m.replace(A, ["bob", "alice"]) == ([], [])


def test_forget_takes_a_workers_users_offline_unless_held_elsewhere() -> None:
    """A gone worker's users go offline unless another worker has them; me is never forgotten."""
    m = OnlineMap(ME)
    m.heard(A, 1.0)
    m.add(A, "alice")
    m.add(A, "bob")
    m.add(B, "bob")
    assert m.forget(A) == ["alice"]
    assert m.is_online("bob") and not m.is_online("alice")
    assert m.peers() == []
    assert m.count(A) == 0
    assert m.forget(A) == []  # twice is harmless
    m.add(ME, "carol")
    assert m.forget(ME) == []
    assert m.is_online("carol")


def test_expire_forgets_only_peers_silent_too_long() -> None:
    """A peer is dead once silent for more than the timeout (not exactly it); me never is."""
    m = OnlineMap(ME)
    m.add(ME, "mine")
    m.heard(ME, 0.0)  # ignored: this worker is not its own peer
    m.heard(A, 0.0)
    m.heard(B, 5.0)
    m.add(A, "alice")
    m.add(A, "shared")
    m.add(B, "shared")
    m.add(B, "bob")
    assert m.peers() == [A, B]
    assert m.expire(10.0, 10.0) == []  # A silent exactly the timeout
    assert m.expire(10.5, 10.0) == [(A, 2, ["alice"])]
    assert m.peers() == [B]
    assert m.is_online("shared") and m.is_online("mine")
    assert m.expire(1000.0, 10.0) == [(B, 2, ["bob", "shared"])]
    assert m.peers() == []
    assert m.is_online("mine") and m.users_of(ME) == ["mine"]


def test_hearing_again_keeps_a_peer_alive() -> None:
    m = OnlineMap(ME)
    m.heard(A, 0.0)
    m.heard(A, 8.0)
    assert m.expire(15.0, 10.0) == []
    assert m.expire(18.5, 10.0) == [(A, 0, [])]


def test_hear_all_gives_every_peer_a_fresh_start() -> None:
    """After this worker's own outage, peers are not judged by the silence it caused."""
    m = OnlineMap(ME)
    m.heard(A, 0.0)
    m.heard(B, 3.0)
    m.add(A, "alice")
    m.hear_all(100.0)
    assert m.expire(105.0, 10.0) == []
    assert m.is_online("alice")
    assert m.expire(110.5, 10.0) == [(A, 1, ["alice"]), (B, 0, [])]


def test_a_peer_known_only_by_its_users_is_not_expired() -> None:
    """expire() judges peers by heartbeats; one never heard from is not timed out."""
    m = OnlineMap(ME)
    m.add(A, "alice")
    assert m.peers() == []
    assert m.expire(1e9, 10.0) == []
    assert m.is_online("alice")
