"""Registration, login, logout and token checks: the rules, with storage and hashing injected."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Collection
from typing import cast

from auth import store
from auth.passwords import Passwords
from auth.tokens import hash_token, new_token
from core.backplane import LocalBackplane
from core.clock import Clock
from core.database import Database
from core.errors import ChatError, bad_request, rate_limited, unauthorized
from core.events import SessionClosed, SessionIdle
from core.metrics import TALLY
from core.ratelimit import RateLimiter
from core.settings import Settings
from core.web import Principal
from core.wire import USERNAME_RE, is_utf8

log = logging.getLogger(__name__)

MIN_PASSWORD_CHARS = 8
# Longer passwords only cost hashing time; nobody types 1,024 characters.
MAX_PASSWORD_CHARS = 1024
# The reason a session's sockets get when a newer login ends it (MAX_SESSIONS_PER_USER).
TOO_MANY_SESSIONS = "Session ended: too many sessions for this user, the oldest end first."


@dataclasses.dataclass(frozen=True)
class Session:
    """An authenticated caller: who, and which login session (by token hash)."""

    username: str
    token_hash: str


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise bad_request(
            "A username is 3 to 32 letters, digits, '_', '-' or '.'.", code="invalid_username"
        )
    return username


def check_password(password: object) -> str:
    if (
        not isinstance(password, str)
        or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS
        or not is_utf8(password)
    ):
        raise bad_request(
            f"A password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters.",
            code="invalid_password",
        )
    return password


class Auth:
    """Accounts and sessions. `live_sessions` says which token hashes have an open WebSocket."""

    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        settings: Settings,
        failures: RateLimiter,
        address_failures: RateLimiter,
        registrations: RateLimiter,
        backplane: LocalBackplane,
        clock: Clock,
    ) -> None:
        self._db = db
        self._backplane = backplane
        self._passwords = passwords
        self._settings = settings
        self._clock = clock
        # Each is per worker, or shared in Redis when several workers serve one site.
        self._failures = failures  # failed logins per username|address
        # Failed logins and WebSocket authentications per client address, whatever the
        # username: spraying many names from one address would otherwise cost an argon2
        # check each, unthrottled.
        self._address_failures = address_failures
        self._registrations = registrations  # each costs a hash and a row
        self.live_sessions: Callable[[], Collection[str]] = frozenset
        # Writing last_active on every request would put a commit on every call.
        self._touch_after_s = min(60.0, settings.SESSION_IDLE_TIMEOUT_S / 4)
        # Other workers' sweepers cannot see this worker's sockets: with a backplane, the
        # sessions that hold one are refreshed in the database. Alone, `live_sessions` suffices.
        self._clustered = backplane.clustered
        self._kept_alive_at = 0.0

    def register(self, username: object, password: object, client: str = "") -> str:
        username = check_username(username)
        password = check_password(password)
        wait = self._registrations.acquire(client, self._clock.time())
        if wait > 0:
            raise rate_limited(wait)
        password_hash = self._passwords.hash(password)
        self._db.run(store.create_user, username, password_hash, self._clock.time())
        log.info("registered user %s", username)
        return username

    def address_wait(self, client: str) -> float:
        """Seconds until this client address may try to authenticate again (0: now)."""
        return self._address_failures.wait_time(client, self._clock.time())

    def failed_socket_auth(self, client: str) -> None:
        """A WebSocket failed to authenticate: it counts like a failed login from this address."""
        self._address_failures.charge(client, self._clock.time())

    def login(self, username: object, password: object, client: str = "") -> tuple[str, str]:
        """Return (token, canonical username).

        The token is never stored or logged. Past MAX_SESSIONS_PER_USER, the user's least
        recently active sessions end and their sockets close on every worker, so nobody
        is locked out of their own account by old sessions.

        Failures are counted per username and client address, so a stranger guessing
        cannot lock the real user out from their own address; and per client address
        across all usernames, so spraying names from one address is throttled too.
        Both budgets, and the password's length, are checked before any hashing.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            raise bad_request("Send a JSON object with string fields username and password.")
        if len(password) > MAX_PASSWORD_CHARS:
            raise bad_request(
                f"A password is at most {MAX_PASSWORD_CHARS} characters.", code="invalid_password"
            )
        key = f"{username.lower()[:64]}|{client}"
        now = self._clock.time()
        wait = max(
            self._failures.wait_time(key, now), self._address_failures.wait_time(client, now)
        )
        if wait > 0:
            self._failures.refused()  # the `login` limit (either budget)
            raise rate_limited(wait)
        row = self._db.run(store.find_user, username) if USERNAME_RE.fullmatch(username) else None
        # A password that is not valid text can never match; it is still hashed, for even timing.
        candidate = password if is_utf8(password) else ""
        ok = self._passwords.verify(row["password_hash"] if row else None, candidate)
        ok = ok and bool(candidate)
        if not ok:
            now = self._clock.time()
            self._failures.charge(key, now)
            self._address_failures.charge(client, now)
            # Only an existing account's name is logged: what was typed as a username
            # may be a password typed into the wrong field.
            if row is not None:
                log.info("failed login for %s from %s", row["username"], client)
            else:
                log.info(
                    "failed login for an unknown user (%d chars) from %s", len(username), client
                )
            TALLY.login_failures += 1
            raise ChatError(401, "invalid_credentials", "The username or password is wrong.")
        assert row is not None  # verify() is False without a stored hash
        token = new_token()
        limit = self._settings.MAX_SESSIONS_PER_USER
        ended = self._db.run(
            store.create_session,
            hash_token(token),
            row["username"],
            self._clock.time(),
            limit,
            frozenset(self.live_sessions()),
        )
        if ended:
            log.info(
                "login %s, ending %d least recently active sessions (MAX_SESSIONS_PER_USER %d)",
                row["username"],
                len(ended),
                limit,
            )
        else:
            log.info("login %s", row["username"])
        for token_hash in ended:
            self._backplane.emit(SessionClosed(token_hash, TOO_MANY_SESSIONS))
        return token, row["username"]

    def authenticate(self, token: str | None) -> Session:
        if not token:
            raise unauthorized()
        token_hash = hash_token(token)
        username = self._db.run(
            self._check_session, token_hash, self._clock.time(), self._is_live(token_hash)
        )
        if username is None:
            raise unauthorized()
        return Session(username, token_hash)

    def _is_live(self, token_hash: str) -> bool:
        return token_hash in self.live_sessions()

    def _check_session(
        self, conn: sqlite3.Connection, token_hash: str, now: float, live: bool
    ) -> str | None:
        row = store.find_session(conn, token_hash)
        if row is None:
            return None
        idle = now - row["last_active"]
        if idle > self._settings.SESSION_IDLE_TIMEOUT_S and not live:
            store.delete_session(conn, token_hash)
            return None
        if idle > self._touch_after_s:
            store.touch_sessions(conn, [token_hash], now)
        return cast(str, row["username"])

    def logout(self, session: Principal) -> None:
        """End the session; its sockets close with 4001 on every worker."""
        self._db.run(store.delete_session, session.token_hash)
        self._backplane.emit(SessionClosed(session.token_hash, "Logged out."))
        log.info("logout %s", session.username)

    def subscribe(self) -> None:
        self._backplane.subscribe(SessionIdle, self._on_session_idle)

    def _on_session_idle(self, origin: str, event: SessionIdle) -> None:
        """The session's last socket here closed: its idle clock starts now."""
        self.touch([event.session])

    def touch(self, token_hashes: Collection[str]) -> None:
        if token_hashes:
            self._db.run(store.touch_sessions, list(token_hashes), self._clock.time())

    def expire_idle(self, now: float) -> list[str]:
        """End sessions idle longer than the timeout that hold no live connection."""
        if self._clustered and now - self._kept_alive_at >= self._touch_after_s:
            self._kept_alive_at = now
            self.touch(self.live_sessions())
        cutoff = now - self._settings.SESSION_IDLE_TIMEOUT_S
        expired = self._db.run(store.delete_idle_sessions, cutoff, frozenset(self.live_sessions()))
        if expired:
            log.info("expired %d idle sessions", len(expired))
        self._failures.prune(now)
        self._address_failures.prune(now)
        self._registrations.prune(now)
        return expired
