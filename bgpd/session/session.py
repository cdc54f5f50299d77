"""One TCP connection's BGP session, sans-I/O (h11's Connection, aioquic's QuicConnection).

Feed it bytes with `receive_data(data, now)`, pull what to write with `data_to_send()` and
what happened with `next_event()`. Timers are exposed, not owned: `next_timer()` is the
next deadline and `handle_timer(now)` fires what is due. Nothing here reads a clock or
touches a socket. Transitions come from `fsm.TRANSITIONS`; each `Action` there has one
handler below.

Peer faults never raise out of this class: the session sends the NOTIFICATION the fault
names, goes to Idle and reports `SessionDown`. `LocalSessionError` is for caller misuse.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.session.errors import (
    ADMIN_SHUTDOWN,
    COLLISION,
    HOLD_EXPIRED,
    FiniteStateMachineError,
    LocalSessionError,
    UnexpectedInEstablished,
    UnexpectedInOpenConfirm,
    UnexpectedInOpenSent,
    describe,
)
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.fsm import MESSAGE_EVENTS, TRANSITIONS, Action, EventType, State
from bgpd.session.negotiate import Negotiated, build_open, negotiate
from bgpd.session.settings import PeerSettings
from bgpd.wire.codec import (
    decode_message,
    encode_keepalive,
    encode_notification,
    encode_open,
    encode_route_refresh,
    split_messages,
)
from bgpd.wire.errors import (
    BadBgpId,
    BadMessageLength,
    BadPeerAS,
    Handling,
    UnacceptableHoldTime,
    UnsupportedVersion,
    WireError,
)
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    HEADER_LEN,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
    ExtendedMessageCap,
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from bgpd.wire.options import DEFAULT_OPTIONS, CodecOptions

OPEN_SENT_HOLD_TIME = 240.0
"""RFC 4271 8.2.2: the hold timer runs with a 'large value' (4 minutes) until OPEN arrives."""

_FRAME_LIMIT = 65535
"""Frames are cut at the largest legal size and checked against the negotiated limit one by
one, so a batch that straddles OPEN processing is judged by the limit in force for each."""

_MAX_NOTIFICATION_DATA = 4096 - HEADER_LEN - 2

_EVENT_BY_TYPE = {
    MSG_OPEN: EventType.BGP_OPEN,
    MSG_UPDATE: EventType.UPDATE_MSG,
    MSG_NOTIFICATION: EventType.NOTIF_MSG,
    MSG_KEEPALIVE: EventType.KEEPALIVE_MSG,
    MSG_ROUTE_REFRESH: EventType.ROUTE_REFRESH_MSG,
}

_ERROR_EVENT_BY_CODE = {
    1: EventType.BGP_HEADER_ERR,
    2: EventType.BGP_OPEN_MSG_ERR,
    3: EventType.UPDATE_MSG_ERR,
    7: EventType.ROUTE_REFRESH_MSG_ERR,
}

_FSM_ERRORS: dict[State, type[FiniteStateMachineError]] = {
    State.OPEN_SENT: UnexpectedInOpenSent,
    State.OPEN_CONFIRM: UnexpectedInOpenConfirm,
    State.ESTABLISHED: UnexpectedInEstablished,
}


@dataclass(slots=True)
class Counters:
    """Message counts; a `Peer` shares one instance across its connections."""

    messages_received: int = 0
    messages_sent: int = 0
    updates_received: int = 0
    updates_sent: int = 0

    def snapshot(self) -> Counters:
        return dataclasses.replace(self)


@dataclass(frozen=True, slots=True)
class _Stop:
    notification: Notification | None
    reason: str | None
    graceful: bool = True


OpenHook = Callable[["Session", Open, float], bool]
"""Called with a valid OPEN before the session answers it: False dumps this connection
(Cease 7), which is how a `Peer` runs collision detection across its connections."""


SHARED_CHUNK = 16 << 10
"""Queued pieces at least this long are handed out uncopied by `chunks_to_send()`."""


def count_messages(data: bytes) -> int:
    """How many BGP messages `data` holds, walking the length fields; the caller's bytes
    must be whole messages."""
    count = 0
    at = 0
    end = len(data)
    while at < end:
        if end - at < HEADER_LEN:
            raise LocalSessionError("partial BGP message in pre-encoded data")
        length = int.from_bytes(data[at + 16 : at + 18], "big")
        if length < HEADER_LEN:
            raise LocalSessionError(f"bad BGP length {length} in pre-encoded data")
        at += length
        count += 1
    if at != end:
        raise LocalSessionError("partial BGP message in pre-encoded data")
    return count


class Session:
    """A BGP session over one TCP connection, from the moment the connection is up."""

    def __init__(
        self,
        settings: PeerSettings,
        *,
        conn_id: int = 0,
        outgoing: bool = True,
        local_open: Open | None = None,
        counters: Counters | None = None,
        on_open: OpenHook | None = None,
    ) -> None:
        self.settings = settings
        self.conn_id = conn_id
        self.outgoing = outgoing
        self.local_open = local_open if local_open is not None else build_open(settings)
        self.counters = counters if counters is not None else Counters()
        self.remote_open: Open | None = None
        self.negotiated: Negotiated | None = None
        self.notification_sent: Notification | None = None
        self.notification_received: Notification | None = None
        self.info = ""
        self.established_at: float | None = None
        self._on_open = on_open
        self._state = State.IDLE
        self._started = False
        self._options = DEFAULT_OPTIONS
        self._rx_options = DEFAULT_OPTIONS
        self._rest = b""
        self._out: list[bytes] = []
        self._events: deque[SessionEvent] = deque()
        self._hold_deadline: float | None = None
        self._keepalive_deadline: float | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def options(self) -> CodecOptions:
        """Codec options: the defaults until OPENs are exchanged, then the negotiated ones."""
        return self._options

    @property
    def closed(self) -> bool:
        """Started and back in Idle: the driver should write what is left, then close."""
        return self._started and self._state is State.IDLE

    # --- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The TCP connection is up: send OPEN."""
        if self._started:
            raise LocalSessionError("session already started")
        self._started = True
        event = EventType.TCP_CR_ACKED if self.outgoing else EventType.TCP_CONNECTION_CONFIRMED
        self._fire(event, now, None)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the peer: parse every whole message and run the machine on each."""
        if not self._started:
            raise LocalSessionError("receive_data before start")
        if self._state is State.IDLE or not data:
            return
        buf = self._rest + data if self._rest else data
        try:
            frames, self._rest = split_messages(buf, _FRAME_LIMIT)
        except WireError as exc:
            self._message_error(exc, now)
            return
        for frame in frames:
            if self.closed:  # an earlier message in the batch ended the session
                return
            self._receive_frame(frame, now)

    def handle_timer(self, now: float) -> None:
        if self._hold_deadline is not None and now >= self._hold_deadline:
            self._fire(EventType.HOLD_TIMER_EXPIRES, now, None)
        elif self._keepalive_deadline is not None and now >= self._keepalive_deadline:
            self._fire(EventType.KEEPALIVE_TIMER_EXPIRES, now, None)

    def connection_lost(self, now: float, exc: BaseException | None = None) -> None:
        """The transport closed or failed. A no-op once the session is closed."""
        if self._state is State.IDLE:
            self._started = True
            return
        if exc is None:
            reason = "Connection closed"
        elif isinstance(exc, OSError) and exc.errno:
            reason = os.strerror(exc.errno)
        else:
            reason = str(exc) or type(exc).__name__
        self._fire(EventType.TCP_CONNECTION_FAILS, now, f"Socket: {reason}")

    def close(
        self,
        now: float,
        notification: Notification | None = ADMIN_SHUTDOWN,
        *,
        reason: str | None = None,
        graceful: bool = True,
    ) -> None:
        """Administrative stop: send `notification` (a Cease; None sends nothing), then
        report SessionDown with `reason` (default: the NOTIFICATION's text). Without a
        NOTIFICATION the peer's routes are kept for its restart time (RFC 4724) unless
        `graceful` is False (BFD saw the path fail: nothing is coming back soon)."""
        if self._state is State.IDLE:
            self._started = True
            return
        self._fire(EventType.MANUAL_STOP, now, _Stop(notification, reason, graceful))

    def dump_collision(self, now: float) -> None:
        """Lose a connection collision (RFC 4271 6.8): Cease 7 and close."""
        if self._state is not State.IDLE:
            self._fire(EventType.OPEN_COLLISION_DUMP, now, None)

    def send_update_bytes(self, data: bytes, count: int | None = None) -> None:
        """Queue pre-encoded UPDATE messages (`count` of them; counted if None)."""
        if self._state is not State.ESTABLISHED:
            raise LocalSessionError(f"cannot send UPDATE in {self._state}")
        if not data:
            return
        n = count if count is not None else count_messages(data)
        self._out.append(data)
        self.counters.updates_sent += n
        self.counters.messages_sent += n

    def send_route_refresh(self, family: Family, subtype: int = 0) -> None:
        """Ask the peer to re-advertise `family` (or send BoRR/EoRR, subtypes 1/2)."""
        if self._state is not State.ESTABLISHED or self.negotiated is None:
            raise LocalSessionError(f"cannot send ROUTE-REFRESH in {self._state}")
        if not self.negotiated.route_refresh:
            raise LocalSessionError("the peer did not advertise route refresh")
        if family not in self.negotiated.families:
            raise LocalSessionError(f"{family} was not negotiated")
        if subtype not in (0, 1, 2) or (subtype and not self.negotiated.enhanced_route_refresh):
            raise LocalSessionError(f"ROUTE-REFRESH subtype {subtype} not negotiated")
        self._send(encode_route_refresh(RouteRefresh(family, subtype)))

    # --- outputs --------------------------------------------------------------------------

    def has_output(self) -> bool:
        """Whether anything is queued to send."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, as one bytes object."""
        if not self._out:
            return b""
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return data

    def chunks_to_send(self) -> list[bytes]:
        """What `data_to_send()` would return, as pieces to write in order: runs of small
        pieces joined, pieces of SHARED_CHUNK octets or more as given. Those are usually an
        update group's bytes, shared by every member; joining them would copy them per peer."""
        out = self._out
        if len(out) <= 1:
            chunks = list(out)
        else:
            chunks = []
            small: list[bytes] = []
            for piece in out:
                if len(piece) < SHARED_CHUNK:
                    small.append(piece)
                    continue
                if small:
                    chunks.append(b"".join(small))
                    small = []
                chunks.append(piece)
            if small:
                chunks.append(b"".join(small))
        out.clear()
        return chunks

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def next_timer(self) -> float | None:
        hold, keepalive = self._hold_deadline, self._keepalive_deadline
        if hold is None or keepalive is None:
            return keepalive if hold is None else hold
        return hold if hold < keepalive else keepalive

    # --- machinery ------------------------------------------------------------------------

    def _receive_frame(self, frame: bytes, now: float) -> None:
        self.counters.messages_received += 1
        if len(frame) > self._rx_options.max_message_size:
            self._message_error(
                BadMessageLength("message longer than negotiated", frame[16:18]), now
            )
            return
        event = _EVENT_BY_TYPE.get(frame[18])
        if event is not None and (self._state, event) not in TRANSITIONS:
            # The state decides before the decoder does: an UPDATE in OpenSent is an FSM
            # error whatever its content.
            self._fire(event, now, None)
            return
        try:
            msg = decode_message(frame, self._rx_options)
        except WireError as exc:
            self._message_error(exc, now)
            return
        self._fire(_event_for(msg), now, msg)

    def _message_error(self, exc: WireError, now: float) -> None:
        if exc.handling is Handling.NONE:
            return  # RFC 2918 4 / RFC 7313 5: drop the message, keep the session
        event = _ERROR_EVENT_BY_CODE.get(exc.code, EventType.BGP_HEADER_ERR)
        self._fire(event, now, exc)

    def _fire(self, event: EventType, now: float, payload: object) -> None:
        transition = TRANSITIONS.get((self._state, event))
        if transition is None:
            if event not in MESSAGE_EVENTS:
                raise LocalSessionError(f"{event.name} in {self._state}")
            # RFC 4271 8.2.2 "any other event": the peer broke the protocol.
            error = _FSM_ERRORS[self._state](f"unexpected {event.name} in {self._state}")
            self._send_error(error, now)
            return
        action, target = transition.action, transition.target
        if action is Action.SEND_OPEN:
            self._send(encode_open(self.local_open))
            self._hold_deadline = now + OPEN_SENT_HOLD_TIME
            self._set_state(target)
        elif action is Action.PROCESS_OPEN:
            assert isinstance(payload, Open)
            self._process_open(payload, now, target)
        elif action is Action.ESTABLISH:
            self._restart_hold(now)
            self.established_at = now
            self.info = ""
            self._set_state(target)
            assert self.remote_open is not None and self.negotiated is not None
            self._events.append(
                SessionEstablished(
                    peer=self.settings.name,
                    local_open=self.local_open,
                    remote_open=self.remote_open,
                    options=self._options,
                    negotiated=self.negotiated,
                )
            )
        elif action is Action.RESTART_HOLD:
            self._restart_hold(now)
        elif action is Action.DELIVER_UPDATE:
            assert isinstance(payload, Update)
            self._restart_hold(now)
            self.counters.updates_received += 1
            self._events.append(UpdateReceived(self.settings.name, payload))
        elif action is Action.DELIVER_REFRESH:
            assert isinstance(payload, RouteRefresh) and self.negotiated is not None
            self._restart_hold(now)
            # RFC 2918 4: a family that was not negotiated is ignored.
            if payload.family in self.negotiated.families:
                self._events.append(
                    RouteRefreshReceived(self.settings.name, payload.family, payload.subtype)
                )
        elif action is Action.SEND_KEEPALIVE:
            self._send(encode_keepalive())
            self._arm_keepalive(now)
        elif action is Action.HOLD_EXPIRED:
            self._terminate(now, f"BGP Error: {describe(HOLD_EXPIRED)}", sent=HOLD_EXPIRED)
        elif action is Action.SEND_ERROR:
            assert isinstance(payload, WireError)
            self._send_error(payload, now)
        elif action is Action.NOTIFICATION_RECEIVED:
            assert isinstance(payload, Notification)
            self._terminate(now, f"Received: {describe(payload)}", received=payload)
        elif action is Action.DUMP_COLLISION:
            self._terminate(now, describe(COLLISION), sent=COLLISION)
        elif action is Action.STOP:
            assert isinstance(payload, _Stop)
            text = payload.reason
            if text is None:
                text = describe(payload.notification) if payload.notification else "Shutdown"
            self._terminate(now, text, sent=payload.notification, graceful=payload.graceful)
        elif action is Action.CONNECTION_LOST:
            assert isinstance(payload, str)
            self._terminate(now, payload)

    def _send_error(self, error: WireError, now: float) -> None:
        # The data (an offending attribute, say) must not push the message past 4096.
        sent = Notification(error.code, error.subcode, error.data[:_MAX_NOTIFICATION_DATA])
        self._terminate(now, f"BGP Error: {describe(sent)}", sent=sent)

    def _process_open(self, remote: Open, now: float, target: State) -> None:
        fault = self._check_open(remote)
        if fault is not None:
            self._fire(EventType.BGP_OPEN_MSG_ERR, now, fault)
            return
        self.remote_open = remote
        if self._on_open is not None and not self._on_open(self, remote, now):
            self._fire(EventType.OPEN_COLLISION_DUMP, now, None)
            return
        self.negotiated = negotiate(self.settings, self.local_open, remote)
        self._options = self.negotiated.options
        # RFC 8654 3: having advertised Extended Message we must take long messages, even
        # from a peer that did not advertise it (it may send them once it has ours).
        if any(isinstance(c, ExtendedMessageCap) for c in self.local_open.capabilities):
            self._rx_options = dataclasses.replace(self._options, extended_message=True)
        else:
            self._rx_options = self._options
        self._send(encode_keepalive())
        self._restart_hold(now)
        self._arm_keepalive(now)
        self._set_state(target)

    def _check_open(self, remote: Open) -> WireError | None:
        """RFC 4271 6.2 checks the codec cannot make: they need our configuration."""
        if remote.version != 4:
            return UnsupportedVersion(f"BGP version {remote.version}", (4).to_bytes(2, "big"))
        asn = remote.asn if self.settings.four_octet_as else remote.my_as
        if asn != self.settings.peer_as:
            data = asn.to_bytes(2 if asn <= 0xFFFF else 4, "big")
            return BadPeerAS(f"peer AS {asn}, expected {self.settings.peer_as}", data)
        if remote.hold_time in (1, 2):
            return UnacceptableHoldTime(f"hold time {remote.hold_time}")
        if remote.bgp_id == 0:
            return BadBgpId("BGP identifier 0")
        # RFC 6286 2.2: only within one AS must the identifiers differ.
        if self.settings.is_ibgp and remote.bgp_id == self.settings.router_id:
            return BadBgpId("BGP identifier equals ours")
        return None

    def _terminate(
        self,
        now: float,
        reason: str,
        *,
        sent: Notification | None = None,
        received: Notification | None = None,
        graceful: bool = True,
    ) -> None:
        if sent is not None:
            self._send(encode_notification(sent))
        was_established = self._state is State.ESTABLISHED
        restart_time: int | None = None
        if (
            was_established
            and graceful
            and sent is None
            and received is None
            and self.negotiated is not None
            and self.negotiated.graceful_restart is not None
        ):
            restart_time = self.negotiated.graceful_restart.restart_time
        self.notification_sent = sent
        self.notification_received = received
        self.info = reason
        self._hold_deadline = self._keepalive_deadline = None
        self._rest = b""
        self._set_state(State.IDLE)
        self._events.append(
            SessionDown(
                peer=self.settings.name,
                reason=reason,
                notification_sent=sent,
                notification_received=received,
                restart_time=restart_time,
            )
        )

    def _send(self, data: bytes) -> None:
        self._out.append(data)
        self.counters.messages_sent += 1

    def _set_state(self, new: State) -> None:
        old = self._state
        if new is not old:
            self._state = new
            self._events.append(StateChanged(self.settings.name, old, new))

    def _restart_hold(self, now: float) -> None:
        hold = self.negotiated.hold_time if self.negotiated is not None else OPEN_SENT_HOLD_TIME
        self._hold_deadline = now + hold if hold else None

    def _arm_keepalive(self, now: float) -> None:
        assert self.negotiated is not None
        interval = self.negotiated.keepalive_time
        self._keepalive_deadline = now + interval if interval else None


def _event_for(msg: Message) -> EventType:
    if isinstance(msg, Open):
        return EventType.BGP_OPEN
    if isinstance(msg, Update):
        return EventType.UPDATE_MSG
    if isinstance(msg, Keepalive):
        return EventType.KEEPALIVE_MSG
    if isinstance(msg, Notification):
        return EventType.NOTIF_MSG
    return EventType.ROUTE_REFRESH_MSG
