"""All of a node's BFD sessions behind one receive socket, sans-I/O.

`SessionTable` owns the sessions, allocates their discriminators and demultiplexes received
datagrams (RFC 5880 6.8.6, RFC 5881 3 and 5): by Your Discriminator when the peer knows
ours, else by the source address; single hop, so anything not sent with TTL 255 is
dropped. It merges the sessions' timers into one `next_timer()` (a heap, so a thousand
sessions cost log n per deadline, not n) and their output into `datagrams_to_send()`.

A removed session is not dropped at once: it goes AdminDown and keeps announcing that for
a detection time (6.8.16), so the peer sees an administrative down, not a failure.
"""

from __future__ import annotations

import heapq
import ipaddress
import random as _random
from collections import deque
from dataclasses import dataclass

from bgpd.bfd.errors import BfdPacketError, LocalBfdError
from bgpd.bfd.events import BfdEvent
from bgpd.bfd.packet import U32, State, decode_control, describe_diag
from bgpd.bfd.session import Session, Timers
from bgpd.bfd.status import BfdSessionStatus

SINGLE_HOP_TTL = 255
"""RFC 5881 5: sent with TTL (Hop Limit) 255; anything received with less is dropped."""


def peer_key(address: str) -> str:
    """The canonical text of a unicast peer address. Raises LocalBfdError."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        raise LocalBfdError(f"{address!r} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        raise LocalBfdError(f"{address}: BFD needs a unicast peer address")
    if ip.version == 6 and ip.is_link_local:
        raise LocalBfdError(
            f"{address}: link-local peers (which need an interface) are not supported"
        )
    return str(ip)


@dataclass(frozen=True, slots=True)
class Datagram:
    """A packet to send from `local` (None: the kernel chooses) to `peer`, port 3784."""

    data: bytes
    peer: str
    local: str | None


class _Entry:
    __slots__ = ("interface", "local", "removing", "session")

    def __init__(self, session: Session, local: str | None) -> None:
        self.session = session
        self.local = local
        self.interface: str | None = None
        self.removing = False


class SessionTable:
    def __init__(self, rng: _random.Random) -> None:
        self._rng = rng
        self._by_peer: dict[str, _Entry] = {}
        self._by_discriminator: dict[int, _Entry] = {}
        self._heap: list[tuple[float, int]] = []
        self._out: list[Datagram] = []
        self._events: deque[BfdEvent] = deque()
        self.dropped: dict[str, int] = {}

    # --- configuration --------------------------------------------------------------------

    def add(self, peer: str, timers: Timers, now: float, local: str | None = None) -> Session:
        """Start a session with `peer`, or reconfigure the one there is (a removed one that
        is still announcing AdminDown comes back). Raises LocalBfdError for bad addresses."""
        key = peer_key(peer)
        local_key = peer_key(local) if local is not None else None
        if local_key is not None and ipaddress.ip_address(local_key).version != (
            ipaddress.ip_address(key).version
        ):
            raise LocalBfdError(f"local address {local} is not of the family of {peer}")
        entry = self._by_peer.get(key)
        if entry is None:
            session = Session(key, self._new_discriminator(), timers, now, self._rng.random)
            entry = _Entry(session, local_key)
            self._by_peer[key] = entry
            self._by_discriminator[session.local_discriminator] = entry
        else:
            entry.local = local_key
            entry.removing = False
            entry.session.admin_up(now)
            entry.session.configure(timers, now)
        self._settle(entry)
        return entry.session

    def remove(self, peer: str, now: float) -> bool:
        """Stop the session with `peer` (AdminDown, then forgotten); False if there is none."""
        entry = self._by_peer.get(peer_key(peer))
        if entry is None or entry.removing:
            return False
        entry.removing = True
        entry.session.admin_down(now)
        self._settle(entry, now)
        return True

    def get(self, peer: str) -> Session | None:
        entry = self._by_peer.get(peer_key(peer))
        return None if entry is None or entry.removing else entry.session

    def __len__(self) -> int:
        return len(self._by_peer)

    def _new_discriminator(self) -> int:
        while True:
            candidate = self._rng.getrandbits(32)
            if 0 < candidate <= U32 and candidate not in self._by_discriminator:
                return candidate

    # --- inputs -----------------------------------------------------------------------------

    def receive(
        self,
        data: bytes,
        now: float,
        *,
        source: str,
        ttl: int | None,
        interface: str | None = None,
    ) -> str | None:
        """One datagram received on port 3784. Returns None when a session took it, else
        why it was dropped (also counted in `dropped`)."""
        reason = self._receive(data, now, source, ttl, interface)
        if reason is not None:
            kind = reason.split(":", 1)[0]
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
        return reason

    def _receive(
        self, data: bytes, now: float, source: str, ttl: int | None, interface: str | None
    ) -> str | None:
        if ttl != SINGLE_HOP_TTL:
            return f"wrong TTL: {ttl} from {source}"
        try:
            packet = decode_control(data)
        except BfdPacketError as exc:
            return f"{exc.reason}: from {source}" + (f" ({exc.detail})" if exc.detail else "")
        try:
            key = peer_key(source)
        except LocalBfdError:
            return f"bad source: {source}"
        if packet.your_discriminator:
            entry = self._by_discriminator.get(packet.your_discriminator)
            if entry is None:
                return f"unknown session id: {packet.your_discriminator} from {source}"
            if entry.session.peer != key:
                return f"wrong source: {source} for the session with {entry.session.peer}"
        else:
            found = self._by_peer.get(key)
            if found is None:
                return f"no session: with {source}"
            entry = found
        reason = entry.session.receive(packet, now)
        if reason is not None:
            return f"rejected: {reason} from {source}"
        if interface is not None:
            entry.interface = interface
        self._settle(entry, now)
        return None

    def handle_timer(self, now: float) -> None:
        due: dict[int, _Entry] = {}
        while self._heap and self._heap[0][0] <= now:
            _, discriminator = heapq.heappop(self._heap)
            entry = self._by_discriminator.get(discriminator)
            if entry is not None:
                due[discriminator] = entry
        for entry in due.values():
            deadline = entry.session.next_timer()
            if deadline is not None and deadline <= now:
                entry.session.handle_timer(now)
            self._settle(entry, now)

    # --- outputs ----------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        while self._heap:
            deadline, discriminator = self._heap[0]
            entry = self._by_discriminator.get(discriminator)
            if entry is not None and entry.session.next_timer() == deadline:
                return deadline
            heapq.heappop(self._heap)  # stale: the session moved on or is gone
        return None

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> BfdEvent | None:
        return self._events.popleft() if self._events else None

    def status(self, now: float, wall_now: float) -> list[BfdSessionStatus]:
        """Every session as `show bfd sessions` shows it; `wall_now` is the epoch time that
        corresponds to the monotonic `now`."""
        return [self._status(e, now, wall_now) for e in self._by_peer.values()]

    def _status(self, entry: _Entry, now: float, wall_now: float) -> BfdSessionStatus:
        s = entry.session
        sending = s.transmitting and s.last_tx is not None
        return BfdSessionStatus(
            address=s.peer,
            local_address=entry.local,
            interface=entry.interface,
            state=str(s.state),
            since=wall_now - (now - s.changed_at),
            interval=s.tx_interval if sending else 0,
            timeout=s.detection_time,
            local_discriminator=s.local_discriminator,
            remote_discriminator=s.remote_discriminator,
            local_diag=describe_diag(s.local_diag),
            remote_state=str(State(s.remote_state)),
            remote_diag=describe_diag(s.remote_diag),
            detect_mult=s.timers.detect_mult,
            remote_detect_mult=s.remote_detect_mult,
            desired_min_tx=s.timers.desired_min_tx,
            required_min_rx=s.timers.required_min_rx,
            remote_min_tx=s.remote_min_tx,
            remote_min_rx=s.remote_min_rx,
            packets_received=s.packets_received,
            packets_sent=s.packets_sent,
            removing=entry.removing,
        )

    # --- bookkeeping ------------------------------------------------------------------------

    def _settle(self, entry: _Entry, now: float | None = None) -> None:
        """Collect a session's output and events, re-file its deadline, forget it once a
        removal is announced."""
        s = entry.session
        self._out.extend(Datagram(data, s.peer, entry.local) for data in s.packets_to_send())
        while (event := s.next_event()) is not None:
            self._events.append(event)
        if entry.removing and now is not None and s.finished(now):
            del self._by_peer[s.peer]
            del self._by_discriminator[s.local_discriminator]
            return
        deadline = s.next_timer()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, s.local_discriminator))
