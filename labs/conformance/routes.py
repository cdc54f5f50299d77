"""The route corpus a scenario is checked on: every prefix role around every CIDR the
scenario's filters, blocks and pools name (equal; inside, shallow, deep and a host route; the
prefix-length bounds of a rule, inside and just outside them; shorter; a sibling outside),
crossed with the kinds of route a node holds: learned from each BGP peer of the scenario's
node (and from one more, external, eBGP peer) with attribute variants (communities, large
communities, AS paths, LOCAL_PREF values that stand for priorities), learned from the kernel
through interfaces of many names with several metrics, and connected subnets (BIRD's
`direct` protocol) on the ignored and the other interfaces.

Prefixes BIRD 1.6 treats as bogus (link-local, multicast, loopback addresses) are left out:
BIRD ignores such routes before any filter, and bgpd does not. Every route has a prefix of
its own (in its family), so that no two routes compete for a prefix: what is exported is then
exactly what the filters let out, with no best-path choice in between, and the same corpus
can be fed to BIRD 1.6 through real sessions.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from calico.model import BGPFilter

BGP = "bgp"
KERNEL = "kernel"
STATIC = "static"
DIRECT = "direct"

EXTERNAL = "External_corpus"
"""The extra eBGP peer whose routes every scenario's export filters see (a route reflector
or an eBGP peer is what `source: RemotePeers` export rules are about)."""
EXTERNAL_AS = 65099

PRIORITY_BASE = 2147483647

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class CorpusRoute:
    prefix: str
    kind: str
    # BGP: the golden protocol (or EXTERNAL) it is learned from, and the interface its next
    # hop is reached through; kernel / direct: the device.
    peer: str | None = None
    ifname: str | None = None
    metric: int | None = None  # kernel routes: the route's metric
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large: tuple[tuple[int, int, int], ...] = ()
    as_path: tuple[int, ...] = ()
    role: str = ""  # how the prefix stands to the CIDR it was made for, for messages

    @property
    def version(self) -> int:
        return 6 if ":" in self.prefix else 4


@dataclass(frozen=True, slots=True)
class Variant:
    kind: str
    peer: str | None = None
    ifname: str | None = None
    metric: int | None = None
    local_pref: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    large: tuple[tuple[int, int, int], ...] = ()
    as_path: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Setting:
    """What a scenario's corpus is made around."""

    version: int
    cidrs: tuple[tuple[str, int | None, int | None], ...]  # (cidr, prefixLength min, max)
    peers: tuple[str, ...]  # golden protocol names of the family
    bgp_ifnames: tuple[str, ...]  # interfaces BGP next hops can be reached through
    kernel_ifnames: tuple[str, ...]
    direct_ifnames: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()  # networks the lab uses: no corpus prefix overlaps them
    priorities: tuple[int, ...] = (1024,)
    communities: tuple[str, ...] = ()
    as_paths: tuple[tuple[int, ...], ...] = ()


