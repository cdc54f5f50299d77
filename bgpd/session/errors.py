"""Session errors: API misuse by the caller (`LocalSessionError`), FSM errors a peer causes,
and the NOTIFICATION texts BIRD prints, for status lines and logs."""

from __future__ import annotations

from bgpd.wire.errors import CEASE, FSM_ERROR, HOLD_TIMER_EXPIRED, WireError
from bgpd.wire.messages import Notification


class LocalSessionError(Exception):
    """The caller asked for something the session's state does not allow (sending an
    UPDATE before Established, a ROUTE-REFRESH the peer cannot take, ...). Never a peer
    fault: peer faults end the session with a NOTIFICATION and a SessionDown event."""


class FiniteStateMachineError(WireError):
    """A message the current state does not expect (RFC 4271 6.6). Subclasses carry the
    RFC 6608 subcode naming the state."""

    code, subcode = FSM_ERROR, 0


class UnexpectedInOpenSent(FiniteStateMachineError):
    subcode = 1


class UnexpectedInOpenConfirm(FiniteStateMachineError):
    subcode = 2


class UnexpectedInEstablished(FiniteStateMachineError):
    subcode = 3


# Cease subcodes (RFC 4486, RFC 8203).
CEASE_MAX_PREFIXES = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_OTHER_CONFIG_CHANGE = 6
CEASE_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8

ADMIN_SHUTDOWN = Notification(CEASE, CEASE_ADMIN_SHUTDOWN)
COLLISION = Notification(CEASE, CEASE_COLLISION)
HOLD_EXPIRED = Notification(HOLD_TIMER_EXPIRED, 0)


_DESCRIPTIONS = {
    (1, 0): "Invalid message header",
    (1, 1): "Connection not synchronized",
    (1, 2): "Bad message length",
    (1, 3): "Bad message type",
    (2, 0): "Invalid OPEN message",
    (2, 1): "Unsupported version number",
    (2, 2): "Bad peer AS",
    (2, 3): "Bad BGP identifier",
    (2, 4): "Unsupported optional parameter",
    (2, 5): "Authentication failure",
    (2, 6): "Unacceptable hold time",
    (2, 7): "Required capability missing",
    (2, 8): "No supported AFI/SAFI",
    (3, 0): "Invalid UPDATE message",
    (3, 1): "Malformed attribute list",
    (3, 2): "Unrecognized well-known attribute",
    (3, 3): "Missing mandatory attribute",
    (3, 4): "Invalid attribute flags",
    (3, 5): "Invalid attribute length",
    (3, 6): "Invalid ORIGIN attribute",
    (3, 7): "AS routing loop",
    (3, 8): "Invalid NEXT_HOP attribute",
    (3, 9): "Optional attribute error",
    (3, 10): "Invalid network field",
    (3, 11): "Malformed AS_PATH",
    (4, 0): "Hold timer expired",
    (5, 0): "Finite state machine error",
    (5, 1): "Unexpected message in OpenSent state",
    (5, 2): "Unexpected message in OpenConfirm state",
    (5, 3): "Unexpected message in Established state",
    (6, 0): "Cease",
    (6, 1): "Maximum number of prefixes reached",
    (6, 2): "Administrative shutdown",
    (6, 3): "Peer de-configured",
    (6, 4): "Administrative reset",
    (6, 5): "Connection rejected",
    (6, 6): "Other configuration change",
    (6, 7): "Connection collision resolution",
    (6, 8): "Out of Resources",
    (7, 0): "Invalid ROUTE-REFRESH message",
    (7, 1): "Invalid ROUTE-REFRESH message length",
}


def describe(notification: Notification) -> str:
    """BIRD's text for a NOTIFICATION code/subcode ("Hold timer expired")."""
    key = (notification.code, notification.subcode)
    return _DESCRIPTIONS.get(key, f"Unknown error {key[0]}.{key[1]}")


def shutdown_message(notification: Notification) -> str | None:
    """The operator's text in an Administrative Shutdown/Reset Cease (RFC 9003), if any."""
    if notification.code != CEASE or notification.subcode not in (
        CEASE_ADMIN_SHUTDOWN,
        CEASE_ADMIN_RESET,
    ):
        return None
    data = notification.data
    if not data or data[0] == 0 or len(data) < 1 + data[0]:
        return None
    return data[1 : 1 + data[0]].decode("utf-8", "replace")
