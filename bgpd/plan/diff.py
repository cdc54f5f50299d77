"""From one plan to the next: which sessions to start, stop or restart.

Sessions are matched by name (Calico's names carry the peer type, address and port). A
session whose spec changed is restarted, since most of a spec (AS numbers, addresses, TTL,
password, route-reflector role) is fixed for the life of a BGP session; a new router ID
restarts every session, because the OPEN carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bgpd.plan.peering import PeeringPlan, PeerSpec


@dataclass(frozen=True, slots=True)
class PeerAdded:
    spec: PeerSpec

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    spec: PeerSpec

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class PeerChanged:
    name: str
    old: PeerSpec
    new: PeerSpec


PeerChange = PeerAdded | PeerRemoved | PeerChanged


def same_session(a: PeerSpec, b: PeerSpec) -> bool:
    """Whether two specs run the same session: which BGPPeer resource or node a session came
    from is bookkeeping (renaming a BGPPeer must not reset its session)."""
    return replace(a, bgp_peer=None, peer_node=None) == replace(b, bgp_peer=None, peer_node=None)


def diff(old: PeeringPlan | None, new: PeeringPlan) -> list[PeerChange]:
    """Removals first (they free addresses and ports a new session may want), then
    changes, then additions; each group sorted by session name."""
    before = {s.name: s for s in old.sessions} if old else {}
    after = {s.name: s for s in new.sessions}
    new_identity = old is not None and old.router_id != new.router_id
    removed: list[PeerChange] = [PeerRemoved(before[n]) for n in sorted(before.keys() - after)]
    changed: list[PeerChange] = [
        PeerChanged(n, before[n], after[n])
        for n in sorted(before.keys() & after.keys())
        if new_identity or not same_session(before[n], after[n])
    ]
    added: list[PeerChange] = [PeerAdded(after[n]) for n in sorted(after.keys() - before)]
    return removed + changed + added
