"""The protocol's own export rules: which best routes may go to which kind of peer, and with
what attributes (RFC 4271, RFC 4456, RFC 1997).

Pure functions, as in BIRD where route reflection is export logic (`bgp_preexport`,
`bgp_update_attrs`) and GoBGP's `filterpath()`:

- iBGP split horizon, relaxed by route reflection (RFC 4456 6): a route learned from an
  iBGP client goes to every peer; one learned from an iBGP non-client goes to clients (and
  eBGP peers) only; eBGP-learned and local routes go to everyone.
- never back to the peer it came from (checked per peer in `may_export`; update groups apply
  it per member, see rib/adj_out.py);
- the well-known communities NO_ADVERTISE, NO_EXPORT and NO_EXPORT_SUBCONFED (RFC 1997).

A target is anything with `ibgp` and `rr_client`: a `PeerInfo`, or an update group's key,
whose members all share those answers.
"""

from __future__ import annotations

from typing import Any, Protocol

from bgpd.rib.attrcache import AttrCache
from bgpd.rib.decision import DEFAULT_LOCAL_PREF
from bgpd.rib.route import LocalSource, PeerInfo, Route, Source
from bgpd.wire.attributes import AS_SEQUENCE, AsPathSegment, PathAttributes

# Well-known communities (RFC 1997).
NO_EXPORT = 0xFFFFFF01
NO_ADVERTISE = 0xFFFFFF02
NO_EXPORT_SUBCONFED = 0xFFFFFF03


class ExportTarget(Protocol):
    @property
    def ibgp(self) -> bool: ...

    @property
    def rr_client(self) -> bool: ...


def may_export_to(source: Source, target: ExportTarget, route: Route) -> bool:
    """The rules that depend only on the kind of target, not on which peer it is."""
    communities = route.attrs.communities
    if communities:
        if NO_ADVERTISE in communities:
            return False
        if not target.ibgp and (NO_EXPORT in communities or NO_EXPORT_SUBCONFED in communities):
            return False
    return may_reflect(source, target)


def may_reflect(source: Source, target: ExportTarget) -> bool:
    """The rule of `may_export_to` that depends on the source's kind alone: iBGP to iBGP
    only by reflection, client -> anyone, non-client -> clients."""
    if isinstance(source, LocalSource) or not source.ibgp or not target.ibgp:
        return True
    return source.rr_client or target.rr_client


def may_export(source: Source, target: PeerInfo, route: Route) -> bool:
    """Whether `route`, learned from `source`, may be advertised to `target`."""
    if source.name == target.name:
        return False
    return may_export_to(source, target, route)


def reflecting(source: Source, target: ExportTarget) -> bool:
    """True when advertising a route from `source` to `target` is route reflection."""
    return isinstance(source, PeerInfo) and source.ibgp and target.ibgp


def reflect(attrs: PathAttributes, source: PeerInfo, cluster_id: int) -> PathAttributes:
    """RFC 4456 8: ORIGINATOR_ID set to the originator if absent, our cluster ID prepended."""
    originator = attrs.originator_id if attrs.originator_id is not None else source.router_id
    return attrs.replace(originator_id=originator, cluster_list=(cluster_id, *attrs.cluster_list))


def _prepend(as_path: tuple[AsPathSegment, ...], asn: int) -> tuple[AsPathSegment, ...]:
    if as_path and as_path[0][0] == AS_SEQUENCE and len(as_path[0][1]) < 255:
        return ((AS_SEQUENCE, (asn, *as_path[0][1])), *as_path[1:])
    return ((AS_SEQUENCE, (asn,)), *as_path)


def _need(local_address: bytes | None) -> bytes:
    if local_address is None:
        raise ValueError("a next hop of our own is needed but no local address is known")
    return local_address


def export_attrs(
    route: Route,
    target: ExportTarget,
    *,
    local_as: int,
    cluster_id: int,
    next_hop_self: bool,
    local_address: bytes | None,
    cache: AttrCache | None = None,
    next_hop_keep: bool = False,
) -> PathAttributes:
    """The attributes `route` is advertised with to `target` (interned in `cache` if given).

    `local_as` is the AS we present to the target; `local_address` our address for the
    route's family on that session (packed), used wherever the next hop is ourselves.

    eBGP: our AS prepended, next hop self (with `next_hop_keep`, BIRD's `next hop keep`, a
    learned route keeps its next hop; ours still goes on what we originate, which has none),
    LOCAL_PREF / ORIGINATOR_ID / CLUSTER_LIST removed, MED kept only on routes we originate
    (a MED from another AS is not passed on, RFC 4271 5.1.4; BIRD likewise drops it unless an
    export filter sets one).
    iBGP: local routes get next hop self and LOCAL_PREF (100 unless set); learned routes
    keep their next hop (its global part) unless `next_hop_self`, and get LOCAL_PREF 100
    when they have none;
    reflected routes get ORIGINATOR_ID and our cluster ID (RFC 4456 8).
    """
    attrs = route.attrs
    source = route.source
    changes: dict[str, Any] = {}
    if not target.ibgp:
        changes["as_path"] = _prepend(attrs.as_path, local_as)
        if next_hop_keep and isinstance(source, PeerInfo) and attrs.next_hop is not None:
            if len(attrs.next_hop) == 32:
                changes["next_hop"] = attrs.next_hop[:16]  # the link-local half is the link's
        else:
            changes["next_hop"] = _need(local_address)
        if attrs.local_pref is not None:
            changes["local_pref"] = None
        if attrs.originator_id is not None:
            changes["originator_id"] = None
        if attrs.cluster_list:
            changes["cluster_list"] = ()
        if attrs.med is not None and not isinstance(source, LocalSource):
            changes["med"] = None
    else:
        if attrs.local_pref is None:
            changes["local_pref"] = DEFAULT_LOCAL_PREF
        if isinstance(source, LocalSource) or next_hop_self:
            nh = _need(local_address)
            if attrs.next_hop != nh:
                changes["next_hop"] = nh
        elif attrs.next_hop is not None and len(attrs.next_hop) == 32:
            # A link-local next hop only means something on the link it was learned on
            # (RFC 2545 3); pass on the global address alone.
            changes["next_hop"] = attrs.next_hop[:16]
        if isinstance(source, PeerInfo) and source.ibgp:
            changes["originator_id"] = (
                attrs.originator_id if attrs.originator_id is not None else source.router_id
            )
            changes["cluster_list"] = (cluster_id, *attrs.cluster_list)
    result = attrs.replace(**changes) if changes else attrs
    return cache.intern(result) if cache is not None else result