def setting_for(
    version: int,
    filters: Sequence[BGPFilter],
    cidrs: Iterable[str],
    peers: Sequence[str],
    *,
    bgp_ifnames: Sequence[str],
    reserved: Sequence[str] = (),
    direct_ifnames: Sequence[str] = (),
    normal_priority: int = 1024,
) -> Setting:
    """The corpus setting of a scenario: CIDRs from its filters' rules and from `cidrs`
    (blocks, pools), interface names that match and miss every glob its rules use,
    the priorities, communities and AS paths its rules name, and a few of none of them."""
    rule_cidrs: dict[tuple[str, int | None, int | None], None] = {}
    globs: list[str] = []
    priorities = {normal_priority, 100, 200, 5000}
    communities = {"65000:42", "65000:100", "65000:100:200", "65001:7"}
    paths: set[tuple[int, ...]] = {(), (65000,), (65000, 65001), (65001, 65000), (64999,)}
    for flt in filters:
        for direction in ("import", "export"):
            for rule in flt.rules(direction, version):
                if rule.cidr is not None:
                    lo, hi = rule.prefix_length or (None, None)
                    rule_cidrs[(rule.cidr, lo, hi)] = None
                if rule.interface:
                    globs.append(rule.interface)
                if rule.priority is not None:
                    priorities.add(rule.priority)
                if rule.community is not None:
                    communities.add(rule.community)
                if rule.as_path_prefix:
                    paths.add(rule.as_path_prefix)
                    paths.add((*rule.as_path_prefix, 64999))
                for op in rule.operations:
                    if op.set_priority is not None:
                        priorities.add(op.set_priority)
    for c in cidrs:
        if (":" in c) == (version == 6):
            rule_cidrs.setdefault((str(ipaddress.ip_network(c)), None, None), None)
    rule_cidrs.setdefault(("203.0.113.0/24" if version == 4 else "2001:db8:99::/48", None, None))
    names = ["eth0", "eth1", "ens3", "vxlan.calico", "wireguard.cali", "cali12345678",
             "bpf0.cali", "tunl0", "someiface", "some0iface", "random.iface", "iface", "x"]
    for g in globs:
        names.append(g.replace("*", "x") or "x")
        names.append(g.replace("*", ""))
    kernel = tuple(dict.fromkeys(n for n in names if 0 < len(n) <= 15))
    return Setting(
        version=version,
        cidrs=tuple(rule_cidrs),
        peers=tuple(peers),
        bgp_ifnames=tuple(bgp_ifnames),
        kernel_ifnames=kernel,
        direct_ifnames=tuple(direct_ifnames),
        reserved=tuple(reserved),
        priorities=tuple(sorted(priorities)),
        communities=tuple(sorted(communities)),
        as_paths=tuple(sorted(paths)),
    )


def variants(s: Setting) -> list[Variant]:
    """The kinds of route, one per corpus route of a prefix role."""
    out: list[Variant] = []
    bgp_peers = (*s.peers, EXTERNAL)
    lps: list[int | None] = [None, 100, *(PRIORITY_BASE - p for p in s.priorities)]
    for i, peer in enumerate(bgp_peers):
        ifname = s.bgp_ifnames[i % len(s.bgp_ifnames)]
        out.append(Variant(BGP, peer, ifname))
        for lp in lps:
            out.append(Variant(BGP, peer, s.bgp_ifnames[0], local_pref=lp))
        for c in s.communities:
            parts = tuple(int(x) for x in c.split(":"))
            if len(parts) == 2:
                out.append(Variant(BGP, peer, ifname, communities=((parts[0], parts[1]),)))
            else:
                out.append(Variant(BGP, peer, ifname, large=((parts[0], parts[1], parts[2]),)))
        for path in s.as_paths:
            if path:
                out.append(Variant(BGP, peer, ifname, as_path=path))
        for other in s.bgp_ifnames[1:]:
            out.append(Variant(BGP, peer, other))
    for ifname in s.kernel_ifnames:
        out.append(Variant(KERNEL, ifname=ifname, metric=s.priorities[0]))
    for metric in s.priorities:
        out.append(Variant(KERNEL, ifname="eth1", metric=metric))
        out.append(Variant(KERNEL, ifname="cali12345678", metric=metric))
    for ifname in s.direct_ifnames:
        out.append(Variant(DIRECT, ifname=ifname))
    return out


def _slots(net: _Net, lo: int | None, hi: int | None) -> Iterator[tuple[str, Iterator[_Net]]]:
    """Prefix roles around `net`, each with the distinct prefixes that play it."""
    width = net.max_prefixlen
    length = net.prefixlen

    def inside(at: int, reverse: bool = False) -> Iterator[_Net]:
        if at < length or at > width:
            return iter(())
        subs = net.subnets(new_prefix=at)
        if not reverse:
            return itertools.islice(subs, 4096)
        count = 1 << min(at - length, 12)
        return iter(list(itertools.islice(subs, count))[::-1])

    yield "equal", iter((net,))
    for at in sorted({length + 1, length + 4, min(length + 8, width), width}):
        if at > length:
            yield f"inside/{at}", inside(at, reverse=at == length + 4)
    bounds = [b for b in (lo, hi) if b is not None]
    for b in bounds:
        for at in (b - 1, b, b + 1):
            if length < at <= width:
                yield f"length {at} of {length}..", inside(at)
    if length > 0:
        yield "shorter", iter((net.supernet(),))
        flipped = int(net.network_address) ^ (1 << (width - length))
        sibling = ipaddress.ip_network(f"{ipaddress.ip_address(flipped)}/{length}")
        yield "sibling", iter((sibling,))
        yield "beside", itertools.islice(sibling.subnets(new_prefix=min(length + 8, width)), 4096)


def corpus(s: Setting, taken: Iterable[str] = (), per_role: int = 24) -> list[CorpusRoute]:
    """The routes, each with a prefix no other route (nor `taken`: the node's own static
    routes) has, none inside `reserved` (the lab's subnets, which next hops resolve in)."""
    reserved = [ipaddress.ip_network(r) for r in s.reserved]
    used: set[_Net] = {ipaddress.ip_network(t) for t in taken}
    kinds = variants(s)
    out: list[CorpusRoute] = []
    turn = 0

    def free(net: _Net) -> bool:
        if net in used or _bogus(net):
            return False
        return not any(
            net.version == r.version and net.subnet_of(r)  # type: ignore[arg-type]
            for r in reserved
        )

    for cidr, lo, hi in s.cidrs:
        net = ipaddress.ip_network(cidr)
        for role, prefixes in _slots(net, lo, hi):
            pool = (p for p in prefixes if free(p))
            # A role with one prefix takes the next kind in turn; one with many takes the next
            # `per_role` kinds, so that every kind meets every role of some CIDR.
            start = turn * per_role
            turn += 1
            for k in range(min(per_role, len(kinds))):
                v = kinds[(start + k) % len(kinds)]
                p = next(pool, None)
                if p is None:
                    break
                used.add(p)
                out.append(
                    CorpusRoute(
                        str(p), v.kind, v.peer, v.ifname, v.metric, v.local_pref,
                        v.communities, v.large, v.as_path, f"{role} {cidr}",
                    )
                )
    return out


def sample(s: Setting, count: int, seed: str) -> list[CorpusRoute]:
    """`count` routes drawn from every (prefix role, kind of route) pair, prefixes shared:
    for one-route-at-a-time comparisons that need no prefix of their own."""
    import random

    rng = random.Random(seed)
    reserved = [ipaddress.ip_network(r) for r in s.reserved]
    prefixes: list[tuple[str, _Net]] = []
    for cidr, lo, hi in s.cidrs:
        for role, found in _slots(ipaddress.ip_network(cidr), lo, hi):
            for p in itertools.islice(found, 3):
                if not _bogus(p) and not any(
                    p.version == r.version and p.subnet_of(r)  # type: ignore[arg-type]
                    for r in reserved
                ):
                    prefixes.append((f"{role} {cidr}", p))
    kinds = variants(s)
    out = []
    for _ in range(count):
        role, p = rng.choice(prefixes)
        v = rng.choice(kinds)
        out.append(CorpusRoute(str(p), v.kind, v.peer, v.ifname, v.metric, v.local_pref,
                               v.communities, v.large, v.as_path, role))
    return out


def _bogus(net: _Net) -> bool:
    """A prefix BIRD 1.6 never holds (rte_validate: "Ignoring bogus prefix"): its address is
    not of universal scope (link-local, multicast, loopback)."""
    a = net.network_address
    return a.is_link_local or a.is_multicast or a.is_loopback


def matches_glob(pattern: str, ifname: str) -> bool:
    return fnmatch.fnmatchcase(ifname, pattern)
