"""A scripted BGP peer on a plain socket: it sends exactly the bytes a test tells it to (good,
broken or hostile) from an address inside a lab node, and reads back what bgpd answers."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from bgpd.wire.codec import decode_message, encode_keepalive, encode_open, split_messages
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    Capability,
    FourOctetAs,
    Multiprotocol,
    Notification,
    Open,
)
from labs.harness.lab import Node

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_socket(node: Node, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket that lives in `node`'s network namespace (made by a thread that joins
    the namespace; a socket keeps the namespace it was made in)."""
    result: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(f"/var/run/netns/{node.netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            result.append(socket.socket(family, socket.SOCK_STREAM))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    made = result[0]
    if isinstance(made, BaseException):
        raise made
    return made


@dataclass
class Received:
    """What the scripted peer read: whole messages, and whether bgpd closed."""

    frames: list[bytes] = field(default_factory=list)
    closed: bool = False

    def types(self) -> list[int]:
        return [f[18] for f in self.frames]

    def notification(self) -> Notification | None:
        for frame in self.frames:
            if frame[18] == MSG_NOTIFICATION:
                msg = decode_message(frame)
                assert isinstance(msg, Notification)
                return msg
        return None


class RawPeer:
    """One TCP connection from `source` (an address of `node`) to bgpd at `target`."""

    def __init__(
        self,
        node: Node,
        source: str,
        target: str,
        *,
        asn: int,
        router_id: str,
        port: int = 179,
        rcvbuf: int | None = None,
    ) -> None:
        self.asn = asn
        self.router_id = router_id
        self.sock = netns_socket(node)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            # Before connect, so the window the peer advertises stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((source, 0))
        self.sock.settimeout(10)
        self.sock.connect((target, port))
        self._buf = b""
        self.received = Received()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending --------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def open_message(self, **overrides: object) -> bytes:
        caps: tuple[Capability, ...] = (
            Multiprotocol(Family.IPV4_UNICAST),
            FourOctetAs(self.asn),
        )
        fields: dict[str, object] = {
            "my_as": self.asn if self.asn <= 0xFFFF else 23456,
            "hold_time": 90,
            "bgp_id": int.from_bytes(socket.inet_aton(self.router_id), "big"),
            "capabilities": caps,
        }
        fields.update(overrides)
        return encode_open(Open(**fields))  # type: ignore[arg-type]

    def establish(self, hold_time: int = 90) -> None:
        """OPEN, then KEEPALIVEs both ways, as a well-behaved speaker."""
        self.send(self.open_message(hold_time=hold_time))
        self.read_until(lambda r: MSG_OPEN in r.types())
        self.send(encode_keepalive())
        self.read_until(lambda r: r.types().count(MSG_KEEPALIVE) >= 1)
        assert not self.received.closed, "bgpd closed during the OPEN exchange"

    # --- reading --------------------------------------------------------------------------

    def read_until(self, done: object, timeout: float = 20.0) -> Received:
        """Read messages until `done(received)` holds or bgpd closes; timeout is an error."""
        assert callable(done)
        deadline = time.monotonic() + timeout
        while not done(self.received):
            if self.received.closed:
                return self.received
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; read so far: types {self.received.types()}")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.received.closed = True
                continue
            self._buf += data
            frames, self._buf = split_messages(self._buf, 65535)
            self.received.frames.extend(frames)
        return self.received

    def expect_notification(self, code: int, subcode: int, timeout: float = 20.0) -> Notification:
        """Read until bgpd's NOTIFICATION and the close that follows it."""
        got = self.read_until(lambda r: r.closed, timeout)
        note = got.notification()
        assert note is not None, f"no NOTIFICATION; bgpd sent types {got.types()}"
        assert (note.code, note.subcode) == (code, subcode), note
        return note
