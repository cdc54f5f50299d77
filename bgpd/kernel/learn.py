"""Which kernel routes become BGP routes: BIRD's `kernel { learn; }` as Calico uses it, pure.

Felix programs a device route per local workload (`192.168.1.5 dev caliXXXX scope link`);
bgpd learns those, and any other route inside an IP pool that some other program put in
the main table, as routes of the RIB's KERNEL source. Whether a learned route is then
advertised is the export policy's business (a workload /32 inside a local block is not; a
borrowed /32 is).

Not learned: our own routes (our protocol number), the kernel's own (`proto kernel`,
connected subnets, as BIRD leaves them without `learn all`), routes in other tables,
anything but plain unicast routes, and Felix's cluster routes (its protocol 80: IPIP and
same-subnet routes to other nodes' blocks; anything through tunl0 or vxlan.calico). Those
lead to other nodes: BIRD learns them too but its BGP routes outrank kernel ones, while
here a learned route is this node's own origination and would beat the BGP route it
copies. Nor are routes through an interface that BGPConfiguration ignoredInterfaces names
(globs, as in confd's `interface -"<glob>"`).

`KernelLearner` is fed the netlink monitor's events (links and routes, after an initial
dump) and returns `LearnChange`s: what to originate or withdraw. Nothing here rescans: an
event touches one key.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.kernel.fib import (
    AF_INET,
    RT_TABLE_MAIN,
    RTPROT_PYBGPD,
    KernelRoute,
    RouteKey,
    RouteType,
)

RTPROT_KERNEL = 2
RTPROT_FELIX = 80  # Felix's cluster routes (dataplanedefs.DefaultRouteProto)
WORKLOAD_IFACES = ("cali*",)
TUNNEL_DEVICES = frozenset({"tunl0", "vxlan.calico", "vxlan-v6.calico"})

_Net = tuple[int, int, int]  # (address family, network as int, prefix length)
_BITS = {AF_INET: 32}


def _bits(af: int) -> int:
    return _BITS.get(af, 128)


def _inside(af: int, addr: int, plen: int, outer: _Net) -> bool:
    o_af, o_addr, o_plen = outer
    if af != o_af or plen < o_plen:
        return False
    shift = _bits(af) - o_plen
    return (addr >> shift) == (o_addr >> shift)


def parse_pool(cidr: str) -> _Net:
    net = ipaddress.ip_network(cidr, strict=False)
    return (AF_INET if net.version == 4 else 10, int(net.network_address), net.prefixlen)


@dataclass(frozen=True, slots=True)
class LearnedRoute:
    """A kernel route taken into the RIB. `ifname` is its (first) outgoing interface, which
    the export policy needs (tunnel devices are not advertised to iBGP peers)."""

    key: RouteKey
    ifname: str | None

    @property
    def prefix(self) -> str:
        _af, dst, plen, _table = self.key
        return f"{ipaddress.ip_address(dst)}/{plen}"


@dataclass(frozen=True, slots=True)
class LearnChange:
    """Originate `route` (`route` set) or withdraw what was learned for `key` (None)."""

    key: RouteKey
    route: LearnedRoute | None


class KernelLearner:
    """The learned set, kept in step with the kernel's main table and interface names."""

    def __init__(
        self,
        pools: Iterable[str] = (),
        protocol: int = RTPROT_PYBGPD,
        ignored: Iterable[str] = (),
    ) -> None:
        self.protocol = protocol
        self._pools: tuple[_Net, ...] = tuple(parse_pool(p) for p in pools)
        # BGPConfiguration ignoredInterfaces (globs).
        self._ignored: tuple[str, ...] = tuple(ignored)
        self._links: dict[int, str] = {}
        # Every route of the main table the kernel holds, learned or not, by key and then by
        # (protocol, metric), so pool or interface changes are decided without a dump.
        self._seen: dict[RouteKey, dict[tuple[int, int], KernelRoute]] = {}
        self._learned: dict[RouteKey, LearnedRoute] = {}

    # --- queries ----------------------------------------------------------------------

    @property
    def learned(self) -> dict[RouteKey, LearnedRoute]:
        return dict(self._learned)

    def get(self, key: RouteKey) -> LearnedRoute | None:
        return self._learned.get(key)

    def ifname(self, index: int) -> str | None:
        return self._links.get(index)

    def ifindex(self, name: str) -> int | None:
        for index, have in self._links.items():
            if have == name:
                return index
        return None

    def __len__(self) -> int:
        return len(self._learned)

    # --- the rule ---------------------------------------------------------------------

    def wants(self, protocol: int, route: KernelRoute) -> LearnedRoute | None:
        """The learned form of a kernel route, or None if it is not to be learned."""
        if protocol in (self.protocol, RTPROT_KERNEL, RTPROT_FELIX):
            return None
        if route.table != RT_TABLE_MAIN or route.type is not RouteType.UNICAST:
            return None
        ifname = None
        if route.nexthops and route.nexthops[0].ifindex:
            ifname = self._links.get(route.nexthops[0].ifindex)
        if ifname in TUNNEL_DEVICES:
            return None
        if ifname is not None and any(fnmatch.fnmatchcase(ifname, g) for g in self._ignored):
            return None
        if ifname is not None and any(fnmatch.fnmatchcase(ifname, g) for g in WORKLOAD_IFACES):
            return LearnedRoute(route.key, ifname)
        addr = int.from_bytes(route.dst, "big")
        if any(_inside(route.family, addr, route.dst_len, p) for p in self._pools):
            return LearnedRoute(route.key, ifname)
        return None

    # --- events -----------------------------------------------------------------------

    def route_added(self, protocol: int, route: KernelRoute) -> list[LearnChange]:
        self._seen.setdefault(route.key, {})[(protocol, route.metric or 0)] = route
        return self._decide(route.key)

    def route_removed(self, protocol: int, route: KernelRoute) -> list[LearnChange]:
        routes = self._seen.get(route.key)
        if routes is None or routes.pop((protocol, route.metric or 0), None) is None:
            return []
        if not routes:
            del self._seen[route.key]
        return self._decide(route.key)

    def link_changed(self, index: int, name: str | None) -> list[LearnChange]:
        """An interface appeared, was renamed (`name`) or went away (None)."""
        if name is None:
            self._links.pop(index, None)
            # The kernel deletes an interface's routes without RTM_DELROUTE events.
            touched = []
            for key, routes in list(self._seen.items()):
                for pm, r in list(routes.items()):
                    if r.nexthops and all(nh.ifindex == index for nh in r.nexthops):
                        del routes[pm]
                        touched.append(key)
                if not routes:
                    del self._seen[key]
            return [c for key in dict.fromkeys(touched) for c in self._decide(key)]
        if self._links.get(index) == name:
            return []
        self._links[index] = name
        keys = [
            k
            for k, routes in self._seen.items()
            if any(r.nexthops and r.nexthops[0].ifindex == index for r in routes.values())
        ]
        return [c for key in keys for c in self._decide(key)]

    def set_pools(self, pools: Iterable[str]) -> list[LearnChange]:
        """New IP pools: routes that enter or leave a pool are learned or forgotten."""
        new = tuple(parse_pool(p) for p in pools)
        if new == self._pools:
            return []
        self._pools = new
        return [c for key in list(self._seen) for c in self._decide(key)]

    def set_ignored(self, globs: Iterable[str]) -> list[LearnChange]:
        """New ignoredInterfaces: routes through matching interfaces are forgotten, routes
        through interfaces no longer matched are learned."""
        new = tuple(globs)
        if new == self._ignored:
            return []
        self._ignored = new
        return [c for key in list(self._seen) for c in self._decide(key)]

    def resync(self, entries: Iterable[tuple[int, KernelRoute]]) -> list[LearnChange]:
        """A full dump (at start, or after the monitor lost events): the kernel's routes
        replace what was seen; returns only the differences."""
        old = set(self._seen)
        self._seen = {}
        for protocol, route in entries:
            self._seen.setdefault(route.key, {})[(protocol, route.metric or 0)] = route
        keys = dict.fromkeys([*old, *self._seen, *self._learned])
        return [c for key in keys for c in self._decide(key)]

    def _decide(self, key: RouteKey) -> list[LearnChange]:
        routes = self._seen.get(key)
        want = None
        if routes:
            # The kernel forwards by the lowest metric.
            (protocol, _metric), route = min(routes.items(), key=lambda item: item[0][1])
            want = self.wants(protocol, route)
        have = self._learned.get(key)
        if want == have:
            return []
        if want is None:
            del self._learned[key]
        else:
            self._learned[key] = want
        return [LearnChange(key, want)]
