"""The asyncio shell around `SessionTable` (aioquic's QuicConnectionProtocol pattern).

`BfdManager` is what the daemon calls: `add(peer, local, interval, multiplier)`,
`remove(peer)`, `sessions()` for `show bfd sessions`, and an `on_event` callback that hears
`BfdUp` / `BfdDown` (and every `BfdStateChanged`, for logs). Underneath:

* one receive socket per family on UDP 3784 serves every session (RFC 5881 4); its
  ancillary data gives each datagram's TTL (single hop: 255, or it is dropped) and
  interface;
* one transmit socket per local address, TTL 255, bound to a source port in 49152-65535
  that all sessions from that address share (RFC 5881 4: the same port for a session's
  life; "unique per session" is a SHOULD);
* one `loop.call_at` armed from `SessionTable.next_timer()`.

After every input (a datagram, a timer, an API call) `_flush()` sends what the table
queued, hands its events to the callback and re-arms the timer. Nothing here decides
anything BFD. A datagram that cannot be sent is dropped: BFD tolerates loss by design,
and a path that keeps failing is what the detection time reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import random
import socket
import time
from collections.abc import Callable

from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdEvent
from bgpd.bfd.packet import State
from bgpd.bfd.session import Timers
from bgpd.bfd.sockopts import (
    ANCILLARY_SPACE,
    CONTROL_PORT,
    SOURCE_PORTS,
    parse_ancillary,
    receive_options,
    send_options,
)
from bgpd.bfd.status import BfdSessionStatus
from bgpd.bfd.table import Datagram, SessionTable, peer_key
from common.log import get_logger

log = get_logger("bgpd.bfd")

RECEIVE_BATCH = 256
"""Datagrams read per wake-up before yielding to the loop again."""
RECEIVE_SIZE = 512
BIND_ATTEMPTS = 64

EventCallback = Callable[[BfdEvent], None]

_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_ANY = {4: "0.0.0.0", 6: "::"}


class BfdSocketError(OSError):
    """A BFD socket could not be opened (port 3784 taken, no IPv6, no permission)."""


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


class BfdManager:
    """Every BFD session of this node. Use `async with BfdManager(...)`, or `await start()`
    and `await close()`."""

    def __init__(
        self,
        on_event: EventCallback | None = None,
        *,
        listen_port: int = CONTROL_PORT,
        peer_port: int = CONTROL_PORT,
        listen_addresses: tuple[str, ...] = ("0.0.0.0", "::"),
        rng: random.Random | None = None,
    ) -> None:
        """`listen_port` / `peer_port` differ from 3784 only in tests that run two managers
        on one host. `listen_addresses`: one wildcard (or specific) address per family to
        serve; a family whose socket cannot be opened (no IPv6) is skipped with a warning."""
        self.on_event = on_event
        self.listen_port = listen_port
        self.peer_port = peer_port
        self.listen_addresses = listen_addresses
        self.table = SessionTable(rng if rng is not None else random.SystemRandom())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx: dict[int, socket.socket] = {}
        self._tx: dict[tuple[int, str | None], socket.socket] = {}
        self._tx_failed: set[tuple[int, str | None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ifnames: dict[int, str] = {}
        self._drop_kinds: set[str] = set()
        self.send_errors = 0

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the receive sockets. Raises BfdSocketError when no family could be served
        (the port is in use, say)."""
        if self._loop is not None:
            raise LocalBfdError("BFD manager already started")
        self._loop = asyncio.get_running_loop()
        problems: list[str] = []
        for address in self.listen_addresses:
            version = _family(address)
            try:
                sock = self._open_receiver(version, address)
            except OSError as exc:
                problems.append(f"{address} port {self.listen_port}: {exc.strerror or exc}")
                continue
            self._rx[version] = sock
            self._loop.add_reader(sock.fileno(), self._on_readable, sock)
        if not self._rx:
            self._loop = None
            raise BfdSocketError(f"cannot receive BFD: {'; '.join(problems)}")
        for problem in problems:
            log.warning("bfd.family_unavailable", problem=problem)
        log.info(
            "bfd.listening", port=self.listen_port, families=sorted(self._rx), sessions=len(self)
        )

    async def close(self) -> None:
        """Tell every peer we are going AdminDown (so their clients see no failure,
        RFC 5882 3.2), then close the sockets."""
        if self._loop is None:
            return
        now = self._loop.time()
        for record in self.table.status(now, 0.0):
            self.table.remove(record.address, now)
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sock in self._rx.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for sock in self._tx.values():
            sock.close()
        self._rx.clear()
        self._tx.clear()
        self._loop = None

    async def __aenter__(self) -> BfdManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __len__(self) -> int:
        return len(self.table)

    # --- the API the daemon uses ------------------------------------------------------------

    def add(
        self,
        peer_address: str,
        local_address: str | None = None,
        interval: float = 0.3,
        multiplier: int = 3,
        min_rx: float | None = None,
    ) -> None:
        """Run a session with `peer_address` (seconds; `interval` is both the desired TX and
        the required RX interval unless `min_rx` is given). Calling it again for the same
        peer changes its timers (with a Poll Sequence) or its local address. Raises
        LocalBfdError for bad values."""
        loop = self._running()
        version = _family(peer_key(peer_address))
        if version not in self._rx:
            raise LocalBfdError(f"{peer_address}: no IPv{version} BFD socket (see the log)")
        self.table.add(
            peer_address, Timers.of(interval, multiplier, min_rx), loop.time(), local=local_address
        )
        self._flush()

    def remove(self, peer_address: str) -> bool:
        """Stop the session (AdminDown is announced for a detection time, then it is gone);
        False when there was none."""
        loop = self._running()
        removed = self.table.remove(peer_address, loop.time())
        self._flush()
        return removed

    def state(self, peer_address: str) -> State | None:
        session = self.table.get(peer_address)
        return None if session is None else session.state

    def sessions(self) -> list[BfdSessionStatus]:
        """Every session, as `show bfd sessions` shows it."""
        loop = self._running()
        return self.table.status(loop.time(), time.time())

    def _running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise LocalBfdError("BFD manager not started")
        return self._loop

    # --- sockets ----------------------------------------------------------------------------

    def _open_receiver(self, version: int, address: str) -> socket.socket:
        sock = socket.socket(_FAMILIES[version], socket.SOCK_DGRAM)
        try:
            for level, name, value in receive_options(_FAMILIES[version]):
                sock.setsockopt(level, name, value)
            sock.bind((address, self.listen_port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _transmitter(self, version: int, local: str | None) -> socket.socket | None:
        key = (version, local)
        sock = self._tx.get(key)
        if sock is not None:
            return sock
        try:
            sock = self._open_transmitter(version, local)
        except OSError as exc:
            if key not in self._tx_failed:
                self._tx_failed.add(key)
                log.warning(
                    "bfd.transmit_socket_failed",
                    local=local,
                    family=version,
                    error=exc.strerror or str(exc),
                )
            return None
        self._tx_failed.discard(key)
        self._tx[key] = sock
        return sock

    def _open_transmitter(self, version: int, local: str | None) -> socket.socket:
        sock = socket.socket(_FAMILIES[version], socket.SOCK_DGRAM)
        try:
            for level, name, value in send_options(_FAMILIES[version]):
                with contextlib.suppress(PermissionError):  # SO_PRIORITY 7 may need CAP_NET_ADMIN
                    sock.setsockopt(level, name, value)
            start = random.randrange(len(SOURCE_PORTS))
            for attempt in range(BIND_ATTEMPTS):
                port = SOURCE_PORTS[(start + attempt) % len(SOURCE_PORTS)]
                try:
                    sock.bind((local or _ANY[version], port))
                    break
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
            else:
                raise OSError(errno.EADDRINUSE, "no free source port in 49152-65535")
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(self, datagram: Datagram) -> None:
        sock = self._transmitter(_family(datagram.peer), datagram.local)
        if sock is None:
            self.send_errors += 1
            return
        try:
            sock.sendto(datagram.data, (datagram.peer, self.peer_port))
        except OSError as exc:  # a full buffer, no route: this packet is lost
            self.send_errors += 1
            log.debug("bfd.send_failed", peer=datagram.peer, error=exc.strerror or str(exc))

    def _interface(self, ifindex: int | None) -> str | None:
        if not ifindex:
            return None
        name = self._ifnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                return None
            self._ifnames[ifindex] = name
        return name

    def _on_readable(self, sock: socket.socket) -> None:
        loop = self._loop
        if loop is None:
            return
        for _ in range(RECEIVE_BATCH):
            try:
                data, ancdata, _flags, address = sock.recvmsg(RECEIVE_SIZE, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("bfd.receive_failed", error=exc.strerror or str(exc))
                break
            info = parse_ancillary(ancdata)
            source = str(address[0]).split("%", 1)[0]
            reason = self.table.receive(
                data,
                loop.time(),
                source=source,
                ttl=info.ttl,
                interface=self._interface(info.ifindex),
            )
            if reason is not None:
                kind = reason.split(":", 1)[0]
                if kind not in self._drop_kinds:  # once per kind; `dropped` counts them all
                    self._drop_kinds.add(kind)
                    log.info("bfd.dropped", reason=reason)
                else:
                    log.debug("bfd.dropped", reason=reason)
        self._flush()

    # --- timers and output ------------------------------------------------------------------

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        loop = self._loop
        if loop is None:
            return
        self.table.handle_timer(loop.time())
        self._flush()

    def _flush(self) -> None:
        for datagram in self.table.datagrams_to_send():
            self._send(datagram)
        while (event := self.table.next_event()) is not None:
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("bfd.callback_failed", bfd_event=repr(event))
        self._arm()

    def _arm(self) -> None:
        loop = self._loop
        deadline = self.table.next_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if loop is not None and deadline is not None:
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline
