"""Where stored messages go next: encoded once, to this worker's subscribers, the other workers, and the sender.

The writer calls publish() on its own greenlet, in commit order. A message frame
is encoded here once and the same bytes go to every local subscriber (chat.fanout)
and, through the backplane, to every other worker. Then each WebSocket sender gets
its ack (after its message frame) or its error.
"""

from __future__ import annotations

from chat.fanout import Fanout
from chat.models import Draft, Stored
from chat.protocol import ack_frame, error_frame, message_frame
from core.backplane import Items, LocalBackplane
from core.clock import Clock
from core.metrics import TALLY


class Publisher:
    def __init__(self, fanout: Fanout, backplane: LocalBackplane, clock: Clock) -> None:
        self._fanout = fanout
        self._backplane = backplane
        self._clock = clock

    def publish(self, outcomes: list[tuple[Draft, Stored]]) -> None:
        items: Items = [
            (s.message.room, s.message.seq, message_frame(s.message))
            for _, s in outcomes
            if s.message is not None and not s.duplicate
        ]
        # Messages first, then the acks: a sender sees its message before its ack.
        self._fanout.feed(items)
        self._backplane.publish_messages(items)
        acked: list[float] = []  # when each acked send frame was read
        for draft, stored in outcomes:
            sender = draft.sender
            if sender is None:
                continue
            if stored.error is not None:
                echo = {"room": draft.room, "client_msg_id": draft.client_msg_id}
                sender.send(error_frame(stored.error.with_extra(**echo)))
            elif stored.message is not None:
                acked.append(draft.received)
                self._fanout.when_passed(
                    draft.room,
                    stored.message.seq,
                    sender,
                    ack_frame(stored.message, draft.client_msg_id),
                )
        if acked and TALLY.enabled:
            now = self._clock.monotonic()
            for received in acked:
                TALLY.sample(TALLY.ack_s, now - received)
