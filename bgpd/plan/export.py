"""What this node originates and what it lets out: Calico's bird_aggr.cfg / bird_ipam.cfg
export rules (reference/calico.md 4.2, 4.3) as values and one pure policy.

* Every block affine to this node (state confirmed, implicitly confirmed, or pendingDeletion;
  pending ones do not count) gets a blackhole route, except /32 and /128 blocks.
* A confirmed block's aggregate is advertised; anything more specific inside it is not
  (the local workload /32s), unless raised above normal priority (live migration).
* Any other route inside an IP pool is advertised: a borrowed /32, a route learned from
  a peer (a route reflector re-advertising). Pools with disableBGPExport never are, and that
  check comes first, so it also covers this node's own blocks in such a pool.
* A block outside every pool is still advertised (calico_aggr accepts it before the pool
  rules), as confd does.
* Anything else outside every pool is not: the peer's export filter ends with `reject`,
  so routes learned from peers (or the kernel) outside the pools are never passed on.
* Tunnel-device routes (`*.cali`, `*.calico`) are not sent to iBGP peers; BPF-mode local
  routes (`bpf*.cali`) are sent to nobody.

`ExportPolicy.decide()` names the rule that decided (`ExportRule`), for `bgpctl explain`;
`allows_net()` is the integer hot path the Adj-RIB-Out filter calls per prefix.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.datastore.model import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    BGPConfiguration,
    IPPool,
)
from bgpd.datastore.snapshot import Snapshot

IPV4 = "ipv4"
IPV6 = "ipv6"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def family_of(address_or_prefix: str) -> str:
    return IPV6 if ":" in address_or_prefix else IPV4


@functools.lru_cache(maxsize=65536)
def _net(prefix: str) -> _Network:
    return ipaddress.ip_network(prefix, strict=False)


def _within(inner: _Network, outer: _Network) -> bool:
    """BIRD's `net ~ outer` for a prefix: same family, at least as long, same leading bits."""
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """An IP pool as routing sees it."""

    name: str
    cidr: str
    family: str
    ipip_mode: str
    vxlan_mode: str
    disable_bgp_export: bool
    disabled: bool
    nat_outgoing: bool

    @classmethod
    def of(cls, pool: IPPool) -> PoolSpec:
        return cls(
            name=pool.name,
            cidr=pool.cidr,
            family=family_of(pool.cidr),
            ipip_mode=pool.ipip_mode,
            vxlan_mode=pool.vxlan_mode,
            disable_bgp_export=pool.disable_bgp_export,
            disabled=pool.disabled,
            nat_outgoing=pool.nat_outgoing,
        )


@dataclass(frozen=True, slots=True)
class AffineBlock:
    """A block affine to this node that confd keeps (pending affinities are left out)."""

    cidr: str
    family: str
    state: str

    @property
    def confirmed(self) -> bool:
        return self.state == AFFINITY_CONFIRMED

    @property
    def host_route(self) -> bool:
        """A /32 or /128 block: no blackhole for it (the workload's own route is the block)."""
        return _net(self.cidr).prefixlen == _net(self.cidr).max_prefixlen


@dataclass(frozen=True, slots=True)
class Origination:
    """A route this node injects itself: a block aggregate, backed by its blackhole route.
    `pool` is the IP pool holding the block (None when the block lies in no pool)."""

    prefix: str
    family: str
    pool: PoolSpec | None


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """`route <prefix> via <gateway>`: how a peer with reachableBy is reached."""

    prefix: str
    via: str


@dataclass(frozen=True, slots=True)
class CommunityRule:
    """Communities added to routes inside `cidr` (BGPConfiguration.prefixAdvertisements)."""

    cidr: str
    family: str
    standard: tuple[tuple[int, int], ...]
    large: tuple[tuple[int, int, int], ...]


def pool_specs(snapshot: Snapshot) -> tuple[PoolSpec, ...]:
    return tuple(
        sorted(
            (PoolSpec.of(p) for p in snapshot.ip_pools.values()),
            key=lambda p: (p.family, _net(p.cidr)),
        )
    )


