"""BFD for the daemon's sessions: the plan says which sessions run BFD (`PeerSpec.bfd`, from
the pybgpd.io/bfd* annotations), `plan.diff.bfd_changes` what to start, re-time or stop, and
a BFD session that goes down (the peer stopped answering, not an administrative down, RFC
5882 3.2) takes its BGP session down at once, without graceful restart, as BIRD does
("Error: BFD session down"). The BGP session then comes back by its own rules.

The BFD manager (bgpd/bfd/driver.py) is started with the first session that needs it and
kept until the daemon stops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdDown, BfdEvent, BfdUp
from bgpd.bfd.status import BfdSessionStatus
from bgpd.bfd.table import peer_key
from bgpd.plan.diff import BfdChange, bfd_changes
from bgpd.plan.peering import PeeringPlan
from bgpd.session.driver import PeerDriver
from common.log import get_logger

if TYPE_CHECKING:
    from bgpd.bfd.driver import BfdManager

log = get_logger("bgpd.bfd")

DOWN_REASON = "Error: BFD session down"


class BfdLink:
    """Keeps a `BfdManager` in step with the plan and BGP sessions with their BFD."""

    def __init__(
        self,
        drivers: Mapping[str, PeerDriver],
        make: Callable[[Callable[[BfdEvent], None]], BfdManager] | None = None,
    ) -> None:
        self.drivers = drivers
        self._make = make
        self.manager: BfdManager | None = None
        self._names: dict[str, str] = {}  # peer address -> session name

    async def follow(self, old: PeeringPlan | None, new: PeeringPlan) -> None:
        """Start, re-time or stop BFD sessions as the plan changed."""
        for change in bfd_changes(old, new):
            await self._apply(change)

    async def _apply(self, change: BfdChange) -> None:
        address = peer_key(change.peer_address)
        if change.new is None:
            if self.manager is not None and self._names.get(address) == change.name:
                self.manager.remove(address)
                del self._names[address]
            return
        if self.manager is None:
            if self._make is None:
                # The BFD stack (its sockets and timers) only for a plan with BFD sessions.
                from bgpd.bfd.driver import BfdManager

                self._make = BfdManager
            manager = self._make(self._on_event)
            await manager.start()
            self.manager = manager
        try:
            self.manager.add(
                address,
                change.source_address,
                interval=change.new.interval,
                multiplier=change.new.multiplier,
            )
        except LocalBfdError as exc:
            log.error("BFD not started for session", peer=change.name, error=str(exc))
            return
        self._names[address] = change.name

    def _on_event(self, event: BfdEvent) -> None:
        if not isinstance(event, BfdUp | BfdDown):
            return  # state changes in between: the manager logs them
        name = self._names.get(event.peer)
        if name is None:
            return
        if isinstance(event, BfdUp):
            log.info("BFD session up", peer=name, address=event.peer)
        elif isinstance(event, BfdDown):
            log.info("BFD session down", peer=name, address=event.peer, diag=event.diag,
                     admin=event.admin)
            driver = self.drivers.get(name)
            if driver is not None and not event.admin:
                driver.drop(DOWN_REASON)

    def sessions(self) -> list[BfdSessionStatus] | None:
        return None if self.manager is None else self.manager.sessions()

    async def close(self) -> None:
        if self.manager is not None:
            await self.manager.close()
            self.manager = None
