"""Both sides of a behaviour comparison, on the same corpus routes of one scenario and family:
what the golden configuration accepts from each peer and exports to each peer (its filter text
run by `birdfilter`, inside a model of what BIRD's BGP protocol does around the filters), and
what bgpd does (its `Policy`, made from its plan as the speaker makes it, asked as its update
groups ask). Each answer is `None` (rejected, not sent) or the `Seen` attributes.

Around the filters, BIRD 1.6 (proto/bgp/attrs.c): a route from an eBGP peer loses its
LOCAL_PREF, and any route without one gets 100, before the import filter; a route with our AS
in its path is dropped. On export (bgp_import_control, before the export filter): never back
to its source, iBGP to iBGP only for a route-reflector client, our AS prepended towards an eBGP
peer; a route not from BGP gets an empty path (our AS towards eBGP). LOCAL_PREF goes to iBGP
peers only.

The lab layout is shared with the BIRD 1.6 runner: the node's addresses are the scenario's;
BGP next hops are reached through the interfaces `NEXT_HOP_IFNAMES`, one subnet each.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgpd.plan import PeeringPlan, PeerSpec
from bgpd.policy.policy import Direction, GroupExport, PeerContext, Policy, Verdict
from bgpd.rib.adj_out import GroupKey
from bgpd.rib.route import KERNEL, LOCAL, Identity, PeerInfo, Route
from bgpd.wire.attributes import AS_SEQUENCE, AS_SET, ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.options import CodecOptions
from labs.conformance import birdfilter as bf
from labs.conformance.routes import (
    BGP,
    DIRECT,
    EXTERNAL,
    EXTERNAL_AS,
    STATIC,
    CorpusRoute,
    Setting,
    corpus,
    setting_for,
)
from labs.conformance.routes import KERNEL as K
from labs.conformance.scenarios import Planned

# Interfaces BGP next hops are reached through, with their subnets (eth0 is the peering
# link: the node's own subnet).
NEXT_HOP_IFNAMES = ("eth0", "eth1", "vxlan.calico", "someiface", "random.iface", "iface")


@dataclass(frozen=True, slots=True)
class Layout:
    """Addresses of one family's lab: the node, the peers, the next hops per interface."""

    version: int
    node: str
    node_network: str
    peers: Mapping[str, str]  # protocol -> address
    subnets: Mapping[str, str]  # interface -> subnet (CIDR)
    next_hops: Mapping[str, str]  # interface -> next hop address inside it

    @property
    def reserved(self) -> tuple[str, ...]:
        return (self.node_network, *self.subnets.values())

    def ifname_of_next_hop(self, address: str) -> str | None:
        ip = ipaddress.ip_address(address)
        best: tuple[int, str] | None = None
        for name, subnet in self.subnets.items():
            net = ipaddress.ip_network(subnet)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, name)
        return None if best is None else best[1]


def layout_for(plan: PeeringPlan, config: bf.BirdConfig, version: int) -> Layout:
    node = plan.node_ipv4 if version == 4 else plan.node_ipv6
    network = plan.node_ipv4_network if version == 4 else plan.node_ipv6_network
    assert node is not None and network is not None
    net = ipaddress.ip_network(network)
    peers = {name: addr for name, (addr, _) in config.neighbors.items()}
    peers[EXTERNAL] = str(net.network_address + 9)
    subnets = {"eth0": network}
    next_hops = {"eth0": str(net.network_address + 250)}
    # Also an interface named after each glob the filters' rules use (`*` as "x", and
    # dropped), so that routes from BGP peers reach every interface rule both ways.
    names = list(NEXT_HOP_IFNAMES)
    for flt in plan.filters:
        for direction in ("import", "export"):
            for rule in flt.rules(direction, version):
                if rule.interface:
                    names += [rule.interface.replace("*", "x"), rule.interface.replace("*", "")]
    names = [n for n in dict.fromkeys(names) if 0 < len(n) <= 15 and not n.startswith("cali")]
    for i, name in enumerate(names[1:], start=1):
        sub = f"10.201.{i}.0/24" if version == 4 else f"2001:201:{i}::/64"
        subnets[name] = sub
        next_hops[name] = str(ipaddress.ip_network(sub).network_address + 9)
    return Layout(version, node, network, peers, subnets, next_hops)


@dataclass(frozen=True, slots=True)
class Seen:
    """What is stored (import) or sent (export) of a route, as compared: LOCAL_PREF (None
    towards eBGP), communities and large communities (as sets: BIRD sorts them on the wire)
    and the AS path."""

    local_pref: int | None
    communities: frozenset[tuple[int, int]]
    large: frozenset[tuple[int, int, int]]
    as_path: tuple[int, ...]


Answer = Seen | None


