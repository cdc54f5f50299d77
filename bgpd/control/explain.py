"""The answers of `bgpctl explain PREFIX` and `bgpctl show route export PEER`, made from the
RIB, the Adj-RIB-Out groups, the export policy and the FIB's own account. Pure: the daemon
passes its state in; nothing here touches a socket or a clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bgpd.policy.calico import ExportPolicy
from bgpd.policy.imports import loop_reason
from bgpd.policy.reflection import NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED, reflecting
from bgpd.rib.adj_out import AdjRibOut
from bgpd.rib.decision import compare
from bgpd.rib.rib import Rib
from bgpd.rib.route import LocalSource, PeerInfo, Route
from bgpd.status.records import CandidatePath, Explanation, ExportedRoute, PeerExport
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, bytes_to_address, nlri_to_prefix

FibState = Callable[[Family, bytes], tuple[bool, str]]
IfnameOf = Callable[[Route], str | None]


@dataclass(frozen=True, slots=True)
class PeerState:
    """A configured session as `explain` needs it. `ibgp`/`rr_client` are the configured
    relation (known before the session is up)."""

    name: str
    state: str
    established: bool
    ibgp: bool
    rr_client: bool


def as_path_text(attrs: PathAttributes) -> str:
    """BIRD's notation: sequences as plain numbers, sets in braces."""
    parts: list[str] = []
    for seg_type, asns in attrs.as_path:
        if seg_type == AS_SEQUENCE:
            parts.extend(map(str, asns))
        else:
            parts.append("{" + ",".join(map(str, asns)) + "}")
    return " ".join(parts)


def origin_text(attrs: PathAttributes) -> str:
    return ("IGP", "EGP", "incomplete")[attrs.origin] if attrs.origin < 3 else str(attrs.origin)


def community_texts(attrs: PathAttributes) -> list[str]:
    return [f"{c >> 16}:{c & 0xFFFF}" for c in attrs.communities]


def large_community_texts(attrs: PathAttributes) -> list[str]:
    return [f"{x}:{y}:{z}" for x, y, z in attrs.large_communities]


def source_name(route: Route) -> str:
    if isinstance(route.source, LocalSource):
        return "kernel" if route.source.name == "<kernel>" else "local"
    return route.source.name


def exported_routes(adj_out: AdjRibOut, peer: str) -> list[ExportedRoute]:
    """What `peer` has been sent; KeyError when it has no update group (session not up)."""
    group = adj_out.group_of(peer)
    if group is None:
        raise KeyError(peer)
    out: list[ExportedRoute] = []
    for family in Family:
        if family not in group.key.families:
            continue
        for prefix, attrs, source in group.entries(family, peer):
            out.append(
                ExportedRoute(
                    prefix=nlri_to_prefix(family, prefix),
                    next_hop=bytes_to_address(attrs.next_hop) if attrs.next_hop else "self",
                    as_path=as_path_text(attrs),
                    origin=origin_text(attrs),
                    local_pref=attrs.local_pref,
                    med=attrs.med,
                    communities=community_texts(attrs),
                    large_communities=large_community_texts(attrs),
                    from_peer={"<local>": "local", "<kernel>": "kernel"}.get(source, source),
                )
            )
    return out


def _candidates(rib: Rib, family: Family, nlri: bytes) -> list[CandidatePath]:
    dest = rib.destination(family, nlri)
    best = dest.best if dest is not None else None
    out: list[CandidatePath] = []
    for route in rib.paths(family, nlri):
        if route is best:
            reason = dest.reason if dest is not None else None
            verdict = f"best ({reason.value})" if reason is not None else "best"
        elif best is not None:
            _winner, step = compare(best, route)
            verdict = f"lost to {source_name(best)} on {step.value}"
        else:
            verdict = "not best"
        out.append(_candidate(route, route is best, True, verdict))
    # Paths peers sent that the import checks rejected (loops): kept in the Adj-RIB-In.
    for peer in rib.peers():
        adj = rib.adj_rib_in(peer.name)
        routes, rejected = adj.tables(family)
        for item in rejected:
            held = routes.get(item)
            if held is None or held.prefix != nlri:
                continue
            why = loop_reason(rib.identity, peer, held.attrs) or "rejected on import"
            out.append(_candidate(held, False, False, f"rejected: {why}"))
    return out


