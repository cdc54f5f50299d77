"""What the kernel FIB should hold, as plain values, and the ops that get it there.

Pure: no sockets, no clock. `reconcile()` compares a desired table with one read from the
kernel; `FibState` is the incremental form the daemon drives per best-path change and drains
once per event-loop tick, so ten changes to one prefix within a tick cost one netlink message.
`netlink.py` turns the ops into batched RTM_NEWROUTE/RTM_DELROUTE messages.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

# Linux address family numbers, spelled out so this module needs no `socket` import.
AF_INET = 2
AF_INET6 = 10

RT_TABLE_MAIN = 254

# Our rtm_protocol ("proto pybgpd" in `ip route`). Free in the kernel's rtnetlink.h, in
# iproute2's rt_protos (bird 12, zebra 11, babel 42, openr 99, bgp/isis/ospf/rip/eigrp 186-192)
# and in FRR's rt_protos.d/frr.conf (186-198): so a sweep of our number can only ever touch
# routes this daemon installed, never Felix's (boot/static), BIRD's or the kernel's.
RTPROT_PYBGPD = 201

# What the kernel stores for a route added without RTA_PRIORITY.
DEFAULT_METRIC = {AF_INET: 0, AF_INET6: 1024}

ESRCH = 3  # errno of a delete whose route is already gone

_ADDR_LEN = {AF_INET: 4, AF_INET6: 16}

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
    with an ifindex is a device route. `onlink` skips the kernel's on-link check (tunl0).
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
        alen = _ADDR_LEN.get(self.family)
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
        """Build from the RIB's prefix form (length octet + significant octets)."""
        alen = _ADDR_LEN[family]
        return cls(family, nlri[1:].ljust(alen, b"\0"), nlri[0], nexthops, type, table, metric)


def trusted_route(
    family: int, dst: bytes, dst_len: int, nexthops: tuple[Nexthop, ...]
) -> KernelRoute:
    """A unicast main-table route built without `__post_init__`'s checks, for the per-change
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
    kind: OpKind
    route: KernelRoute


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


def ops_for(want: KernelRoute | None, have: KernelRoute | None) -> list[RouteOp]:
    """The ops that turn one key's kernel state `have` into `want`."""
    if want is None:
        return [] if have is None else [RouteOp(OpKind.DELETE, have)]
    if have is None:
        return [RouteOp(OpKind.ADD, want)]
    if route_matches(want, have):
        return []
    if want.metric is not None and want.metric != effective_metric(have):
        # The metric is part of the kernel's identity of a route, so a replace would add a
        # second one: add the new route first, then delete the old by its metric, spelled
        # out, since a delete without one takes the lowest-metric match, maybe the new route.
        if have.metric is None:
            have = replace(have, metric=DEFAULT_METRIC[have.family])
        return [RouteOp(OpKind.ADD, want), RouteOp(OpKind.DELETE, have)]
    if want.metric is None and have.metric is not None:
        # "Any metric" means the one the route has: a replace without RTA_PRIORITY would
        # land on the default metric and leave the old route beside the new one.
        want = replace(want, metric=have.metric)
    return [RouteOp(OpKind.REPLACE, want)]


def reconcile(
    desired: Mapping[RouteKey, KernelRoute], observed: Mapping[RouteKey, KernelRoute]
) -> list[RouteOp]:
    """Ops that make `observed` (routes of our protocol read from the kernel) equal `desired`:
    adds and replaces in `desired` order, then deletes of what is no longer wanted."""
    ops: list[RouteOp] = []
    for key, want in desired.items():
        ops.extend(ops_for(want, observed.get(key)))
    for key, have in observed.items():
        if key not in desired:
            ops.append(RouteOp(OpKind.DELETE, have))
    return ops


