"""From one plan to the next: which sessions to start, stop or restart.

Sessions are matched by name (Calico's names carry the peer type, address and port). A
session whose spec changed (but for its BGPFilters, see `same_session`) is restarted, since
most of a spec (AS numbers, addresses, TTL, password, route-reflector role) is fixed for the
life of a BGP session; a new router ID
restarts every session, because the OPEN carries it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bgpd.plan.peering import BfdSpec, PeeringPlan, PeerSpec


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
    from is bookkeeping (renaming a BGPPeer must not reset its session), BFD timers are
    renegotiated with a Poll Sequence (RFC 5880 6.8.3), never by restarting BGP, and its
    BGPFilters are policy, applied to the running session (BIRD reconfigures filters without
    a reset)."""
    return replace(a, bgp_peer=None, peer_node=None, bfd=None, filters=()) == replace(
        b, bgp_peer=None, peer_node=None, bfd=None, filters=()
    )


@dataclass(frozen=True, slots=True)
class BfdChange:
    """A session that stays (or starts, or goes) whose BFD changes: `old` / `new` None
    mean no BFD before / after."""

    name: str
    peer_address: str
    source_address: str | None
    old: BfdSpec | None
    new: BfdSpec | None


def bfd_changes(old: PeeringPlan | None, new: PeeringPlan) -> list[BfdChange]:
    """What the BFD manager must do to follow the plan, by session name: start, re-time or
    stop BFD. Independent of `diff`: a BGP session restarted for another reason keeps its
    BFD session when the BFD settings are the same."""
    before = {s.name: s for s in old.sessions} if old else {}
    after = {s.name: s for s in new.sessions}
    out: list[BfdChange] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        old_bfd = a.bfd if a is not None else None
        new_bfd = b.bfd if b is not None else None
        spec = b if b is not None else a
        assert spec is not None
        moved = a is not None and b is not None and (
            (a.peer_address, a.source_address) != (b.peer_address, b.source_address)
        )
        if old_bfd != new_bfd or (moved and new_bfd is not None):
            out.append(BfdChange(name, spec.peer_address, spec.source_address, old_bfd, new_bfd))
    return out


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