def _candidate(route: Route, best: bool, accepted: bool, verdict: str) -> CandidatePath:
    a = route.attrs
    return CandidatePath(
        from_peer=source_name(route),
        next_hop=bytes_to_address(a.next_hop) if a.next_hop else "self",
        as_path=as_path_text(a),
        local_pref=a.local_pref,
        best=best,
        accepted=accepted,
        stale=route.stale,
        verdict=verdict,
    )


def _export_reason(
    peer: PeerState,
    best: Route | None,
    family: Family,
    nlri: bytes,
    adj_out: AdjRibOut,
    policy: ExportPolicy,
    ifname_of: IfnameOf | None,
) -> PeerExport:
    name = peer.name
    if not peer.established:
        return PeerExport(name, False, f"session not established ({peer.state})")
    group = adj_out.group_of(name)
    if group is None or family not in group.key.families:
        return PeerExport(name, False, f"{family} not negotiated")
    if best is None:
        return PeerExport(name, False, "no best path")
    source = best.source
    if isinstance(source, PeerInfo) and source.name == name:
        return PeerExport(name, False, "split horizon: the best path came from this peer")
    communities = best.attrs.communities
    if NO_ADVERTISE in communities:
        return PeerExport(name, False, "community NO_ADVERTISE")
    if not group.key.ibgp and (NO_EXPORT in communities or NO_EXPORT_SUBCONFED in communities):
        return PeerExport(name, False, "community NO_EXPORT to an eBGP peer")
    if (
        reflecting(source, group.key)
        and not (isinstance(source, PeerInfo) and source.rr_client)
        and not group.key.rr_client
    ):
        return PeerExport(name, False, "iBGP split horizon: learned from an iBGP non-client")
    ifname = ifname_of(best) if ifname_of is not None and best.is_local else None
    decision = policy.decide(
        nlri_to_prefix(family, nlri), internal_peer=group.key.ibgp, ifname=ifname
    )
    if not decision.allowed:
        return PeerExport(name, False, f"export policy {decision.text}")
    entry = group.advertised_entry(family, nlri)
    if entry is None:
        return PeerExport(name, False, f"export policy {decision.text}; not yet sent")
    return PeerExport(name, True, f"export policy {decision.text}")


def explain(
    rib: Rib,
    adj_out: AdjRibOut,
    prefix: str,
    peers: Iterable[PeerState],
    policy: ExportPolicy,
    fib_state: FibState | None = None,
    ifname_of: IfnameOf | None = None,
) -> Explanation:
    net = ipaddress.ip_network(prefix, strict=False)
    family = Family.IPV4_UNICAST if net.version == 4 else Family.IPV6_UNICAST
    plen = net.prefixlen
    nlri = bytes([plen]) + net.network_address.packed[: (plen + 7) // 8]
    best = rib.best(family, nlri)
    if fib_state is None:
        in_fib: bool | None = None
        fib_reason = "FIB programming is off (--no-fib)"
    else:
        in_fib, fib_reason = fib_state(family, nlri)
        if best is not None and best.is_local and not in_fib:
            fib_reason = (
                "not installed: a route learned from the kernel"
                if source_name(best) == "kernel"
                else "not installed: a route this node originates"
            )
    return Explanation(
        prefix=str(net),
        family="ipv4" if net.version == 4 else "ipv6",
        in_loc_rib=best is not None,
        candidates=_candidates(rib, family, nlri),
        in_fib=in_fib,
        fib_reason=fib_reason,
        exports=[_export_reason(p, best, family, nlri, adj_out, policy, ifname_of) for p in peers],
    )
