"""The felix daemon (`felix --node NAME --datastore URL`): this node's workload routes, its
cluster routes and tunnel devices, its policy (nftables), its tunnel addresses, and its
status under a lease. Each pass does policy first, then the routes.

- Lists Calico's v3 resources, then watches them; after each burst of changes (and every
  `resync` seconds, which also catches interfaces that appeared late) the routes to `cali*`
  interfaces are reconciled (routes.py): missing ones added, ones no endpoint explains
  removed — so at start the routes of pods deleted while felix was down go.
- Keeps the policy model (felix/policy: policies, profiles, tiers, every node's endpoints,
  network sets, pools, FelixConfiguration) and table `inet felix` equal to it: one atomic
  `nft -f` transaction per burst of changes (felix/dataplane/nft_driver.py). The table is
  replaced whole at start and whenever `nft monitor` shows someone else changed it.
- Follows the Nodes, IP pools, IPAM blocks and FelixConfigurations and programs what
  Calico's Felix programs for the cluster (dataplane/cluster.py): routes to other nodes'
  blocks through tunl0 (IPIP), vxlan.calico (VXLAN, with its ARP and FDB entries) or
  directly, blackholes for its own blocks, as programClusterRoutes assigns them to felix.
- When an IPIP or VXLAN pool selects the node, holds a tunnel address of that kind
  (handle ipip-tunnel-addr-<node>, vxlan-tunnel-addr-<node>) and records it in the Node;
  the device then carries it.
- Reports each local endpoint's status where Calico's Felix does
  (/calico/felix/v2/no-region/host/<node>/workload/...: {"status": "up"|"down"}).
- Writes /calico/felix/v2/no-region/host/<node>/status under a lease renewed every
  `status_interval`; a clean stop revokes it, a crash lets it expire.

Routes, links and tunnel devices go through rtnetlink (common.netlink: struct-built
messages, dumps to read, one batch per pass to write; felix/dataplane/routes_driver.py);
the policy table through libnftables (or `nft -f`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence

from calico import keys
from calico.datastore_args import add_datastore_arguments, datastore_from_args
from calico.errors import (
    AccessDenied,
    Compacted,
    DatastoreConfigError,
    DatastoreError,
    LeaseNotFound,
)
from calico.snapshot import Snapshot
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import EventType, KeyValue, KVStore, mutate, open_kv
from calico.watch import CalicoSource
from common.log import configure_logging, get_logger
from common.sdnotify import Notifier, keep_alive
from felix.dataplane.nft_driver import NftError, PolicyDataplane, nft_available
from felix.dataplane.routes_driver import ClusterOutcome, Kernel
from felix.ipam.allocator import USE_TUNNEL, AssignRequest, IpamError
from felix.ipam.store import IpamStore
from felix.policy.feed import WATCHED_KINDS, Feed, Outcome
from felix.policy.index import PolicyIndex
from felix.routes import RouteChange, desired_routes, reconcile
from felix.status import (
    endpoint_status_key,
    endpoint_status_prefix,
    endpoint_status_value,
    last_reported_key,
    status_key,
    status_value,
)
from felix.tunnel import KINDS as TUNNEL_KINDS
from felix.tunnel import TunnelKind, keeps, with_tunnel_address
from felix.workload import WorkloadEndpoint

log = get_logger("felix")


class Felix:
    def __init__(
        self,
        node: str,
        kv: KVStore,
        *,
        kernel: Kernel | None = None,
        resync: float = 10.0,
        status_interval: float = 10.0,
        debounce: float = 0.005,
        policy: PolicyDataplane | None = None,
    ) -> None:
        self.node = node
        self.kv = kv
        self.kernel = kernel or Kernel()
        self.resync = resync
        self.status_interval = status_interval
        self.debounce = debounce
        self.endpoints: dict[str, WorkloadEndpoint] = {}
        self.index = PolicyIndex(node)
        self.feed = Feed(self.index)
        self.policy = policy or PolicyDataplane()
        self.policy_enabled = nft_available()
        self.policy_dirty = True
        self.routes_dirty = True
        self.applied_revision = 0
        self.statuses: dict[str, str] = {}  # endpoint status key -> status written
        # Nodes, IP pools, IPAM blocks and FelixConfigurations for the cluster routes, once
        # the source has them (its own watch: IPAM blocks are no v3 resources).
        self.source = CalicoSource(
            kv, blocks=True, kinds=("Node", "IPPool", "FelixConfiguration"), affinities=False
        )
        self.snapshot: Snapshot | None = None
        self.cluster_dirty = True
        self._reported: tuple[str, ...] = ()
        self.revision = 0
        self.started = time.time()
        self.lease = 0
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._known: set[str] = set()

    # --- endpoints ----------------------------------------------------------------------

    def _apply(self, outcome: Outcome, key: str) -> None:
        if outcome.error is not None:
            log.warning("felix.resource_skipped", key=key, error=outcome.error)
        for warning in outcome.warnings:
            log.error("felix.config_unsupported", detail=warning)
        if outcome.policy_changed:
            self.policy_dirty = True
        old = self.endpoints.get(key)
        wep = outcome.endpoint
        if wep is not None:
            self.endpoints[key] = wep
            if old is None or (old.node, old.interface_name, old.ip_networks) != (
                wep.node,
                wep.interface_name,
                wep.ip_networks,
            ):
                self.routes_dirty = True
        elif (outcome.endpoint_removed or outcome.error) and self.endpoints.pop(key, None):
            self.routes_dirty = True

    def _put(self, key: str, value: bytes) -> None:
        self._apply(self.feed.put(key, value), key)

    def _delete(self, key: str) -> None:
        self._apply(self.feed.delete(key), key)

    async def _list(self) -> None:
        listing = await self.kv.list(keys.RESOURCES)
        present = {item.key for item in listing.items}
        for key in [k for k in self._known if k not in present]:
            self._delete(key)
        for item in listing.items:
            self._put(item.key, item.value)
        self._known = present
        self.revision = listing.revision
        self.routes_dirty = self.policy_dirty = True

    async def _watch(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                async for event in self.kv.watch(keys.RESOURCES, self.revision + 1):
                    if event.type is EventType.PUT:
                        self._known.add(event.key)
                        self._put(event.key, event.value)
                    else:
                        self._known.discard(event.key)
                        self._delete(event.key)
                    self.revision = event.mod_revision
                    rk = keys.parse_resource_key(event.key)
                    if rk is not None and rk.kind in WATCHED_KINDS:
                        # Even when nothing changed: the pass logs the revision it reached.
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

    # --- policy -------------------------------------------------------------------------

    def table_changed(self, what: str) -> None:
        """`nft monitor` saw another process change table inet felix."""
        log.warning("felix.table_changed_behind_our_back", change=what)
        self.policy.invalidate()
        self.policy_dirty = True
        self._dirty.set()

    async def program_policy(self) -> None:
        revision = self.revision
        self.policy_dirty = False
        try:
            applied = await self.policy.sync(self.index)
        except NftError as exc:
            self.policy_dirty = True
            log.error("felix.policy_failed", error=str(exc)[:2000])
            return
        self.applied_revision = revision
        if applied:
            log.info(
                "felix.policy_applied",
                revision=revision,
                endpoints=len(self.index.local_endpoints()),
                policies=len(self.index.policies),
                full_syncs=self.policy.full_syncs,
                compile_ms=round(self.policy.compile_seconds * 1000, 1),
                apply_ms=round(self.policy.apply_seconds * 1000, 1),
            )

    async def _monitor(self) -> None:
        while not self._stop.is_set():
            try:
                await self.policy.nft.monitor(self.table_changed)
            except (NftError, OSError) as exc:
                log.warning("felix.nft_monitor_failed", error=str(exc))
                self.table_changed("nft monitor restarted")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    # --- endpoint status ----------------------------------------------------------------

    async def report_endpoints(self) -> None:
        """Write each local endpoint's status where it changed; delete stale ones."""
        states = await self.kernel.link_states()
        programmed = self.policy.applied is not None or not self.policy_enabled
        want: dict[str, str] = {}
        for ep in self.index.local_endpoints():
            key = endpoint_status_key(self.node, ep.orchestrator, ep.workload_id, ep.endpoint_id)
            up = states.get(ep.interface, False) and programmed
            want[key] = "up" if up else "down"
        for key in [k for k in self.statuses if k not in want]:
            await self.kv.delete(key)
            del self.statuses[key]
        for key, status in want.items():
            if self.statuses.get(key) != status:
                await self.kv.put(key, endpoint_status_value(status))
                self.statuses[key] = status

    async def _first_statuses(self) -> None:
        """What an earlier run wrote (so stale endpoints' statuses get deleted)."""
        listing = await self.kv.list(endpoint_status_prefix(self.node))
        for item in listing.items:
            try:
                self.statuses[item.key] = str(json.loads(item.value).get("status"))
            except (ValueError, AttributeError):
                self.statuses[item.key] = ""

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

    # --- tunnel addresses ---------------------------------------------------------------

    async def tunnel(self) -> dict[str, str | None]:
        """Hold the tunnel addresses the IPIP and VXLAN pools call for (or none), each
        recorded in the Node; the address by kind."""
        return {kind.name: await self._tunnel(kind) for kind in TUNNEL_KINDS}

    async def _tunnel(self, kind: TunnelKind) -> str | None:
        ipam = IpamStore(self.kv)
        handle = kind.handle(self.node)
        view = await ipam.view(host=self.node, handles=(handle,))
        pools = kind.pools(view.pools, view.node_labels)
        held = await ipam.addresses_of(handle)
        v4 = [a for a in held if ":" not in a]
        address: str | None = None
        if pools and v4 and keeps(v4[0], pools):
            address = v4[0]
        else:
            if held:
                await ipam.release_by_handle(handle)
                log.info("felix.tunnel_address_released", kind=kind.name, addresses=held)
            if pools:
                request = AssignRequest(
                    self.node,
                    handle,
                    1,
                    4,
                    USE_TUNNEL,
                    kind.attrs(self.node),
                    tuple(p.cidr for p in pools),
                )
                (address,) = await ipam.auto_assign(request)
                log.info("felix.tunnel_address", kind=kind.name, address=address)
        node_key = keys.resource_key("Node", self.node)
        if await self.kv.get(node_key) is not None:

            def change(current: KeyValue | None) -> bytes | None:
                if current is None:
                    return None
                return with_tunnel_address(current.value, address, kind) or current.value

            await mutate(self.kv, node_key, change)
        return address

    # --- cluster routes, tunnel devices, VTEPs ------------------------------------------

    async def _follow(self, source: CalicoSource) -> None:
        """Keep `snapshot` current (the source resyncs and backs off by itself)."""
        async for snapshot in source.updates():
            self.snapshot = snapshot
            self.cluster_dirty = True
            self._dirty.set()

    async def program_cluster(self) -> ClusterOutcome | None:
        """What Calico's Felix programs for the cluster, once the datastore has been read
        (nothing is removed before that)."""
        if self.snapshot is None:
            return None
        out = await self.kernel.program_cluster(self.snapshot, self.node)
        for what in out.done:
            log.info("felix.cluster_programmed", change=what)
        # The same trouble every pass is said once, until it changes.
        trouble = tuple(out.errors + out.waiting)
        if trouble != self._reported:
            self._reported = trouble
            for error in out.errors:
                log.warning("felix.cluster_refused", error=error)
            for note in out.waiting:
                log.warning("felix.cluster_incomplete", reason=note)
        return out

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

    async def _pass(self, *, tunnel: bool, full: bool = False) -> None:
        """One reconcile; failures are logged and the next pass tries again. Policy goes
        first: a label change should not wait behind a route dump. The cluster's routes
        and devices come last, after the tunnel addresses they carry."""
        revision = self.revision
        if self.policy_enabled and (self.policy_dirty or full):
            await self.program_policy()
        if self.routes_dirty or full:
            self.routes_dirty = False
            try:
                await self.program()
            except OSError as exc:
                self.routes_dirty = True
                log.warning("felix.program_failed", error=str(exc))
        try:
            await self.report_endpoints()
        except (DatastoreError, OSError) as exc:
            log.warning("felix.endpoint_status_failed", error=str(exc))
        if not self.policy_dirty and not self.routes_dirty:
            # Everything the datastore held at `revision` is in the kernel (tests wait on this).
            log.debug("felix.synced", revision=revision)
        if tunnel:
            try:
                await self.tunnel()
            except (IpamError, DatastoreError) as exc:
                log.warning("felix.tunnel_failed", error=str(exc))
        if self.cluster_dirty or full:
            self.cluster_dirty = False
            try:
                out = await self.program_cluster()
            except OSError as exc:
                self.cluster_dirty = True
                log.warning("felix.cluster_failed", error=str(exc))
            else:
                # What the kernel refused or had to wait for is tried again next pass.
                self.cluster_dirty = out is not None and bool(out.errors or out.waiting)

    async def run(self) -> None:
        await self.kernel.open()
        try:
            await self._run()
        finally:
            self.kernel.close()

    async def _run(self) -> None:
        if not await self._first_list():
            return
        if not self.policy_enabled:
            log.error(
                "felix.nft_missing",
                detail="nft not found: policy and natOutgoing are NOT enforced on this node",
            )
        with contextlib.suppress(DatastoreError):
            await self._first_statuses()
        # Follow nft's changes before the first sync, so nothing in between is missed.
        monitor = asyncio.create_task(self._monitor()) if self.policy_enabled else None
        # The first pass cleans up after endpoints deleted while felix was down.
        await self._pass(tunnel=True, full=True)
        log.info("felix.started", node=self.node, endpoints=len(self.endpoints))
        notifier = Notifier()
        notifier.notify("READY=1", f"STATUS={len(self.endpoints)} workload endpoints")
        tasks = [
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._follow(self.source)),
            asyncio.create_task(self._status_loop()),
            asyncio.create_task(keep_alive(notifier)),
        ]
        if monitor is not None:
            tasks.append(monitor)
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
                await self._pass(tunnel=tunnel, full=tunnel)
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
