"""The BGP session machine (RFC 4271 section 8), sans-I/O: `Session` is one TCP connection,
`Peer` one configured neighbor across its connections (connect/retry, collisions).
`driver.py` is the thin asyncio shell and is not imported here."""

from bgpd.session.errors import (
    ADMIN_SHUTDOWN,
    COLLISION,
    HOLD_EXPIRED,
    LocalSessionError,
    describe,
    shutdown_message,
)
from bgpd.session.events import (
    CloseRequested,
    ConnectRequested,
    PeerAction,
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.fsm import State
from bgpd.session.negotiate import Negotiated, build_open, negotiate
from bgpd.session.peer import Peer
from bgpd.session.session import Counters, Session
from bgpd.session.settings import PeerSettings

__all__ = [
    "ADMIN_SHUTDOWN",
    "COLLISION",
    "HOLD_EXPIRED",
    "CloseRequested",
    "ConnectRequested",
    "Counters",
    "LocalSessionError",
    "Negotiated",
    "Peer",
    "PeerAction",
    "PeerSettings",
    "RouteRefreshReceived",
    "Session",
    "SessionDown",
    "SessionEstablished",
    "SessionEvent",
    "State",
    "StateChanged",
    "UpdateReceived",
    "build_open",
    "describe",
    "negotiate",
    "shutdown_message",
]
