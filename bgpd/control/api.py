"""What the control server asks of the daemon: the `DaemonView` protocol.

The records it answers with live on the ground floor, in `bgpd.status.records` (the status
reporter and the metrics use them too), and the server writes them as JSON with the one
generic codec, `bgpd.status.codec`.
"""

from __future__ import annotations

from typing import Protocol

from bgpd.status.records import DaemonStatus, Explanation, ExportedRoute, RouteEntry


class DaemonView(Protocol):
    """What the control server asks of the daemon. Every call runs on the event loop, so it
    must answer from in-memory state without awaiting anything."""

    def status(self) -> DaemonStatus: ...

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        """Every path (best and candidates) in the Loc-RIB view, or only those of `prefix`
        (canonical network form, e.g. "10.0.0.0/24" or "fd00::/64"; an exact match)."""
        ...

    def longest_match(self, prefix: str) -> str | None:
        """The most specific Loc-RIB prefix covering `prefix` (canonical form; a host
        prefix for an address), as BIRD's `show route for` finds it; None if none does."""
        ...

    def exported(self, peer: str) -> list[ExportedRoute]:
        """What is advertised to `peer` now (its update group's Adj-RIB-Out, less what it
        sent us); raises KeyError for an unknown peer."""
        ...

    def explain(self, prefix: str) -> Explanation:
        """Why `prefix` (canonical form) is or is not in the Loc-RIB, the FIB and each
        peer's Adj-RIB-Out."""
        ...
