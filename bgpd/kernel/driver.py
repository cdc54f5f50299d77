"""The kernel side of the daemon (BIRD's krt protocol): turns the RIB's best-path changes
into FIB state and programs it in batches, one netlink batch per tick at most in flight;
installs the blackholes of this node's blocks; and learns the routes Felix programs from
the kernel's change notifications (`RouteMonitor`), handing them to the daemon.

Restart without loss (RFC 4724 restarting speaker): `start()` adopts the routes of ours an
earlier run left in the FIB instead of sweeping them; they keep forwarding while the RIB
re-converges, and `converged()` then removes only what was not re-learned.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import time
from collections.abc import Callable, Iterable

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    RT_TABLE_MAIN,
    FibState,
    KernelRoute,
    Nexthop,
    RouteFailure,
    RouteKey,
    RouteType,
    trusted_route,
)
from bgpd.kernel.learn import KernelLearner, LearnChange
from bgpd.kernel.netlink import (
    KernelRoutes,
    LinkEvent,
    NetlinkOverrun,
    RouteEvent,
    RouteMonitor,
)
from bgpd.kernel.programming import Programming
from bgpd.rib.route import Route
from bgpd.rib.table import BestChange
from bgpd.wire.family import Family
from common.log import get_logger

log = get_logger("bgpd.kernel")

AF_OF_FAMILY = {Family.IPV4_UNICAST: AF_INET, Family.IPV6_UNICAST: AF_INET6}
MAX_FAILURES_LOGGED = 10
FIB_RESYNC_DELAY = 0.5
RETRY_MIN, RETRY_MAX = 1.0, 30.0
"""Seconds after the last link event before our routes are re-read (a flap or a new pod's
veth comes as a burst of events)."""

# Why a prefix is not in the FIB (bgpctl explain).
NOT_BEST = "no best path"
LOCAL_ROUTE = "a route of this node (not installed; a blackhole backs a block)"


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


LearnedCallback = Callable[[list[LearnChange]], None]


class KernelSync:
    """Owns the FIB state, the netlink sockets of this namespace and the learned routes."""

    def __init__(
        self,
        routes: KernelRoutes | None = None,
        *,
        programming: Programming | None = None,
        monitor: RouteMonitor | None = None,
        learner: KernelLearner | None = None,
    ) -> None:
        self.routes = routes if routes is not None else KernelRoutes()
        self.fib = FibState()
        self.programming = programming or Programming()
        self.monitor = monitor
        self.learner = learner if learner is not None else KernelLearner()
        self.on_learned: LearnedCallback | None = None
        # Called with the seconds each netlink batch took (the FIB latency metric).
        self.on_batch: Callable[[float], None] | None = None
        self.adopted = 0
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._blackholes: dict[RouteKey, KernelRoute] = {}
        # The last best route per key with its multipath set, so a new programming or a
        # tunnel device appearing can be re-decided without the RIB.
        self._best: dict[RouteKey, tuple[Route, tuple[bytes, ...]]] = {}
        self._skipped: dict[RouteKey, str] = {}
        # Next-hop tuples shared by every route via the same gateways (few per node).
        self._hops: dict[tuple[bytes, ...], tuple[Nexthop, ...]] = {}
        self._converged = False
        self._fib_resync: asyncio.TimerHandle | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = RETRY_MIN

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, *, adopt: bool = True, learn: bool = True) -> int:
        """Open netlink. With `adopt`, routes of ours an earlier run left are taken as
        installed (removed by `converged()` unless re-learned); otherwise they are swept.
        With `learn`, subscribe to route/link changes and learn from an initial dump.
        Returns how many routes were adopted."""
        await self.routes.open()
        if adopt:
            observed = await self.routes.dump_ours(RT_TABLE_MAIN)
            self.fib.adopt(observed)
            self.adopted = len(observed)
            self._converged = not observed
            if observed:
                log.info("kernel routes adopted for graceful restart", count=len(observed))
        else:
            self._converged = True
            swept = await self.routes.sweep()
            if swept:
                log.info("kernel routes swept", count=swept)
        if learn:
            if self.monitor is None:
                self.monitor = RouteMonitor(netns=self.routes.netns)
            # Subscribe first, then dump: events queued meanwhile are replayed on top.
            self.monitor.open()
            await self._resync()
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())
        return self.adopted

    async def close(self) -> None:
        if self._fib_resync is not None:
            self._fib_resync.cancel()
        if self._resync_task is not None:
            self._resync_task.cancel()
        if self._retry is not None:
            self._retry.cancel()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch_task
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.monitor is not None:
            self.monitor.close()
        self.routes.close()

    def converged(self) -> None:
        """The RIB has re-learned what it will: remove adopted routes nobody wants."""
        self._converged = True
        self.fib.reconcile_all()
        self.flush()

    def _links_went(self) -> None:
        """A link changed: the kernel may have dropped our routes through it (IPv4 ones
        without an RTM_DELROUTE) or now accept ones it refused. Re-read ours once the burst
        of link events settles, then put back what is missing."""
        if self._fib_resync is not None:
            self._fib_resync.cancel()
        self._fib_resync = asyncio.get_running_loop().call_later(
            FIB_RESYNC_DELAY, self._start_fib_resync
        )

    def _schedule_retry(self, failed: bool) -> None:
        """Refused routes (a next hop not reachable yet, a device still down) are tried
        again with a growing pause, as long as some keep failing."""
        if not failed:
            self._retry_delay = RETRY_MIN
            return
        if self._retry is None and self.fib.failed:
            self._retry = asyncio.get_running_loop().call_later(self._retry_delay, self._retry_now)
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    def _retry_now(self) -> None:
        self._retry = None
        self.fib.retry_failed()
        self.flush()

    def _start_fib_resync(self) -> None:
        self._fib_resync = None
        if self._resync_task is not None and not self._resync_task.done():
            self._links_went()  # one at a time: try again after this one
            return
        self._resync_task = asyncio.get_running_loop().create_task(self._resync_fib())

    async def _resync_fib(self) -> None:
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await self._task
        try:
            observed = await self.routes.dump_ours(RT_TABLE_MAIN)
        except OSError as exc:
            log.error("kernel route dump failed", error=str(exc))
            return
        self.fib.adopt(observed)
        self.fib.retry_failed()
        if self._converged:
            self.fib.reconcile_all()
        else:
            # Still restarting: adopted routes stay until converged().
            self.fib.refresh_desired()
        if self.fib.pending:
            log.info("kernel routes out of sync after a link change", ops=self.fib.pending)
        self.flush()

    # --- learning -----------------------------------------------------------------------

    async def _resync(self) -> None:
        links = await self.routes.links()
        changes: list[LearnChange] = []
        for index, name in links:
            changes += self.learner.link_changed(index, name)
        entries = await self.routes.dump()
        changes += self.learner.resync((e.protocol, e.route) for e in entries)
        self._links_changed()
        self._emit(changes)

    async def _watch(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                events = await self.monitor.read()
            except NetlinkOverrun:
                log.warning("kernel route events lost; re-reading the table")
                try:
                    await self._resync()
                except OSError as exc:
                    log.error("kernel resync failed", error=str(exc))
                continue
            except OSError as exc:
                log.error("kernel route monitor failed", error=str(exc))
                return
            changes: list[LearnChange] = []
            links = False
            for event in events:
                if isinstance(event, RouteEvent):
                    entry = event.entry
                    if event.added:
                        changes += self.learner.route_added(entry.protocol, entry.route)
                    else:
                        changes += self.learner.route_removed(entry.protocol, entry.route)
                elif isinstance(event, LinkEvent):
                    links = True
                    changes += self.learner.link_changed(event.index, event.name)
            if links:
                self._links_changed()
                self._links_went()
            self._emit(changes)

    def _emit(self, changes: list[LearnChange]) -> None:
        if changes and self.on_learned is not None:
            try:
                self.on_learned(changes)
            except Exception:
                log.exception("error handling learned kernel routes")

    def set_pools(self, pools: Iterable[str]) -> None:
        """The IP pools changed: routes inside them are learned, routes outside forgotten."""
        self._emit(self.learner.set_pools(pools))

    def _links_changed(self) -> None:
        # A tunnel device may have come or gone: re-decide the routes that need one.
        for key, (route, multipath) in list(self._best.items()):
            if self._skipped.get(key, "").startswith("tunnel device"):
                self._program(key, route, multipath)
        self.flush()

    # --- what to install ----------------------------------------------------------------

    def set_programming(self, programming: Programming) -> None:
        """New per-pool rules: re-decide every best route."""
        self.programming = programming
        for key, (route, multipath) in list(self._best.items()):
            self._program(key, route, multipath)

    def set_blackholes(self, prefixes: Iterable[str]) -> None:
        """Blackhole routes for this node's affine blocks (plan.blackholes); those no longer
        listed are removed."""
        want: dict[RouteKey, KernelRoute] = {}
        for prefix in prefixes:
            key = prefix_key(prefix)
            af, dst, plen, table = key
            want[key] = KernelRoute(af, dst, plen, (), RouteType.BLACKHOLE, table)
        old = self._blackholes
        self._blackholes = want
        for key in old.keys() - want.keys():
            best = self._best.get(key)
            if best is not None:
                self._program(key, *best)
            else:
                self.fib.remove(key)
        for key, route in want.items():
            if key not in self._best:
                self.fib.set(route)

    def best_changed(self, change: BestChange) -> None:
        key = route_key(change.family, change.prefix)
        new = change.new
        if new is None or new.is_local:
            self._best.pop(key, None)
            self._skipped.pop(key, None)
            blackhole = self._blackholes.get(key)
            if blackhole is not None:
                self.fib.set(blackhole)
            else:
                self.fib.remove(key)
            return
        multipath = change.multipath or (new.attrs.next_hop or b"",)
        self._best[key] = (new, multipath)
        self._program(key, new, multipath)

    def _program(self, key: RouteKey, route: Route, multipath: tuple[bytes, ...]) -> None:
        af, dst, plen, _table = key
        alen = len(dst)
        # An IPv6 next hop may carry a link-local half; the global one routes.
        gateways = [gw[:alen] for gw in multipath if len(gw) >= alen]
        if not gateways:
            self._skip(key, "no usable next hop")
            return
        treatment = self.programming.treatment(af, dst, plen, gateways[0])
        if not treatment.install:
            self._skip(key, treatment.reason)
            return
        if treatment.tunnel is not None:
            index = self.learner.ifindex(treatment.tunnel)
            if index is None:
                self._skip(key, f"tunnel device {treatment.tunnel} missing")
                return
            hops = tuple(Nexthop(gw, index, onlink=True) for gw in gateways)
        else:
            hops = self._hops.get(tuple(gateways)) or self._hops.setdefault(
                tuple(gateways), tuple(Nexthop(gw) for gw in gateways)
            )
        if self._skipped:
            self._skipped.pop(key, None)
        self.fib.set(trusted_route(af, dst, plen, hops), key)

    def _skip(self, key: RouteKey, reason: str) -> None:
        self._skipped[key] = reason
        blackhole = self._blackholes.get(key)
        if blackhole is not None:
            self.fib.set(blackhole)
        else:
            self.fib.remove(key)

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
        return False, NOT_BEST

    # --- programming --------------------------------------------------------------------

    def flush(self) -> None:
        """Start programming what this tick changed, unless a batch is already in flight
        (it picks the new ops up when it finishes)."""
        if self.fib.pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        while self.fib.pending:
            ops = self.fib.take_ops()
            started = time.monotonic()
            try:
                failures = await self.routes.apply(ops)
            except OSError as exc:
                log.error("kernel route programming failed", error=str(exc), ops=len(ops))
                failures = [RouteFailure(op, exc.errno or 0, str(exc)) for op in ops]
            if self.on_batch is not None:
                self.on_batch(time.monotonic() - started)
            self.fib.record_failures(failures)
            self._schedule_retry(bool(failures))
            for failure in failures[:MAX_FAILURES_LOGGED]:
                route = failure.op.route
                log.warning(
                    "kernel refused route",
                    op=failure.op.kind.value,
                    route=f"{ipaddress.ip_address(route.dst)}/{route.dst_len}",
                    errno=failure.errno,
                    message=(
                        "a route of another protocol holds this prefix; left alone"
                        if failure.errno == errno.EEXIST
                        else failure.message or os.strerror(failure.errno)
                    ),
                )
