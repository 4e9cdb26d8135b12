"""The one error family: every refusal the server gives carries an HTTP status and a machine code."""

from __future__ import annotations


class ChatError(Exception):
    """A refusal the client can act on. Turned into JSON by REST and into an error frame by /ws."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def with_extra(self, **extra: object) -> ChatError:
        """A copy that also carries `extra` (an error frame repeats the frame's room and client_msg_id)."""
        return ChatError(self.status, self.code, self.message, **{**self.extra, **extra})

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, **self.extra}


def bad_request(message: str, code: str = "bad_request") -> ChatError:
    return ChatError(400, code, message)


def unauthorized(
    message: str = "Log in first: the token is missing, invalid or expired.",
) -> ChatError:
    return ChatError(401, "unauthorized", message)


def forbidden(code: str, message: str) -> ChatError:
    return ChatError(403, code, message)


def not_found(code: str, message: str) -> ChatError:
    return ChatError(404, code, message)


def conflict(code: str, message: str) -> ChatError:
    return ChatError(409, code, message)


def rate_limited(retry_after_s: float) -> ChatError:
    seconds = max(1, round(retry_after_s + 0.49))
    return ChatError(
        429, "rate_limited", f"Too many requests: try again in {seconds} s.", retry_after_s=seconds
    )
