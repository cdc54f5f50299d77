"""The felix daemon (`felix --node NAME --datastore URL`): this node's workload routes, its
status under a lease, and its IPIP tunnel address.

- Lists the WorkloadEndpoints, then watches them; after each burst of changes (and every
  `resync` seconds, which also catches interfaces that appeared late) the routes to `cali*`
  interfaces are reconciled (routes.py): missing ones added, ones no endpoint explains
  removed — so at start the routes of pods deleted while felix was down go.
- Writes /calico/felix/v2/no-region/host/<node>/status under a lease renewed every
  `status_interval`; a clean stop revokes it, a crash lets it expire.
- When an IPIP pool selects the node, holds a tunnel address (handle
  ipip-tunnel-addr-<node>), records it in the Node, and puts it on tunl0 where the ipip
  module is loaded.

Routes and links go over rtnetlink (common.netlink: struct-built messages, one batch per
pass); the tunnel address on tunl0 is set with pyroute2, in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from calico import keys
from calico.datastore_args import add_datastore_arguments, datastore_from_args
from calico.errors import (
    AccessDenied,
    Compacted,
    DatastoreConfigError,
    DatastoreError,
    LeaseNotFound,
)
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import EventType, KeyValue, KVStore, mutate, open_kv
from common.log import configure_logging, get_logger
from common.netlink.driver import KernelRoutes
from common.netlink.route import RT_TABLE_MAIN, RTPROT_BOOT, OpKind
from common.sdnotify import Notifier, keep_alive
from felix.ipam.allocator import USE_TUNNEL, AssignRequest, IpamError
from felix.ipam.store import IpamStore
from felix.routes import (
    DeviceRoute,
    RouteChange,
    desired_routes,
    observed_routes,
    reconcile,
    route_ops,
)
from felix.status import last_reported_key, status_key, status_value
from felix.tunnel import ipip_pools, keeps, tunnel_attrs, tunnel_handle, with_tunnel_address
from felix.workload import PREFIX, WorkloadEndpoint

log = get_logger("felix")

TUNNEL_DEVICE = "tunl0"


class Kernel:
    """The workload routes of the main table, over rtnetlink (common.netlink): one dump of
    links and routes to read them, one batch (one sendmsg per ~64 KB) to change them."""

    def __init__(self, netns: str | None = None) -> None:
        self.routes = KernelRoutes(RTPROT_BOOT, netns=netns)

    async def open(self) -> None:
        await self.routes.open()

    def close(self) -> None:
        self.routes.close()

    async def read(self) -> tuple[list[DeviceRoute], dict[str, int]]:
        """felix's workload routes, and every interface's index by name."""
        links = await self.routes.links()
        names = dict(links)
        entries = await self.routes.dump(RTPROT_BOOT, RT_TABLE_MAIN)
        routes = observed_routes(((e.protocol, e.route) for e in entries), names)
        return routes, {name: index for index, name in links}

    async def apply(self, changes: Sequence[RouteChange], links: Mapping[str, int]) -> list[str]:
        """Apply the changes in one batch; the errors (one line each, per route), which the
        next pass retries."""
        placed, unplaced = route_ops(changes, links)
        errors = [f"{c}: interface {c.route.ifname} is gone" for c in unplaced]
        failed = await self.routes.apply([op for _, op in placed])
        change_of = {id(op): change for change, op in placed}
        for failure in failed:
            if failure.op.kind is OpKind.DELETE and failure.errno == errno.ESRCH:
                continue  # already gone
            text = failure.message or os.strerror(failure.errno)
            errors.append(f"{change_of[id(failure.op)]}: {text}")
        return errors

    @staticmethod
    def set_tunnel_address(address: str | None) -> bool:
        """Put `address`/32 on tunl0 (and nothing else); False where there is no tunl0."""
        if not os.path.exists(f"/sys/class/net/{TUNNEL_DEVICE}"):
            return False
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname=TUNNEL_DEVICE)
            for a in ipr.get_addr(index=index, family=socket.AF_INET):
                if a.get("address") != address:
                    ipr.addr("del", index=index, address=a.get("address"), prefixlen=a["prefixlen"])
            if address is not None:
                with contextlib.suppress(NetlinkError):
                    ipr.addr("add", index=index, address=address, prefixlen=32)
                ipr.link("set", index=index, state="up")
        return True


class Felix:
    def __init__(
        self,
        node: str,
        kv: KVStore,
        *,
        kernel: Kernel | None = None,
        resync: float = 10.0,
        status_interval: float = 10.0,
        debounce: float = 0.05,
    ) -> None:
        self.node = node
        self.kv = kv
        self.kernel = kernel or Kernel()
        self.resync = resync
        self.status_interval = status_interval
        self.debounce = debounce
        self.endpoints: dict[str, WorkloadEndpoint] = {}
        self.revision = 0
        self.started = time.time()
        self.lease = 0
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()

    # --- endpoints ----------------------------------------------------------------------

    def _put(self, key: str, value: bytes) -> None:
        try:
            wep = WorkloadEndpoint.from_json(value)
        except ValueError as exc:
            log.warning("felix.endpoint_skipped", key=key, error=str(exc))
            self.endpoints.pop(key, None)
            return
        self.endpoints[key] = wep

    async def _list(self) -> None:
        listing = await self.kv.list(PREFIX)
        self.endpoints.clear()
        for item in listing.items:
            self._put(item.key, item.value)
        self.revision = listing.revision

    async def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                async for event in self.kv.watch(PREFIX, self.revision + 1):
                    if event.type is EventType.PUT:
                        self._put(event.key, event.value)
                    else:
                        self.endpoints.pop(event.key, None)
                    self.revision = event.mod_revision
                    self._dirty.set()
                    backoff = 0.5
            except Compacted:
                log.info("felix.watch_compacted", revision=self.revision)
            except DatastoreError as exc:
                log.warning("felix.watch_failed", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            with contextlib.suppress(DatastoreError):
                await self._list()
                self._dirty.set()

    # --- routes -------------------------------------------------------------------------

    async def program(self) -> list[RouteChange]:
        desired = desired_routes(self.endpoints.values(), self.node)
        observed, links = await self.kernel.read()
        changes = reconcile(desired, observed, links)
        if changes:
            errors = await self.kernel.apply(changes, links)
            for change in changes:
                log.info(
                    "felix.route_removed" if change.remove else "felix.route_programmed",
                    prefix=change.route.prefix,
                    ifname=change.route.ifname,
                )
            for error in errors:
                log.warning("felix.route_failed", error=error)
        return changes

    # --- tunnel address -----------------------------------------------------------------

    async def tunnel(self) -> str | None:
        """Hold the tunnel address the IPIP pools call for (or none); the address."""
        ipam = IpamStore(self.kv)
        handle = tunnel_handle(self.node)
        view = await ipam.view(host=self.node, handles=(handle,))
        pools = ipip_pools(view.pools, view.node_labels)
        held = await ipam.addresses_of(handle)
        v4 = [a for a in held if ":" not in a]
        address: str | None = None
        if pools and v4 and keeps(v4[0], pools):
            address = v4[0]
        else:
            if held:
                await ipam.release_by_handle(handle)
                log.info("felix.tunnel_address_released", addresses=held)
            if pools:
                request = AssignRequest(
                    self.node,
                    handle,
                    1,
                    4,
                    USE_TUNNEL,
                    tunnel_attrs(self.node),
                    tuple(p.cidr for p in pools),
                )
                (address,) = await ipam.auto_assign(request)
                log.info("felix.tunnel_address", address=address)
        node_key = keys.resource_key("Node", self.node)
        if await self.kv.get(node_key) is not None:

            def change(current: KeyValue | None) -> bytes | None:
                if current is None:
                    return None
                return with_tunnel_address(current.value, address) or current.value

            await mutate(self.kv, node_key, change)
        await asyncio.to_thread(self.kernel.set_tunnel_address, address)
        return address

    # --- status -------------------------------------------------------------------------

    async def report_status(self, first: bool) -> None:
        ttl = max(2, int(self.status_interval * 3))
        value = status_value(now=time.time(), started=self.started, first_update=first)
        if self.lease:
            try:
                await self.kv.keepalive(self.lease)
            except LeaseNotFound:
                self.lease = 0
        if not self.lease:
            self.lease = await self.kv.grant(ttl)
        await self.kv.put(status_key(self.node), value, lease=self.lease)
        await self.kv.put(last_reported_key(self.node), value)

    async def _status_loop(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                await self.report_status(first)
                first = False
            except DatastoreError as exc:
                log.warning("felix.status_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.status_interval)

    # --- the loop -----------------------------------------------------------------------

    async def _first_list(self) -> bool:
        """List the endpoints, retrying with backoff while the store is unreachable (no
        route is touched before felix knows which endpoints exist). False if stopped."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                await self._list()
                return True
            except (DatastoreConfigError, AccessDenied):
                raise  # no retry mends a setting, a certificate or a password
            except DatastoreError as exc:
                log.warning("felix.datastore_unavailable", error=str(exc), retry_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff)
            backoff = min(backoff * 2, 10.0)
        return False

    async def _pass(self, *, tunnel: bool) -> None:
        """One reconcile; failures are logged and the next pass tries again."""
        try:
            await self.program()
        except (OSError, NetlinkError) as exc:
            log.warning("felix.program_failed", error=str(exc))
        if tunnel:
            try:
                await self.tunnel()
            except (IpamError, DatastoreError, OSError, NetlinkError) as exc:
                log.warning("felix.tunnel_failed", error=str(exc))

    async def run(self) -> None:
        await self.kernel.open()
        try:
            await self._run()
        finally:
            self.kernel.close()

    async def _run(self) -> None:
        if not await self._first_list():
            return
        # The first pass cleans up after endpoints deleted while felix was down.
        await self._pass(tunnel=True)
        log.info("felix.started", node=self.node, endpoints=len(self.endpoints))
        notifier = Notifier()
        notifier.notify("READY=1", f"STATUS={len(self.endpoints)} workload endpoints")
        tasks = [
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._status_loop()),
            asyncio.create_task(keep_alive(notifier)),
        ]
        next_tunnel = time.monotonic() + self.resync
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), self.resync)
                    await asyncio.sleep(self.debounce)  # let a burst of changes land
                self._dirty.clear()
                if self._stop.is_set():
                    break
                tunnel = time.monotonic() >= next_tunnel
                if tunnel:
                    next_tunnel = time.monotonic() + self.resync
                await self._pass(tunnel=tunnel)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.lease:
                with contextlib.suppress(DatastoreError):
                    await self.kv.revoke(self.lease)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()


