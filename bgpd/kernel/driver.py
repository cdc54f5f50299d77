"""The kernel side of the daemon (BIRD's krt protocol): turns the RIB's best-path changes
into FIB state and programs it in batches, one netlink batch per tick at most in flight."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    RT_TABLE_MAIN,
    FibState,
    KernelRoute,
    Nexthop,
    RouteFailure,
    RouteKey,
)
from bgpd.kernel.netlink import KernelRoutes
from bgpd.log import get_logger
from bgpd.rib.table import BestChange
from bgpd.wire.family import Family

log = get_logger("bgpd.kernel")

AF_OF_FAMILY = {Family.IPV4_UNICAST: AF_INET, Family.IPV6_UNICAST: AF_INET6}
MAX_FAILURES_LOGGED = 10


def route_key(family: Family, prefix: bytes) -> RouteKey:
    """The FIB key of a RIB prefix; host bits a peer left set are masked off (the kernel
    would refuse or mask them, and the key would never match what it holds)."""
    alen = family.addr_len
    plen = prefix[0]
    net = int.from_bytes(prefix[1:].ljust(alen, b"\0"), "big")
    net &= ((1 << (alen * 8)) - 1) ^ ((1 << (alen * 8 - plen)) - 1)
    return (AF_OF_FAMILY[family], net.to_bytes(alen, "big"), plen, RT_TABLE_MAIN)


class KernelSync:
    """Owns the FIB state and the netlink socket of this namespace."""

    def __init__(self, routes: KernelRoutes | None = None) -> None:
        self.routes = routes if routes is not None else KernelRoutes()
        self.fib = FibState()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open netlink and sweep routes of ours an earlier run left behind."""
        await self.routes.open()
        swept = await self.routes.sweep()
        if swept:
            log.info("kernel routes swept", count=swept)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.routes.close()

    def best_changed(self, change: BestChange) -> None:
        key = route_key(change.family, change.prefix)
        new = change.new
        if new is None or new.is_local:
            self.fib.remove(key)
            return
        alen = change.family.addr_len
        gateways = change.multipath or (new.attrs.next_hop or b"",)
        # An IPv6 next hop may carry a link-local half; the global one routes.
        hops = tuple(Nexthop(gw[:alen]) for gw in gateways if len(gw) >= alen)
        if not hops:
            self.fib.remove(key)
            return
        af, dst, plen, _table = key
        self.fib.set(KernelRoute(af, dst, plen, hops))

    def in_fib(self, family: Family, prefix: bytes) -> bool:
        return self.fib.installed(route_key(family, prefix)) is not None

    def flush(self) -> None:
        """Start programming what this tick changed, unless a batch is already in flight
        (it picks the new ops up when it finishes)."""
        if self.fib.pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._program())

    async def _program(self) -> None:
        while self.fib.pending:
            ops = self.fib.take_ops()
            try:
                failures = await self.routes.apply(ops)
            except OSError as exc:
                log.error("kernel route programming failed", error=str(exc), ops=len(ops))
                failures = [RouteFailure(op, exc.errno or 0, str(exc)) for op in ops]
            self.fib.record_failures(failures)
            for failure in failures[:MAX_FAILURES_LOGGED]:
                route = failure.op.route
                log.warning(
                    "kernel refused route",
                    op=failure.op.kind.value,
                    route=f"{ipaddress.ip_address(route.dst)}/{route.dst_len}",
                    errno=failure.errno,
                    message=failure.message or os.strerror(failure.errno),
                )
