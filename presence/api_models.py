"""The presence routes' response models: what /api/openapi.json says of /api/users/*."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.openapi import Page


class UserStatus(BaseModel):
    """A user's presence."""

    model_config = ConfigDict(extra="forbid")

    username: str
    status: Literal["online", "offline"]
    last_seen: str | None = Field(
        json_schema_extra={"format": "date-time"},
        description="Now while online; null for a user who never logged in.",
    )


class UserPage(Page):
    users: list[UserStatus]
