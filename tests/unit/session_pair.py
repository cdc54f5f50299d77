"""In-memory pairs of sessions and peers on a fake clock (h11's ConnectionPair, aioquic's
client_and_server), shared by the test_session_* modules."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from bgpd.session.events import (
    CloseRequested,
    ConnectRequested,
    PeerAction,
    SessionEvent,
)
from bgpd.session.peer import Peer
from bgpd.session.session import Session
from bgpd.session.settings import PeerSettings
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.codec import pack_announcements
from bgpd.wire.family import Family, prefix_to_nlri

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"


def rid(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def settings_pair(
    a: dict[str, Any] | None = None, b: dict[str, Any] | None = None, **both: Any
) -> tuple[PeerSettings, PeerSettings]:
    """Settings of A (10.0.0.1) for its neighbor B and of B for A: iBGP AS 65000 unless
    overridden; `both` applies to each side, `a` / `b` to one."""
    base: dict[str, Any] = {"connect_delay_time": 0.0, **both}
    sa = PeerSettings(
        name="Mesh_10_0_0_2",
        peer_address=B_ADDR,
        peer_as=65000,
        local_as=65000,
        router_id=rid(A_ADDR),
        **base,
    )
    sb = PeerSettings(
        name="Mesh_10_0_0_1",
        peer_address=A_ADDR,
        peer_as=65000,
        local_as=65000,
        router_id=rid(B_ADDR),
        **base,
    )
    return replace(sa, **(a or {})), replace(sb, **(b or {}))


def drain(source: Session | Peer) -> list[SessionEvent]:
    events = []
    while (event := source.next_event()) is not None:
        events.append(event)
    return events


def actions(peer: Peer) -> list[PeerAction]:
    out = []
    while (action := peer.next_action()) is not None:
        out.append(action)
    return out


def update_bytes(prefix: str = "192.168.1.0/24", next_hop: str = "10.0.0.1") -> bytes:
    family, nlri = prefix_to_nlri(prefix)
    attrs = PathAttributes(next_hop=ipaddress.ip_address(next_hop).packed, local_pref=100)
    return b"".join(pack_announcements(family, attrs, [nlri]))


class SessionPair:
    """Session `a` (outgoing) joined to session `b` (incoming) by an in-memory wire."""

    def __init__(self, sa: PeerSettings | None = None, sb: PeerSettings | None = None) -> None:
        if sa is None or sb is None:
            sa, sb = settings_pair()
        self.now = 0.0
        self.a = Session(sa, outgoing=True)
        self.b = Session(sb, outgoing=False)

    def start(self) -> None:
        self.a.start(self.now)
        self.b.start(self.now)

    def transfer(self) -> int:
        """Move bytes both ways until neither side has any; returns the byte count."""
        moved = 0
        while True:
            ab, ba = self.a.data_to_send(), self.b.data_to_send()
            if not ab and not ba:
                return moved
            moved += len(ab) + len(ba)
            if ab:
                self.b.receive_data(ab, self.now)
            if ba:
                self.a.receive_data(ba, self.now)

    def establish(self) -> None:
        self.start()
        self.transfer()
        assert self.a.state.name == "ESTABLISHED", self.a.info
        assert self.b.state.name == "ESTABLISHED", self.b.info

    def advance(self, now: float) -> None:
        """Move the clock, fire due timers on both sides, deliver what they sent."""
        self.now = now
        self.a.handle_timer(now)
        self.b.handle_timer(now)
        self.transfer()


class PeerPair:
    """Two `Peer`s joined by any number of in-memory connections; performs their actions."""

    def __init__(self, sa: PeerSettings, sb: PeerSettings) -> None:
        self.now = 0.0
        self.a = Peer(sa)
        self.b = Peer(sb)
        self.links: list[tuple[Peer, int, Peer, int]] = []
        self.connect_requests: dict[int, int] = {id(self.a): 0, id(self.b): 0}
        self.closed: list[tuple[Peer, int]] = []
        self.refuse = False  # when set, connection attempts fail ("Connection refused")

    def other(self, peer: Peer) -> Peer:
        return self.b if peer is self.a else self.a

    def connect(self, initiator: Peer) -> tuple[int, int] | None:
        """Open a connection from `initiator` to the other peer now."""
        target = self.other(initiator)
        accepted = target.connection_made(self.now, outgoing=False)
        if accepted is None:
            initiator.connect_failed(self.now, "Connection refused")
            return None
        made = initiator.connection_made(self.now, outgoing=True)
        assert made is not None
        self.links.append((initiator, made, target, accepted))
        return made, accepted

    def perform(self, peer: Peer, *, connect: bool = True) -> None:
        for action in actions(peer):
            if isinstance(action, ConnectRequested):
                self.connect_requests[id(peer)] += 1
                if self.refuse:
                    peer.connect_failed(self.now, "Connection refused")
                elif connect:
                    self.connect(peer)
            elif isinstance(action, CloseRequested):
                self._close(peer, action.conn_id)

    def _close(self, peer: Peer, conn_id: int) -> None:
        for link in list(self.links):
            left, lid, right, rid_ = link
            if (peer, conn_id) in ((left, lid), (right, rid_)):
                far, far_id = (right, rid_) if peer is left else (left, lid)
                last = peer.data_to_send(conn_id)
                if last:
                    far.receive_data(far_id, last, self.now)
                far.connection_lost(far_id, self.now, None)
                self.links.remove(link)
                self.closed.append((peer, conn_id))

    def transfer(self, *, connect: bool = True) -> None:
        """Deliver bytes and perform actions until everything is quiet."""
        while True:
            busy = False
            for left, lid, right, rid_ in list(self.links):
                if (left, lid, right, rid_) not in self.links:
                    continue
                for src, sid, dst, did in ((left, lid, right, rid_), (right, rid_, left, lid)):
                    data = src.data_to_send(sid)
                    if data:
                        busy = True
                        dst.receive_data(did, data, self.now)
            before = len(self.links), len(self.closed)
            self.perform(self.a, connect=connect)
            self.perform(self.b, connect=connect)
            if (len(self.links), len(self.closed)) != before:
                busy = True
            if not busy:
                return

    def advance(self, now: float, *, connect: bool = True) -> None:
        self.now = now
        self.a.handle_timer(now)
        self.b.handle_timer(now)
        self.transfer(connect=connect)


__all__ = [
    "A_ADDR",
    "B_ADDR",
    "Family",
    "PeerPair",
    "SessionPair",
    "actions",
    "drain",
    "rid",
    "settings_pair",
    "update_bytes",
]
