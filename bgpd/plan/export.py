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

`ExportPolicy.decide()` names the rule that decided (`ExportRule`), for `bgpctl explain`.
The Adj-RIB-Out filter asks per prefix, on the NLRI bytes: `nlri_check(family)` is the policy
compiled for one family into a closure over (length, address-int) pairs, with a memo of the
answers by prefix bytes; `iface_allows()` adds the interface rules for kernel-learned routes.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bgpd.wire.family import Family
from calico.model import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    BGPConfiguration,
    IPPool,
)
from calico.snapshot import Snapshot

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


NlriCheck = Callable[[bytes], bool]
"""Whether a route to this prefix (NLRI prefix form) may be advertised, interface aside."""

MEMO_LIMIT = 1 << 16
"""Answers remembered per family and policy; past it the memo starts again. Most keys stand
for many prefixes (see `ExportPolicy._compile`), so a cluster needs far fewer."""


@functools.lru_cache(maxsize=1024)
def _iface_kinds(ifname: str) -> tuple[bool, bool]:
    """(a tunnel device, a local-only device): ifnames are few, the routes through them many."""
    return (
        any(fnmatch.fnmatchcase(ifname, g) for g in _TUNNEL_IFACES),
        any(fnmatch.fnmatchcase(ifname, g) for g in _LOCAL_IFACES),
    )


class ExportPolicy:
    """calico_export_to_bgp_peers(internal_peer) for one node, as a pure decision."""

    __slots__ = ("_aggregates", "_blocked", "_checks", "_exportable", "blocks", "pools")

    def __init__(self, blocks: tuple[AffineBlock, ...], pools: tuple[PoolSpec, ...]) -> None:
        self.blocks = blocks
        self.pools = pools
        self._blocked = tuple(_key(_net(p.cidr)) for p in pools if p.disable_bgp_export)
        self._exportable = tuple(_key(_net(p.cidr)) for p in pools if not p.disable_bgp_export)
        # Only confirmed blocks aggregate; a pendingDeletion block is just another route.
        self._aggregates = tuple(_key(_net(b.cidr)) for b in blocks if b.confirmed)
        self._checks = {
            Family.IPV4_UNICAST: self._compile(4),
            Family.IPV6_UNICAST: self._compile(6),
        }

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
        """`allows()` on the prefix as (IP version, int, length)."""
        return self.rule(version, addr, plen, internal_peer, ifname, False) in _ACCEPTING

    def nlri_check(self, family: Family) -> NlriCheck:
        """The policy for `family` on NLRI prefix bytes, for a route with no outgoing
        interface: the same answers as `allows_net`, for any peer (without an interface the
        kind of peer never matters)."""
        return self._checks[family]

    @staticmethod
    def iface_allows(ifname: str, internal_peer: bool) -> bool:
        """False when the interface rules reject a route through `ifname` (a tunnel device
        towards an internal peer, a local-only device towards anyone). Otherwise the route
        is decided by its prefix alone: every other rule rejects or accepts regardless."""
        tunnel, local = _iface_kinds(ifname)
        return not (local or (tunnel and internal_peer))

    def _compile(self, version: int) -> NlriCheck:
        """The rules of `rule()` without an interface, on NLRI bytes.

        The answer for a prefix longer than every network depends only on its leading
        `deepest` bits (the longest network's length): it is inside a network or not, never
        the network itself. So answers are remembered by (length, leading bits) as one int,
        `from_bytes(prefix) >> shift`, and a cluster's routes share a few entries; shorter
        prefixes (aggregates, blocks) are remembered by their bytes. A miss walks the
        networks that share the prefix's leading `top` bits (the shortest network's length)
        in rule order, each as (length, shift, leading bits, address, verdict inside it,
        verdict when it is the network itself): the first that holds the prefix decides."""
        width = _BITS[version]
        alen = width // 8
        tests: list[tuple[int, int, int, int, bool, bool]] = []

        def add(nets: tuple[_Net, ...], inside: bool, exact: bool) -> None:
            for v, addr, plen in nets:
                if v == version:
                    shift = width - plen
                    tests.append((plen, shift, addr >> shift, addr, inside, exact))

        add(self._blocked, False, False)
        add(self._aggregates, False, True)
        add(self._exportable, True, True)
        if not tests:
            return _never
        top = min(t[0] for t in tests)
        top_shift = width - top
        deepest = max(t[0] for t in tests)
        index: dict[int, tuple[tuple[int, int, int, int, bool, bool], ...]] = {}
        for t in tests:
            lead = t[3] >> top_shift
            index[lead] = (*index.get(lead, ()), t)
        # Per count n of address octets: the address as int.from_bytes(prefix[1:].ljust(alen))
        # is (from_bytes(prefix) & low[n]) << up[n], and (length, leading `deepest` bits) is
        # from_bytes(prefix) >> drop[n] (negative: too few octets for that key).
        low = tuple((1 << 8 * n) - 1 for n in range(alen + 1))
        up = tuple(width - 8 * n for n in range(alen + 1))
        drop = tuple(8 * n - deepest for n in range(alen + 1))
        memo: dict[int | bytes, bool] = {}
        get = memo.get
        from_bytes = int.from_bytes
        rule = self.rule

        def check(prefix: bytes) -> bool:
            n = len(prefix) - 1
            if n > alen:  # not a well-formed prefix: the reference decides
                addr = from_bytes(prefix[1:], "big")
                return rule(version, addr, prefix[0], True, None, False) in _ACCEPTING
            plen = prefix[0]
            cut = drop[n]
            key: int | bytes = (
                from_bytes(prefix, "big") >> cut if plen > deepest and cut >= 0 else prefix
            )
            answer = get(key)
            if answer is not None:
                return answer
            answer = False
            if plen >= top:
                addr = (from_bytes(prefix, "big") & low[n]) << up[n]
                candidates = index.get(addr >> top_shift)
                if candidates is not None:
                    for length, shift, lead, net, inside, exact in candidates:
                        if plen >= length and addr >> shift == lead:
                            answer = exact if plen == length and addr == net else inside
                            break
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = answer
            return answer

        return check

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
            tunnel, local = _iface_kinds(ifname)
            if internal_peer and tunnel:
                return ExportRule.TUNNEL_TO_IBGP
            if local:
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


def _never(prefix: bytes) -> bool:
    """A family with no pool and no block: nothing in it is exported."""
    return False
