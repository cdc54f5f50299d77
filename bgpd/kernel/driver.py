"""The kernel side of the daemon (BIRD's krt protocol), its asyncio shell: opens the netlink
sockets, sends the route ops the pure `FibPlanner` decides in batches (one batch in flight
at a time), retries refused routes with backoff, re-reads our routes after link changes, and
learns the routes Felix programs from the kernel's change notifications (`RouteMonitor`),
handing them to the daemon.

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

from bgpd.kernel.fib import RT_TABLE_MAIN, RTPROT_PYBGPD, FibState, RouteFailure
from bgpd.kernel.learn import KernelLearner, LearnChange
from bgpd.kernel.planner import NOT_BEST, FibPlanner, prefix_key, route_key
from bgpd.kernel.programming import Programming
from bgpd.rib.table import BestChange
from bgpd.wire.family import Family
from common.log import get_logger
from common.netlink.driver import (
    KernelRoutes,
    LinkEvent,
    NetlinkOverrun,
    RouteEvent,
    RouteMonitor,
)

__all__ = ["NOT_BEST", "KernelSync", "prefix_key", "route_key"]

log = get_logger("bgpd.kernel")

MAX_FAILURES_LOGGED = 10
FIB_RESYNC_DELAY = 0.5
"""Seconds after the last link event before our routes are re-read (a flap or a new pod's
veth comes as a burst of events)."""
RETRY_MIN, RETRY_MAX = 1.0, 30.0


LearnedCallback = Callable[[list[LearnChange]], None]


class KernelSync:
    """Owns the netlink sockets of this namespace, the FIB planner and the learned routes."""

    def __init__(
        self,
        routes: KernelRoutes | None = None,
        *,
        programming: Programming | None = None,
        monitor: RouteMonitor | None = None,
        learner: KernelLearner | None = None,
    ) -> None:
        self.routes = routes if routes is not None else KernelRoutes(RTPROT_PYBGPD)
        self.planner = FibPlanner(programming)
        self.monitor = monitor
        self.learner = learner if learner is not None else KernelLearner()
        self.on_learned: LearnedCallback | None = None
        # Called with the seconds each netlink batch took (the FIB latency metric).
        self.on_batch: Callable[[float], None] | None = None
        self.adopted = 0
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._converged = False
        self._fib_resync: asyncio.TimerHandle | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._retry_delay = RETRY_MIN

    @property
    def fib(self) -> FibState:
        return self.planner.fib

    @property
    def programming(self) -> Programming:
        return self.planner.programming

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
                self.monitor = RouteMonitor(
                    netns=self.routes.netns, skip_protocol=self.routes.protocol
                )
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
            self.planner.link_changed(index, name)
        entries = await self.routes.dump()
        changes += self.learner.resync((e.protocol, e.route) for e in entries)
        self.flush()
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
                    # A tunnel device may have come or gone: routes through it are redone.
                    self.planner.link_changed(event.index, event.name)
            if links:
                self.flush()
                self._links_went()
            self._emit(changes)

    def _emit(self, changes: list[LearnChange]) -> None:
        if changes and self.on_learned is not None:
            try:
                self.on_learned(changes)
            except Exception:
                log.exception("error handling learned kernel routes")

    def set_ignored_interfaces(self, globs: Iterable[str]) -> None:
        """BGPConfiguration ignoredInterfaces: routes through them are not learned."""
        self._emit(self.learner.set_ignored(globs))

    def set_pools(self, pools: Iterable[str]) -> None:
        """The IP pools changed: routes inside them are learned, routes outside forgotten."""
        self._emit(self.learner.set_pools(pools))

    # --- what to install (the planner decides; see planner.py) --------------------------

    def set_programming(self, programming: Programming) -> None:
        """New per-pool rules: re-decide every best route and blackhole."""
        self.planner.set_programming(programming)

    def set_blackholes(self, prefixes: Iterable[str]) -> None:
        """Blackhole routes for this node's affine blocks (plan.blackholes)."""
        self.planner.set_blackholes(prefixes)

    def set_static_routes(self, routes: Iterable[tuple[str, str]]) -> None:
        """The plan's static routes, (prefix, gateway) (plan.static_routes: reachableBy)."""
        self.planner.set_static_routes(routes)

    def best_changed(self, change: BestChange) -> None:
        self.planner.best_changed(change)

    def in_fib(self, family: Family, prefix: bytes) -> bool:
        return self.planner.in_fib(family, prefix)

    def fib_state(self, family: Family, prefix: bytes) -> tuple[bool, str]:
        """(installed, why) for `bgpctl explain`."""
        return self.planner.fib_state(family, prefix)

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
