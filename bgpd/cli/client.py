"""A blocking client for bgpd's control socket, for bgpctl and scripts.

Each failure is a `ClientError` whose `exit_code` bgpctl returns: 3 when bgpd cannot be reached,
4 when the socket refuses us, 1 when bgpd answers with an error or with something unreadable.
"""

from __future__ import annotations

import errno
import json
import socket
from typing import Any, BinaryIO

from bgpd.status.codec import from_json
from bgpd.status.records import DaemonStatus, RouteEntry

DEFAULT_SOCKET = "/run/pybgpd/bgpd.sock"
SOCKET_ENV = "BGPD_CONTROL_SOCKET"
DEFAULT_TIMEOUT = 30.0


class ClientError(Exception):
    exit_code = 1


class DaemonUnreachable(ClientError):
    exit_code = 3

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot reach bgpd at {path}: {reason} (is bgpd running?)")
        self.path = path
        self.reason = reason


class ControlPermissionDenied(ClientError):
    exit_code = 4

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"cannot reach bgpd at {path}: {reason} "
            "(run as root or as a member of the socket's group)"
        )
        self.path = path
        self.reason = reason


class DaemonError(ClientError):
    """bgpd understood the connection and answered `ok: false`."""


class ResponseError(ClientError):
    """bgpd's answer was not a response of the control protocol."""


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__


class ControlClient:
    """One connection, opened on first use, carrying requests one at a time."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> tuple[socket.socket, BinaryIO]:
        if self._sock is not None and self._file is not None:
            return self._sock, self._file
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ControlPermissionDenied(self.path, _reason(exc)) from None
            raise DaemonUnreachable(self.path, _reason(exc)) from None
        self._sock, self._file = sock, sock.makefile("rb")
        return sock, self._file

    def request(self, command: str, **fields: Any) -> Any:
        """Send one request and return its result; raise a ClientError otherwise."""
        sock, reader = self._connect()
        line = json.dumps({"command": command, **fields}).encode() + b"\n"
        try:
            sock.sendall(line)
            answer = reader.readline()
        except OSError as exc:
            self.close()
            raise DaemonUnreachable(self.path, _reason(exc)) from None
        if not answer.endswith(b"\n"):
            self.close()
            raise DaemonUnreachable(self.path, "connection closed before a response")
        try:
            response = json.loads(answer)
        except ValueError as exc:
            raise ResponseError(f"unreadable response from bgpd: {exc}") from None
        if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
            raise ResponseError("unreadable response from bgpd: not a control response")
        if not response["ok"]:
            raise DaemonError(str(response.get("error") or "bgpd reported an error"))
        return response.get("result")

    def status(self) -> DaemonStatus:
        result = self.request("status")
        try:
            return from_json(DaemonStatus, result)
        except (TypeError, ValueError) as exc:
            raise ResponseError(f"unreadable status from bgpd: {exc}") from None

    def routes(self, prefix: str | None = None, *, longest: bool = False) -> list[RouteEntry]:
        """Paths of `prefix` (every path when None); `longest` finds the most specific
        prefix covering it instead of `prefix` itself, as BIRD's `show route for`."""
        fields: dict[str, Any] = {"prefix": prefix}
        if longest:
            fields["match"] = "longest"
        result = self.request("routes", **fields)
        try:
            return [from_json(RouteEntry, r) for r in result]
        except (TypeError, ValueError) as exc:
            raise ResponseError(f"unreadable routes from bgpd: {exc}") from None
