"""What BFD sessions report (past tense, values)."""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.bfd.packet import State


class BfdEvent:
    """Base of everything `Session.next_event()` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class BfdStateChanged(BfdEvent):
    """Any change of bfd.SessionState, for logs; `diag` is the new bfd.LocalDiag."""

    peer: str
    old: State
    new: State
    diag: int


@dataclass(frozen=True, slots=True)
class BfdUp(BfdEvent):
    """The session reached Up: the path to `peer` works both ways. BGP does not start on
    this; it comes back by its own rules (RFC 5882 4.1: BFD only says when to give up)."""

    peer: str


@dataclass(frozen=True, slots=True)
class BfdDown(BfdEvent):
    """The session left Up. `diag` says why (Diag.CONTROL_DETECTION_TIME_EXPIRED: the peer
    stopped answering within the detection time).

    `admin` is set when this is an administrative down, ours or the peer's (AdminDown,
    RFC 5882 3.2): the path did not fail, so a client SHOULD NOT take its BGP session down
    because of it."""

    peer: str
    diag: int
    admin: bool = False
