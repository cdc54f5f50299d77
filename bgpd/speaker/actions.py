"""What the speaker asks of its shell, in order (`Speaker.take_actions()`): bytes for an
update group's members, a full-table dump, pausing a peer's reads, closing a session, FIB
work, and log lines.

Values only: the shell (speaker/driver.py) carries each one out against the session drivers,
the kernel and the logger, in the order given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bgpd.rib.adj_out import GroupFlush
from bgpd.rib.table import BestChange
from bgpd.wire.messages import Notification


class Action:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Write `data` (`count` whole BGP messages) to `peer`. The same bytes object goes to every
    member of an update group. If the session has just ended, skip it: its SessionDown is on
    its way to the speaker."""

    peer: str
    data: bytes
    count: int


@dataclass(frozen=True, slots=True)
class Broadcast(Action):
    """One update group's write-out: `out.for_member(name)` to each of `members`, the same
    bytes objects to all of them. A member whose session has just ended is skipped."""

    members: tuple[str, ...]
    out: GroupFlush


@dataclass(frozen=True, slots=True)
class Dump(Action):
    """Send `chunks` (pre-encoded bytes, and how many BGP messages they hold) to `peer` one
    after the other, yielding to the event loop between them and waiting for its socket to
    drain (DESIGN principle 5); a later `Dump` or `CancelDump` for the same peer replaces it.
    The chunks are an update group's catch-up (rib/adj_out.py): read them lazily."""

    peer: str
    chunks: Iterator[tuple[bytes, int]] = field(compare=False)


@dataclass(frozen=True, slots=True)
class CancelDump(Action):
    peer: str


@dataclass(frozen=True, slots=True)
class SetReading(Action):
    """Stop (or resume) reading from `peer`'s connection: the inbound queue is too full."""

    peer: str
    reading: bool


@dataclass(frozen=True, slots=True)
class Close(Action):
    """Send `notification` to `peer`, close, and stay Idle for `hold_down` seconds."""

    peer: str
    notification: Notification
    hold_down: float


@dataclass(frozen=True, slots=True)
class FibChanges(Action):
    """Best-path changes for the kernel's FIB state; with `program`, then program what
    changed. A slice of route work plans its changes at once (so a write-out does not
    also carry the whole tick's FIB decisions); the write-out programs them."""

    changes: tuple[BestChange, ...]
    program: bool = True


@dataclass(frozen=True, slots=True)
class FibConverged(Action):
    """Graceful restart is over: remove the adopted FIB routes nobody re-learned."""


@dataclass(frozen=True, slots=True)
class Log(Action):
    """One log line: `level` is a structlog method name (info, warning, error), `fields` the
    event's values; `traceback` the formatted exception of an error caught in the speaker."""

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
