"""The asyncio shell around `Peer` (aioquic's QuicConnectionProtocol pattern).

`SessionProtocol` feeds a connection's bytes into the peer; `PeerDriver` performs the peer's
actions (connect, close), hands its events to a callback, writes each connection's output
once per event-loop tick, and keeps one `loop.call_at` armed from `Peer.next_timer()`.
`Listener` accepts connections for every configured neighbor and hands each to its driver.
The protocol logic lives in `peer.py` / `session.py`; nothing here decides anything BGP.

Logging: one structured line per session event, states by their RFC names ("OpenSent").
A neighbor's state changes are debug lines; an attempt that fails before Established (a
refused connect, an OPEN refused) is an info line with its error; the speaker logs the
established session and its end. Repeated failures and refused connections are rate
limited (`common.ratelimit`), with a line saying how many were suppressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Mapping
from typing import Any

from bgpd.session.errors import ADMIN_SHUTDOWN, CEASE_OUT_OF_RESOURCES
from bgpd.session.events import (
    CloseRequested,
    ConnectRequested,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
)
from bgpd.session.fsm import State
from bgpd.session.limits import ConnectionRateLimiter
from bgpd.session.peer import Peer
from bgpd.session.sendlimit import MAX_BUFFERED
from bgpd.session.session import Counters
from bgpd.session.settings import GTSM_TTL, PeerSettings
from bgpd.session.sockopts import (
    IPPROTO_TCP,
    TCP_MD5SIG,
    connection_options,
    md5sig,
    normalize_address,
)
from bgpd.wire.errors import CEASE
from bgpd.wire.family import Family
from bgpd.wire.messages import Notification
from common.log import get_logger
from common.ratelimit import LogLimiter, Suppressed

log = get_logger("bgpd.session")

HIGH_WATER = 8 << 10
"""Transport buffer level that pauses writing. The transport's buffer is a copy per
connection, while the backlog behind it holds the update group's shared bytes objects: a
low mark keeps a reflector with thousands of clients from holding thousands of copies
(5000 clients x 1 MiB marks held 1.3 GB; at 32 KiB, with 16 KiB pieces, a burst of
write-outs still held 300 MB). The kernel's socket buffer still keeps the connection busy
between a pause and the resume."""
LOW_WATER = 2 << 10
WRITE_PIECE = 8 << 10
"""Largest slice of shared output handed to the transport at once (see `_write_pieces`)."""
CLOSE_TIMEOUT = 5.0
"""How long a closing connection may take to flush before it is aborted."""

EventCallback = Callable[[SessionEvent], None]

ATTEMPT_FAILED = "session attempt failed"
CONNECTION_REFUSED = "connection refused"
ACCEPT_FAILED = "accept failed"


class LogThrottle:
    """A `LogLimiter` on the running loop: logs the events it allows, and each summary of
    suppressed ones when its window ends (a timer armed only while one is owed)."""

    def __init__(self, limiter: LogLimiter | None = None) -> None:
        self.limiter = limiter if limiter is not None else LogLimiter()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def log(self, level: str, event: str, subject: Hashable, fields: Mapping[str, Any]) -> bool:
        """Log `event` with `fields` unless too many like it (same event and subject) came
        lately; True when logged."""
        loop = asyncio.get_running_loop()
        allowed = self.limiter.allow(event, subject, loop.time(), fields)
        if allowed:
            getattr(log, level)(event, **fields)
        self._arm(loop)
        return allowed

    def close(self) -> None:
        """Log what is still owed (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        with contextlib.suppress(RuntimeError):  # no running loop: nothing was throttled
            now = asyncio.get_running_loop().time()
            for summary in self.limiter.drain(now):
                _log_suppressed(summary)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self.limiter.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = self._timer_at = None
        for summary in self.limiter.due(loop.time()):
            _log_suppressed(summary)
        self._arm(loop)


def _log_suppressed(s: Suppressed) -> None:
    log.info("suppressed similar", kind=s.kind, suppressed=s.count,
             seconds=round(s.seconds, 1), **s.detail)


class SessionProtocol(asyncio.Protocol):
    """One TCP connection of a `PeerDriver`. Holds output while the transport is paused."""

    def __init__(self, driver: PeerDriver, conn_id: int) -> None:
        self._driver = driver
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.closing = False
        self.overflowed = False
        # Output the transport has not taken yet: the update group's shared bytes (or views
        # into them), never copied per connection.
        self._backlog: deque[bytes | memoryview] = deque()
        self._backlog_size = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Output is already coalesced per tick; Nagle would only add latency.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._driver._attach(self)

    def data_received(self, data: bytes) -> None:
        if not self.closing:
            self._driver._data_received(self.conn_id, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._backlog.clear()
        self._backlog_size = 0
        self._driver._connection_lost(self, exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        backlog = self._backlog
        while backlog and not self.paused and self.transport is not None:
            data = backlog.popleft()
            self._backlog_size -= len(data)
            rest = self._write_pieces(data)
            if rest is not None:
                backlog.appendleft(rest)
                self._backlog_size += len(rest)
        self._driver._writable()

    def _write_pieces(self, data: bytes | memoryview) -> memoryview | None:
        """Hand `data` to the transport in WRITE_PIECE slices until it pauses; return the
        rest, a view into `data`. asyncio copies what the socket does not take at once into
        a buffer of the connection's own, so writing a tick's whole output (shared by the
        update group) would copy it per member: 1.5 GB for 5000 clients."""
        view = memoryview(data)
        size = len(view)
        pos = 0
        while pos < size:
            if self.paused or self.transport is None:
                return view[pos:]
            self.transport.write(view[pos : pos + WRITE_PIECE])
            pos += WRITE_PIECE
        return None

    # driver side

    @property
    def buffered(self) -> int:
        queued = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self._backlog_size + queued

    def write(self, data: bytes) -> bool:
        """Queue `data`; False when the connection holds more than the driver's cap."""
        if self.transport is None or not data:
            return True
        if self.paused or self._backlog:
            self._backlog.append(data)
            self._backlog_size += len(data)
        elif len(data) <= WRITE_PIECE:
            self.transport.write(data)
        else:
            rest = self._write_pieces(data)
            if rest is not None:
                self._backlog.append(rest)
                self._backlog_size += len(rest)
        return self.buffered <= self._driver.max_buffered

    def close(self) -> None:
        """Flush what is queued (a NOTIFICATION, usually), then close; abort if that hangs."""
        if self.transport is None or self.closing:
            return
        self.closing = True
        if self._backlog:
            self.transport.write(b"".join(self._backlog))
            self._backlog.clear()
            self._backlog_size = 0
        self.transport.close()
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class PeerDriver:
    """Runs one configured neighbor: `start()`, `await stop()`, `send()` pre-encoded
    UPDATEs. Events go to `on_event` synchronously, in order."""

    def __init__(
        self,
        settings: PeerSettings,
        on_event: EventCallback,
        *,
        max_buffered: int = MAX_BUFFERED,
    ) -> None:
        self.settings = settings
        self.max_buffered = max_buffered
        self._on_event = on_event
        self._peer = Peer(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocols: dict[int, SessionProtocol] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connect_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._processing = False
        self._state_since = time.time()
        self._established_since: float | None = None
        self._drained: asyncio.Event | None = None
        self._all_closed: asyncio.Event | None = None
        self._throttle = LogThrottle()

    # --- status ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def peer(self) -> Peer:
        return self._peer

    @property
    def state(self) -> State:
        return self._peer.state

    @property
    def state_text(self) -> str:
        """BIRD's word for the state ("Passive" for a waiting passive neighbor)."""
        return self._peer.state_text

    @property
    def info(self) -> str:
        """The last error, BIRD-style: "Socket: Connection refused", "Received: Bad peer AS"."""
        return self._peer.info

    @property
    def state_since(self) -> float:
        """Wall-clock time (time.time()) of the last state change."""
        return self._state_since

    @property
    def established_since(self) -> float | None:
        return self._established_since

    @property
    def stats(self) -> Counters:
        """Messages and UPDATEs in and out since the driver was made (a copy)."""
        return self._peer.counters.snapshot()

    @property
    def write_paused(self) -> bool:
        """The established connection's transport asked us to stop writing."""
        proto = self._established_protocol()
        return proto is not None and proto.paused

    @property
    def buffered_bytes(self) -> int:
        proto = self._established_protocol()
        return proto.buffered if proto is not None else 0

    async def drained(self) -> None:
        """Wait until the established connection takes writes again (or is gone): a
        producer of a full-table dump awaits this between slices."""
        while self.write_paused:
            if self._drained is None:
                self._drained = asyncio.Event()
            await self._drained.wait()

    # --- control --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._peer.start(self._loop.time())
        self._process()

    async def stop(self, notification: Notification | None = ADMIN_SHUTDOWN) -> None:
        """Send `notification` (default Cease / Administrative Shutdown) on every
        connection, close them, and return once they are closed."""
        loop = self._running_loop()
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        self._peer.stop(loop.time(), notification)
        self._process()
        self._flush()
        if self._protocols:
            self._all_closed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), CLOSE_TIMEOUT + 1)
        for proto in list(self._protocols.values()):
            proto.abort()
        for task in list(self._tasks):
            task.cancel()
        self._cancel_timer()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._throttle.close()

    def send(self, data: bytes, count: int | None = None) -> None:
        """Queue pre-encoded UPDATE messages; written with the tick's other output.
        Raises LocalSessionError unless established."""
        self._peer.send_update_bytes(data, count)
        self._schedule_flush()

    def close_for(self, notification: Notification, hold_down: float) -> None:
        """Close the neighbor's connections with `notification` and refuse it for
        `hold_down` seconds (maximum prefixes exceeded, say); it then starts again."""
        self._peer.close_for(self._running_loop().time(), notification, hold_down)
        self._process()

    def drop(self, reason: str) -> None:
        """Close every connection at once, without a NOTIFICATION and without graceful
        restart (the path to the peer failed: BFD said so), then start again by the usual
        rules. `reason` is what the session's info shows."""
        now = self._running_loop().time()
        for conn_id in self._peer.connection_ids():
            self._peer.close_connection(conn_id, now, None, reason=reason, graceful=False)
        self._process()

    def set_reading(self, reading: bool) -> None:
        """Stop (False) or resume (True) reading the established connection: backpressure
        while the daemon works through the routes it already has. Timers keep running."""
        proto = self._established_protocol()
        if proto is None or proto.transport is None or proto.closing:
            return
        if reading:
            proto.transport.resume_reading()
        else:
            proto.transport.pause_reading()

    def request_refresh(self, family: Family, subtype: int = 0) -> None:
        self._peer.send_route_refresh(family, subtype)
        self._schedule_flush()

    def accept(self, sock: socket.socket) -> bool:
        """Take a connection the listener accepted from this neighbor's address; False
        when the neighbor does not want it now (the caller closes the socket)."""
        if self._loop is None:
            return False
        conn_id = self._peer.connection_made(self._loop.time(), outgoing=False)
        if conn_id is None:
            self._process()
            return False
        try:
            for opt in connection_options(self.settings, sock.family):
                if opt.name != TCP_MD5SIG:  # the listening socket's keys already apply
                    sock.setsockopt(opt.level, opt.name, opt.value)
        except OSError as exc:
            log.warning("socket options on an accepted connection failed", peer=self.name,
                        address=self.settings.peer_address, error=_strerror(exc))
        self._spawn(self._attach_accepted(conn_id, sock))
        self._process()
        return True

    # --- the loop -------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _process(self, *, flush: bool = True) -> None:
        """Perform actions, deliver events, re-arm the timer and (unless called from the
        flush itself) schedule this tick's flush if anything is queued to send."""
        if self._processing:
            return  # an on_event callback re-entered us; the outer loop picks it up
        self._processing = True
        try:
            while True:
                action = self._peer.next_action()
                if isinstance(action, ConnectRequested):
                    self._start_connect()
                elif isinstance(action, CloseRequested):
                    self._close_connection(action.conn_id)
                elif (event := self._peer.next_event()) is not None:
                    self._deliver(event)
                else:
                    break
        finally:
            self._processing = False
        # Only when there is something to write: a KEEPALIVE read from an idle peer then
        # costs the read alone, not a second callback that finds nothing to send.
        if flush and self._peer.has_output():
            self._schedule_flush()
        self._arm_timer()

    def _deliver(self, event: SessionEvent) -> None:
        if isinstance(event, StateChanged):
            self._state_since = time.time()
            self._log_state(event)
        elif isinstance(event, SessionEstablished):
            self._established_since = time.time()
        elif isinstance(event, SessionDown):
            self._established_since = None
            self._writable()
        try:
            self._on_event(event)
        except Exception:
            log.exception("event handler failed", peer=self.name, on=type(event).__name__)

    def _log_state(self, event: StateChanged) -> None:
        """One line per state change: debug, or, for an attempt that failed before
        Established, info with its error, at most once a minute per error. (An established
        session's end is the speaker's "session down" line.)"""
        fields: dict[str, Any] = {
            "peer": self.name, "address": self.settings.peer_address,
            "old": str(event.old), "new": str(event.new),
        }
        if event.error:
            fields["error"] = event.error
            if event.old is not State.ESTABLISHED and self._throttle.log(
                "info", ATTEMPT_FAILED, event.error, fields
            ):
                return
        log.debug("session state", **fields)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every connection's output of this tick: small pieces joined, an update
        group's shared bytes as they are (never copied per peer)."""
        self._flush_handle = None
        loop = self._running_loop()
        for conn_id, proto in list(self._protocols.items()):
            if proto.closing:
                continue
            ok = True
            for data in self._peer.chunks_to_send(conn_id):
                ok = proto.write(data) and ok
            if not ok:
                log.warning("peer is not reading; resetting", peer=self.name,
                            address=self.settings.peer_address, queued_bytes=proto.buffered)
                proto.overflowed = True
                self._peer.close_connection(
                    conn_id,
                    loop.time(),
                    Notification(CEASE, CEASE_OUT_OF_RESOURCES),
                    reason="Error: Send buffer overflow",
                )
        self._process(flush=False)

    def _arm_timer(self) -> None:
        deadline = self._peer.next_timer()
        if deadline == self._timer_at:
            return
        if deadline is not None and self._timer_at is not None and deadline > self._timer_at:
            # Only later (every message sent pushes the keepalive back): the armed timer
            # fires early, finds nothing due and re-arms. Cheaper than a new loop timer per
            # write, with thousands of sessions written every tick.
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer_at = deadline
            self._timer = self._running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        # asyncio may run a handle a clock tick early; never hand the peer a time before
        # the deadline it asked for, or it would ask for the same deadline forever.
        due = self._timer_at if self._timer_at is not None else 0.0
        self._timer = None
        self._timer_at = None
        self._peer.handle_timer(max(self._running_loop().time(), due))
        self._process(flush=False)
        # A timer's output (a KEEPALIVE, mostly) is written now rather than by a callback of
        # its own, unless this tick's flush is already due.
        if self._flush_handle is None and self._peer.has_output():
            self._flush()

    # --- connections ----------------------------------------------------------------------

    def _start_connect(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()  # the previous attempt timed out
        self._connect_task = self._spawn(self._connect())

    async def _connect(self) -> None:
        loop = self._running_loop()
        s = self.settings
        family = socket.AF_INET if s.ip_version == 4 else socket.AF_INET6
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            for opt in connection_options(s, family):
                sock.setsockopt(opt.level, opt.name, opt.value)
            if s.local_address is not None:
                sock.bind((s.local_address, 0))
            await loop.sock_connect(sock, (s.peer_address, s.peer_port))
        except OSError as exc:
            sock.close()
            self._connect_task = None
            self._peer.connect_failed(loop.time(), _strerror(exc))
            self._process()
            return
        except BaseException:
            sock.close()
            raise
        self._connect_task = None
        conn_id = self._peer.connection_made(loop.time(), outgoing=True)
        if conn_id is None:
            sock.close()
            self._process()
            return
        try:
            await loop.create_connection(lambda: SessionProtocol(self, conn_id), sock=sock)
        except OSError as exc:
            sock.close()
            self._peer.connection_lost(conn_id, loop.time(), exc)
        self._process()

    async def _attach_accepted(self, conn_id: int, sock: socket.socket) -> None:
        loop = self._running_loop()
        try:
            await loop.connect_accepted_socket(lambda: SessionProtocol(self, conn_id), sock)
        except OSError as exc:
            sock.close()
            self._peer.connection_lost(conn_id, loop.time(), exc)
            self._process()
        except BaseException:
            sock.close()
            raise

    def _attach(self, proto: SessionProtocol) -> None:
        self._protocols[proto.conn_id] = proto
        if self._peer.session(proto.conn_id) is None:
            # Closed while its transport was being set up: send what is left, then close.
            proto.write(self._peer.data_to_send(proto.conn_id))
            proto.close()
            return
        self._schedule_flush()

    def _close_connection(self, conn_id: int) -> None:
        proto = self._protocols.get(conn_id)
        if proto is None:
            return  # not attached yet: _attach closes it
        if proto.overflowed:
            self._peer.data_to_send(conn_id)
            proto.abort()
            return
        proto.write(self._peer.data_to_send(conn_id))
        proto.close()

    def _data_received(self, conn_id: int, data: bytes) -> None:
        self._peer.receive_data(conn_id, data, self._running_loop().time())
        self._process()

    def _connection_lost(self, proto: SessionProtocol, exc: Exception | None) -> None:
        if self._protocols.get(proto.conn_id) is proto:
            del self._protocols[proto.conn_id]
        self._peer.connection_lost(proto.conn_id, self._running_loop().time(), exc)
        self._process()
        if not self._protocols and self._all_closed is not None:
            self._all_closed.set()

    def _established_protocol(self) -> SessionProtocol | None:
        session = self._peer.established
        return self._protocols.get(session.conn_id) if session is not None else None

    def _writable(self) -> None:
        if self._drained is not None and not self.write_paused:
            self._drained.set()
            self._drained = None


class Listener:
    """The BGP listening socket: accepts connections from configured neighbors only, each
    source address within a connection rate (`limits.ConnectionRateLimiter`)."""

    def __init__(
        self,
        sock: socket.socket,
        lookup: Callable[[str], PeerDriver | None],
        limiter: ConnectionRateLimiter | None = None,
    ) -> None:
        self._sock = sock
        self._lookup = lookup
        self.limiter = limiter if limiter is not None else ConnectionRateLimiter()
        self.refused = 0
        self._task: asyncio.Task[None] | None = None
        self._md5: dict[str, str] = {}
        self._throttle = LogThrottle()

    @classmethod
    async def start(
        cls,
        host: str,
        port: int,
        lookup: Callable[[str], PeerDriver | None],
        limiter: ConnectionRateLimiter | None = None,
    ) -> Listener:
        """Bind and listen. Host "::" is dual-stack (IPv4 peers arrive IPv4-mapped)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Handshake replies leave with the listener's TTL, before any per-peer option
            # applies: use GTSM's 255 (as BIRD does) so a peer with ttl security hears us.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, GTSM_TTL)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, GTSM_TTL)
                if host == "::":
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        listener = cls(sock, lookup, limiter)
        listener._task = asyncio.get_running_loop().create_task(listener._accept_loop())
        return listener

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def family(self) -> int:
        return int(self._sock.family)

    def set_md5(self, peer_address: str, password: str | None) -> None:
        """Require (or, with None, stop requiring) TCP MD5 for connections from a peer."""
        address = normalize_address(peer_address)
        if password is None and address not in self._md5:
            return
        try:
            self._sock.setsockopt(
                IPPROTO_TCP, TCP_MD5SIG, md5sig(address, password, self._sock.family)
            )
        except OSError as exc:
            if password is not None or exc.errno != errno.ENOENT:
                raise
        if password is None:
            self._md5.pop(address, None)
        else:
            self._md5[address] = password

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._sock.close()
        self._throttle.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(self._sock)
            except OSError as exc:
                # EMFILE and friends: keep listening, but do not spin (nor flood the log).
                error = _strerror(exc)
                self._throttle.log("warning", ACCEPT_FAILED, error, {"error": error})
                await asyncio.sleep(0.1)
                continue
            address = normalize_address(addr[0])
            # Decided on the source address alone, before a byte is read: an unknown
            # address keeps no state here, a known one is held to its connection rate.
            driver = self._lookup(address)
            if driver is None:
                reason = "not a configured neighbor"
            elif not self.limiter.allow(address, loop.time()):
                reason = "connection rate exceeded"
            elif not driver.accept(conn):
                reason = "neighbor not accepting now"
            else:
                continue
            self.refused += 1
            # A flood from one address must not flood the log too.
            self._throttle.log(
                "info", CONNECTION_REFUSED, address, {"address": address, "reason": reason}
            )
            conn.close()


def _strerror(exc: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed (...)" wrapper text."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
