"""What bgpd's routes in the kernel FIB should be, and the ops that get them there.

Pure: no sockets, no clock. `reconcile()` compares a desired table with one read from the
kernel; `FibState` is the incremental form the daemon drives per best-path change and drains
once per event-loop tick, so ten changes to one prefix within a tick cost one netlink message.
The route values themselves (`KernelRoute`, `RouteOp`, ...) are common.netlink.route's, and
common.netlink.driver turns the ops into batched RTM_NEWROUTE/RTM_DELROUTE messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from common.netlink.route import (
    AF_INET,
    AF_INET6,
    DEFAULT_METRIC,
    ESRCH,
    RT_TABLE_MAIN,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteFailure,
    RouteKey,
    RouteOp,
    RouteType,
    effective_metric,
    route_matches,
    trusted_route,
)

__all__ = [
    "AF_INET",
    "AF_INET6",
    "DEFAULT_METRIC",
    "ESRCH",
    "RTPROT_PYBGPD",
    "RT_TABLE_MAIN",
    "FibState",
    "KernelRoute",
    "Nexthop",
    "OpKind",
    "RouteFailure",
    "RouteKey",
    "RouteOp",
    "RouteType",
    "effective_metric",
    "ops_for",
    "reconcile",
    "route_matches",
    "trusted_route",
]

# Our rtm_protocol ("proto pybgpd" in `ip route`). Free in the kernel's rtnetlink.h, in
# iproute2's rt_protos (bird 12, zebra 11, babel 42, openr 99, bgp/isis/ospf/rip/eigrp 186-192)
# and in FRR's rt_protos.d/frr.conf (186-198): so a sweep of our number can only ever touch
# routes this daemon installed, never Felix's (boot/static), BIRD's or the kernel's.
RTPROT_PYBGPD = 201


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
