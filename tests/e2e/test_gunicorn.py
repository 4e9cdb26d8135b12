"""The Procfile's gunicorn command, run for real: it serves REST and WebSockets and shuts down cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    ROOT,
    Api,
    GunicornProcess,
    ServerProcess,
    free_port,
    procfile_web_command,
)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[ServerProcess]:
    server = GunicornProcess(tmp_path / "g").start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(5)


def test_procfile_command_serves_chat_and_stops_on_sigterm(gunicorn: ServerProcess) -> None:
    """Under gunicorn -k gevent, two users chat over /ws; SIGTERM closes sockets with 1001 and exits 0."""
    api = Api(gunicorn)
    alice, bob = api.new_user("alice"), api.new_user("bob")
    room = api.create_room(alice, "prod")["id"]
    assert bob.join(room).status_code == 200
    a, b = alice.ws(), bob.ws()
    a.join(room)
    b.join(room)
    assert a.say(room, "hello from gunicorn")["seq"] == 1
    assert b.expect("message")["body"] == "hello from gunicorn"
    assert api.get("/nope").json()["error"]["code"] == "not_found"
    gunicorn.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert a.expect_closed(timeout=10) == 1001
    assert b.expect_closed(timeout=10) == 1001
    assert gunicorn.proc.wait(20) == 0, gunicorn.log()  # type: ignore[union-attr]


def test_procfile_command_with_two_workers_refuses_to_start(tmp_path: Path) -> None:
    """Without the backplane several workers would split rooms, so gunicorn stops at once with why."""
    command = procfile_web_command()
    assert "-w ${WEB_CONCURRENCY:-1}" in command
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": "",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "refusing to start 2 workers" in done.stderr
    assert "REDIS_URL" in done.stderr and "DATABASE_URL=postgresql" in done.stderr
    assert "Traceback" not in done.stderr