# --- the golden configuration ------------------------------------------------------------------


class Golden:
    """The golden bird.cfg / bird6.cfg of one step, run on corpus routes."""

    def __init__(self, config: bf.BirdConfig, layout: Layout) -> None:
        self.config = config
        self.layout = layout
        self.version = layout.version

    def protocols(self) -> list[str]:
        return sorted(self.config.neighbors)

    def ibgp(self, protocol: str) -> bool:
        if protocol == EXTERNAL:
            return False
        return bf.is_ibgp(self.config, protocol)

    def _our_as(self, protocol: str) -> int:
        if protocol == EXTERNAL:
            assert self.config.template_as is not None
            return self.config.template_as
        return self.config.our_as(protocol)

    def imported(self, r: CorpusRoute) -> tuple[Answer, bf.RouteState | None]:
        """The route as stored after its peer's import filter (EXTERNAL: import all)."""
        assert r.kind == BGP and r.peer is not None
        lp = None if not self.ibgp(r.peer) else r.local_pref
        if not self.ibgp(r.peer) and self._our_as(r.peer) in r.as_path:
            return None, None
        state = bf.RouteState(
            {
                "net": bf.Prefix.of(r.prefix),
                "source": bf.Symbol("RTS_BGP"),
                "ifname": r.ifname or "",
                "bgp_local_pref": 100 if lp is None else lp,
                "bgp_community": tuple(r.communities),
                "bgp_large_community": tuple(r.large),
                "bgp_path": tuple(r.as_path),
            }
        )
        if r.peer == EXTERNAL:
            return _seen(state, True), state
        body = self.config.imports.get(r.peer)
        if body is None:
            return _seen(state, True), state
        out = bf.run_filter(self.config, body, state)
        if not out.accepted:
            return None, None
        return _seen(out.state, True), out.state

    def exported(
        self, target: str, r: CorpusRoute, imported: bf.RouteState | None
    ) -> Answer:
        cfg = self.config
        ibgp = self.ibgp(target)
        our_as = self._our_as(target)
        if r.kind == BGP:
            assert r.peer is not None and imported is not None
            if r.peer == target:
                return None
            rr = target in cfg.rr_clients or r.peer in cfg.rr_clients
            if ibgp and self.ibgp(r.peer) and not rr:
                return None
            state = imported.copy()
            if not ibgp:
                state.attrs["bgp_path"] = (our_as, *state.get("bgp_path"))
        else:
            if r.kind == DIRECT and not _direct_includes(cfg.direct_interfaces, r.ifname or ""):
                return None  # the direct protocol makes no route for this interface
            source = {K: "RTS_INHERIT", STATIC: "RTS_STATIC", DIRECT: "RTS_DEVICE"}[r.kind]
            attrs: dict[str, Any] = {
                "net": bf.Prefix.of(r.prefix),
                "source": bf.Symbol(source),
                "bgp_path": () if ibgp else (our_as,),
                "bgp_local_pref": 100,
            }
            if r.ifname is not None:
                attrs["ifname"] = r.ifname
            if r.kind == K and r.metric is not None:
                attrs["krt_metric"] = r.metric
            state = bf.RouteState(attrs)
        body = cfg.exports[target]
        out = bf.run_filter(cfg, body, state)
        return _seen(out.state, ibgp) if out.accepted else None


def _direct_includes(patterns: list[str], ifname: str) -> bool:
    """BIRD's interface list: the first pattern that matches decides; `-` excludes."""
    for p in patterns:
        negative = p.startswith("-")
        glob = p.lstrip("-").strip('"')
        if bf._pattern(glob, ifname):
            return not negative
    return False


def _seen(state: bf.RouteState, ibgp: bool) -> Seen:
    path: list[int] = []
    for item in state.get("bgp_path") or ():
        path.append(item)
    lp = state.get("bgp_local_pref")
    return Seen(
        lp if ibgp else None,
        frozenset(tuple(c) for c in state.get("bgp_community")),
        frozenset(tuple(c) for c in state.get("bgp_large_community")),
        tuple(path),
    )


# --- bgpd --------------------------------------------------------------------------------------


