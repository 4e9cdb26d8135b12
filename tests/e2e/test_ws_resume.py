"""History over /ws against a real server: the latest page on join, re-joins, and resume with `since`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.support import WS, Api, User
from tests.support.delivery import of_type, rest_messages, say, send_many, seqs, until_pong

# ---- history, re-join and resume ------------------------------------------------------------


def test_history_on_join_is_latest_page(api: Api, alice: User, bob: User) -> None:
    """join without since returns the latest page of history, the same as the REST default page."""
    room = api.create_room(alice, "history")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        acks = send_many(a, room, [f"m{i}" for i in range(1, 61)], "h")
        assert seqs(acks) == list(range(1, 61))
    newest = rest_messages(api, bob, room)
    with bob.ws() as b:
        joined = b.join(room)
    assert joined["last_seq"] == 60
    assert joined["truncated"] is False
    history = joined["history"]
    assert history == newest["messages"]
    assert history and history[-1]["seq"] == 60
    assert seqs(history) == list(range(history[0]["seq"], 61))
    assert [m["body"] for m in history] == [f"m{s}" for s in seqs(history)]


def test_history_on_rejoin(api: Api, alice: User, bob: User) -> None:
    """Re-joining, on a new connection or after a leave on the same one, returns history that includes what was said meanwhile."""
    room = api.create_room(alice, "rejoin")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        with bob.ws() as b:
            first = b.join(room)
            assert first["history"] == [] and first["last_seq"] == 0
            a.say(room, "one")
        a.say(room, "two")
        with bob.ws() as b:
            again = b.join(room)
            assert [(m["seq"], m["body"]) for m in again["history"]] == [(1, "one"), (2, "two")]
            assert again["last_seq"] == 2
            b.send({"type": "leave", "room": room})
            assert a.expect("member_left", skip=("presence",))["user"] == bob.name
            until_pong(b)  # whatever the leave sent back to bob
            a.say(room, "three")
            third = b.join(room)
            assert [(m["seq"], m["body"]) for m in third["history"]] == [
                (1, "one"),
                (2, "two"),
                (3, "three"),
            ]
            a.say(room, "four")
            live = b.expect("message")
            assert (live["seq"], live["body"]) == (4, "four")


def test_join_again_on_same_connection_does_not_duplicate(api: Api, alice: User, bob: User) -> None:
    """A second join of an already joined room returns history again and later messages still arrive once each."""
    room = api.create_room(alice, "join-twice")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a, bob.ws() as b:
        a.join(room)
        b.join(room)
        send_many(a, room, ["one", "two"], "jt")
        assert seqs(of_type(until_pong(b), "message")) == [1, 2]
        again = b.join(room)
        assert (seqs(again["history"]), again["last_seq"]) == ([1, 2], 2)
        resumed = b.join(room, since=1)
        assert seqs(resumed["history"]) == [2]
        send_many(a, room, ["three", "four"], "jt2")
        assert seqs(of_type(until_pong(b), "message")) == [3, 4]


def test_resume_with_since_after_dropped_connection(api: Api, alice: User, bob: User) -> None:
    """After a dropped connection, join with since returns exactly the missed messages, then live ones follow with no gap or repeat."""
    room = api.create_room(alice, "resume")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        with bob.ws() as b:
            b.join(room)
            send_many(a, room, ["s1", "s2", "s3"], "before")
            seen = seqs(of_type(until_pong(b), "message"))
            assert seen == [1, 2, 3]
        # Bob's connection is gone; the room goes on without him.
        missed = send_many(a, room, [f"missed {i}" for i in range(5)], "missed")
        assert seqs(missed) == [4, 5, 6, 7, 8]
        with bob.ws() as b:
            joined = b.join(room, since=seen[-1])
            assert joined["truncated"] is False
            assert joined["last_seq"] == 8
            assert [(m["seq"], m["body"]) for m in joined["history"]] == [
                (4 + i, f"missed {i}") for i in range(5)
            ]
            send_many(a, room, ["live 9", "live 10"], "after")
            live = of_type(until_pong(b), "message")
            assert [(m["seq"], m["body"]) for m in live] == [(9, "live 9"), (10, "live 10")]


def test_resume_repeatedly_while_another_member_sends(api: Api, alice: User, bob: User) -> None:
    """A client that drops and resumes with since several times while another member keeps sending sees every message exactly once, in order."""
    room = api.create_room(alice, "resume-race")["id"]
    assert bob.join(room).status_code == 200
    total = 150

    def alice_sends(a: WS) -> list[int]:
        return [say(a, room, f"r{i}", f"race-{i}")["seq"] for i in range(total)]

    seen: list[int] = []  # seqs bob has read, over all his connections, in reading order
    with alice.ws() as a, ThreadPoolExecutor(1) as pool:
        a.join(room)
        sender = pool.submit(alice_sends, a)
        while not seen or seen[-1] < total:
            with bob.ws() as b:
                joined = b.join(room, since=seen[-1] if seen else 0)
                assert joined["truncated"] is False
                seen += seqs(joined["history"])
                # Read some live messages, then drop the connection mid-stream.
                target = len(seen) + 20
                while len(seen) < target and (not seen or seen[-1] < total):
                    seen.append(b.expect("message")["seq"])
        assert sender.result() == list(range(1, total + 1))
    assert seen == list(range(1, total + 1))
    with bob.ws() as b:  # and once caught up, a resume returns nothing more
        joined = b.join(room, since=total)
        assert (joined["history"], joined["last_seq"]) == ([], total)


def test_join_since_last_seq_gets_empty_history_then_live(api: Api, alice: User, bob: User) -> None:
    """join with since equal to the room's last seq returns no history and then every new message live."""
    room = api.create_room(alice, "caught-up")["id"]
    assert bob.join(room).status_code == 200
    with alice.ws() as a:
        a.join(room)
        send_many(a, room, ["x", "y"], "cu")
        with bob.ws() as b:
            joined = b.join(room, since=2)
            assert (joined["history"], joined["truncated"], joined["last_seq"]) == ([], False, 2)
            a.say(room, "z")
            assert seqs(of_type(until_pong(b), "message")) == [3]
