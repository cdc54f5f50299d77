"""One configured neighbor across its TCP connections, sans-I/O.

A `Session` is one connection from OpenSent on. Before there is one, and between them,
the neighbor itself has a state (RFC 4271's Idle / Connect / Active, `fsm.PEER_TRANSITIONS`):
it owns the connect-delay and connect-retry timers, knows whether it connects or only
listens, waits out errors in Idle (BIRD's `error wait time`), and, when an outgoing and an
incoming connection race, keeps one by collision detection (RFC 4271 6.8, RFC 6286 2.3).

The driver performs what `next_action()` asks (`ConnectRequested`, `CloseRequested`) and
reports back with `connection_made`, `connect_failed`, `receive_data` and
`connection_lost`. `next_event()` yields the daemon's events: `SessionEstablished` and
`SessionDown` come in pairs, one pair per session that reached Established; the losers of
collisions and attempts that fail earlier show only in `state`, `info` and `StateChanged`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from bgpd.session.errors import (
    ADMIN_SHUTDOWN,
    CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN,
    CEASE_OTHER_CONFIG_CHANGE,
    CEASE_PEER_DECONFIGURED,
    COLLISION,
    LocalSessionError,
)
from bgpd.session.events import (
    CloseRequested,
    ConnectRequested,
    PeerAction,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
)
from bgpd.session.fsm import PEER_TRANSITIONS, EventType, State
from bgpd.session.negotiate import build_open
from bgpd.session.session import Counters, Session
from bgpd.session.settings import PeerSettings
from bgpd.wire.errors import CEASE
from bgpd.wire.family import Family
from bgpd.wire.messages import GracefulRestart, Notification, Open

MAX_CONNECTIONS = 4
"""Connections one neighbor may hold at once; more are refused at accept time."""

_OPERATOR_CEASES = frozenset(
    {CEASE_ADMIN_SHUTDOWN, CEASE_PEER_DECONFIGURED, CEASE_ADMIN_RESET, CEASE_OTHER_CONFIG_CHANGE}
)
"""Our own Ceases that record an operator's action, not a fault: not shown as `info`."""

_RANK = {State.OPEN_SENT: 1, State.OPEN_CONFIRM: 2, State.ESTABLISHED: 3}


