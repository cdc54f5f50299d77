"""Session events waiting for route work, in arrival order (DESIGN principle 5).

Everything a session reports that touches routes — UPDATEs, establishment, a session going
down, a route refresh request — waits here and is applied in the order it arrived, so an
UPDATE queued before a session-down lands first. A big UPDATE is cut into pieces of `piece`
NLRI items when it reaches the head (`wire.messages.split_update`), each piece doing what its
share of the original did, so a slice of route work can end between pieces.

Backpressure: once more than `high` NLRI items are queued, a peer that adds more stops being
read; all paused peers are read again once fewer than `low` remain.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from bgpd.session.events import SessionEvent, UpdateReceived
from bgpd.wire.messages import Update, split_update

PIECE = 16
HIGH, LOW = 50_000, 10_000

P = TypeVar("P")
Item = SessionEvent | Update
"""A queued session event, or a piece of an UPDATE already cut."""


def size_of(item: Item) -> int:
    if isinstance(item, UpdateReceived):
        return item.update.size
    if isinstance(item, Update):
        return item.size
    return 0


class InboundQueue(Generic[P]):
    """`P` is the speaker's record of a peer: whoever pops an item checks it is still the
    current record of that peer (a peer removed meanwhile has its items dropped)."""

    __slots__ = ("_per_peer", "_queue", "high", "low", "paused", "piece", "size")

    def __init__(self, *, piece: int = PIECE, high: int = HIGH, low: int = LOW) -> None:
        self._queue: deque[tuple[P, str, Item]] = deque()
        self.piece = piece
        self.high = high
        self.low = low
        self.size = 0  # NLRI items queued
        self.paused: set[str] = set()
        self._per_peer: dict[str, int] = {}  # items queued by peer name

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return bool(self._queue)

    def push(self, peer: P, name: str, item: Item) -> bool:
        """Queue `item` from `peer` (named `name`); True when that peer should stop being
        read now."""
        self._queue.append((peer, name, item))
        self._per_peer[name] = self._per_peer.get(name, 0) + 1
        n = size_of(item)
        if not n:
            return False
        self.size += n
        if self.size > self.high and name not in self.paused:
            self.paused.add(name)
            return True
        return False

    def pop(self) -> tuple[P, str, SessionEvent | Update]:
        """The next item, no longer counted as queued: an UPDATE comes back as its first
        piece (with the UpdateReceived's `error` kept for the caller to report on the
        first), the other pieces now at the head of the queue. Other events come back as
        they are."""
        peer, name, item = self._queue.popleft()
        if isinstance(item, UpdateReceived):
            pieces = list(split_update(item.update, self.piece))
            if len(pieces) > 1:
                self._queue.extendleft((peer, name, p) for p in reversed(pieces[1:]))
                self._per_peer[name] += len(pieces) - 1
            item = pieces[0]
        left = self._per_peer[name] - 1
        if left:
            self._per_peer[name] = left
        else:
            del self._per_peer[name]
        if isinstance(item, Update):
            self.size -= item.size
        return peer, name, item

    def holds(self, name: str) -> bool:
        """Whether anything from peer `name` is still queued."""
        return name in self._per_peer

    def resume(self) -> Iterable[str]:
        """Peers to read again: all paused ones, once the queue is below `low`."""
        if not self.paused or self.size >= self.low:
            return ()
        names = sorted(self.paused)
        self.paused.clear()
        return names
