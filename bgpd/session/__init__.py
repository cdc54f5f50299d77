"""The BGP session machine (RFC 4271 section 8), sans-I/O: `Session` is one TCP connection,
`Peer` one configured neighbor across its connections (connect/retry, collisions).
`driver.py` is the thin asyncio shell and is not imported here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): importing one module of the room (the command line's
# defaults, say) must not load every other.
_LAZY = {
    "ADMIN_SHUTDOWN": "bgpd.session.errors",
    "COLLISION": "bgpd.session.errors",
    "HOLD_EXPIRED": "bgpd.session.errors",
    "LocalSessionError": "bgpd.session.errors",
    "describe": "bgpd.session.errors",
    "shutdown_message": "bgpd.session.errors",
    "CloseRequested": "bgpd.session.events",
    "ConnectRequested": "bgpd.session.events",
    "PeerAction": "bgpd.session.events",
    "RouteRefreshReceived": "bgpd.session.events",
    "SessionDown": "bgpd.session.events",
    "SessionEstablished": "bgpd.session.events",
    "SessionEvent": "bgpd.session.events",
    "StateChanged": "bgpd.session.events",
    "UpdateReceived": "bgpd.session.events",
    "State": "bgpd.session.fsm",
    "Negotiated": "bgpd.session.negotiate",
    "build_open": "bgpd.session.negotiate",
    "negotiate": "bgpd.session.negotiate",
    "Peer": "bgpd.session.peer",
    "Counters": "bgpd.session.session",
    "Session": "bgpd.session.session",
    "PeerSettings": "bgpd.session.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
