"""Where the client keeps its files: the server address, saved tokens (0600), and per-user chat state.

It also reads the one other fact of the environment the output needs: how wide
the terminal is.

Everything lives under click's app dir (override with GREENROOM_CONFIG_DIR), one
folder per server, so tokens and seq bookmarks for two servers never mix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import click

DEFAULT_SERVER = "http://127.0.0.1:8000"


def resolve_server(option: str | None) -> str:
    """--server, else GREENROOM_SERVER, else the local default; without a trailing slash."""
    url = option or os.environ.get("GREENROOM_SERVER") or DEFAULT_SERVER
    if not re.match(r"^https?://[^/\s]+", url):
        raise click.UsageError(f"server must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def terminal_width(stream: IO[str]) -> int | None:
    """Columns of the terminal `stream` writes to, or None when it is not a terminal."""
    try:
        return shutil.get_terminal_size().columns if stream.isatty() else None
    except (AttributeError, ValueError, OSError):
        return None


def config_dir() -> Path:
    return Path(os.environ.get("GREENROOM_CONFIG_DIR") or click.get_app_dir("greenroom"))


def server_dir(server: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", server.split("://", 1)[1])
    return config_dir() / "servers" / slug


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a crash leaves the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Credentials:
    """The saved login for one server: {"username", "token"}."""

    def __init__(self, server: str) -> None:
        self.path = server_dir(server) / "token.json"

    def load(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not data.get("token") or not data.get("username"):
            return None
        return data

    def save(self, username: str, token: str) -> None:
        write_private(self.path, json.dumps({"username": username, "token": token}))

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class ChatState:
    """What `chat` must remember across its own restarts, for one user on one server.

    last_seq: room id -> the last seq printed. pending: messages sent but not yet
    acknowledged, in send order, each {"room", "body", "client_msg_id"}.
    """

    def __init__(self, server: str, username: str) -> None:
        self.path = server_dir(server) / f"state-{username.lower()}.json"
        self.last_seq: dict[str, int] = {}
        self.pending: list[dict[str, Any]] = []
        try:
            data = json.loads(self.path.read_text())
            self.last_seq = {str(k): int(v) for k, v in data.get("last_seq", {}).items()}
            self.pending = [p for p in data.get("pending", []) if isinstance(p, dict)]
        except (OSError, ValueError, AttributeError, TypeError):
            pass

    def save(self) -> None:
        write_private(self.path, json.dumps({"last_seq": self.last_seq, "pending": self.pending}))