class FibState:
    """The routes we want in the kernel and the ones we believe are there.

    The daemon calls `set()`/`remove()` for each best-path change and `take_ops()` once per
    tick; only keys touched since the last tick are compared, and each yields its net op.
    Apply the ops, then hand any failures to `record_failures()`.
    """

    def __init__(self, installed: Mapping[RouteKey, KernelRoute] | None = None) -> None:
        self._desired: dict[RouteKey, KernelRoute] = {}
        self._installed: dict[RouteKey, KernelRoute] = dict(installed or {})
        self._dirty: dict[RouteKey, None] = {}  # an ordered set: ops come out in change order
        self._before: dict[RouteKey, KernelRoute | None] = {}
        self._failed: dict[RouteKey, RouteFailure] = {}

    def set(self, route: KernelRoute, key: RouteKey | None = None) -> None:
        """Want `route`; `key` may be passed when the caller has it (it is `route.key`)."""
        if key is None:
            key = route.key
        self._desired[key] = route
        self._dirty[key] = None

    def remove(self, key: RouteKey) -> None:
        if self._desired.pop(key, None) is not None or key in self._installed:
            self._dirty[key] = None

    def desired(self, key: RouteKey) -> KernelRoute | None:
        return self._desired.get(key)

    def installed(self, key: RouteKey) -> KernelRoute | None:
        return self._installed.get(key)

    def __len__(self) -> int:
        return len(self._desired)

    def __iter__(self) -> Iterator[KernelRoute]:
        return iter(self._desired.values())

    @property
    def pending(self) -> int:
        """Keys changed since the last `take_ops()`."""
        return len(self._dirty)

    @property
    def failed(self) -> Mapping[RouteKey, RouteFailure]:
        """Keys whose last op failed, with that failure; retried by `retry_failed()`."""
        return self._failed

    def adopt(self, observed: Mapping[RouteKey, KernelRoute]) -> None:
        """Take a kernel dump as the installed state (a restart that keeps the FIB, or a
        resync). Nothing is deleted until `reconcile_all()`: graceful restart keeps the old
        routes forwarding until the RIB has converged."""
        self._installed = dict(observed)

    def reconcile_all(self) -> None:
        """Mark every key, desired or installed, for comparison on the next `take_ops()`."""
        for key in self._desired:
            self._dirty[key] = None
        for key in self._installed:
            self._dirty[key] = None

    def refresh_desired(self) -> None:
        """Mark every desired key for comparison (after `adopt` of a fresh dump): routes the
        kernel dropped behind our back are put back; installed keys we do not want are left
        alone until `reconcile_all()`."""
        for key in self._desired:
            self._dirty[key] = None

    def retry_failed(self) -> None:
        for key in self._failed:
            self._dirty[key] = None
        self._failed.clear()

    def take_ops(self) -> list[RouteOp]:
        """The ops of this tick; the installed state is advanced as if they all succeed."""
        ops: list[RouteOp] = []
        self._before = {}
        for key in self._dirty:
            want = self._desired.get(key)
            have = self._installed.get(key)
            key_ops = ops_for(want, have)
            if not key_ops:
                continue
            ops.extend(key_ops)
            self._before[key] = have
            self._failed.pop(key, None)
            if want is None:
                del self._installed[key]
            else:
                # What was sent, which may carry the kernel's metric where `want` had none.
                self._installed[key] = next(
                    op.route for op in key_ops if op.kind is not OpKind.DELETE
                )
        self._dirty.clear()
        return ops

    def record_failures(self, failures: Iterable[RouteFailure]) -> None:
        """Undo the optimistic state of the last `take_ops()` for ops the kernel refused."""
        for failure in failures:
            op = failure.op
            key = op.route.key
            if op.kind is OpKind.DELETE:
                if failure.errno == ESRCH:
                    continue  # already gone, which is what we wanted
                # Still there. After a metric change this makes the next take_ops() compare
                # the new route with the old one, which repeats the add-then-delete pair.
                self._installed[key] = op.route
            else:
                before = self._before.get(key)
                if before is None:
                    self._installed.pop(key, None)
                else:
                    self._installed[key] = before
            self._failed[key] = failure
