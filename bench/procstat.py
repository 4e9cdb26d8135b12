"""Reading a process's CPU time and memory from /proc (Linux)."""

from __future__ import annotations

import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    values = {
        line.split(":")[0]: line.split()[1]
        for line in status
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return int(values.get("VmRSS", 0)), int(values.get("VmHWM", 0))


def worker_pid(pid: int, timeout_s: float = 10.0) -> int:
    """The process doing the work: gunicorn's only worker (bash -> gunicorn master -> worker), else pid."""
    deadline = time.monotonic() + timeout_s
    current = pid
    while time.monotonic() < deadline:
        children = _children(current)
        if not children:
            if current != pid or "gunicorn" not in _cmdline(pid) + _cmdline(current):
                return current
            time.sleep(0.1)
            continue
        current = children[0]
    return current


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""
