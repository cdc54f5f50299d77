"""What the BIRD socket reads from the daemon: the control API's records plus the few facts
only BIRD's commands show (graceful-restart recovery, memory, the kernel side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bgpd.status.records import DaemonStatus, ExportedRoute, ProtocolDetail, RouteEntry


@dataclass(frozen=True, slots=True)
class RestartRecovery:
    """bgpd restarting with its routes still in the FIB (RFC 4724 restarting speaker), as
    BIRD's `show status` reports its own graceful-restart recovery: the sessions that still
    owe End-of-RIB, and the wait timer (seconds left, and its length)."""

    waiting: int
    remaining: float
    wait: float


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """Bytes, as `show memory` lists them. The tables and attributes are estimates (object
    sizes sampled from the RIB, times the counts); `total` is the process's resident size."""

    routing_tables: int
    route_attributes: int
    protocols: int
    total: int


@dataclass(frozen=True, slots=True)
class BirdFacts:
    """`started` and `reconfigured` are wall-clock epoch seconds; `hostname` is the node's.
    `kernel` says whether bgpd runs its kernel side (BIRD's kernel protocol: learning
    Felix's routes and programming the FIB)."""

    hostname: str
    reconfigured: float
    kernel: bool
    restart: RestartRecovery | None
    memory: MemoryUsage


class BirdView(Protocol):
    """What the BIRD socket asks of the daemon; every call answers from memory at once."""

    def status(self) -> DaemonStatus: ...

    def protocols(self) -> list[ProtocolDetail]: ...

    def routes(self, prefix: str | None = None) -> list[RouteEntry]: ...

    def longest_match(self, prefix: str) -> str | None: ...

    def exported(self, peer: str) -> list[ExportedRoute]: ...

    def bird_facts(self) -> BirdFacts: ...
