"""The RFC 4271 section 8 state machine as data (h11's transition tables).

Two tables. `TRANSITIONS` is one TCP connection's machine (`Session`): OpenSent,
OpenConfirm, Established and the way back to Idle. `PEER_TRANSITIONS` is the part that
exists before any connection does (`Peer`): Idle, Connect, Active, the connect-retry timer
and the choice between connecting and listening. A message event missing from
`TRANSITIONS` is a Finite State Machine Error (NOTIFICATION 5, subcode per RFC 6608); a
missing local or timer event is a bug in the caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    """RFC 4271 8.2.2 states; the value is how BIRD prints them."""

    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"

    def __str__(self) -> str:
        return self.value


class EventType(enum.Enum):
    """RFC 4271 8.1 events (their numbers), plus ROUTE-REFRESH (RFC 2918)."""

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3  # the idle-hold (error wait) timer ran out
    AUTOMATIC_STOP = 8  # the last connection failed with an error: wait before retrying
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    TCP_CR_ACKED = 16  # our outgoing connection is up
    TCP_CONNECTION_CONFIRMED = 17  # an incoming connection was accepted
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27
    UPDATE_MSG_ERR = 28
    ROUTE_REFRESH_MSG = 100
    ROUTE_REFRESH_MSG_ERR = 101


MESSAGE_EVENTS = frozenset(
    {
        EventType.BGP_OPEN,
        EventType.NOTIF_MSG,
        EventType.KEEPALIVE_MSG,
        EventType.UPDATE_MSG,
        EventType.ROUTE_REFRESH_MSG,
    }
)
"""Events a peer causes by sending a message: unlisted ones are the peer's FSM error."""


class Action(enum.Enum):
    """What a connection does on a transition; `Session` has one handler per action."""

    SEND_OPEN = "send OPEN, arm the large OpenSent hold timer"
    PROCESS_OPEN = "check the OPEN, run collision detection, negotiate, send KEEPALIVE"
    ESTABLISH = "restart the hold timer, report SessionEstablished"
    RESTART_HOLD = "restart the hold timer"
    DELIVER_UPDATE = "restart the hold timer, report UpdateReceived"
    DELIVER_REFRESH = "restart the hold timer, report RouteRefreshReceived"
    SEND_KEEPALIVE = "send KEEPALIVE, restart the keepalive timer"
    HOLD_EXPIRED = "send NOTIFICATION 4/0, drop the connection"
    SEND_ERROR = "send the NOTIFICATION the fault names, drop the connection"
    NOTIFICATION_RECEIVED = "drop the connection, report the NOTIFICATION"
    DUMP_COLLISION = "send Cease 7, drop the connection"
    STOP = "send the given NOTIFICATION (Cease), drop the connection"
    CONNECTION_LOST = "drop the connection"


@dataclass(frozen=True, slots=True)
class Transition:
    action: Action
    target: State  # where the connection goes if the action succeeds


_S = State
_E = EventType
_A = Action
_LIVE = (_S.OPEN_SENT, _S.OPEN_CONFIRM, _S.ESTABLISHED)


def _build() -> dict[tuple[State, EventType], Transition]:
    t = {
        (_S.IDLE, _E.TCP_CR_ACKED): Transition(_A.SEND_OPEN, _S.OPEN_SENT),
        (_S.IDLE, _E.TCP_CONNECTION_CONFIRMED): Transition(_A.SEND_OPEN, _S.OPEN_SENT),
        (_S.OPEN_SENT, _E.BGP_OPEN): Transition(_A.PROCESS_OPEN, _S.OPEN_CONFIRM),
        (_S.OPEN_CONFIRM, _E.KEEPALIVE_MSG): Transition(_A.ESTABLISH, _S.ESTABLISHED),
        (_S.OPEN_CONFIRM, _E.KEEPALIVE_TIMER_EXPIRES): Transition(
            _A.SEND_KEEPALIVE, _S.OPEN_CONFIRM
        ),
        (_S.ESTABLISHED, _E.KEEPALIVE_MSG): Transition(_A.RESTART_HOLD, _S.ESTABLISHED),
        (_S.ESTABLISHED, _E.UPDATE_MSG): Transition(_A.DELIVER_UPDATE, _S.ESTABLISHED),
        (_S.ESTABLISHED, _E.ROUTE_REFRESH_MSG): Transition(_A.DELIVER_REFRESH, _S.ESTABLISHED),
        (_S.ESTABLISHED, _E.KEEPALIVE_TIMER_EXPIRES): Transition(_A.SEND_KEEPALIVE, _S.ESTABLISHED),
    }
    for state in _LIVE:
        t[(state, _E.HOLD_TIMER_EXPIRES)] = Transition(_A.HOLD_EXPIRED, _S.IDLE)
        t[(state, _E.NOTIF_MSG)] = Transition(_A.NOTIFICATION_RECEIVED, _S.IDLE)
        t[(state, _E.MANUAL_STOP)] = Transition(_A.STOP, _S.IDLE)
        t[(state, _E.TCP_CONNECTION_FAILS)] = Transition(_A.CONNECTION_LOST, _S.IDLE)
        t[(state, _E.OPEN_COLLISION_DUMP)] = Transition(_A.DUMP_COLLISION, _S.IDLE)
        for err in (
            _E.BGP_HEADER_ERR,
            _E.BGP_OPEN_MSG_ERR,
            _E.UPDATE_MSG_ERR,
            _E.ROUTE_REFRESH_MSG_ERR,
        ):
            t[(state, err)] = Transition(_A.SEND_ERROR, _S.IDLE)
    return t


TRANSITIONS: dict[tuple[State, EventType], Transition] = _build()
"""One connection's machine: (state, event) -> (action, target state)."""


FSM_ERROR_SUBCODE = {State.OPEN_SENT: 1, State.OPEN_CONFIRM: 2, State.ESTABLISHED: 3}
"""RFC 6608: the FSM error subcode says which state got the unexpected message."""


PEER_TRANSITIONS: dict[tuple[State, EventType], State] = {
    # Idle: stopped, or waiting out an error; nothing is accepted.
    (_S.IDLE, _E.MANUAL_START): _S.ACTIVE,
    (_S.IDLE, _E.AUTOMATIC_START): _S.ACTIVE,
    (_S.IDLE, _E.MANUAL_STOP): _S.IDLE,
    # Active: listening; an active peer also waits for its connect-retry timer.
    (_S.ACTIVE, _E.CONNECT_RETRY_TIMER_EXPIRES): _S.CONNECT,
    (_S.ACTIVE, _E.TCP_CONNECTION_CONFIRMED): _S.ACTIVE,
    (_S.ACTIVE, _E.MANUAL_STOP): _S.IDLE,
    (_S.ACTIVE, _E.AUTOMATIC_STOP): _S.IDLE,
    # Connect: an outgoing attempt is under way (incoming ones are still accepted).
    (_S.CONNECT, _E.CONNECT_RETRY_TIMER_EXPIRES): _S.CONNECT,
    (_S.CONNECT, _E.TCP_CR_ACKED): _S.ACTIVE,
    (_S.CONNECT, _E.TCP_CONNECTION_FAILS): _S.ACTIVE,
    (_S.CONNECT, _E.TCP_CONNECTION_CONFIRMED): _S.CONNECT,
    (_S.CONNECT, _E.MANUAL_STOP): _S.IDLE,
    (_S.CONNECT, _E.AUTOMATIC_STOP): _S.IDLE,
}
"""The peer before (and between) connections: (state, event) -> state."""
