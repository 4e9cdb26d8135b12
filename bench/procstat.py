"""Reading from /proc (Linux): a process's CPU time and memory, a process tree's CPU, the
machine's CPU, and which process holds the server end of a TCP connection."""

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


def children(pid: int) -> list[int]:
    """The direct children of pid (empty if it has gone)."""
    return _children(pid)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of pid, of its children already reaped (cutime + cstime), and of its live children.

    For a gunicorn master that is the whole server, even across a worker restart: a
    dead worker's CPU moves into the master's cutime when the master reaps it.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / TICKS
    for child in _children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:
            pass  # exited between the two reads; the master will account for it
    return total


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """cpu_seconds of each pid still alive."""
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except OSError:
            pass
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two cpu_by_pid samples: a pid born in between counts from zero.

    A pid that exited in between is lost (its CPU cannot be read any more).
    """
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def parse_tcp_table(text: str, local_port: int) -> dict[int, int]:
    """From /proc/net/tcp text: socket inode -> remote port, for established sockets on local_port.

    On a server's own port these are its accepted connections, and the remote port is
    the client's local port: so a client socket can be matched to the process holding
    the other end.
    """
    out = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != "01":  # 01 = ESTABLISHED
            continue
        if int(parts[1].rsplit(":", 1)[1], 16) != local_port:
            continue
        out[int(parts[9])] = int(parts[2].rsplit(":", 1)[1], 16)
    return out


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets pid holds open (readable for our own processes, or as root)."""
    out = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = list(fd_dir.iterdir())
    except OSError:
        return out
    for fd in names:
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def peers_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """Client port -> pid of the process (among pids) holding the accepted end, for port's connections."""
    table = parse_tcp_table(Path("/proc/net/tcp").read_text(), port)
    out = {}
    for pid in pids:
        for inode in socket_inodes(pid) & table.keys():
            out[table[inode]] = pid
    return out


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1/0.0.0.0:port (e.g. the system redis-server), if visible."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 10 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(int(parts[9]))
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and socket_inodes(int(entry.name)) & inodes:
            return int(entry.name)
    return None


def parse_cpu_times(text: str) -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs from /proc/stat text.

    Idle and iowait are not busy; steal (time the hypervisor gave to other guests) is
    counted apart from busy.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]  # user .. steal; guest is inside user
            idle, steal = values[3] + values[4], values[7]
            return sum(values) - idle - steal, steal, sum(values)
    raise ValueError("no cpu line in /proc/stat")


def machine_cpu_times() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of the whole machine, every process included (other users too)."""
    return parse_cpu_times(Path("/proc/stat").read_text())
