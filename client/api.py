"""The REST half of the client: one method per documented route, errors as ClientError."""

from __future__ import annotations

from typing import Any

import requests

# Lists are asked for in pages of this many items (the server's default maximum is 500).
LIST_PAGE_LIMIT = 100
# A server that keeps answering with a next_cursor past this many pages is looping.
MAX_LIST_PAGES = 1000


class ClientError(Exception):
    """A refusal or failure to show the user in one line; exit status 1."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class Api:
    """Talks to one server with an optional bearer token."""

    def __init__(self, server: str, token: str | None = None, timeout_s: float = 15.0) -> None:
        self.server = server
        self.token = token
        self.timeout_s = timeout_s
        self._http = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = self._http.request(
                method,
                self.server + path,
                json=body,
                params={k: v for k, v in (params or {}).items() if v is not None},
                headers=headers,
                timeout=self.timeout_s,
            )
        except requests.RequestException:
            raise ClientError("unreachable", f"cannot reach the server at {self.server}") from None
        if r.status_code == 204:
            return None
        try:
            data = r.json()
        except ValueError:
            raise ClientError(
                "bad_response",
                f"unexpected answer from the server ({r.status_code})",
                r.status_code,
            ) from None
        if r.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise ClientError(
                err.get("code", "error"), err.get("message", "request failed"), r.status_code
            )
        return data

    def register(self, username: str, password: str) -> Any:
        return self.call("POST", "/api/auth/register", {"username": username, "password": password})

    def login(self, username: str, password: str) -> Any:
        return self.call("POST", "/api/auth/login", {"username": username, "password": password})

    def logout(self) -> None:
        self.call("POST", "/api/auth/logout")

    def me(self) -> Any:
        return self.call("GET", "/api/auth/me")

    def pages(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every item of a paged list: follows next_cursor until it is null.

        A server whose LIST_MAX_PAGE_SIZE is below LIST_PAGE_LIMIT refuses the
        first page with 400; the rest is then asked for at the server's own page size.
        """
        limit: int | None = LIST_PAGE_LIMIT
        cursor: str | None = None
        items: list[dict[str, Any]] = []
        seen: set[str] = set()  # cursors followed so far: one coming back is a loop
        for _ in range(MAX_LIST_PAGES):
            try:
                page = self.call("GET", path, params={"limit": limit, "cursor": cursor})
            except ClientError as err:
                if err.status != 400 or cursor is not None or limit is None:
                    raise
                limit = None
                page = self.call("GET", path)
            if not isinstance(page, dict) or not isinstance(page.get(key), list):
                raise ClientError("bad_response", f"unexpected answer from the server ({key})")
            items += page[key]
            cursor = page.get("next_cursor")
            if cursor is None:
                return items
            if not isinstance(cursor, str) or cursor in seen:
                break
            seen.add(cursor)
        raise ClientError(
            "bad_response",
            f"the server's pages of {key} never end (a cursor repeated, or over "
            f"{MAX_LIST_PAGES} pages): stopped",
        )

    def users(self) -> list[dict[str, Any]]:
        return self.pages("/api/users", "users")

    def user(self, username: str) -> Any:
        return self.call("GET", f"/api/users/{username}")

    def rooms(self) -> list[dict[str, Any]]:
        return self.pages("/api/rooms", "rooms")

    def create_room(self, name: str, capacity: int | None, private: bool) -> Any:
        body: dict[str, Any] = {"name": name, "private": private}
        if capacity is not None:
            body["capacity"] = capacity
        return self.call("POST", "/api/rooms", body)

    def room(self, room_id: str) -> Any:
        return self.call("GET", f"/api/rooms/{room_id}")

    def delete_room(self, room_id: str) -> None:
        self.call("DELETE", f"/api/rooms/{room_id}")

    def invite(self, room_id: str, username: str) -> None:
        self.call("POST", f"/api/rooms/{room_id}/invites", {"username": username})

    def join(self, room_id: str) -> Any:
        return self.call("POST", f"/api/rooms/{room_id}/join")

    def leave(self, room_id: str) -> None:
        self.call("POST", f"/api/rooms/{room_id}/leave")

    def members(self, room_id: str) -> list[dict[str, Any]]:
        return self.pages(f"/api/rooms/{room_id}/members", "members")

    def history(
        self,
        room_id: str,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> Any:
        return self.call(
            "GET",
            f"/api/rooms/{room_id}/messages",
            params={"limit": limit, "before": before, "after": after},
        )

    def post(self, room_id: str, body: str, client_msg_id: str) -> Any:
        return self.call(
            "POST", f"/api/rooms/{room_id}/messages", {"body": body, "client_msg_id": client_msg_id}
        )