@dataclass
class Bgpd:
    """bgpd's policy for the scenario's node, with the hooks told what the corpus says about
    each route (a kernel route's interface and metric, the interface of each next hop)."""

    plan: PeeringPlan
    layout: Layout
    routes: dict[tuple[Family, bytes], CorpusRoute] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.family = Family.of_version(self.layout.version)
        self.identity = Identity(
            self.plan.local_as, int(ipaddress.IPv4Address(self.plan.router_id)),
            int(ipaddress.IPv4Address(self.plan.router_id)),
        )
        self.policy = Policy.of_plan(
            self.plan,
            self.plan.calico_export(),
            ifname_of=self._ifname_of,
            metric_of=self._metric_of,
            next_hop_ifname=self._next_hop_ifname,
        )
        self.specs: dict[str, PeerSpec] = {s.name: s for s in self.plan.sessions}
        self.infos: dict[str, PeerInfo] = {}
        for i, (name, address) in enumerate(sorted(self.layout.peers.items())):
            spec = self.specs.get(name)
            packed = ipaddress.ip_address(address).packed
            if spec is None:
                assert name == EXTERNAL
                info = PeerInfo(name, packed, EXTERNAL_AS, 0x0AFF0000 + i, self.plan.local_as)
            else:
                info = PeerInfo(
                    name, packed, spec.peer_as, 0x0AFF0000 + i, spec.local_as, spec.rr_client
                )
            self.infos[name] = info
        self._groups: dict[str, tuple[GroupKey, GroupExport]] = {}

    def add(self, r: CorpusRoute) -> None:
        self.routes[(self.family, _nlri(r))] = r

    def _ifname_of(self, route: Route) -> str | None:
        r = self.routes.get((route.family, route.prefix))
        return r.ifname if r is not None and r.kind == K else None

    def _metric_of(self, route: Route) -> int | None:
        r = self.routes.get((route.family, route.prefix))
        return r.metric if r is not None and r.kind == K else None

    def _next_hop_ifname(self, family: Family, next_hop: bytes) -> str | None:
        return self.layout.ifname_of_next_hop(str(ipaddress.ip_address(next_hop[:16])))

    def key(self, target: str) -> GroupKey:
        spec = self.specs[target]
        node = ipaddress.ip_address(self.layout.node).packed
        v4 = self.layout.version == 4
        return GroupKey.for_peer(
            self.infos[target],
            options=CodecOptions(),
            families=(self.family,),
            local_ipv4=node if v4 else None,
            local_ipv6=None if v4 else node,
            next_hop_self=spec.next_hop_self,
            policies=spec.filters,
        )

    def group(self, target: str) -> GroupExport:
        if target not in self._groups:
            key = self.key(target)
            self._groups[target] = (key, self.policy.for_group(key, self.identity.cluster_id))
        return self._groups[target][1]

    def received(self, r: CorpusRoute) -> Route:
        assert r.peer is not None and r.ifname is not None
        nh = ipaddress.ip_address(self.layout.next_hops[r.ifname]).packed
        attrs = PathAttributes(
            origin=ORIGIN_IGP,
            as_path=((AS_SEQUENCE, r.as_path),) if r.as_path else (),
            next_hop=nh,
            local_pref=r.local_pref,
            communities=tuple(a << 16 | b for a, b in r.communities),
            large_communities=r.large,
        )
        return Route(_nlri(r), self.family, attrs, self.infos[r.peer])

    def imported(self, r: CorpusRoute) -> tuple[Answer, Route | None]:
        route = self.received(r)
        info = self.infos[route.source.name]  # type: ignore[union-attr]
        verdict, stored = self.policy.evaluate(
            route, Direction.IMPORT, PeerContext(info, self.identity)
        )
        if verdict is Verdict.REJECT:
            return None, None
        return _seen_attrs(stored.attrs, True), stored

    def exported(self, target: str, r: CorpusRoute, imported: Route | None) -> Answer:
        if r.kind == BGP:
            assert imported is not None
            route = imported
            if route.source.name == target:
                return None
        elif r.kind == DIRECT:
            return None  # bgpd has no direct protocol: connected subnets are not routes
        else:
            route = Route(
                _nlri(r), self.family, PathAttributes(origin=ORIGIN_IGP if r.kind == STATIC else 2),
                LOCAL if r.kind == STATIC else KERNEL,
            )
        group = self.group(target)
        token = group.allows(route)
        if not token:
            return None
        attrs = group.export(route, None, token)
        if attrs is None:
            return None
        return _seen_attrs(attrs, self.infos[target].ibgp)

    def evaluate_export(self, target: str, route: Route) -> tuple[Verdict, Route]:
        """Policy.evaluate for the same question (to check it agrees with the group's)."""
        key = self._groups[target][0] if target in self._groups else self.key(target)
        return self.policy.evaluate(
            route, Direction.EXPORT, PeerContext(self.infos[target], self.identity, key)
        )


def _nlri(r: CorpusRoute) -> bytes:
    return prefix_to_nlri(r.prefix)[1]


