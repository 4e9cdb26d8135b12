"""Every Greenroom setting: its name, its default, and how it is read from the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_DIR / 'var' / 'greenroom.db'}"


class SettingsError(ValueError):
    """A setting in the environment cannot be parsed or is out of range."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """All tunables. Field names are the env names without the GREENROOM_ prefix."""

    HOST: str = "127.0.0.1"
    PORT: int = 8000
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    # Empty: one worker, no backplane. redis://host:port/db: several workers share rooms.
    REDIS_URL: str = ""
    BACKPLANE_CHANNEL: str = "greenroom"
    HEARTBEAT_S: float = 2.0
    WORKER_TIMEOUT_S: float = 10.0
    GAP_WAIT_S: float = 0.5
    CLAIM_WAIT_S: float = 20.0

    PRESENCE_TIMEOUT_S: float = 60.0
    PING_INTERVAL_S: float = 20.0
    SWEEP_INTERVAL_S: float = 5.0
    SESSION_IDLE_TIMEOUT_S: float = 7 * 24 * 3600.0
    AUTH_TIMEOUT_S: float = 10.0
    SHUTDOWN_TIMEOUT_S: float = 10.0
    CLOSE_TIMEOUT_S: float = 5.0

    ROOM_HISTORY_LIMIT: int = 10_000
    REPLAY_MAX_MESSAGES: int = 1_000
    REPLAY_MAX_BYTES: int = 262_144
    JOINED_MAX_MEMBERS: int = 500
    HISTORY_PAGE_SIZE: int = 50
    UNREAD_MAX: int = 100
    HISTORY_MAX_PAGE_SIZE: int = 500
    MAX_MESSAGE_CHARS: int = 4_000
    MAX_ROOM_NAME_CHARS: int = 64
    DEFAULT_ROOM_CAPACITY: int = 10_000
    MAX_ROOM_CAPACITY: int = 100_000

    SEND_RATE_PER_S: float = 5.0
    SEND_BURST: int = 20
    LOGIN_MAX_FAILURES: int = 5
    LOGIN_WINDOW_S: float = 60.0
    TYPING_INTERVAL_S: float = 1.0

    # Creation limits, list paging and the login budget per address (docs/security.md)
    REGISTER_MAX_PER_ADDRESS: int = 10
    REGISTER_WINDOW_S: float = 3600.0
    ROOM_CREATE_MAX: int = 10
    ROOM_CREATE_WINDOW_S: float = 60.0
    MAX_ROOMS_OWNED: int = 100
    LOGIN_ADDRESS_MAX_FAILURES: int = 20
    LOGIN_ADDRESS_WINDOW_S: float = 60.0
    LIST_PAGE_SIZE: int = 100
    LIST_MAX_PAGE_SIZE: int = 500

    # Sessions and WebSocket connections one user may hold
    MAX_SESSIONS_PER_USER: int = 20
    MAX_CONNECTIONS_PER_USER: int = 20

    MAX_FRAME_BYTES: int = 65_536
    MAX_REQUEST_BYTES: int = 65_536
    OUTBOX_MAX_FRAMES: int = 1_000
    OUTBOX_MAX_BYTES: int = 1_048_576

    # The WebSocket inbound budget and queue, per connection
    INBOUND_FRAMES_PER_S: float = 100.0
    INBOUND_BURST_FRAMES: int = 500
    INBOUND_BYTES_PER_S: float = 524_288.0
    INBOUND_BURST_BYTES: int = 2_097_152
    INBOUND_OVER_BUDGET_CLOSE_S: float = 10.0
    # Before authentication (one `auth` frame is all a client needs to send)
    AUTH_MAX_FRAMES: int = 8
    AUTH_MAX_BYTES: int = 256

    # HTTP deadlines for slow and idle clients, under both servers
    HEADER_TIMEOUT_S: float = 10.0
    BODY_TIMEOUT_S: float = 30.0
    KEEPALIVE_TIMEOUT_S: float = 15.0

    ARGON2_TIME_COST: int = 3
    ARGON2_MEMORY_KIB: int = 65_536
    ARGON2_PARALLELISM: int = 4

    LOG_LEVEL: str = "INFO"
    # "text" (one escaped line per event) or "json" (one JSON object per line)
    LOG_FORMAT: str = "text"
    # The greenroom.ws logger: a WebSocket's open and close lines are INFO, so the default
    # keeps 10,000 connections quiet; INFO shows every session
    WS_LOG_LEVEL: str = "WARNING"

    # /readyz: how long the database check may take, and how long its answer is reused
    # (a storm of probes costs the database one query per READY_CACHE_S)
    READY_DB_TIMEOUT_S: float = 1.0
    READY_CACHE_S: float = 1.0

    # Prometheus metrics at /metrics (core/metrics.py): on unless 0; with a token, only
    # a scrape that sends `Authorization: Bearer <token>` gets them
    METRICS: bool = True
    METRICS_TOKEN: str = ""

    # With Redis: how often each worker settles its send-limit takes with the shared
    # buckets (the bound on overshoot is in docs/deployment.md, "Scaling out")
    SEND_LIMIT_SYNC_S: float = 0.5

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


# Read under their usual names, without the GREENROOM_ prefix.
_PLAIN_NAMES = {"HOST", "PORT", "DATABASE_URL", "REDIS_URL"}


def env_name(field: str) -> str:
    return field if field in _PLAIN_NAMES else f"GREENROOM_{field}"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment; explicit overrides win."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}  # field name -> value (parsed from text, or an override)
    for field in dataclasses.fields(Settings):
        raw = environ.get(env_name(field.name))
        if raw is None or raw == "":
            continue
        values[field.name] = _parse(field.name, field.type, raw)
    values.update(overrides)
    settings = Settings(**values)
    _check(settings)
    return settings


def _parse(name: str, type_name: object, raw: str) -> object:
    if type_name in ("bool", bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{env_name(name)}={raw!r} is not 1 or 0")
    try:
        if type_name in ("int", int):
            return int(raw.replace("_", ""))
        if type_name in ("float", float):
            return float(raw)
    except ValueError:
        raise SettingsError(f"{env_name(name)}={raw!r} is not a number") from None
    return raw


def _check(settings: Settings) -> None:
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and field.name != "PORT" and value <= 0:
            raise SettingsError(f"{env_name(field.name)} must be positive, got {value}")
    if not 0 <= settings.PORT <= 65535:
        raise SettingsError(f"PORT must be 0..65535, got {settings.PORT}")
    if settings.DEFAULT_ROOM_CAPACITY > settings.MAX_ROOM_CAPACITY:
        raise SettingsError("GREENROOM_DEFAULT_ROOM_CAPACITY exceeds GREENROOM_MAX_ROOM_CAPACITY")
    if settings.LIST_PAGE_SIZE > settings.LIST_MAX_PAGE_SIZE:
        raise SettingsError("GREENROOM_LIST_PAGE_SIZE exceeds GREENROOM_LIST_MAX_PAGE_SIZE")
    if settings.REPLAY_MAX_BYTES > settings.OUTBOX_MAX_BYTES:
        raise SettingsError("GREENROOM_REPLAY_MAX_BYTES exceeds GREENROOM_OUTBOX_MAX_BYTES")
    if settings.LOG_FORMAT not in ("text", "json"):
        raise SettingsError(
            f"GREENROOM_LOG_FORMAT must be text or json, got {settings.LOG_FORMAT!r}"
        )
    for name in ("LOG_LEVEL", "WS_LOG_LEVEL"):
        level = getattr(settings, name).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(
                f"GREENROOM_{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}"
            )
    if not settings.DATABASE_URL.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise SettingsError("DATABASE_URL must be sqlite:///path or postgresql://...")
    if settings.REDIS_URL and not settings.REDIS_URL.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError("REDIS_URL must be redis://host:port/db, rediss://... or unix://...")
    if settings.WORKER_TIMEOUT_S <= 2 * settings.HEARTBEAT_S:
        raise SettingsError(
            "GREENROOM_WORKER_TIMEOUT_S must exceed twice GREENROOM_HEARTBEAT_S, or live workers "
            "would be taken for dead"
        )
