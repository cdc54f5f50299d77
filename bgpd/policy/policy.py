"""Route policy as one decision: `Policy.evaluate(route, direction, peer) -> (verdict, route)`,
as GoBGP's `Statement.Apply` and BIRD's filters take a route and give back a verdict and a
new route (never a mutated one).

A `Policy` joins the rules that apply, in the order confd's bird.cfg runs them:
- import: the protocol's normalisation and loop checks (`imports.py`), then the import rules
  of the peer's BGPFilters (`bgpfilter.py`; a route none of them decides is accepted);
- export: the protocol's rules and attribute changes (`reflection.py`: split horizon, route
  reflection, next hop, AS path; BIRD runs them before the export filter), the route's
  priority as LOCAL_PREF, the export rules of the peer's BGPFilters, then, for a route none of
  them decides, Calico's export rules for this node (`calico.py`: pools, blocks, interfaces)
  with the communities of BGPConfiguration's prefixAdvertisements (`communities.py`: confd's
  `apply_communities()` opens `calico_export_to_bgp_peers`, so a route a filter rule accepts
  gets none).

The Adj-RIB-Out does not call `evaluate` per route: it holds one `GroupExport` per update
group, whose two halves are the same decision split by what they depend on — `allows`
(asked per prefix: the prefix, the route's kind, interface and priority; compiled) returns
falsy or a token naming how the route goes out (an accepting filter rule's operations, a
kernel route's metric, the prefixAdvertisements holding its prefix), and `export` (asked
once per distinct attributes, source and token) makes the attributes to send. `evaluate`
composes them for one peer, so `bgpctl explain` and the tests see exactly what the groups do.

Priority (the prelude of every export filter confd writes, and the ipv4/ipv6NormalRoutePriority
of BGPConfiguration): a route not learned from BGP goes out with LOCAL_PREF
2147483647 - priority, its priority being a kernel route's metric when known, else the normal
one; a route from BGP keeps its LOCAL_PREF (100 when it had none). Inside a local block, a
route whose priority is below normal (a kernel metric, or a LOCAL_PREF above
2147483647 - normal) is let out past the block's aggregate (Calico's `krt_metric < normal`:
live migration).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bgpd.policy.bgpfilter import (
    BIRD_DEFAULT_LOCAL_PREF,
    EXPORT,
    IMPORT,
    PRIORITY_BASE,
    FilterChain,
    Operations,
)
from bgpd.policy.calico import ExportPolicy, accepting
from bgpd.policy.communities import CommunityRule, CommunityRules
from bgpd.policy.imports import ImportRules
from bgpd.policy.reflection import export_attrs, may_export_to, may_reflect
from bgpd.rib.adj_out import GroupKey
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.route import Identity, ImportCheck, LocalSource, PeerInfo, Route, Source
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family, nlri_network
from calico.model import BGPFilter


class _Session(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def filters(self) -> tuple[str, ...]: ...


class PlanLike(Protocol):
    """What `Policy.of_plan` reads of a plan (bgpd.plan's PeeringPlan; the planner imports
    this room, not the other way round)."""

    @property
    def filters(self) -> tuple[BGPFilter, ...]: ...

    @property
    def sessions(self) -> tuple[_Session, ...]: ...

    @property
    def normal_priority_v4(self) -> int: ...

    @property
    def normal_priority_v6(self) -> int: ...

    @property
    def communities(self) -> tuple[CommunityRule, ...]: ...

IfnameOf = Callable[[Route], "str | None"]
"""The outgoing interface of a kernel-learned route (None when unknown or not one)."""

MetricOf = Callable[[Route], "int | None"]
"""The kernel metric of a kernel-learned route (BIRD's krt_metric; None when unknown)."""

NextHopIfname = Callable[[Family, bytes], "str | None"]
"""The interface towards a next hop (packed address), for routes learned from BGP peers."""

DEFAULT_PRIORITY = 1024


class Direction(enum.Enum):
    IMPORT = "import"
    EXPORT = "export"


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class RoutePriority:
    """BGPConfiguration's ipv4NormalRoutePriority / ipv6NormalRoutePriority: the priority of a
    route that has none of its own."""

    v4: int = DEFAULT_PRIORITY
    v6: int = DEFAULT_PRIORITY

    def of(self, family: Family) -> int:
        return self.v4 if family is Family.IPV4_UNICAST else self.v6


@dataclass(frozen=True, slots=True)
class PeerContext:
    """The peer a route is evaluated for. `info` is the peer as the RIB knows it; for export,
    `key` is its update group's key (what we present to it); `identity` is ours."""

    info: PeerInfo
    identity: Identity
    key: GroupKey | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ExportToken:
    """How an allowed route goes out: with an accepting filter rule's `ops`, a kernel
    route's metric `krt` as its priority, and the communities of the prefixAdvertisements
    `variant` names (a bit per rule). Compared by identity (each group interns them)."""

    ops: Operations | None
    krt: int | None
    variant: int = 0


PLAIN = ExportToken(None, None)


class GroupExport:
    """One update group's `OutboundPolicy` (see bgpd/rib/adj_out.py)."""

    __slots__ = (
        "_tokens",
        "allows",
        "chains",
        "cluster_id",
        "communities",
        "key",
        "priority",
        "variant",
    )

    def __init__(
        self,
        key: GroupKey,
        cluster_id: int,
        calico: ExportPolicy | None,
        ifname_of: IfnameOf | None,
        *,
        chains: Mapping[Family, FilterChain] | None = None,
        priority: RoutePriority | None = None,
        metric_of: MetricOf | None = None,
        next_hop_ifname: NextHopIfname | None = None,
        communities: CommunityRules | None = None,
    ) -> None:
        self.key = key
        self.cluster_id = cluster_id
        self.priority = priority or RoutePriority()
        self.chains: Mapping[Family, FilterChain] = {
            f: c for f, c in (chains or {}).items() if c
        }
        self._tokens: dict[tuple[int, int | None, int], ExportToken] = {}
        self.communities = communities if communities else None
        self.variant: Callable[[Route], int] | None = (
            community_variant(communities) if communities else None
        )
        self.allows: Callable[[Route], ExportToken | bool] = _allows(
            self, calico, ifname_of, metric_of, next_hop_ifname
        )

    def token(self, ops: Operations | None, krt: int | None, variant: int = 0) -> ExportToken:
        if ops is None and krt is None and not variant:
            return PLAIN
        k = (id(ops), krt, variant)
        tok = self._tokens.get(k)
        if tok is None:
            tok = self._tokens[k] = ExportToken(ops, krt, variant)
        return tok

    def sends_from(self, source: Source) -> bool:
        return may_reflect(source, self.key)

    def export(
        self, route: Route, cache: AttrCache | None, token: object = PLAIN
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
            cache=None,
            next_hop_keep=key.next_hop_keep,
        )
        tok = token if isinstance(token, ExportToken) else PLAIN
        if isinstance(route.source, LocalSource):
            krt = tok.krt if tok.krt is not None else self.priority.of(route.family)
            local_pref: int | None = PRIORITY_BASE - krt
        elif key.ibgp:
            local_pref = attrs.local_pref
        else:  # what the filter sees towards an eBGP peer, before it is left out
            local_pref = route.attrs.local_pref
            if local_pref is None:
                local_pref = BIRD_DEFAULT_LOCAL_PREF
        if tok.ops is not None:
            attrs = tok.ops.apply(attrs.replace(local_pref=local_pref))
            local_pref = attrs.local_pref
        if tok.variant and self.communities is not None:
            attrs = self.communities.apply(attrs, tok.variant)
        if not key.ibgp:
            local_pref = None  # LOCAL_PREF never goes to an eBGP peer
        if attrs.local_pref != local_pref:
            attrs = attrs.replace(local_pref=local_pref)
        return cache.intern(attrs) if cache is not None else attrs


def community_variant(rules: CommunityRules) -> Callable[[Route], int]:
    """The prefixAdvertisement rules holding a route's prefix, as a bit per rule."""
    v4 = rules.variant_of(Family.IPV4_UNICAST)
    v6 = rules.variant_of(Family.IPV6_UNICAST)
    ipv4 = Family.IPV4_UNICAST

    def variant(route: Route) -> int:
        return (v4 if route.family is ipv4 else v6)(route.prefix)

    return variant


def _allows(
    group: GroupExport,
    calico: ExportPolicy | None,
    ifname_of: IfnameOf | None,
    metric_of: MetricOf | None,
    next_hop_ifname: NextHopIfname | None,
) -> Callable[[Route], ExportToken | bool]:
    """The per-prefix half of a group's export decision: falsy, or the token to export with.

    A route's interface (for the filters' interface rules and Calico's tunnel rules) is a
    kernel route's device, or for a route from BGP the interface towards its next hop, when
    the hooks tell them. The common case, no BGPFilter and no hooks beyond the kernel
    route's interface, costs what Calico's compiled check costs plus a type test."""
    key = group.key
    ibgp = key.ibgp
    chains = group.chains
    priority = group.priority
    token = group.token
    variant_of = group.variant
    v4 = Family.IPV4_UNICAST
    iface_allows = calico.iface_allows if calico is not None else None

    def always(prefix: bytes) -> bool:
        return True

    def state(f: Family) -> tuple[Any, ...]:
        """What a route of family `f` is decided with, looked up once (a Family's hash is
        Python code): the LOCAL_PREF above which a route from BGP has raised priority, the
        normal priority, Calico's prefix check, the chain and its per-kind decisions (None
        when it has interface or attribute conditions)."""
        chain = chains.get(f)
        plain = None
        if chain is not None and not (chain.needs_iface or chain.needs_attrs):
            plain = (chain.decision(True), chain.decision(False))
        check = calico.nlri_check(f) if calico is not None else always
        normal = priority.of(f)
        return (PRIORITY_BASE - normal, normal, check, chain, plain)

    st4, st6 = state(v4), state(Family.IPV6_UNICAST)

    def calico_allows(route: Route, ifname: str | None) -> bool:
        """calico_export_to_bgp_peers for a route of raised priority (uncompiled: rare)."""
        assert calico is not None
        family = route.family
        addr, plen = nlri_network(family, route.prefix)
        return accepting(calico.rule(family.spec.version, addr, plen, ibgp, ifname, True))

    def view(route: Route, krt: int | None, local: bool, normal: int) -> PathAttributes:
        """The attributes the filter's conditions see (see bgpfilter.py)."""
        attrs = route.attrs
        if local:
            lp = PRIORITY_BASE - (krt if krt is not None else normal)
        else:
            lp = attrs.local_pref if attrs.local_pref is not None else BIRD_DEFAULT_LOCAL_PREF
        path = attrs if ibgp else attrs.prepend(key.local_as)
        return attrs.replace(local_pref=lp, as_path=path.as_path)

    def allows(route: Route) -> ExportToken | bool:
        raised, normal, check, chain, plain = st4 if route.family is v4 else st6
        local = isinstance(route.source, LocalSource)
        ifname = None
        krt = None
        if local:
            if ifname_of is not None:
                ifname = ifname_of(route)
            if metric_of is not None:
                krt = metric_of(route)
            elevated = krt is not None and krt < normal
        else:
            lp = route.attrs.local_pref
            elevated = lp is not None and lp > raised
            if next_hop_ifname is not None:
                # BIRD's ifname of a route from BGP: the interface towards its next hop.
                nh = route.attrs.next_hop
                ifname = next_hop_ifname(route.family, nh) if nh is not None else None
        if chain is not None:
            if plain is not None:
                decide = plain[local]
            else:
                decide = chain.decision(
                    not local,
                    chain.iface_truths(ifname) if chain.needs_iface else (),
                    chain.attr_truths(view(route, krt, local, normal))
                    if chain.needs_attrs
                    else (),
                )
            index = decide(route.prefix)
            if index >= 0:
                rule = chain.rules[index]
                if rule.error or not rule.accept:
                    return False
                return token(rule.ops, krt)
        if calico is not None:
            # The interface rules reject whatever the prefix; past them the prefix decides.
            assert iface_allows is not None
            if ifname is not None and not iface_allows(ifname, ibgp):
                return False
            if not (calico_allows(route, ifname) if elevated else check(route.prefix)):
                return False
        # Past the filters, on Calico's rules: apply_communities() opens them.
        return token(None, krt, variant_of(route) if variant_of is not None else 0)

    def calico_passed(route: Route) -> ExportToken:
        """The token of a route Calico's compiled check let out (no metric known)."""
        if variant_of is None:
            return PLAIN
        v = variant_of(route)
        return token(None, None, v) if v else PLAIN

    if chains and metric_of is None and next_hop_ifname is None and calico is not None and all(
        st[3] is None or st[4] is not None for st in (st4, st6)
    ):
        # Filters of prefix rules only, no hooks for routes from BGP: such a route, not of
        # raised priority, is decided by its prefix alone: the rule's outcome, computed once
        # per rule, or Calico's compiled check.
        outcomes = {
            id(st[3]): [
                False if (r.error or not r.accept) else token(r.ops, None) for r in st[3].rules
            ]
            for st in (st4, st6)
            if st[3] is not None
        }
        fast4 = _fast_state(st4, outcomes)
        fast6 = _fast_state(st6, outcomes)

        def prefix_rules(route: Route) -> ExportToken | bool:
            if isinstance(route.source, LocalSource):
                return allows(route)
            raised, decide, out, check = fast4 if route.family is v4 else fast6
            lp = route.attrs.local_pref
            if lp is not None and lp > raised:
                return allows(route)
            if decide is not None:
                index = decide(route.prefix)
                if index >= 0:
                    return out[index]  # type: ignore[no-any-return]
            return calico_passed(route) if check(route.prefix) else False

        return prefix_rules
    if not chains and metric_of is None and next_hop_ifname is None and calico is not None:
        # No filter, no metric: Calico's rules alone, as before BGPFilters.
        assert iface_allows is not None
        check4, check6 = st4[2], st6[2]
        raised4, raised6 = st4[0], st6[0]

        def calico_only(route: Route) -> ExportToken | bool:
            four = route.family is v4
            if isinstance(route.source, LocalSource):
                if ifname_of is not None:
                    ifname = ifname_of(route)
                    if ifname is not None and not iface_allows(ifname, ibgp):
                        return False
            else:
                lp = route.attrs.local_pref
                if lp is not None and lp > (raised4 if four else raised6):
                    return allows(route)
            return calico_passed(route) if (check4 if four else check6)(route.prefix) else False

        return calico_only
    return allows


def _fast_state(st: tuple[Any, ...], outcomes: Mapping[int, list[Any]]) -> tuple[Any, ...]:
    """(raised LOCAL_PREF, the chain's decision for routes from BGP, outcome per rule,
    Calico's check) of one family's `state`."""
    raised, _normal, check, chain, plain = st
    if chain is None:
        return (raised, None, None, check)
    return (raised, plain[0], outcomes[id(chain)], check)


class Policy:
    """Every rule this speaker applies to routes: the RIB's `ImportPolicy` and the
    Adj-RIB-Out's `OutboundPolicies`.

    `calico` is Calico's export policy for this node (None: no Calico export rules, every
    route the protocol and the filters allow goes out); `filters` the BGPFilters by name;
    `peer_filters` the names each session's BGPPeer lists (import); update groups carry theirs
    in `GroupKey.policies` (export). A name with no filter is left out, as confd does (the
    planner notes it). `priority` is the normal route priority per family. Hooks:
    `ifname_of` and `metric_of` give a kernel route's interface and metric, `next_hop_ifname`
    the interface towards a BGP route's next hop; each None when not known. `communities` are
    the prefixAdvertisements' rules."""

    __slots__ = (
        "_chains",
        "calico",
        "communities",
        "filters",
        "ifname_of",
        "imports",
        "metric_of",
        "next_hop_ifname",
        "peer_filters",
        "priority",
    )

    def __init__(
        self,
        calico: ExportPolicy | None = None,
        ifname_of: IfnameOf | None = None,
        *,
        filters: Mapping[str, BGPFilter] | None = None,
        peer_filters: Mapping[str, tuple[str, ...]] | None = None,
        priority: RoutePriority | None = None,
        metric_of: MetricOf | None = None,
        next_hop_ifname: NextHopIfname | None = None,
        communities: tuple[CommunityRule, ...] = (),
    ) -> None:
        self.calico = calico
        self.ifname_of = ifname_of
        self.communities = CommunityRules(communities)
        self.filters: Mapping[str, BGPFilter] = dict(filters or {})
        self.peer_filters: Mapping[str, tuple[str, ...]] = dict(peer_filters or {})
        self.priority = priority or RoutePriority()
        self.metric_of = metric_of
        self.next_hop_ifname = next_hop_ifname
        self.imports = ImportRules()
        self._chains: dict[tuple[tuple[str, ...], str, Family, bool], FilterChain | None] = {}

    @classmethod
    def of_plan(
        cls,
        plan: PlanLike,
        calico: ExportPolicy | None,
        *,
        ifname_of: IfnameOf | None = None,
        metric_of: MetricOf | None = None,
        next_hop_ifname: NextHopIfname | None = None,
    ) -> Policy:
        """The policy a node's plan asks for: its BGPFilters, each session's list of them,
        its normal route priorities, with Calico's export rules `calico`."""
        return cls(
            calico,
            ifname_of,
            filters={f.name: f for f in plan.filters},
            peer_filters={s.name: s.filters for s in plan.sessions if s.filters},
            priority=RoutePriority(plan.normal_priority_v4, plan.normal_priority_v6),
            metric_of=metric_of,
            next_hop_ifname=next_hop_ifname,
            communities=plan.communities,
        )

    def chain(
        self, names: tuple[str, ...], direction: str, family: Family, ibgp: bool
    ) -> FilterChain | None:
        """The compiled rules of the named filters (those defined), or None when none apply."""
        k = (names, direction, family, ibgp)
        if k not in self._chains:
            defined = [self.filters[n] for n in names if n in self.filters]
            chain = FilterChain(defined, direction, family, ibgp) if defined else None
            self._chains[k] = chain if chain else None
        return self._chains[k]

    # --- what a change touches ------------------------------------------------------------

    def import_rules(self, peer: str) -> tuple[BGPFilter, ...]:
        """The definitions a peer's import decision depends on (compare to see a change)."""
        return tuple(self.filters[n] for n in self.peer_filters.get(peer, ()) if n in self.filters)

    def export_rules(self, key: GroupKey) -> tuple[object, ...]:
        """Everything a group's export decision depends on besides its key."""
        calico = self.calico
        return (
            None if calico is None else calico.inputs(),
            tuple(self.filters[n] for n in key.policies if n in self.filters),
            self.priority,
            self.communities.rules,
        )

    # --- the RIB's ImportPolicy ---------------------------------------------------------

    def import_attrs(
        self, ident: Identity, peer: PeerInfo, attrs: PathAttributes
    ) -> tuple[PathAttributes, str | None]:
        return self.imports.import_attrs(ident, peer, attrs)

    def prefix_filter(
        self, peer: PeerInfo, family: Family, attrs: PathAttributes
    ) -> ImportCheck | None:
        """The import rules of the peer's filters for routes with `attrs` (as stored): per
        prefix True (accept), False (reject) or the attributes an accepting rule's operations
        make."""
        names = self.peer_filters.get(peer.name)
        if not names:
            return None
        chain = self.chain(names, IMPORT, family, peer.ibgp)
        if chain is None:
            return None
        ifaces: tuple[bool, ...] = ()
        if chain.needs_iface:
            nh = attrs.next_hop
            hook = self.next_hop_ifname
            ifaces = chain.iface_truths(hook(family, nh) if hook and nh is not None else None)
        truths = chain.attr_truths(attrs) if chain.needs_attrs else ()
        decide = chain.decision(True, ifaces, truths)
        rules = chain.rules
        made: dict[int, PathAttributes] = {}

        def check(prefix: bytes) -> bool | PathAttributes:
            index = decide(prefix)
            if index < 0:
                return True
            rule = rules[index]
            if rule.error or not rule.accept:
                return False
            if rule.ops is None:
                return True
            out = made.get(index)
            if out is None:
                out = made[index] = rule.ops.apply(attrs)
            return out

        return check

    # --- the Adj-RIB-Out's OutboundPolicies ---------------------------------------------

    def for_group(self, key: GroupKey, cluster_id: int) -> GroupExport:
        chains: dict[Family, FilterChain] = {}
        if key.policies:
            for family in key.families:
                chain = self.chain(key.policies, EXPORT, family, key.ibgp)
                if chain is not None:
                    chains[family] = chain
        return GroupExport(
            key,
            cluster_id,
            self.calico,
            self.ifname_of,
            chains=chains,
            priority=self.priority,
            metric_of=self.metric_of,
            next_hop_ifname=self.next_hop_ifname,
            communities=self.communities,
        )

    # --- one route, one peer ------------------------------------------------------------

    def evaluate(
        self, route: Route, direction: Direction, peer: PeerContext
    ) -> tuple[Verdict, Route]:
        """The verdict on `route` for `peer` and the route as it would be stored (import)
        or advertised (export)."""
        if direction is Direction.IMPORT:
            attrs, loop = self.import_attrs(peer.identity, peer.info, route.attrs)
            if loop is not None:
                return Verdict.REJECT, route
            check = self.prefix_filter(peer.info, route.family, attrs)
            verdict = True if check is None else check(route.prefix)
            if verdict is False:
                return Verdict.REJECT, route
            return Verdict.ACCEPT, _with_attrs(route, attrs if verdict is True else verdict)
        if peer.key is None:
            raise ValueError(f"{peer.info.name}: export needs the peer's update group key")
        if route.source.name == peer.info.name:
            return Verdict.REJECT, route  # never back to where it came from
        group = self.for_group(peer.key, peer.identity.cluster_id)
        token = group.allows(route)
        if not token:
            return Verdict.REJECT, route
        exported = group.export(route, None, token)
        if exported is None:
            return Verdict.REJECT, route
        return Verdict.ACCEPT, _with_attrs(route, exported)


def _with_attrs(route: Route, attrs: PathAttributes) -> Route:
    if attrs is route.attrs:
        return route
    return Route(route.prefix, route.family, attrs, route.source, route.path_id, route.stale)


def calico_filter(
    calico: ExportPolicy, ifname_of: IfnameOf | None, ibgp: bool
) -> Callable[[Route], bool]:
    """Calico's export rules alone for a group of iBGP (or eBGP) peers, as a bool (bench/)."""
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
