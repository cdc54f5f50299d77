"""Route policy as one decision: `Policy.evaluate(route, direction, peer) -> (verdict, route)`,
as GoBGP's `Statement.Apply` and BIRD's filters take a route and give back a verdict and a
new route (never a mutated one).

A `Policy` joins the rules that apply, in order:
- import: the protocol's normalisation and loop checks (`imports.py`), then any per-prefix
  import rules;
- export: Calico's export rules for this node (`calico.py`: pools, blocks, interfaces), then
  the protocol's rules and attribute changes (`reflection.py`: split horizon, route
  reflection, next hop, AS path), and the communities of BGPConfiguration's
  prefixAdvertisements (`communities.py`).

The Adj-RIB-Out does not call `evaluate` per route: it holds one `GroupExport` per update
group, whose two halves are the same decision split by what they depend on — `allows`
(the prefix, and a kernel route's interface: asked per prefix, compiled) and `export` (the
attributes and source: asked once per distinct pair). The communities depend on the prefix:
`variant` (per prefix, like `allows`) says which rules hold it, and `export` gets that too.
`evaluate` composes them for one peer, so `bgpctl explain` and the tests see exactly what
the groups do.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.policy.calico import ExportPolicy
from bgpd.policy.communities import CommunityRule, CommunityRules
from bgpd.policy.imports import ImportRules
from bgpd.policy.reflection import export_attrs, may_export_to
from bgpd.rib.adj_out import GroupKey
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.route import Identity, LocalSource, PeerInfo, Route
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family

IfnameOf = Callable[[Route], "str | None"]
"""The outgoing interface of a kernel-learned route (None when unknown or not one)."""


class Direction(enum.Enum):
    IMPORT = "import"
    EXPORT = "export"


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class PeerContext:
    """The peer a route is evaluated for. `info` is the peer as the RIB knows it; for export,
    `key` is its update group's key (what we present to it); `identity` is ours."""

    info: PeerInfo
    identity: Identity
    key: GroupKey | None = None


def _always(route: Route) -> bool:
    return True


class GroupExport:
    """One update group's `OutboundPolicy` (see bgpd/rib/adj_out.py)."""

    __slots__ = ("allows", "cluster_id", "communities", "key", "variant")

    def __init__(
        self,
        key: GroupKey,
        cluster_id: int,
        calico: ExportPolicy | None,
        ifname_of: IfnameOf | None,
        communities: CommunityRules | None = None,
    ) -> None:
        self.key = key
        self.cluster_id = cluster_id
        self.allows: Callable[[Route], bool] = (
            _always if calico is None else calico_filter(calico, ifname_of, key.ibgp)
        )
        self.communities = communities
        self.variant: Callable[[Route], int] | None = (
            community_variant(communities) if communities else None
        )

    def export(
        self, route: Route, cache: AttrCache | None, variant: int = 0
    ) -> PathAttributes | None:
        key = self.key
        if not may_export_to(route.source, key, route):
            return None
        attrs = export_attrs(
            route,
            key,
            local_as=key.local_as,
            cluster_id=self.cluster_id,
            next_hop_self=key.next_hop_self,
            local_address=key.local_address(route.family),
            cache=None if variant else cache,
            next_hop_keep=key.next_hop_keep,
        )
        if variant and self.communities is not None:
            attrs = self.communities.apply(attrs, variant)
            if cache is not None:
                attrs = cache.intern(attrs)
        return attrs


def community_variant(rules: CommunityRules) -> Callable[[Route], int]:
    """The prefixAdvertisement rules holding a route's prefix, as a bit per rule."""
    v4 = rules.variant_of(Family.IPV4_UNICAST)
    v6 = rules.variant_of(Family.IPV6_UNICAST)
    ipv4 = Family.IPV4_UNICAST

    def variant(route: Route) -> int:
        return (v4 if route.family is ipv4 else v6)(route.prefix)

    return variant


def calico_filter(
    calico: ExportPolicy, ifname_of: IfnameOf | None, ibgp: bool
) -> Callable[[Route], bool]:
    """Calico's export rules for a group of iBGP (or eBGP) peers: on the prefix bytes, plus
    the interface rules for kernel-learned routes."""
    v4 = calico.nlri_check(Family.IPV4_UNICAST)
    v6 = calico.nlri_check(Family.IPV6_UNICAST)
    iface_allows = calico.iface_allows
    ipv4 = Family.IPV4_UNICAST

    def allows(route: Route) -> bool:
        if ifname_of is not None and isinstance(route.source, LocalSource):
            ifname = ifname_of(route)
            if ifname is not None and not iface_allows(ifname, ibgp):
                return False
        return (v4 if route.family is ipv4 else v6)(route.prefix)

    return allows


class Policy:
    """Every rule this speaker applies to routes: the RIB's `ImportPolicy` and the
    Adj-RIB-Out's `OutboundPolicies`.

    `calico` is Calico's export policy for this node (None: no Calico export rules, every
    route the protocol allows goes out); `ifname_of` gives a kernel route's interface;
    `communities` are the prefixAdvertisements' rules."""

    __slots__ = ("calico", "communities", "ifname_of", "imports")

    def __init__(
        self,
        calico: ExportPolicy | None = None,
        ifname_of: IfnameOf | None = None,
        communities: tuple[CommunityRule, ...] = (),
    ) -> None:
        self.calico = calico
        self.ifname_of = ifname_of
        self.communities = CommunityRules(communities)
        self.imports = ImportRules()

    # --- the RIB's ImportPolicy ---------------------------------------------------------

    def import_attrs(
        self, ident: Identity, peer: PeerInfo, attrs: PathAttributes
    ) -> tuple[PathAttributes, str | None]:
        return self.imports.import_attrs(ident, peer, attrs)

    def prefix_filter(self, peer: PeerInfo, family: Family) -> Callable[[bytes], bool] | None:
        return self.imports.prefix_filter(peer, family)

    # --- the Adj-RIB-Out's OutboundPolicies ---------------------------------------------

    def for_group(self, key: GroupKey, cluster_id: int) -> GroupExport:
        if key.policies:
            raise ValueError(f"export policies {', '.join(key.policies)} are not defined")
        return GroupExport(key, cluster_id, self.calico, self.ifname_of, self.communities)

    # --- one route, one peer ------------------------------------------------------------

    def evaluate(
        self, route: Route, direction: Direction, peer: PeerContext
    ) -> tuple[Verdict, Route]:
        """The verdict on `route` for `peer` and the route as it would be stored (import)
        or advertised (export)."""
        if direction is Direction.IMPORT:
            attrs, loop = self.import_attrs(peer.identity, peer.info, route.attrs)
            check = self.prefix_filter(peer.info, route.family)
            if loop is not None or (check is not None and not check(route.prefix)):
                return Verdict.REJECT, route
            return Verdict.ACCEPT, _with_attrs(route, attrs)
        if peer.key is None:
            raise ValueError(f"{peer.info.name}: export needs the peer's update group key")
        if route.source.name == peer.info.name:
            return Verdict.REJECT, route  # never back to where it came from
        group = self.for_group(peer.key, peer.identity.cluster_id)
        if not group.allows(route):
            return Verdict.REJECT, route
        variant = group.variant(route) if group.variant is not None else 0
        exported = group.export(route, None, variant)
        if exported is None:
            return Verdict.REJECT, route
        return Verdict.ACCEPT, _with_attrs(route, exported)


def _with_attrs(route: Route, attrs: PathAttributes) -> Route:
    if attrs is route.attrs:
        return route
    return Route(route.prefix, route.family, attrs, route.source, route.path_id, route.stale)
