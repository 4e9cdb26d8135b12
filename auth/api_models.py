"""The auth routes' request and response models: what /api/openapi.json says of /api/auth/*."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from auth.service import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, check_password, check_username
from core.errors import ChatError, bad_request
from core.openapi import JsonBody

USERNAME = r"^[A-Za-z0-9_.-]{3,32}$"


class RegisterBody(JsonBody):
    """A new account."""

    username: str = Field(
        pattern=USERNAME,
        description="3 to 32 letters, digits, '_', '-' or '.'; unique in any case.",
    )
    password: str = Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        # The service's own checks, with their codes: invalid_username, invalid_password.
        try:
            check_username(None) if field == "username" else check_password(None)
        except ChatError as err:
            return err
        raise AssertionError("the checks refuse None")  # pragma: no cover


class LoginBody(JsonBody):
    """A username in any case and its password (a wrong one is 401, not 400)."""

    username: str
    password: str = Field(description=f"At most {MAX_PASSWORD_CHARS} characters.")

    @classmethod
    def refusal(cls, field: str) -> ChatError:
        return bad_request("Send a JSON object with string fields username and password.")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Registered(_Out):
    username: str = Field(description="The canonical spelling, as registered.")


class LoggedIn(_Out):
    token: str = Field(description="Shown only this once: send it as `Authorization: Bearer`.")
    username: str = Field(description="The canonical spelling.")
    session_idle_timeout_s: float = Field(description="An unused session ends after this long.")


class Me(_Out):
    username: str
    status: Literal["online", "offline"]
