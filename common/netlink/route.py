"""The kernel's routes as plain values, and the ops that change them. Pure.

Both daemons program the main table through these: bgpd its best BGP routes and blackholes,
felix its workload device routes and the cluster routes through tunnel devices. What a route
*should* be is each daemon's business (bgpd/kernel/fib.py, felix/); this module only says
what one is, how two compare, and what the kernel was asked to do with one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Linux address family numbers, spelled out so pure modules need no `socket` import.
AF_INET = 2
AF_INET6 = 10
AF_BRIDGE = 7

RT_TABLE_MAIN = 254

# rtm_protocol values of <linux/rtnetlink.h> that our daemons meet.
RTPROT_KERNEL = 2  # the kernel's own (connected subnets)
RTPROT_BOOT = 3  # `ip route add` without proto; Felix's default DeviceRouteProtocol
RTPROT_STATIC = 4

# What the kernel stores for a route added without RTA_PRIORITY.
DEFAULT_METRIC = {AF_INET: 0, AF_INET6: 1024}

ESRCH = 3  # errno of a delete whose route is already gone

ADDR_LEN = {AF_INET: 4, AF_INET6: 16}

RouteKey = tuple[int, bytes, int, int]
"""(family, dst, dst_len, table): one prefix in one table."""


class RouteType(enum.IntEnum):
    """rtm_type values we install (RTN_*)."""

    UNICAST = 1
    BLACKHOLE = 6


class OpKind(enum.Enum):
    ADD = "add"
    REPLACE = "replace"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Nexthop:
    """A gateway (packed, same family as the route) and/or an output interface.

    `ifindex == 0` lets the kernel resolve the interface from the gateway; an empty gateway
    with an ifindex is a device route (scope link). `onlink` skips the kernel's check that
    the gateway is on the link (tunnel devices: `via <node IP> dev tunl0 onlink`).
    """

    gateway: bytes
    ifindex: int = 0
    onlink: bool = False


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """One route as the kernel holds it. `metric=None` means the kernel default (0 for IPv4,
    1024 for IPv6); more than one nexthop is an ECMP route (RTA_MULTIPATH)."""

    family: int
    dst: bytes
    dst_len: int
    nexthops: tuple[Nexthop, ...] = ()
    type: RouteType = RouteType.UNICAST
    table: int = RT_TABLE_MAIN
    metric: int | None = None

    def __post_init__(self) -> None:
        alen = ADDR_LEN.get(self.family)
        if alen is None:
            raise ValueError(f"unsupported address family {self.family}")
        if len(self.dst) != alen or not 0 <= self.dst_len <= alen * 8:
            raise ValueError(f"bad destination {self.dst!r}/{self.dst_len}")
        # The kernel refuses (IPv4) or silently masks (IPv6) host bits; either way the route
        # read back would never equal this one, and reconcile would replace it forever.
        if int.from_bytes(self.dst, "big") & ((1 << (alen * 8 - self.dst_len)) - 1):
            raise ValueError(f"host bits set in {self.dst.hex()}/{self.dst_len}")
        if self.type is RouteType.BLACKHOLE:
            if self.nexthops:
                raise ValueError("a blackhole route has no nexthops")
        elif not self.nexthops:
            raise ValueError("a unicast route needs at least one nexthop")
        for nh in self.nexthops:
            if nh.gateway and len(nh.gateway) != alen:
                raise ValueError(f"gateway {nh.gateway.hex()} is not of family {self.family}")
            if not nh.gateway and not nh.ifindex:
                raise ValueError("a nexthop needs a gateway or an interface")

    @property
    def key(self) -> RouteKey:
        return (self.family, self.dst, self.dst_len, self.table)

    @classmethod
    def from_nlri(
        cls,
        family: int,
        nlri: bytes,
        nexthops: tuple[Nexthop, ...] = (),
        type: RouteType = RouteType.UNICAST,
        table: int = RT_TABLE_MAIN,
        metric: int | None = None,
    ) -> KernelRoute:
        """Build from a BGP prefix form (length octet + significant octets)."""
        alen = ADDR_LEN[family]
        return cls(family, nlri[1:].ljust(alen, b"\0"), nlri[0], nexthops, type, table, metric)


def trusted_route(
    family: int, dst: bytes, dst_len: int, nexthops: tuple[Nexthop, ...]
) -> KernelRoute:
    """A unicast main-table route built without `__post_init__`'s checks, for a per-change
    hot path whose inputs are valid by construction (a masked key, same-family gateways);
    it costs a fraction of the checked constructor."""
    route = object.__new__(KernelRoute)
    setattr_ = object.__setattr__
    setattr_(route, "family", family)
    setattr_(route, "dst", dst)
    setattr_(route, "dst_len", dst_len)
    setattr_(route, "nexthops", nexthops)
    setattr_(route, "type", RouteType.UNICAST)
    setattr_(route, "table", RT_TABLE_MAIN)
    setattr_(route, "metric", None)
    return route


@dataclass(frozen=True, slots=True)
class RouteOp:
    """One change to send. `protocol` None: the socket's protocol (`KernelRoutes.protocol`);
    felix sends routes of two protocols through one socket."""

    kind: OpKind
    route: KernelRoute
    protocol: int | None = None


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """An op the kernel refused: `errno` is positive (e.g. ENETUNREACH), `message` is the
    kernel's extended-ack text when it gave one."""

    op: RouteOp
    errno: int
    message: str = ""


def effective_metric(route: KernelRoute) -> int:
    """The metric the kernel holds (or will hold) for the route."""
    return DEFAULT_METRIC[route.family] if route.metric is None else route.metric


def route_matches(want: KernelRoute, have: KernelRoute) -> bool:
    """True when the kernel's `have` already is `want`: a desired `metric=None` accepts the
    kernel default, and a desired nexthop with `ifindex=0` accepts the interface the kernel
    resolved. Nexthop order does not matter (the kernel may list ECMP legs in its own order)."""
    if want.key != have.key or want.type is not have.type:
        return False
    if want.metric is not None and want.metric != effective_metric(have):
        return False
    if len(want.nexthops) != len(have.nexthops):
        return False
    if want.nexthops == have.nexthops:
        return True
    left = list(have.nexthops)
    for nh in want.nexthops:
        for i, cand in enumerate(left):
            if (
                cand.gateway == nh.gateway
                and cand.onlink == nh.onlink
                and (nh.ifindex == 0 or cand.ifindex == nh.ifindex)
            ):
                del left[i]
                break
        else:
            return False
    return True
