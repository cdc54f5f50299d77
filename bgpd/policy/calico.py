"""Calico's export rules (calico_export_to_bgp_peers in confd's bird_aggr.cfg /
bird_ipam.cfg, reference/calico.md 4.2, 4.3) as one pure policy.

* A confirmed block's aggregate is advertised; anything more specific inside it is not
  (the local workload /32s), unless raised above normal priority (live migration).
* Any other route inside an IP pool is advertised: a borrowed /32, a route learned from
  a peer (a route reflector re-advertising). Pools with disableBGPExport never are, and that
  check comes first, so it also covers this node's own blocks in such a pool.
* A block outside every pool is still advertised (calico_aggr accepts it before the pool
  rules), as confd does.
* Anything else outside every pool is not: the peer's export filter ends with `reject`,
  so routes learned from peers (or the kernel) outside the pools are never passed on.
* Tunnel-device routes (`*.cali`, `*.calico`, and `tunl0` unless BIRD programs the IPIP
  routes itself) are not sent to iBGP peers; BPF-mode local routes (`bpf*.cali`) are sent to
  nobody; nor are routes through an interface that BGPConfiguration ignoredInterfaces names
  (globs), which are not even learned.

`ExportPolicy.decide()` names the rule that decided (`ExportRule`), for `bgpctl explain`.
The Adj-RIB-Out asks per prefix, on the NLRI bytes: `nlri_check(family)` is the policy
compiled for one family into a closure over (length, address-int) pairs, with a memo of the
answers by prefix bytes; `iface_allows()` adds the interface rules for kernel-learned routes.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.wire.family import Family
from calico.model import AFFINITY_CONFIRMED, IPPool

IPV4 = "ipv4"
IPV6 = "ipv6"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def family_of(address_or_prefix: str) -> str:
    return IPV6 if ":" in address_or_prefix else IPV4


@functools.lru_cache(maxsize=65536)
def net_of(prefix: str) -> _Network:
    return ipaddress.ip_network(prefix, strict=False)


def within(inner: _Network, outer: _Network) -> bool:
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
        return net_of(self.cidr).prefixlen == net_of(self.cidr).max_prefixlen


# Interfaces whose routes never leave the node: BPF-mode local routes always, and Felix's
# tunnel devices (VXLAN, WireGuard; the IPIP device when Felix programs IPIP routes) towards
# internal peers.
_LOCAL_IFACES = ("bpf*.cali",)
_TUNNEL_IFACES = ("*.cali", "*.calico")
IPIP_DEVICE = "tunl0"


def tunnel_ifaces(felix_programs_ipip: bool) -> tuple[str, ...]:
    """The tunnel globs of calico_export_to_bgp_peers: confd adds "tunl0" unless BIRD itself
    programs the IPIP routes (programClusterRoutes Enabled or EnabledIPIPOnly)."""
    return (*_TUNNEL_IFACES, IPIP_DEVICE) if felix_programs_ipip else _TUNNEL_IFACES

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
    IGNORED_INTERFACE = "route through an interface in ignoredInterfaces"
    BLOCK_AGGREGATE = "aggregate of a confirmed local block"
    ELEVATED_IN_BLOCK = "inside a local block with raised priority"
    INSIDE_LOCAL_BLOCK = "more specific than a confirmed local block (the aggregate covers it)"
    IN_POOL = "inside an IP pool"
    NOT_IN_POOL = "outside every IP pool"


_ACCEPTING = frozenset(
    {ExportRule.BLOCK_AGGREGATE, ExportRule.ELEVATED_IN_BLOCK, ExportRule.IN_POOL}
)


def accepting(rule: ExportRule) -> bool:
    """Whether the rule that decided lets the route out."""
    return rule in _ACCEPTING


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
def _iface_kinds(ifname: str, tunnels: tuple[str, ...]) -> tuple[bool, bool]:
    """(a tunnel device, a local-only device): ifnames are few, the routes through them many."""
    return (
        any(fnmatch.fnmatchcase(ifname, g) for g in tunnels),
        any(fnmatch.fnmatchcase(ifname, g) for g in _LOCAL_IFACES),
    )


class ExportPolicy:
    """calico_export_to_bgp_peers(internal_peer) for one node, as a pure decision."""

    __slots__ = (
        "_aggregates",
        "_blocked",
        "_checks",
        "_exportable",
        "_ignored",
        "blocks",
        "ignored_interfaces",
        "pools",
        "tunnels",
    )

    def __init__(
        self,
        blocks: tuple[AffineBlock, ...],
        pools: tuple[PoolSpec, ...],
        tunnels: tuple[str, ...] = tunnel_ifaces(True),
        *,
        ignored_interfaces: tuple[str, ...] = (),
    ) -> None:
        self.blocks = blocks
        self.pools = pools
        self.tunnels = tunnels
        self.ignored_interfaces = ignored_interfaces
        self._ignored: dict[str, bool] = {}
        self._blocked = tuple(_key(net_of(p.cidr)) for p in pools if p.disable_bgp_export)
        self._exportable = tuple(_key(net_of(p.cidr)) for p in pools if not p.disable_bgp_export)
        # Only confirmed blocks aggregate; a pendingDeletion block is just another route.
        self._aggregates = tuple(_key(net_of(b.cidr)) for b in blocks if b.confirmed)
        self._checks = {
            Family.IPV4_UNICAST: self._compile(4),
            Family.IPV6_UNICAST: self._compile(6),
        }

    def inputs(self) -> tuple[object, ...]:
        """What the decisions are made of: equal inputs, equal answers (so a new plan with
        equal inputs keeps the groups' policies)."""
        return (self.blocks, self.pools, self.tunnels, self.ignored_interfaces)

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
        version, addr, plen = _key(net_of(prefix))
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

    def iface_allows(self, ifname: str, internal_peer: bool) -> bool:
        """False when the interface rules reject a route through `ifname` (a tunnel device
        towards an internal peer, a local-only or ignored device towards anyone). Otherwise
        the route is decided by its prefix alone: every other rule rejects or accepts
        regardless."""
        tunnel, local = _iface_kinds(ifname, self.tunnels)
        return not (local or (tunnel and internal_peer) or self.ignores(ifname))

    def ignores(self, ifname: str) -> bool:
        """Whether `ifname` matches one of BGPConfiguration's ignoredInterfaces globs."""
        if not self.ignored_interfaces:
            return False
        hit = self._ignored.get(ifname)
        if hit is None:
            hit = self._ignored[ifname] = any(
                fnmatch.fnmatchcase(ifname, g) for g in self.ignored_interfaces
            )
        return hit

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
            tunnel, local = _iface_kinds(ifname, self.tunnels)
            if internal_peer and tunnel:
                return ExportRule.TUNNEL_TO_IBGP
            if local:
                return ExportRule.LOCAL_INTERFACE
            if self.ignores(ifname):
                return ExportRule.IGNORED_INTERFACE
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
