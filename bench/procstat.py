"""What the benchmarks read about processes from /proc: CPU seconds, RSS, process trees, and
whether a process's network namespace listens on a TCP port.

Everything here reads files; the parsing halves are pure (text in, values out) so the unit
tests can feed them captured text.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
TCP_LISTEN = "0A"  # st column of /proc/net/tcp


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat line from field 3 (state) on; the command name, which
    may hold spaces and parentheses, is skipped."""
    return text[text.rindex(")") + 2 :].split()


def _stat(pid: int) -> list[str]:
    return stat_fields(Path(f"/proc/{pid}/stat").read_text())


def process_tree(roots: list[int]) -> list[int]:
    """`roots` and all their descendants that are alive now."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
    tree = {p for p in roots if p in parents}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(tree)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes (those gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def status_kb(text: str, field: str) -> int:
    """A "VmRSS:"-style field of /proc/PID/status, in kB (0 when absent: a kernel thread)."""
    for line in text.splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pids: list[int], field: str = "VmHWM:") -> float:
    """The sum over the processes of a status field (peak RSS by default), in MiB."""
    total = 0
    for pid in pids:
        try:
            total += status_kb(Path(f"/proc/{pid}/status").read_text(), field)
        except OSError:
            continue
    return total / 1024


def listening_ports(text: str) -> set[int]:
    """Local ports in LISTEN state in a /proc/net/tcp or tcp6 table."""
    ports = set()
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) > 3 and parts[3] == TCP_LISTEN:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def listens(pid: int, port: int) -> bool:
    """Whether anything in `pid`'s network namespace listens on TCP `port` (IPv4 or IPv6)."""
    for table in ("tcp", "tcp6"):
        try:
            if port in listening_ports(Path(f"/proc/{pid}/net/{table}").read_text()):
                return True
        except OSError:
            continue
    return False


def schedstat_ns(text: str) -> int:
    """Nanoseconds on a CPU from one /proc/PID/task/TID/schedstat line (its first field)."""
    return int(text.split()[0])


def run_ns(pid: int) -> int:
    """Nanoseconds the process's live threads have run: exact, where utime + stime count
    in clock ticks (10 ms), too coarse for a daemon that is meant to be nearly idle."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            total += schedstat_ns(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text())
        except (OSError, ValueError, IndexError):
            continue
    return total
