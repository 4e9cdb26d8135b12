"""Unread counts stop at UNREAD_MAX, in every place they are read, on SQLite and PostgreSQL."""

from __future__ import annotations

from chat import store
from tests.integration.conftest import Rig


def test_unread_counts_stop_at_the_cap(rig: Rig) -> None:
    rooms, db = rig.gr.rooms, rig.gr.db
    alice, _ = rig.user("alice")
    bob, _ = rig.user("bob")
    room = rooms.create_room(alice, "busy", None, None).id
    rooms.join(bob, room)
    for i in range(5):
        rooms.post(alice, room, f"m{i}", None)
    rooms.post(bob, room, "mine", None)

    assert db.run(store.read_marker, room, bob, 100).unread == 5  # bob's own is not counted
    assert db.run(store.read_marker, room, bob, 3).unread == 3
    listed = db.run(store.list_rooms, bob, None, 10, 3).items
    assert [(r.room.id, r.read.unread if r.read else None) for r in listed] == [(room, 3)]
    _, _, marker = db.run(store.get_room, room, bob, 2)
    assert marker is not None and marker.unread == 2
    marker, moved = db.run(store.mark_read, room, bob, 2, 2)
    assert (marker.last_read_seq, marker.unread, moved) == (2, 2, True)
    marker, moved = db.run(store.mark_read, room, bob, 4, 100)
    assert (marker.last_read_seq, marker.unread, moved) == (4, 1, True)
