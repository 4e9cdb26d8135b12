"""Password hashing with argon2id, run in a threadpool so a login never freezes the gevent hub."""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from gevent.threadpool import ThreadPool


class Passwords:
    """argon2id hashing and verification off the hub; argon2-cffi releases the GIL while it works."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int, threads: int = 2) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._pool = ThreadPool(threads)
        # Verified against unknown usernames so that a miss costs as much as a wrong password.
        self._dummy_hash = self._hasher.hash("greenroom-dummy-password")

    def hash(self, password: str) -> str:
        return self._pool.apply(self._hasher.hash, (password,))

    def verify(self, password_hash: str | None, password: str) -> bool:
        return self._pool.apply(self._verify, (password_hash or self._dummy_hash, password)) and (
            password_hash is not None
        )

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.kill()
