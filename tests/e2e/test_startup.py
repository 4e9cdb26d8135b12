"""Start-up that explains itself: a taken port, a wait for the database claim, make serve."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import (
    FAST_SETTINGS,
    ROOT,
    ServerProcess,
    free_port,
    procfile_web_command,
    wait_for,
)


def app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **FAST_SETTINGS,
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'greenroom.db'}",
        **extra,
    }


def test_a_port_in_use_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    """python app.py on a port another process listens on says so in one line and exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=app_env(tmp_path, PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines
    assert "listening" not in done.stdout


def test_a_port_in_use_under_gunicorn_is_one_line_and_exit_status_1(tmp_path: Path) -> None:
    """The Procfile's gunicorn on a taken port says so in one line and exits 1, without retrying."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = app_env(tmp_path, PORT=str(port), HOME=str(tmp_path))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        done = subprocess.run(
            ["bash", "-c", f"exec {procfile_web_command()}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, done
    # gunicorn logs its banner first; after it, one line (no retries, no traceback).
    lines = [line for line in done.stderr.splitlines() if "Starting gunicorn" not in line]
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0], lines


def test_waiting_for_the_database_claim_says_what_and_how_long(tmp_path: Path) -> None:
    """A second process on a running one's SQLite database logs what it waits for and the bound,
    then refuses in one line."""
    first = ServerProcess(tmp_path / "first").start()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=app_env(
                tmp_path,
                PORT="0",
                DATABASE_URL=first.env["DATABASE_URL"],
                GREENROOM_CLAIM_WAIT_S="1.5",
            ),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        first.stop()
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    waits = [line for line in done.stderr.splitlines() if "waiting up to" in line]
    assert len(waits) == 1, done.stderr
    assert re.search(r"waiting up to 1\.5 s .*database claim.*SQLite database", waits[0]), waits
    assert done.stderr.splitlines()[-1].startswith("greenroom: another Greenroom process")


def test_the_readme_shows_the_procfile_line() -> None:
    """The README's Procfile line is the Procfile's web: line, character for character."""
    readme = (ROOT / "README.md").read_text()
    shown = [line for line in readme.splitlines() if line.startswith("web: ")]
    assert shown == [f"web: {procfile_web_command()}"], shown


def test_make_serve_runs_the_procfile_command(tmp_path: Path) -> None:
    """make serve starts gunicorn as the Procfile says, serving on PORT; SIGTERM stops it."""
    port = free_port()
    env = app_env(tmp_path, PORT=str(port), HOME=str(tmp_path))
    env.pop("MAKEFLAGS", None)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
        except requests.RequestException:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            return False

    try:
        wait_for(up, timeout=30, interval=0.1)
        out = (tmp_path / "serve.log").read_text()
        assert "gunicorn" in out and "core.server.GeventWorker" in out, out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
