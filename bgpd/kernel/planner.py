"""Which routes bgpd wants in the kernel FIB (BIRD's kernel export filter as Calico writes it),
pure: the RIB's best routes, this node's block blackholes, the per-pool programming and the
tunnel devices' interface indexes go in; `FibState` changes (drained as route ops) and the
`bgpctl explain` answer come out. The asyncio driver only sends what `fib` says.

Per prefix the decision is: the plan's static route if it has one (BGPPeer reachableBy:
`route <peer>/32 via <gateway>`; BIRD's static protocol outranks BGP, 200 to 100); else the
best route, if there is one, it is not this node's own origination, and the pool's rules let
bgpd program it (directly, or via `tunl0 onlink` when the device exists); otherwise the
block's blackhole, if the plan has one and the pool is bgpd's to program; otherwise nothing
of ours.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    RT_TABLE_MAIN,
    FibState,
    KernelRoute,
    Nexthop,
    RouteKey,
    RouteType,
    trusted_route,
)
from bgpd.kernel.programming import Programming
from bgpd.rib.route import Route
from bgpd.rib.table import BestChange
from bgpd.wire.family import Family

# Why a prefix is not in the FIB (bgpctl explain).
NOT_BEST = "no best path"
NO_NEXT_HOP = "no usable next hop"

_AF_LEN = {Family.IPV4_UNICAST: (AF_INET, 4), Family.IPV6_UNICAST: (AF_INET6, 16)}


def route_key(family: Family, prefix: bytes) -> RouteKey:
    """The FIB key of a RIB prefix (length octet + significant octets); host bits a peer
    left set are masked off (the kernel would refuse or mask them, and the key would never
    match what it holds)."""
    af, alen = _AF_LEN[family]
    plen = prefix[0]
    body = prefix[1 : 1 + (plen + 7) // 8]
    rem = plen & 7
    if rem and body:
        last = body[-1] & (0xFF00 >> rem) & 0xFF
        if last != body[-1]:
            body = body[:-1] + bytes((last,))
    return (af, body.ljust(alen, b"\0"), plen, RT_TABLE_MAIN)


def prefix_key(prefix: str) -> RouteKey:
    net = ipaddress.ip_network(prefix, strict=False)
    af = AF_INET if net.version == 4 else AF_INET6
    return (af, net.network_address.packed, net.prefixlen, RT_TABLE_MAIN)


def _missing(tunnel: str) -> str:
    return f"tunnel device {tunnel} missing"


class FibPlanner:
    """bgpd's desired FIB, kept in `fib` (a FibState the driver drains)."""

    def __init__(self, programming: Programming | None = None, fib: FibState | None = None) -> None:
        self.fib = fib if fib is not None else FibState()
        self.programming = programming or Programming()
        # Blackholes of the plan: the route, or None with the reason it is not ours.
        self._blackholes: dict[RouteKey, tuple[KernelRoute | None, str]] = {}
        # Static routes of the plan (reachableBy), ahead of everything else for their key.
        self._statics: dict[RouteKey, KernelRoute] = {}
        # The last best route per key with its multipath set, so a new programming or a
        # tunnel device appearing is decided again without the RIB.
        self._best: dict[RouteKey, tuple[Route, tuple[bytes, ...]]] = {}
        self._skipped: dict[RouteKey, str] = {}
        # Keys whose route goes (or would go) through a tunnel device, by device name.
        self._via: dict[str, dict[RouteKey, None]] = {}
        self._links: dict[str, int] = {}
        self._names: dict[int, str] = {}
        # Next-hop tuples shared by every route via the same gateways (few per node).
        self._hops: dict[tuple[bytes, ...], tuple[Nexthop, ...]] = {}

    # --- inputs -------------------------------------------------------------------------

    def best_changed(self, change: BestChange) -> None:
        key = route_key(change.family, change.prefix)
        new = change.new
        if new is None or new.is_local:
            # Our own origination (a block aggregate) is backed by its blackhole, not a route.
            if self._best.pop(key, None) is not None:
                self._skipped.pop(key, None)
                for keys in self._via.values():
                    keys.pop(key, None)
            self._fallback(key)
            return
        multipath = change.multipath or (new.attrs.next_hop or b"",)
        self._best[key] = (new, multipath)
        self._program(key, new, multipath)

    def set_blackholes(self, prefixes: Iterable[str]) -> None:
        """Blackhole routes for this node's affine blocks (plan.blackholes); those no longer
        listed are removed. A block in a pool whose cluster routes Felix programs gets no
        blackhole from us: Felix installs it (confd's kernel filter rejects the static
        blackhole there too)."""
        old = self._blackholes
        self._blackholes = {}
        for prefix in prefixes:
            key = prefix_key(prefix)
            self._blackholes[key] = self._blackhole(key)
        for key in old.keys() | self._blackholes.keys():
            if old.get(key) != self._blackholes.get(key) and (
                key not in self._best or key in self._skipped
            ):
                self._fallback(key)

    def set_static_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """The plan's static routes, (prefix, gateway) pairs (plan.static_routes: how a
        reachableBy peer is reached), installed as routes of ours ahead of any BGP route to
        the same prefix. Those no longer listed are removed, and what they covered (a best
        route, a blackhole) comes back."""
        want: dict[RouteKey, KernelRoute] = {}
        for prefix, via in routes:
            key = prefix_key(prefix)
            af, dst, plen, table = key
            gateway = Nexthop(ipaddress.ip_address(via).packed)
            want[key] = KernelRoute(af, dst, plen, (gateway,), RouteType.UNICAST, table)
        old = self._statics
        self._statics = want
        for key in old.keys() - want.keys():
            best = self._best.get(key)
            if best is not None:
                self._program(key, *best)
            else:
                self._fallback(key)
        for key, route in want.items():
            if old.get(key) != route:
                self.fib.set(route, key)

    @property
    def static_routes(self) -> dict[RouteKey, KernelRoute]:
        return dict(self._statics)

    def set_programming(self, programming: Programming) -> None:
        """New per-pool rules: every best route and blackhole is decided again."""
        self.programming = programming
        for key in self._blackholes:
            self._blackholes[key] = self._blackhole(key)
        for key, (route, multipath) in list(self._best.items()):
            self._program(key, route, multipath)
        for key in self._blackholes:
            if key not in self._best:
                self._fallback(key)

    def link_changed(self, index: int, name: str | None) -> None:
        """An interface appeared or was renamed (`name`), or went away (None): routes via a
        tunnel device that came, went or moved are decided again."""
        touched: set[str] = set()
        old = self._names.pop(index, None)
        if old is not None and self._links.get(old) == index:
            del self._links[old]
            touched.add(old)
        if name is not None:
            self._names[index] = name
            if self._links.get(name) != index:
                self._links[name] = index
                touched.add(name)
        for tunnel in touched:
            for key in list(self._via.get(tunnel, ())):
                best = self._best.get(key)
                if best is not None:
                    self._program(key, *best)

    def ifindex(self, name: str) -> int | None:
        return self._links.get(name)

    # --- the decision -------------------------------------------------------------------

    def _blackhole(self, key: RouteKey) -> tuple[KernelRoute | None, str]:
        af, dst, plen, table = key
        treatment = self.programming.treatment(af, dst, plen)
        if not treatment.install:
            return None, treatment.reason
        return KernelRoute(af, dst, plen, (), RouteType.BLACKHOLE, table), ""

    def _fallback(self, key: RouteKey) -> None:
        """No best route of ours for `key`: the plan's static route if it has one, else the
        blackhole if we install one, else nothing."""
        static = self._statics.get(key)
        if static is not None:
            self.fib.set(static, key)
            return
        blackhole = self._blackholes.get(key)
        if blackhole is not None and blackhole[0] is not None:
            self.fib.set(blackhole[0], key)
        else:
            self.fib.remove(key)

    def _program(self, key: RouteKey, route: Route, multipath: tuple[bytes, ...]) -> None:
        static = self._statics.get(key)
        if static is not None:
            self.fib.set(static, key)  # the plan's static route outranks BGP
            return
        af, dst, plen, _table = key
        alen = len(dst)
        # An IPv6 next hop may carry a link-local half; the global one routes.
        gateways = [gw[:alen] for gw in multipath if len(gw) >= alen]
        if not gateways:
            self._skip(key, NO_NEXT_HOP)
            return
        treatment = self.programming.treatment(af, dst, plen, gateways[0])
        if not treatment.install:
            self._skip(key, treatment.reason)
            return
        if treatment.tunnel is not None:
            self._via.setdefault(treatment.tunnel, {})[key] = None
            index = self._links.get(treatment.tunnel)
            if index is None:
                self._skip(key, _missing(treatment.tunnel))
                return
            hops = tuple(Nexthop(gw, index, onlink=True) for gw in gateways)
        else:
            if self._via:
                for keys in self._via.values():
                    keys.pop(key, None)
            hops = self._hops.get(tuple(gateways)) or self._hops.setdefault(
                tuple(gateways), tuple(Nexthop(gw) for gw in gateways)
            )
        if self._skipped:
            self._skipped.pop(key, None)
        self.fib.set(trusted_route(af, dst, plen, hops), key)

    def _skip(self, key: RouteKey, reason: str) -> None:
        self._skipped[key] = reason
        self._fallback(key)

    # --- queries ------------------------------------------------------------------------

    def in_fib(self, family: Family, prefix: bytes) -> bool:
        return self.fib.installed(route_key(family, prefix)) is not None

    def fib_state(self, family: Family, prefix: bytes) -> tuple[bool, str]:
        """(installed, why) for `bgpctl explain`."""
        key = route_key(family, prefix)
        installed = self.fib.installed(key)
        failure = self.fib.failed.get(key)
        if failure is not None:
            text = failure.message or os.strerror(failure.errno)
            return installed is not None, f"kernel refused {failure.op.kind.value}: {text}"
        skipped = self._skipped.get(key)
        if skipped is not None:
            return installed is not None, f"not installed: {skipped}"
        if installed is not None:
            if installed.type is RouteType.BLACKHOLE:
                return True, "blackhole route for a local block"
            static = self._statics.get(key)
            if static is not None and installed == static:
                via = ipaddress.ip_address(installed.nexthops[0].gateway)
                return True, f"static route via {via} (a peer's reachableBy)"
            if self.fib.desired(key) is None:
                return True, "left from before a restart; removed once converged"
            hops = ", ".join(
                str(ipaddress.ip_address(nh.gateway)) + (" onlink" if nh.onlink else "")
                for nh in installed.nexthops
                if nh.gateway
            )
            return True, f"installed via {hops}" if hops else "installed"
        if self.fib.desired(key) is not None:
            return False, "being installed"
        if key in self._best:
            return False, "not installed"
        blackhole = self._blackholes.get(key)
        if blackhole is not None and blackhole[0] is None:
            return False, f"blackhole not installed: {blackhole[1]}"
        return False, NOT_BEST