def affine_blocks(snapshot: Snapshot, node: str) -> tuple[AffineBlock, ...]:
    return tuple(
        AffineBlock(a.cidr, family_of(a.cidr), a.state)
        for a in snapshot.affinities_of(node)
        if a.state != AFFINITY_PENDING
    )


def pool_of(prefix: str, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """The most specific pool holding `prefix`."""
    net = _net(prefix)
    holding = [p for p in pools if _within(net, _net(p.cidr))]
    return max(holding, key=lambda p: _net(p.cidr).prefixlen, default=None)


def blackholes(blocks: Iterable[AffineBlock]) -> tuple[str, ...]:
    return tuple(b.cidr for b in blocks if not b.host_route)


def originations(
    blocks: Iterable[AffineBlock], pools: tuple[PoolSpec, ...]
) -> tuple[Origination, ...]:
    """The blackholed blocks that the export policy lets out."""
    policy = ExportPolicy(tuple(blocks), pools)
    return tuple(
        Origination(b.cidr, b.family, pool_of(b.cidr, pools))
        for b in policy.blocks
        if not b.host_route and policy.allows(b.cidr)
    )


_STANDARD = re.compile(r"(\d+):(\d+)")
_LARGE = re.compile(r"(\d+):(\d+):(\d+)")


def community_rules(snapshot: Snapshot, node: str) -> tuple[CommunityRule, ...]:
    """prefixAdvertisements of `node.<node>` if it has any, else of `default`; names resolve
    against the same resource's communities, unknown names are dropped (as confd does)."""
    config: BGPConfiguration | None = snapshot.node_config(node)
    if config is None or not config.prefix_advertisements:
        config = snapshot.default_config
    defined = {c.name: c.value for c in config.communities}
    rules: list[CommunityRule] = []
    for adv in config.prefix_advertisements:
        standard: set[tuple[int, int]] = set()
        large: set[tuple[int, int, int]] = set()
        for item in adv.communities:
            value = item if (_STANDARD.fullmatch(item) or _LARGE.fullmatch(item)) else None
            value = value or defined.get(item)
            if value is None:
                continue
            parts = tuple(int(p) for p in value.split(":"))
            if len(parts) == 2 and all(p <= 0xFFFF for p in parts):
                standard.add((parts[0], parts[1]))
            elif len(parts) == 3 and all(p <= 0xFFFFFFFF for p in parts):
                large.add((parts[0], parts[1], parts[2]))
        if standard or large:
            rules.append(
                CommunityRule(
                    adv.cidr, family_of(adv.cidr), tuple(sorted(standard)), tuple(sorted(large))
                )
            )
    return tuple(rules)


# Interfaces whose routes never leave the node: BPF-mode local routes always, and Felix's
# tunnel devices (VXLAN, WireGuard) towards internal peers.
_LOCAL_IFACES = ("bpf*.cali",)
_TUNNEL_IFACES = ("*.cali", "*.calico")

# A network as (IP version, address as int, prefix length): containment is two shifts.
_Net = tuple[int, int, int]
_BITS = {4: 32, 6: 128}


def _key(net: _Network) -> _Net:
    return (net.version, int(net.network_address), net.prefixlen)


def _inside(version: int, addr: int, plen: int, outer: _Net) -> bool:
    """BIRD's `net ~ outer`: same family, at least as long, same leading bits."""
    o_version, o_addr, o_plen = outer
    if version != o_version or plen < o_plen:
        return False
    shift = _BITS[version] - o_plen
    return (addr >> shift) == (o_addr >> shift)


class ExportRule(enum.Enum):
    """The rule of calico_export_to_bgp_peers that decided, in the order BIRD tries them."""

    DISABLED_POOL = "inside a pool with disableBGPExport"
    TUNNEL_TO_IBGP = "tunnel-interface route, not sent to iBGP peers"
    LOCAL_INTERFACE = "local-only interface route (bpf*.cali)"
    BLOCK_AGGREGATE = "aggregate of a confirmed local block"
    ELEVATED_IN_BLOCK = "inside a local block with raised priority"
    INSIDE_LOCAL_BLOCK = "more specific than a confirmed local block (the aggregate covers it)"
    IN_POOL = "inside an IP pool"
    NOT_IN_POOL = "outside every IP pool"


_ACCEPTING = frozenset(
    {ExportRule.BLOCK_AGGREGATE, ExportRule.ELEVATED_IN_BLOCK, ExportRule.IN_POOL}
)


@dataclass(frozen=True, slots=True)
class ExportDecision:
    allowed: bool
    rule: ExportRule

    @property
    def text(self) -> str:
        return ("accepted: " if self.allowed else "rejected: ") + self.rule.value


class ExportPolicy:
    """calico_export_to_bgp_peers(internal_peer) for one node, as a pure decision."""

    __slots__ = ("_aggregates", "_blocked", "_exportable", "blocks", "pools")

    def __init__(self, blocks: tuple[AffineBlock, ...], pools: tuple[PoolSpec, ...]) -> None:
        self.blocks = blocks
        self.pools = pools
        self._blocked = tuple(_key(_net(p.cidr)) for p in pools if p.disable_bgp_export)
        self._exportable = tuple(_key(_net(p.cidr)) for p in pools if not p.disable_bgp_export)
        # Only confirmed blocks aggregate; a pendingDeletion block is just another route.
        self._aggregates = tuple(_key(_net(b.cidr)) for b in blocks if b.confirmed)

    def allows(
        self,
        prefix: str,
        *,
        internal_peer: bool = True,
        ifname: str | None = None,
        elevated: bool = False,
    ) -> bool:
        """Whether a route to `prefix` may be advertised. `ifname` is the outgoing interface
        of a route learned from the kernel; `elevated` a priority above normal (krt_metric
        below 1024), which lets a workload /32 out of its block."""
        return self.decide(
            prefix, internal_peer=internal_peer, ifname=ifname, elevated=elevated
        ).allowed

    def decide(
        self,
        prefix: str,
        *,
        internal_peer: bool = True,
        ifname: str | None = None,
        elevated: bool = False,
    ) -> ExportDecision:
        """`allows()` with the rule that decided."""
        version, addr, plen = _key(_net(prefix))
        rule = self.rule(version, addr, plen, internal_peer, ifname, elevated)
        return ExportDecision(rule in _ACCEPTING, rule)

    def allows_net(
        self,
        version: int,
        addr: int,
        plen: int,
        internal_peer: bool,
        ifname: str | None = None,
    ) -> bool:
        """The hot path of the Adj-RIB-Out filter: the prefix as (IP version, int, length)."""
        return self.rule(version, addr, plen, internal_peer, ifname, False) in _ACCEPTING

    def rule(
        self,
        version: int,
        addr: int,
        plen: int,
        internal_peer: bool,
        ifname: str | None,
        elevated: bool,
    ) -> ExportRule:
        for net in self._blocked:
            if _inside(version, addr, plen, net):
                return ExportRule.DISABLED_POOL
        if ifname is not None:
            if internal_peer and any(fnmatch.fnmatchcase(ifname, g) for g in _TUNNEL_IFACES):
                return ExportRule.TUNNEL_TO_IBGP
            if any(fnmatch.fnmatchcase(ifname, g) for g in _LOCAL_IFACES):
                return ExportRule.LOCAL_INTERFACE
        for block in self._aggregates:
            if (version, addr, plen) == block:
                return ExportRule.BLOCK_AGGREGATE
            if _inside(version, addr, plen, block):
                return ExportRule.ELEVATED_IN_BLOCK if elevated else ExportRule.INSIDE_LOCAL_BLOCK
        for net in self._exportable:
            if _inside(version, addr, plen, net):
                return ExportRule.IN_POOL
        return ExportRule.NOT_IN_POOL
