"""What sessions report (past tense, values) and what a `Peer` asks its driver to do."""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.session.fsm import State
from bgpd.session.negotiate import Negotiated
from bgpd.wire.family import Family
from bgpd.wire.messages import Notification, Open, Update
from bgpd.wire.options import CodecOptions


class SessionEvent:
    """Base of everything `Session.next_event()` / `Peer.next_event()` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StateChanged(SessionEvent):
    """`error` is the fault this transition came from, BIRD-style as `Peer.info` ("Socket:
    Connection refused", "Received: Bad peer AS"); empty for an ordinary step and for the
    steps of one connection (`Session`), whose end the peer reports."""

    peer: str
    old: State
    new: State
    error: str = ""


@dataclass(frozen=True, slots=True)
class SessionEstablished(SessionEvent):
    """`options` is what the codec needs for this peer from now on; `negotiated` the rest
    (families, hold time, the peer's graceful-restart capability, route refresh)."""

    peer: str
    local_open: Open
    remote_open: Open
    options: CodecOptions
    negotiated: Negotiated


@dataclass(frozen=True, slots=True)
class UpdateReceived(SessionEvent):
    """An UPDATE, already decoded with the negotiated options. `update.error` may name an
    RFC 7606 attribute-discard or treat-as-withdraw the decoder applied: not a session
    error, for the receiver to log."""

    peer: str
    update: Update


@dataclass(frozen=True, slots=True)
class RouteRefreshReceived(SessionEvent):
    """`subtype` 0 asks for a re-advertisement, 1/2 are BoRR/EoRR (RFC 7313)."""

    peer: str
    family: Family
    subtype: int


@dataclass(frozen=True, slots=True)
class SessionDown(SessionEvent):
    """The connection is gone. `reason` is BIRD-style ("BGP Error: Hold timer expired",
    "Received: Bad peer AS", "Socket: Connection closed").

    `restart_time` is set when the peer negotiated graceful restart and the session ended
    without a NOTIFICATION either way: keep its routes, marked stale, for that many seconds
    (RFC 4724 4.2). None means flush them now.
    """

    peer: str
    reason: str
    notification_sent: Notification | None = None
    notification_received: Notification | None = None
    restart_time: int | None = None


# --- what a Peer asks of its driver -------------------------------------------------------


class PeerAction:
    """Base of what `Peer.next_action()` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ConnectRequested(PeerAction):
    """Open an outgoing TCP connection to the peer; report the result with
    `Peer.connection_made(now, outgoing=True)` or `Peer.connect_failed(now, reason)`. A new
    request while one is pending means the pending attempt timed out: abandon it."""

    peer: str


@dataclass(frozen=True, slots=True)
class CloseRequested(PeerAction):
    """Write what `Peer.data_to_send(conn_id)` still holds (a NOTIFICATION, usually), then
    close that connection."""

    peer: str
    conn_id: int