def _seen_attrs(attrs: PathAttributes, ibgp: bool) -> Seen:
    path: list[int] = []
    for seg_type, asns in attrs.as_path:
        if seg_type == AS_SEQUENCE:
            path.extend(asns)
        elif seg_type == AS_SET:
            path.append(min(asns))
    lp = attrs.local_pref
    if ibgp and lp is None:
        lp = 100
    return Seen(
        lp if ibgp else None,
        frozenset((c >> 16, c & 0xFFFF) for c in attrs.communities),
        frozenset(attrs.large_communities),
        tuple(path),
    )


# --- a scenario's cases -----------------------------------------------------------------------


DIRECT_IFNAMES = ("iface-1", "iface-2", "eth5", "cali0direct", "kube-ipvs0")


@dataclass
class Case:
    """One IP family of a scenario step: the golden configuration, its lab layout, the
    corpus (and, in a BIRD 1.6 run, that BIRD and the connected subnets made)."""

    version: int
    config: bf.BirdConfig
    layout: Layout
    routes: list[CorpusRoute]
    setting: Setting
    bird: Any = None  # the Bird16 of a run
    direct_prefixes: set[str] = field(default_factory=set)


def statics_of(golden: Path, version: int) -> list[str]:
    aggr = golden / ("bird_aggr.cfg" if version == 4 else "bird6_aggr.cfg")
    return re.findall(r"route (\S+) blackhole;", aggr.read_text())


def family_corpus(planned: Planned, version: int, *, direct: bool) -> Case | None:
    """The golden configuration of `version`, its layout and corpus; None when the golden
    file has no BGP peer for that family."""
    name = "bird.cfg" if version == 4 else "bird6.cfg"
    config = bf.BirdConfig.load(planned.golden / name)
    if not config.neighbors:
        return None
    plan = planned.plan
    layout = layout_for(plan, config, version)
    statics = statics_of(planned.golden, version)
    setting = setting_for(
        version,
        plan.filters,
        [b.cidr for b in plan.blocks] + [p.cidr for p in plan.pools],
        sorted(config.neighbors),
        bgp_ifnames=tuple(layout.subnets),
        reserved=layout.reserved,
        direct_ifnames=DIRECT_IFNAMES if direct else (),
        normal_priority=plan.normal_priority_v4 if version == 4 else plan.normal_priority_v6,
    )
    routes = corpus(setting, taken=statics)
    routes += [CorpusRoute(s, STATIC, role="block (bird_aggr.cfg)") for s in statics]
    return Case(version, config, layout, routes, setting)


def cases(planned: Planned) -> list[Case]:
    direct = planned.name == "ignored_interfaces"
    out = [family_corpus(planned, v, direct=direct) for v in (4, 6)]
    return [f for f in out if f is not None]


# --- one comparison ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    direction: str
    protocol: str
    route: CorpusRoute
    golden: Answer
    bgpd: Answer

    @property
    def direct_only(self) -> bool:
        """A connected subnet BIRD's `direct` protocol exports (an interface the golden
        list does not ignore, a prefix Calico's rules let out): bgpd has no direct protocol,
        so it never does. Known, and reported apart."""
        return self.route.kind == DIRECT and self.bgpd is None and self.golden is not None

    def __str__(self) -> str:
        r = self.route
        what = f"{r.kind} {r.prefix} ({r.role})"
        if r.kind == BGP:
            what += f" from {r.peer} via {r.ifname} lp={r.local_pref} c={r.communities}"
            what += f" lc={r.large} path={r.as_path}"
        elif r.kind in (K, DIRECT):
            what += f" dev {r.ifname} metric {r.metric}"
        return f"{self.direction} {self.protocol}: {what}: golden {self.golden}, bgpd {self.bgpd}"


def compare_one(golden: Golden, bgpd: Bgpd, r: CorpusRoute) -> Iterator[Difference]:
    """One route through both, alone (its prefix need not be its own in a corpus)."""
    bgpd.routes = {}
    if r.kind != DIRECT:
        bgpd.add(r)
    return compare(golden, bgpd, [r], added=True)


def compare(
    golden: Golden, bgpd: Bgpd, routes: list[CorpusRoute], *, added: bool = False
) -> Iterator[Difference]:
    """Every corpus route through both: imports at its own peer, exports to every peer."""
    for r in routes:
        if r.kind != DIRECT and not added:
            bgpd.add(r)
    targets = golden.protocols()
    for r in routes:
        g_state: bf.RouteState | None = None
        b_route: Route | None = None
        if r.kind == BGP:
            assert r.peer is not None
            g_seen, g_state = golden.imported(r)
            b_seen, b_route = bgpd.imported(r)
            if g_seen != b_seen:
                yield Difference("import", r.peer, r, g_seen, b_seen)
                continue
            if g_seen is None:
                continue
        for target in targets:
            ge = golden.exported(target, r, g_state)
            be = bgpd.exported(target, r, b_route)
            if ge != be:
                yield Difference("export", target, r, ge, be)
