"""systemd's notify protocol (sd_notify(3)) with the standard library: newline-separated
`KEY=VALUE` lines in one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET.

A path starting with '@' is in the abstract namespace (its first byte is NUL on the wire).
Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon needs no branches.
Send failures are swallowed: a manager that went away must not stop the daemon.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping


def socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as an address for sendto: a filesystem path, or the abstract name as bytes
    with its leading NUL. None for a value sd_notify would not use (empty, relative, vsock)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """The watchdog timeout in seconds from $WATCHDOG_USEC, if it is meant for this process
    ($WATCHDOG_PID, when set, names the process systemd watches)."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


def session_summary(established: int, total: int) -> str:
    """The STATUS= text systemctl status shows, e.g. '3/4 sessions established'."""
    return f"{established}/{total} sessions established"


class Notifier:
    """One datagram socket to the service manager, opened on first use."""

    def __init__(self, env: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if env is None else env
        pid = os.getpid() if pid is None else pid
        self.address = socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog = watchdog_interval(env, pid) if self.address is not None else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send the lines as one message; True if the manager got it."""
        if self.address is None or not lines:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def keep_alive(notifier: Notifier) -> None:
    """Ping the watchdog at half its interval until cancelled (returns at once without one).
    Run it as a task on the loop the watchdog is meant to watch: a wedged loop stops pinging."""
    if notifier.watchdog is None:
        return
    while True:
        notifier.notify("WATCHDOG=1")
        await asyncio.sleep(notifier.watchdog / 2)
