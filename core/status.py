"""What any feature may ask about a user's status, without importing presence (which answers it)."""

from __future__ import annotations

from typing import Protocol


class Statuses(Protocol):
    def is_online(self, username: str) -> bool: ...

    def status(self, username: str) -> str:
        """ "online" or "offline"."""
        ...
