"""Graceful restart (RFC 4724) in both roles, as state and deadlines; the speaker acts on them.

Helper: a peer that negotiated graceful restart and dropped without a NOTIFICATION keeps its
routes, marked stale, until it sends End-of-RIB after coming back or its restart time runs
out (`Deadlines` keyed by peer). Routes of a session a plan change removed are kept the same
way until the session replacing it carries them (the mesh giving way to reflectors).

Restarting speaker: when bgpd starts and finds its own routes still in the FIB, they keep
forwarding while the sessions come back; `RestartingSpeaker` tracks which peers have not yet
sent End-of-RIB for each family they negotiated, and the deadline (the longest restart time
configured) after which the speaker stops waiting. Then the stale FIB routes go.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bgpd.rib.rib import Rib
from bgpd.rib.table import BestChange
from bgpd.wire.family import Family

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """One deadline per key; setting a key again replaces its deadline. A heap with lazy
    deletion, so the earliest deadline costs O(log n) however many peers there are."""

    __slots__ = ("_heap", "_seq", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, tuple[float, int]] = {}
        self._seq = 0

    def set(self, key: K, when: float) -> None:
        self._seq += 1
        self._when[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))

    def cancel(self, key: K) -> bool:
        return self._when.pop(key, None) is not None

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def __len__(self) -> int:
        return len(self._when)

    def get(self, key: K) -> float | None:
        entry = self._when.get(key)
        return None if entry is None else entry[0]

    def next(self) -> float | None:
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._when.get(key) == (when, seq):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Keys whose deadline is at or before `now`, earliest first, removed."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            if self._when.get(key) == (when, seq):
                del self._when[key]
                due.append(key)
        return due

    def clear(self) -> None:
        self._heap.clear()
        self._when.clear()


@dataclass(slots=True)
class RestartingSpeaker:
    """RFC 4724 4.1, receiving side: the peers (and their families) still to send End-of-RIB.

    A peer is listed from the start with no families; when its session comes up, the families
    it negotiated are what it owes. Done when nobody owes anything, or at `deadline`."""

    deadline: float
    waiting: dict[str, set[Family]] = field(default_factory=dict)

    @classmethod
    def start(cls, peers: Iterable[str], now: float, wait: float) -> RestartingSpeaker:
        return cls(now + wait, {name: set() for name in peers})

    def established(self, peer: str, families: Iterable[Family]) -> bool:
        """The peer's session is up; True when that already settles it (no families)."""
        if peer not in self.waiting:
            return False
        owed = set(families)
        self.waiting[peer] = owed
        if not owed:
            del self.waiting[peer]
        return not self.waiting

    def end_of_rib(self, peer: str, family: Family | None) -> bool:
        """End-of-RIB for `family` (None: the peer owes nothing more); True when every peer
        has now sent what it owes."""
        owed = self.waiting.get(peer)
        if owed is None:
            return False
        if family is not None:
            owed.discard(family)
        if not owed:
            del self.waiting[peer]
        return not self.waiting


class HelperMode:
    """RFC 4724 helper: the stale routes of restarting peers and of retired sessions, with
    their deadlines. A peer that dropped without a NOTIFICATION (`keep`) has its routes
    swept at its End-of-RIB (the speaker calls `Rib.sweep_stale`) or withdrawn when its
    restart time runs out; a session removed by a plan change (`retire`) keeps its routes
    until the sessions replacing it carry them, for its restart time."""

    __slots__ = ("_retired", "_stale", "rib")

    def __init__(self, rib: Rib) -> None:
        self.rib = rib
        self._stale = Deadlines[str]()
        self._retired = Deadlines[str]()

    def keep(self, peer: str, restart_time: float, now: float) -> int:
        """The peer's session went down gracefully: mark its routes stale until `now +
        restart_time`. Returns how many were marked."""
        kept = self.rib.mark_stale(peer)
        self._stale.set(peer, now + restart_time)
        return kept

    def back(self, peer: str) -> None:
        """The peer's session is up again (or it left the plan): its stale routes now wait
        for End-of-RIB, not for the timer."""
        self._stale.cancel(peer)

    def retire(self, peer: str, hold: float, now: float) -> int:
        kept = self.rib.mark_stale(peer)
        self._retired.set(peer, now + hold)
        return kept

    def next_timer(self) -> float | None:
        due = [d for d in (self._stale.next(), self._retired.next()) if d is not None]
        return min(due, default=None)

    def due(self, now: float) -> list[str]:
        """The peers whose deadline passed (restarting ones first, then retired ones)."""
        return self._stale.pop_due(now) + self._retired.pop_due(now)

    def expire(self, peer: str, established: Callable[[str], bool]) -> list[BestChange]:
        """The deadline of `peer` passed: if its session is up again, what it has not sent
        again goes; otherwise all of it."""
        rib = self.rib
        if not rib.has_peer(peer):
            return []
        if established(peer):
            return rib.sweep_stale(peer)
        return rib.remove_peer(peer)