async def serve(args: argparse.Namespace, datastore: DatastoreConfig) -> None:
    kv = open_kv(datastore)
    felix = Felix(args.node, kv, resync=args.resync, status_interval=args.status_interval)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, felix.stop)
    try:
        await felix.run()
    finally:
        await kv.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="felix", description=__doc__.splitlines()[0])
    parser.add_argument("--node", default=os.environ.get("NODENAME") or socket.gethostname())
    add_datastore_arguments(
        parser,
        help="sqlite:///PATH, https://HOST:PORT[,...] (etcd over TLS) or etcd://HOST:PORT[,...]; "
        "env ETCD_ENDPOINTS",
    )
    parser.add_argument("--resync", type=float, default=10.0, help="seconds between full passes")
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    # pyroute2 logs every netlink message at debug: far too much even for felix's debug.
    logging.getLogger("pyroute2").setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        datastore = datastore_from_args(args, os.environ)
    except DatastoreConfigError as exc:
        print(f"felix: {exc}", file=sys.stderr)
        return 2
    if datastore is None or (datastore.scheme != "sqlite" and datastore.etcd is None):
        print("felix: --datastore must be sqlite:///PATH, https://HOST:PORT or etcd://HOST:PORT "
              "(or set ETCD_ENDPOINTS)", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, datastore))
    except DatastoreError as exc:
        print(f"felix: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
