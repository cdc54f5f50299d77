"""Two BFD sessions joined on a fake clock (aioquic's client_and_server/roundtrip idea).

Packets go through the real codec and arrive at the instant they are sent; either direction
can be cut to make a peer fall silent. Nothing sleeps: the clock jumps from deadline to
deadline, so a test of a three-second detection time finishes at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from bgpd.bfd.events import BfdEvent
from bgpd.bfd.packet import ControlPacket, decode_control
from bgpd.bfd.session import Session, Timers

FAST = Timers.of(0.1, 3)


@dataclass
class Sent:
    at: float
    sender: str
    packet: ControlPacket
    delivered: bool


@dataclass
class BfdPair:
    a_timers: Timers = FAST
    b_timers: Timers = FAST
    seed: int = 1
    now: float = 0.0
    a_to_b: bool = True
    b_to_a: bool = True
    sent: list[Sent] = field(default_factory=list)
    events: dict[str, list[tuple[float, BfdEvent]]] = field(
        default_factory=lambda: {"a": [], "b": []}
    )
    dropped: list[str] = field(default_factory=list)
    # Loses the packets it returns True for: (sender, packet) -> lost.
    lose: Callable[[str, ControlPacket], bool] | None = None

    def __post_init__(self) -> None:
        self.a = Session("10.0.0.2", 0xA, self.a_timers, self.now, random.Random(self.seed).random)
        self.b = Session(
            "10.0.0.1", 0xB, self.b_timers, self.now, random.Random(self.seed + 1).random
        )
        self.flush()

    def side(self, name: str) -> Session:
        return self.a if name == "a" else self.b

    def flush(self) -> None:
        """Deliver what both sides have queued, until neither has anything more to say."""
        moved = True
        while moved:
            moved = False
            for name, other, link_up in (("a", "b", self.a_to_b), ("b", "a", self.b_to_a)):
                for data in self.side(name).packets_to_send():
                    open_ = link_up
                    moved = True
                    packet = decode_control(data)
                    if self.lose is not None and self.lose(name, packet):
                        open_ = False
                    self.sent.append(Sent(self.now, name, packet, open_))
                    if open_:
                        reason = self.side(other).receive(packet, self.now)
                        if reason is not None:
                            self.dropped.append(reason)
            for name in ("a", "b"):
                while (event := self.side(name).next_event()) is not None:
                    self.events[name].append((self.now, event))

    def step(self) -> None:
        """Jump to the earliest deadline and fire what is due on both sides."""
        deadlines = [t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None]
        assert deadlines, "no timer running on either side"
        self.now = max(self.now, min(deadlines))
        for s in (self.a, self.b):
            t = s.next_timer()
            if t is not None and t <= self.now:
                s.handle_timer(self.now)
        self.flush()

    def run_until(self, condition: Callable[[], object], limit: float = 60.0) -> float:
        while not condition():
            assert self.now < limit, f"condition not met by t={limit}"
            self.step()
        return self.now

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            deadlines = [t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None]
            if not deadlines or min(deadlines) > end:
                self.now = end
                return
            self.step()

    def packets(self, sender: str, since: float = 0.0) -> list[Sent]:
        return [s for s in self.sent if s.sender == sender and s.at >= since]

    def of_type(self, name: str, kind: type[BfdEvent]) -> list[tuple[float, BfdEvent]]:
        return [(t, e) for t, e in self.events[name] if isinstance(e, kind)]
