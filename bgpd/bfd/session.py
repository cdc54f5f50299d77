"""One BFD session in asynchronous mode (RFC 5880 6.8), sans-I/O.

Feed it decoded packets with `receive(packet, now)`; pull what to send with
`packets_to_send()` and what happened with `next_event()`. Timers are exposed, not owned:
`next_timer()` is the next deadline (a periodic transmission, the detection time, the end
of an AdminDown announcement) and `handle_timer(now)` does what is due. Randomness (the
transmit jitter of 6.8.7) comes from the `random` callable, so tests are deterministic.

Timer changes follow BIRD's proto/bfd/bfd.c: the advertised Desired Min TX / Required Min
RX may differ from the values in use while a Poll Sequence runs (6.8.3): a faster transmit
rate or a slower receive rate takes effect at once, the other direction only when the
peer's Final arrives. While the session is not Up we transmit no faster than once a
second (slow start, 6.8.3); on reaching Up we switch to the configured rate with a Poll.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdDown, BfdEvent, BfdStateChanged, BfdUp
from bgpd.bfd.fsm import EXPIRED, TRANSITIONS
from bgpd.bfd.packet import U32, ControlPacket, Diag, State, encode_control

MICROSECONDS = 1_000_000
SLOW_TX = 1_000_000
"""6.8.3: bfd.DesiredMinTxInterval is at least one second while the session is not Up."""

MIN_INTERVAL = 1_000
MAX_INTERVAL = U32
"""Intervals we accept, in microseconds (1 ms up to the 32-bit field's limit)."""

_POLL_TX = 1
_POLL_RX = 2

RandomSource = Callable[[], float]
"""Returns a float in [0, 1), as `random.Random().random`."""


@dataclass(frozen=True, slots=True)
class Timers:
    """What the operator asks for, in microseconds: bfd.DesiredMinTxInterval (once Up),
    bfd.RequiredMinRxInterval and bfd.DetectMult."""

    desired_min_tx: int
    required_min_rx: int
    detect_mult: int

    def __post_init__(self) -> None:
        for name in ("desired_min_tx", "required_min_rx"):
            value = getattr(self, name)
            if not MIN_INTERVAL <= value <= MAX_INTERVAL:
                raise LocalBfdError(
                    f"BFD {name.replace('_', ' ')} {value} us is not "
                    f"{MIN_INTERVAL} us .. {MAX_INTERVAL} us"
                )
        if not 1 <= self.detect_mult <= 255:
            raise LocalBfdError(f"BFD multiplier {self.detect_mult} is not 1..255")

    @classmethod
    def of(cls, interval: float, multiplier: int, min_rx: float | None = None) -> Timers:
        """From seconds: `interval` for both directions unless `min_rx` is given."""
        rx = interval if min_rx is None else min_rx
        return cls(round(interval * MICROSECONDS), round(rx * MICROSECONDS), multiplier)

    @property
    def slow_tx(self) -> int:
        return max(self.desired_min_tx, SLOW_TX)


class Session:
    """A BFD session with one neighbour, from the moment it is configured."""

    def __init__(
        self,
        peer: str,
        local_discriminator: int,
        timers: Timers,
        now: float,
        random: RandomSource,
    ) -> None:
        if not 1 <= local_discriminator <= U32:
            raise LocalBfdError(f"local discriminator {local_discriminator} is not 1..2^32-1")
        self.peer = peer
        self.local_discriminator = local_discriminator
        self.timers = timers
        self._random = random
        self.state = State.DOWN
        self.local_diag: int = Diag.NONE
        self.changed_at = now
        # What the peer told us last (6.8.1 initial values).
        self.remote_discriminator = 0
        self.remote_state = State.DOWN
        self.remote_diag = 0
        self.remote_min_tx = 0
        self.remote_min_rx = 1
        self.remote_detect_mult = 0
        self.remote_demand = False
        # Advertised values vs. the ones in use while a Poll Sequence runs.
        self._tx_advertised = self._tx_in_use = timers.slow_tx
        self._rx_advertised = self._rx_in_use = timers.required_min_rx
        self._poll_active = 0
        self._poll_scheduled = 0
        self.last_rx: float | None = None  # for the detection time; forgotten on expiry
        self.last_received: float | None = None  # the last packet taken, kept for reports
        self.last_tx: float | None = None
        self._next_tx: float | None = now
        self._admin_until: float | None = None
        self._announced = False
        self.packets_received = 0
        self.packets_sent = 0
        self._out: list[ControlPacket] = []
        self._events: deque[BfdEvent] = deque()

    # --- what the session is doing ----------------------------------------------------------

    @property
    def tx_interval(self) -> int:
        """The negotiated transmit interval before jitter (6.8.7), microseconds."""
        return max(self._tx_in_use, self.remote_min_rx)

    @property
    def detection_time(self) -> int:
        """6.8.4: the remote multiplier times the agreed interval at which the remote
        sends to us, microseconds; 0 before the first packet."""
        return self.remote_detect_mult * max(self._rx_in_use, self.remote_min_tx)

    @property
    def polling(self) -> bool:
        return bool(self._poll_active)

    @property
    def transmitting(self) -> bool:
        return self._next_tx is not None

    def detection_deadline(self) -> float | None:
        if self.last_rx is None or self.detection_time == 0:
            return None
        return self.last_rx + self.detection_time / MICROSECONDS

    def finished(self, now: float) -> bool:
        """AdminDown and done announcing it: a removed session may be forgotten."""
        return self.state == State.ADMIN_DOWN and self._announced

    def next_timer(self) -> float | None:
        # The end of an AdminDown announcement, until it has been handled.
        until = None if self._announced else self._admin_until
        deadlines = [t for t in (self.detection_deadline(), self._next_tx, until) if t is not None]
        return min(deadlines) if deadlines else None

    def next_event(self) -> BfdEvent | None:
        return self._events.popleft() if self._events else None

    def packets_to_send(self) -> list[bytes]:
        out = [encode_control(p) for p in self._out]
        self._out.clear()
        self.packets_sent += len(out)
        return out

    # --- inputs ---------------------------------------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> str | None:
        """One decoded packet from the peer (6.8.6 from the discriminator checks on). Returns
        None when it was taken, or why it was discarded."""
        if packet.your_discriminator == 0:
            if packet.state not in (State.DOWN, State.ADMIN_DOWN):
                return f"zero your-discriminator in state {packet.state}"
            if self.state == State.UP and packet.my_discriminator != self.remote_discriminator:
                # BIRD's guard: a stray Down from another session must not end this one.
                return f"my-discriminator {packet.my_discriminator} is not the session's"
        elif packet.your_discriminator != self.local_discriminator:
            return f"your-discriminator {packet.your_discriminator} is not ours"
        old_tx, old_remote_rx = self._tx_in_use, self.remote_min_rx
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_diag = packet.diag
        self.remote_demand = packet.demand
        self.remote_min_tx = packet.desired_min_tx
        self.remote_min_rx = packet.required_min_rx
        self.remote_detect_mult = packet.detect_mult
        if self._poll_active and packet.final:
            self._terminate_poll()
        if (self._tx_in_use, self.remote_min_rx) != (old_tx, old_remote_rx):
            self._reschedule_tx(now)
        self.last_rx = self.last_received = now
        self.packets_received += 1
        if self.state == State.ADMIN_DOWN:
            return None  # 6.8.6: taken for the remote's values, no state change, no Final
        step = TRANSITIONS[(self.state, packet.state)]
        if step is not None:
            self._set_state(step[0], step[1], now)
        self._control_tx(now, reset=False)
        if packet.poll:
            # 6.8.7: answer a Poll at once, whatever the timers say.
            self._out.append(self._packet(final=True))
        return None

    def handle_timer(self, now: float) -> None:
        deadline = self.detection_deadline()
        if deadline is not None and now >= deadline:
            self._expire(now)
        if self._admin_until is not None and now >= self._admin_until:
            self._next_tx = None  # announced AdminDown for a detection time: stop
            self._announced = True
        if self._next_tx is not None and now >= self._next_tx:
            self._transmit(now)

    def configure(self, timers: Timers, now: float) -> None:
        """New intervals or multiplier; a running session changes rates with a Poll."""
        self.timers = timers
        self._set_min_tx(timers.desired_min_tx if self.state == State.UP else timers.slow_tx, now)
        self._set_min_rx(timers.required_min_rx, now)

    def admin_down(self, now: float, diag: int = Diag.ADMINISTRATIVELY_DOWN) -> None:
        """6.8.16: disable the session. AdminDown is sent for a detection time (the peer's,
        of us) so the peer learns it was administrative, then transmission stops."""
        if self.state == State.ADMIN_DOWN:
            return
        self._poll_active = self._poll_scheduled = 0
        self._set_state(State.ADMIN_DOWN, diag, now)
        # The peer's detection time of us, at the slow rate AdminDown is sent at.
        self._admin_until = now + self.timers.detect_mult * self.tx_interval / MICROSECONDS

    def admin_up(self, now: float) -> None:
        if self.state != State.ADMIN_DOWN:
            return
        self._admin_until = None
        self._announced = False
        self._set_state(State.DOWN, Diag.NONE, now)

    # --- the machinery ----------------------------------------------------------------------

    def _packet(self, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            detect_mult=self.timers.detect_mult,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            desired_min_tx=self._tx_advertised,
            required_min_rx=self._rx_advertised,
            diag=self.local_diag,
            poll=bool(self._poll_active) and not final,
            final=final,
        )

    def _transmit(self, now: float) -> None:
        """A periodic packet now; the next one a jittered interval later."""
        self._out.append(self._packet())
        self.last_tx = now
        self._next_tx = now + self._jittered(self.tx_interval)

    def _jittered(self, interval: int) -> float:
        """6.8.7: 75-100% of the interval, or 75-90% with a multiplier of 1; seconds."""
        r = self._random()
        factor = 0.75 + 0.15 * r if self.timers.detect_mult == 1 else 1.0 - 0.25 * r
        return interval * factor / MICROSECONDS

    def _set_state(self, new: State, diag: int, now: float) -> None:
        old = self.state
        if new == old:
            return
        self.state = new
        self.local_diag = diag
        self.changed_at = now
        self._events.append(BfdStateChanged(self.peer, old, new, diag))
        if new == State.UP:
            self._events.append(BfdUp(self.peer))
            self._set_min_tx(self.timers.desired_min_tx, now)
        if old == State.UP:
            admin = diag == Diag.ADMINISTRATIVELY_DOWN or self.remote_state == State.ADMIN_DOWN
            self._events.append(BfdDown(self.peer, diag, admin))
            self._set_min_tx(self.timers.slow_tx, now)
        # Tell the peer now rather than at the next periodic transmission.
        self._control_tx(now, reset=True)
        if self._next_tx is not None:
            self._transmit(now)

    def _expire(self, now: float) -> None:
        """6.8.4 and 6.8.1: the detection time passed; forget what the peer said."""
        self.remote_discriminator = 0
        self.remote_state = State.DOWN
        self.remote_min_tx = 0
        self.remote_min_rx = 1
        self.remote_detect_mult = 0
        self.remote_demand = False
        self._poll_active = self._poll_scheduled = 0
        self.last_rx = None
        self._reschedule_tx(now)  # the peer's RequiredMinRx is gone with it
        step = EXPIRED[self.state]
        if step is not None:
            self._set_state(step[0], step[1], now)

    def _may_transmit(self) -> bool:
        if self.remote_min_rx == 0:
            return False  # 6.8.7: the peer asked for no periodic packets
        demand = self.remote_demand and self.state == State.UP and self.remote_state == State.UP
        return not (demand and not self._poll_active)

    def _control_tx(self, now: float, reset: bool) -> None:
        if (self._admin_until is not None and now >= self._admin_until) or not self._may_transmit():
            self._next_tx = None
        elif reset or self._next_tx is None:
            self._next_tx = now

    def _reschedule_tx(self, now: float) -> None:
        """The interval changed: the next packet is due one new interval after the last."""
        if self._next_tx is not None and self.last_tx is not None:
            self._next_tx = max(now, self.last_tx + self._jittered(self.tx_interval))
        self._control_tx(now, reset=False)

    def _set_min_tx(self, value: int, now: float) -> None:
        if value == self._tx_advertised:
            return
        self._tx_advertised = value
        # Sending faster may start now; sending slower waits for the peer's Final (6.8.3).
        if self.state != State.UP or value < self._tx_in_use:
            self._tx_in_use = value
            self._reschedule_tx(now)
        self._request_poll(_POLL_TX)

    def _set_min_rx(self, value: int, now: float) -> None:
        if value == self._rx_advertised:
            return
        self._rx_advertised = value
        # Accepting slower packets may start now; expecting faster ones waits for the Final.
        if self.state != State.UP or value > self._rx_in_use:
            self._rx_in_use = value
        self._request_poll(_POLL_RX)

    def _request_poll(self, what: int) -> None:
        if self.remote_discriminator == 0 or self.state == State.ADMIN_DOWN:
            return  # nobody to poll; the new values are in use already
        self._poll_scheduled |= what
        if self._poll_active:
            return  # the running sequence is followed by another for this change
        self._poll_active, self._poll_scheduled = self._poll_scheduled, 0
        # 6.5: the Poll rides on the periodic packets; no extra packet is sent for it.

    def _terminate_poll(self) -> None:
        done = self._poll_active & ~self._poll_scheduled
        if done & _POLL_TX:
            self._tx_in_use = self._tx_advertised
        if done & _POLL_RX:
            self._rx_in_use = self._rx_advertised
        self._poll_active, self._poll_scheduled = self._poll_scheduled, 0
