"""The chat feature's refusals: each one's status, code and message in one place (docs/protocol.md lists them)."""

from __future__ import annotations

from core.errors import ChatError, bad_request, conflict, forbidden, not_found


def invalid_room(message: str) -> ChatError:
    return bad_request(message, code="invalid_room")


def too_many_connections(limit: int) -> ChatError:
    return conflict(
        "too_many_connections",
        f"You already have {limit} connections open here: close one and connect again.",
    )


def not_joined(room_id: str, **echo: object) -> ChatError:
    return forbidden("not_joined", f"Join room {room_id} on this connection first.").with_extra(
        **echo
    )


def user_not_found() -> ChatError:
    return not_found("user_not_found", "There is no user by that name.")


def room_not_found(room_id: str) -> ChatError:
    return not_found("room_not_found", f"There is no room {room_id}.")


def not_a_member(room_id: str) -> ChatError:
    return forbidden("not_a_member", f"You are not a member of room {room_id}.")


def room_restricted(room_id: str) -> ChatError:
    return forbidden("room_restricted", f"Room {room_id} is private: ask its owner for an invite.")


def too_many_rooms(max_owned: int) -> ChatError:
    return conflict(
        "too_many_rooms", f"You own {max_owned} rooms, the most allowed: delete one first."
    )


def client_msg_id_reused() -> ChatError:
    return conflict(
        "client_msg_id_reused", "That client_msg_id was already used for a message in another room."
    )