class Peer:
    def __init__(self, settings: PeerSettings, *, local_open: Open | None = None) -> None:
        self.settings = settings
        self.local_open = local_open if local_open is not None else build_open(settings)
        self.counters = Counters()
        self.info = ""
        # A fault just recorded in `info`, for the StateChanged it causes (and no other).
        self._new_error = ""
        self._enabled = False
        self._base = State.IDLE
        self._state = State.IDLE
        self._sessions: dict[int, Session] = {}
        self._established: Session | None = None
        self._next_conn_id = 1
        self._final: dict[int, bytes] = {}
        self._lost: set[int] = set()  # closed by the transport: nothing to write or close
        self._seen: dict[int, State] = {}  # each connection's state as its events tell
        self._events: deque[SessionEvent] = deque()
        self._actions: deque[PeerAction] = deque()
        self._retry_at: float | None = None
        self._idle_until: float | None = None
        self._error_delay = 0.0
        self._last_error_at: float | None = None
        self._hold_down: float | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def state(self) -> State:
        """The most advanced connection's state, or the neighbor's own without one."""
        return self._state

    @property
    def state_text(self) -> str:
        """The state as BIRD prints it: "Passive" for a passive neighbor that waits."""
        if self._state is State.ACTIVE and self.settings.passive:
            return "Passive"
        return str(self._state)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def established(self) -> Session | None:
        return self._established

    def session(self, conn_id: int) -> Session | None:
        return self._sessions.get(conn_id)

    def connection_ids(self) -> list[int]:
        return list(self._sessions)

    # --- inputs ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Administrative start. A passive neighbor only accepts connections."""
        if self._enabled:
            return
        self._enabled = True
        self._idle_until = None
        self._peer_event(EventType.MANUAL_START)
        self._begin(now)
        self._pump(now)

    def stop(self, now: float, notification: Notification | None = ADMIN_SHUTDOWN) -> None:
        """Administrative stop: every connection gets `notification`; no reconnecting."""
        self._enabled = False
        self._retry_at = self._idle_until = self._hold_down = None
        self._peer_event(EventType.MANUAL_STOP)
        for session in list(self._sessions.values()):
            session.close(now, notification)
        self._pump(now)

    def handle_timer(self, now: float) -> None:
        if self._idle_until is not None and now >= self._idle_until:
            self._idle_until = None
            self._peer_event(EventType.AUTOMATIC_START)
            self._begin(now)
        if self._retry_at is not None and now >= self._retry_at:
            self._request_connect(now)
        for session in list(self._sessions.values()):
            session.handle_timer(now)
        self._pump(now)

    def connect_failed(self, now: float, reason: str) -> None:
        """The outgoing attempt asked for by ConnectRequested failed ("Connection refused")."""
        if self._base is not State.CONNECT:
            return
        self._peer_event(EventType.TCP_CONNECTION_FAILS)
        if not self._live():
            self.info = self._new_error = f"Socket: {reason}"
        self._pump(now)

    def connection_made(self, now: float, *, outgoing: bool) -> int | None:
        """A TCP connection to the neighbor is up (ours, or one we accepted). Returns its
        id, or None when the neighbor does not take it now: the driver closes it."""
        event = EventType.TCP_CR_ACKED if outgoing else EventType.TCP_CONNECTION_CONFIRMED
        if not self._enabled or (self._base, event) not in PEER_TRANSITIONS:
            return None
        if len(self._sessions) >= MAX_CONNECTIONS:
            return None
        self._peer_event(event)
        conn_id = self._next_conn_id
        self._next_conn_id += 1
        session = Session(
            self.settings,
            conn_id=conn_id,
            outgoing=outgoing,
            local_open=self.local_open,
            counters=self.counters,
            on_open=self._on_open,
        )
        self._sessions[conn_id] = session
        self._retry_at = None  # no new attempts while a connection is in progress
        session.start(now)
        self._pump(now)
        return conn_id

    def receive_data(self, conn_id: int, data: bytes, now: float) -> None:
        session = self._sessions.get(conn_id)
        if session is not None:
            session.receive_data(data, now)
            self._pump(now)

    def connection_lost(self, conn_id: int, now: float, exc: BaseException | None = None) -> None:
        self._final.pop(conn_id, None)
        session = self._sessions.get(conn_id)
        if session is not None:
            self._lost.add(conn_id)
            session.connection_lost(now, exc)
            self._pump(now)

    def close_connection(
        self,
        conn_id: int,
        now: float,
        notification: Notification | None,
        *,
        reason: str | None = None,
        graceful: bool = True,
    ) -> None:
        """Close one connection (e.g. its peer stopped reading: Cease 8)."""
        session = self._sessions.get(conn_id)
        if session is not None:
            session.close(now, notification, reason=reason, graceful=graceful)
            self._pump(now)

    def close_for(self, now: float, notification: Notification, hold_down: float) -> None:
        """Close every connection with `notification` (a Cease: Maximum Number of Prefixes
        Reached, say), then wait `hold_down` seconds in Idle, refusing connections, before
        starting again."""
        if not self._sessions:
            return
        self._hold_down = hold_down
        for session in list(self._sessions.values()):
            session.close(now, notification)
        self._pump(now)

    def send_update_bytes(self, data: bytes, count: int | None = None) -> None:
        if self._established is None:
            raise LocalSessionError(f"{self.name} is not established")
        self._established.send_update_bytes(data, count)

    def send_route_refresh(self, family: Family, subtype: int = 0) -> None:
        if self._established is None:
            raise LocalSessionError(f"{self.name} is not established")
        self._established.send_route_refresh(family, subtype)

    # --- outputs --------------------------------------------------------------------------

    def has_output(self) -> bool:
        """Whether any connection has something queued to send."""
        return bool(self._final) or any(s.has_output() for s in self._sessions.values())

    def data_to_send(self, conn_id: int) -> bytes:
        session = self._sessions.get(conn_id)
        if session is not None:
            return session.data_to_send()
        return self._final.pop(conn_id, b"")

    def chunks_to_send(self, conn_id: int) -> list[bytes]:
        """`data_to_send` in pieces that keep shared pre-encoded bytes uncopied."""
        session = self._sessions.get(conn_id)
        if session is not None:
            return session.chunks_to_send()
        final = self._final.pop(conn_id, b"")
        return [final] if final else []

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def next_action(self) -> PeerAction | None:
        return self._actions.popleft() if self._actions else None

    def next_timer(self) -> float | None:
        best: float | None = None
        for deadline in (self._idle_until, self._retry_at):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        for session in self._sessions.values():
            deadline = session.next_timer()
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    # --- machinery ------------------------------------------------------------------------

    def _peer_event(self, event: EventType) -> None:
        target = PEER_TRANSITIONS.get((self._base, event))
        if target is None:
            raise LocalSessionError(f"{event.name} in {self._base}")
        self._base = target

    def _live(self, but: Session | None = None) -> list[Session]:
        return [s for s in self._sessions.values() if s is not but and not s.closed]

    def _begin(self, now: float) -> None:
        """Entering Active: an active neighbor connects after the connect delay."""
        if self.settings.passive:
            return
        if self._base is State.CONNECT:
            # An attempt is still under way: give it a retry period before another.
            self._retry_at = now + self.settings.connect_retry_time
        elif self.settings.connect_delay_time <= 0:
            self._request_connect(now)
        else:
            self._retry_at = now + self.settings.connect_delay_time

    def _request_connect(self, now: float) -> None:
        self._peer_event(EventType.CONNECT_RETRY_TIMER_EXPIRES)
        self._retry_at = now + self.settings.connect_retry_time
        self._actions.append(ConnectRequested(self.name))

    def _on_open(self, session: Session, remote: Open, now: float) -> bool:
        """Collision detection when `session` got a valid OPEN; False dumps `session`.

        Connections still in OpenSent are examined too (RFC 4271 6.8 allows it when the
        peer's identifier is known, and this OPEN tells it): deciding before we answer
        with KEEPALIVE keeps the peer from reaching Established on the connection we drop.
        """
        for other in self._live(but=session):
            if other.state is State.ESTABLISHED:
                if _restarted(other, remote):
                    # RFC 4724 4.2: the peer restarted and the old connection is dead;
                    # close it as a TCP failure would, so its routes go stale.
                    other.close(now, None, reason="Graceful restart")
                    continue
                return False
            if self._keep_new(session, other, remote):
                other.dump_collision(now)
            else:
                return False
        return True

    def _keep_new(self, new: Session, other: Session, remote: Open) -> bool:
        """RFC 4271 6.8: keep the connection the speaker with the higher BGP Identifier
        opened; with equal identifiers (eBGP), the one with the higher AS (RFC 6286 2.3).
        Two connections opened by the same side: the older one is stale, keep the new."""
        if new.outgoing == other.outgoing:
            return True
        local_id = self.settings.router_id
        if local_id != remote.bgp_id:
            remote_dominant = local_id < remote.bgp_id
        else:
            remote_dominant = self.settings.local_as < remote.asn
        return remote_dominant == (not new.outgoing)

    def _pump(self, now: float) -> None:
        """Move session events up, retire closed sessions, recompute the state."""
        for conn_id, session in list(self._sessions.items()):
            while (event := session.next_event()) is not None:
                self._relay(session, event)
            if session.closed:
                del self._sessions[conn_id]
                self._seen.pop(conn_id, None)
                if conn_id in self._lost:
                    self._lost.discard(conn_id)
                else:
                    self._final[conn_id] = session.data_to_send()
                    self._actions.append(CloseRequested(self.name, conn_id))
                self._after_close(session, now)
        self._update_state()
        self._new_error = ""  # it caused no transition: it stays in `info` only

    def _update_state(self) -> None:
        """The neighbor's state: its most advanced connection's, else its own."""
        state = self._base
        for seen in self._seen.values():
            if _RANK.get(seen, 0) > _RANK.get(state, 0):
                state = seen
        if state is not self._state:
            old, self._state = self._state, state
            self._events.append(StateChanged(self.name, old, state, self._new_error))
            self._new_error = ""

    def _relay(self, session: Session, event: SessionEvent) -> None:
        if isinstance(event, StateChanged):
            # Follow each connection step by step, so OpenConfirm shows even when one
            # batch of bytes carries a connection from OpenSent to Established.
            if event.new is State.IDLE:
                self._seen.pop(session.conn_id, None)  # settled in _pump, after _after_close
            else:
                self._seen[session.conn_id] = event.new
                self._update_state()
        elif isinstance(event, SessionEstablished):
            self._established = session
            self.info = ""
            if self.settings.graceful_restart_restarting:
                # RFC 4724 3: Restart State (and the forwarding bits) describe this one
                # restart; later sessions of this process must not claim it again.
                self.local_open = build_open(
                    replace(self.settings, graceful_restart_restarting=False)
                )
            self._events.append(event)
        elif isinstance(event, SessionDown):
            if session is self._established:
                self._established = None
                self._events.append(event)
        elif session is self._established:
            self._events.append(event)

    def _after_close(self, session: Session, now: float) -> None:
        sent, received = session.notification_sent, session.notification_received
        others = self._live()
        lost_collision = sent == COLLISION or (received == COLLISION and others)
        operator = sent is not None and sent.code == CEASE and sent.subcode in _OPERATOR_CEASES
        if not lost_collision and not operator:
            self.info = session.info
            self._new_error = session.info
        if others or not self._enabled:
            return
        failed = (sent is not None and sent.code != CEASE) or (
            received is not None and received.code != CEASE
        )
        if self._hold_down is not None:
            self._peer_event(EventType.AUTOMATIC_STOP)
            self._retry_at = None
            self._idle_until = now + self._hold_down
            self._hold_down = None
        elif failed:
            self._peer_event(EventType.AUTOMATIC_STOP)
            self._retry_at = None
            self._idle_until = now + self._next_error_wait(now)
        else:
            self._begin(now)

    def _next_error_wait(self, now: float) -> float:
        low, high = self.settings.error_wait_time
        if (
            self._last_error_at is not None
            and now - self._last_error_at >= self.settings.error_forget_time
        ):
            self._error_delay = 0.0
        self._error_delay = min(high, self._error_delay * 2) if self._error_delay else low
        self._last_error_at = now
        return self._error_delay


def _restarted(established: Session, remote: Open) -> bool:
    """Whether a new OPEN says the peer of an established session restarted: graceful
    restart was negotiated and the OPEN sets the Restart State bit. Without the bit it is an
    ordinary collision (both sides connected at once), which must not flap the session."""
    negotiated = established.negotiated
    if negotiated is None or negotiated.graceful_restart is None:
        return False
    return any(isinstance(c, GracefulRestart) and c.restarting for c in remote.capabilities)
