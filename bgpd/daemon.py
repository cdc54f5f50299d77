"""The bgpd process: the asyncio shell that joins the pure rooms.

Flow per event-loop tick (DESIGN.md "Shape"): session drivers deliver events into one queue;
a slice of it (a few milliseconds' worth, big UPDATEs cut into pieces) goes into the RIB, whose
`BestChange`s are staged into the Adj-RIB-Out update groups and the FIB state. One flush per
tick then writes each group's joined UPDATE bytes to all of its members and sends the tick's
kernel route ops as one netlink batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from bgpd import __version__
from bgpd.control.api import DaemonStatus, Explanation, ExportedRoute, PeerStatus, RouteEntry
from bgpd.control.explain import (
    PeerState,
    as_path_text,
    community_texts,
    explain,
    exported_routes,
    large_community_texts,
    origin_text,
    source_name,
)
from bgpd.control.ops import ProtocolDetail
from bgpd.control.server import ControlServer
from bgpd.kernel.driver import KernelSync, route_key
from bgpd.kernel.learn import LearnChange
from bgpd.kernel.programming import Programming
from bgpd.lag import INTERVAL as LAG_INTERVAL
from bgpd.lag import LagMeter
from bgpd.metrics.collector import DaemonCollector, MetricsSnapshot
from bgpd.metrics.driver import MetricsServer, parse_listen
from bgpd.metrics.histogram import Histogram
from bgpd.plan.diff import PeerAdded, PeerChange, PeerChanged, PeerRemoved, diff
from bgpd.plan.errors import PlanError
from bgpd.plan.peering import PeeringPlan, PeerSpec, compute
from bgpd.policy.calico import ExportPolicy
from bgpd.policy.policy import Policy
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.session.driver import MAX_BUFFERED, Listener, PeerDriver
from bgpd.session.errors import ADMIN_SHUTDOWN, CEASE_ADMIN_RESET, LocalSessionError
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.limits import PrefixLimit, PrefixVerdict
from bgpd.session.session import count_messages
from bgpd.session.settings import PeerSettings
from bgpd.status.reporter import StatusReporter, reporter_for
from bgpd.wire.attributes import ORIGIN_IGP, ORIGIN_INCOMPLETE, PathAttributes
from bgpd.wire.errors import CEASE
from bgpd.wire.family import Family, bytes_to_address, nlri_to_prefix, prefix_to_nlri
from bgpd.wire.messages import Notification, Update, split_update
from bgpd.wire.options import CodecOptions
from calico.errors import DatastoreError
from calico.file import load_file
from calico.snapshot import Snapshot
from calico.source import SnapshotSource, file_path, open_source
from common.log import get_logger
from common.sdnotify import Notifier, session_summary

log = get_logger("bgpd.daemon")

_RFC_STATE_NAMES = {
    "IDLE": "Idle",
    "CONNECT": "Connect",
    "ACTIVE": "Active",
    "OPEN_SENT": "OpenSent",
    "OPEN_CONFIRM": "OpenConfirm",
    "ESTABLISHED": "Established",
}
_FAMILY_OF_SPEC = {"ipv4": Family.IPV4_UNICAST, "ipv6": Family.IPV6_UNICAST}
_FAMILY_LABEL = {family: label for label, family in _FAMILY_OF_SPEC.items()}
INBOUND_SLICE = 0.002
INBOUND_SLICE_MAX = 0.05
"""Seconds of route work between yields to the event loop (DESIGN principle 5): INBOUND_SLICE,
or as much CPU time as the loop has lately spent on everything else between two slices if
that is more, up to INBOUND_SLICE_MAX. Route work thus gets about half of a loop that stays
busy: with thousands of sessions a loop iteration's socket writes alone can take 100 ms, and
a fixed slice per iteration would starve the queue (and every write-out would then carry
less). "Lately" is a moving average (1/INBOUND_SHARE_SMOOTHING of each new gap), so one long
callback does not lengthen the next slice and the lag a timer sees with it."""
INBOUND_SHARE_SMOOTHING = 8
INBOUND_PIECE = 16
"""NLRI items applied at a time: a big UPDATE is applied in pieces of this size."""
FLUSH_GAP_PER_SEND = 20e-6
FLUSH_GAP_MAX = 0.25
"""After a write-out of route changes that made N sends (update-group bytes to a member), the
next waits N x FLUSH_GAP_PER_SEND seconds (at most FLUSH_GAP_MAX), changes meanwhile joining
it: a handful of peers hear of a change at once, while a reflector with thousands of clients
spends at most about a third of its time in send calls (FRR scales its update-group coalesce
time with the peer count for the same reason)."""
INBOUND_HIGH, INBOUND_LOW = 50_000, 10_000
"""Queued NLRI items above which peers that add more stop being read, and below which they
are read again."""
_cpu = time.thread_time
"""The loop thread's CPU clock: time taken from the loop while this process was not even
running (a busy machine) is not time other callbacks used."""
# Seconds between STATUS= refreshes for systemd (a watchdog may ask for more often).
SERVICE_TICK = 1.0


async def _behind_due_work(loop: asyncio.AbstractEventLoop) -> None:
    """Yield to the loop and continue only after the I/O that is ready and the timers that
    are due. `asyncio.sleep(0)` would queue the caller first for the next iteration, ahead
    of them, so a timer falling due during one slice of route work would also wait out the
    next slice; as a timer itself, the continuation runs after every earlier-due one."""
    woken = loop.create_future()
    loop.call_at(loop.time(), _wake, woken)
    await woken


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled at shutdown
        future.set_result(None)


class ConfigError(Exception):
    """The daemon cannot start with the configuration it was given."""


@dataclass(slots=True)
class DaemonOptions:
    node: str
    datastore: str
    control_socket: str
    listen_address: str | None = None
    listen_port: int | None = None
    fib: bool = True
    secrets_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Per-peer limits (issue 9): accepted prefixes (None: unlimited), the Idle time after a
    # Cease 1, and the bytes queued for a peer that does not read before it is reset.
    max_prefixes: int | None = None
    max_prefixes_restart: float = 60.0
    max_send_buffer: int = MAX_BUFFERED
    # Prometheus endpoint, "ADDR:PORT" (None: off).
    metrics_listen: str | None = None


@dataclass(slots=True)
class _Peer:
    """One configured session and what the daemon knows of it."""

    spec: PeerSpec
    settings: PeerSettings
    driver: PeerDriver
    options: CodecOptions | None = None
    families: frozenset[Family] = frozenset()
    stale_timer: asyncio.TimerHandle | None = None
    dump_task: asyncio.Task[None] | None = None
    prefix_limit: PrefixLimit | None = None


def _update_of(item: UpdateReceived | Update) -> Update:
    return item.update if isinstance(item, UpdateReceived) else item


def datastore_path(url: str) -> str:
    """The file of a `file:///PATH.yaml` datastore URL."""
    path = file_path(url)
    if path is None:
        raise ConfigError(f"not a file datastore URL {url!r}: use file:///PATH.yaml")
    return path


def load_plan(options: DaemonOptions) -> PeeringPlan:
    """The plan from a file datastore, read synchronously (`bgpd --check`)."""
    return plan_of(load_file(datastore_path(options.datastore)), options)


def plan_of(snapshot: Snapshot, options: DaemonOptions) -> PeeringPlan:
    """The node's plan from a snapshot, checked as the daemon would start it: every
    session's settings and password resolve. Raises ConfigError / PlanError."""
    plan = compute(snapshot, options.node, options.env)
    if plan.node_ipv4 is None and plan.node_ipv6 is None:
        raise ConfigError(
            f"{options.datastore}: Node {options.node!r}: spec.bgp: no ipv4Address or "
            "ipv6Address for this node"
        )
    for spec in plan.sessions:
        # Every session is checked before anything starts: no half-configured daemon.
        password = resolve_password(spec, options.secrets_dir)
        try:
            peer_settings(spec, _router_id_int(plan.router_id), password)
        except ValueError as exc:
            raise ConfigError(f"{options.datastore}: session {spec.name}: {exc}") from None
    return plan


def resolve_password(spec: PeerSpec, secrets_dir: str | None) -> str | None:
    """The TCP MD5 password of a session: its `secretKeyRef` read as the file NAME/KEY under
    `secrets_dir` (the layout of a mounted Kubernetes secret)."""
    ref = spec.password
    if ref is None:
        return None
    if secrets_dir is None:
        raise ConfigError(
            f"session {spec.name}: password secretKeyRef {ref.name}/{ref.key} needs "
            "--secrets-dir"
        )
    path = os.path.join(secrets_dir, ref.name, ref.key)
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\n")
    except OSError as exc:
        raise ConfigError(
            f"session {spec.name}: password secret {ref.name}/{ref.key}: {exc.strerror}: {path}"
        ) from None
    if not value:
        raise ConfigError(f"session {spec.name}: password secret {path} is empty")
    return value


def _router_id_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def peer_settings(spec: PeerSpec, router_id: int, password: str | None) -> PeerSettings:
    family = _FAMILY_OF_SPEC[spec.family]
    return PeerSettings(
        name=spec.name,
        peer_address=spec.peer_address,
        peer_port=spec.peer_port,
        peer_as=spec.peer_as,
        local_as=spec.local_as,
        router_id=router_id,
        local_address=spec.source_address,
        passive=spec.passive,
        hold_time=spec.hold_time,
        keepalive_time=spec.keepalive_time,
        connect_retry_time=float(spec.connect_retry_time),
        ttl_security=spec.multihop if spec.ttl_security else None,
        multihop=None if spec.ttl_security else spec.multihop,
        families=frozenset({family}),
        graceful_restart_time=spec.max_restart_time,
        password=password,
    )


class Daemon:
    """Owns the RIB, the Adj-RIB-Out, the FIB state, the peers and the control socket."""

    def __init__(
        self, options: DaemonOptions, plan: PeeringPlan, source: SnapshotSource | None = None
    ) -> None:
        self.options = options
        self.plan = plan
        self.source = source
        # Routes of sessions a plan change removed, kept (stale) until their restart time
        # so a session replaced by another (mesh -> reflector) loses no route meanwhile.
        self._retired: dict[str, asyncio.TimerHandle] = {}
        self._reconfig: asyncio.Lock | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._reload_tasks: set[asyncio.Task[None]] = set()
        # This node's BGP status, written to a sqlite/etcd datastore under a lease.
        self._status_reporter: StatusReporter | None = None
        self.router_id = _router_id_int(plan.router_id)
        cluster = _router_id_int(plan.rr_cluster_id) if plan.rr_cluster_id else None
        self.kernel: KernelSync | None = None
        self.export_policy = ExportPolicy(plan.blocks, plan.pools)
        self.policy = Policy(self.export_policy, self._ifname_of)
        self.rib = Rib(plan.local_as, self.router_id, cluster, imports=self.policy)
        self.adj_out = AdjRibOut(self.rib.cluster_id, self.policy)
        # RFC 4724 restarting speaker: set while routes adopted from the FIB wait for the
        # peers' End-of-RIB; holds the sessions (and families) still to send one.
        self._gr_restarting = False
        self._gr_waiting: dict[str, set[Family]] = {}
        self._gr_timer: asyncio.TimerHandle | None = None
        self.peers: dict[str, _Peer] = {}
        self._by_address: dict[str, _Peer] = {}
        self.listeners: list[Listener] = []
        self.control: ControlServer | None = None
        self.started = time.time()
        # Write-outs are spaced by the fan-out of the last one (FLUSH_GAP_PER_SEND).
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        self._flush_gap = 0.0
        # Session events waiting for route work, in arrival order (_drain_inbound).
        self._inbound: deque[tuple[_Peer, SessionEvent | Update]] = deque()
        self._inbound_items = 0
        self._inbound_task: asyncio.Task[None] | None = None
        self._paused: set[str] = set()
        self._stopping = asyncio.Event()
        self.loop_lag = LagMeter()
        self._lag_timer: asyncio.TimerHandle | None = None
        # systemd Type=notify (no-op outside systemd): READY/STATUS/WATCHDOG, see _service_*.
        self.notifier = Notifier()
        # Metrics read on scrape (bgpd/metrics); these two are observed as things happen.
        self.fib_batches = Histogram()
        self.lag_histogram = Histogram()
        self.metrics: MetricsServer | None = None
        self._service_timer: asyncio.TimerHandle | None = None
        self._service_status = ""

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._lag_timer = loop.call_later(LAG_INTERVAL, self._probe_lag, loop.time() + LAG_INTERVAL)
        if self.options.fib:
            self.kernel = KernelSync(programming=Programming(self.plan.kernel))
            self.kernel.learner.set_pools(p.cidr for p in self.plan.pools)
            self.kernel.on_learned = self._on_learned
            self.kernel.on_batch = self.fib_batches.observe
            # Routes of ours still in the FIB mean bgpd restarted: keep them forwarding.
            self._gr_restarting = await self.kernel.start(adopt=True) > 0
            self.kernel.set_blackholes(self.plan.blackholes)
        for spec in self.plan.sessions:
            self._add_peer(spec)
        self._gr_start()
        port = self.options.listen_port or self.plan.listen_port
        if self.options.listen_address:
            hosts: tuple[str, ...] = (self.options.listen_address,)
        else:
            # bindMode NodeIP listens on the node's addresses only; otherwise on all.
            hosts = self.plan.listen_addresses or ("::",)
        for host in hosts:
            try:
                listener = await Listener.start(host, port, self._lookup)
            except OSError:
                if host != "::":
                    raise
                # No IPv6 on this host: all IPv4 addresses instead.
                listener = await Listener.start("0.0.0.0", port, self._lookup)
            self.listeners.append(listener)
            for peer in self.peers.values():
                if peer.settings.password:
                    listener.set_md5(peer.settings.peer_address, peer.settings.password)
        self._originate()
        self.control = ControlServer(self.options.control_socket, self)
        await self.control.start()
        if self.options.metrics_listen:
            host, metrics_port = parse_listen(self.options.metrics_listen)
            self.metrics = MetricsServer(host, metrics_port, DaemonCollector(self.metrics_snapshot))
            await self.metrics.start()
        for peer in self.peers.values():
            peer.driver.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        self._reconfig = asyncio.Lock()
        if self.source is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self.request_reload)
            self._watch_task = loop.create_task(self._watch(self.source))
        self._status_reporter = reporter_for(self.options.datastore, self.plan.node, self.status)
        if self._status_reporter is not None:
            self._status_reporter.start()
        log.info(
            "bgpd started",
            node=self.plan.node,
            router_id=self.plan.router_id,
            asn=self.plan.local_as,
            listen=[f"{h}:{port}" for h in hosts],
            peers=len(self.peers),
            version=__version__,
        )
        for note in self.plan.notes:
            log.warning("plan note", note=note)
        self._service_start()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Close sessions (without a Cease where graceful restart is on); our FIB routes stay
        and the next start adopts them (RFC 4724 restarting speaker)."""
        log.info("bgpd stopping")
        self.notifier.notify("STOPPING=1")
        if self._service_timer is not None:
            self._service_timer.cancel()
        if self._lag_timer is not None:
            self._lag_timer.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for task in (self._watch_task, self._inbound_task, *self._reload_tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._status_reporter is not None:
            await self._status_reporter.stop()
        if self.source is not None:
            await self.source.close()
        for timer in self._retired.values():
            timer.cancel()
        if self.control is not None:
            await self.control.close()
        if self.metrics is not None:
            await self.metrics.close()
        # RFC 4724: a session that ends without a NOTIFICATION lets a graceful-restart peer
        # keep our routes (and forwarding) while we restart; a Cease would flush them.
        await asyncio.gather(
            *(
                p.driver.stop(None if p.settings.graceful_restart_time else ADMIN_SHUTDOWN)
                for p in self.peers.values()
            ),
            return_exceptions=True,
        )
        for listener in self.listeners:
            await listener.close()
        if self._gr_timer is not None:
            self._gr_timer.cancel()
        for peer in self.peers.values():
            if peer.stale_timer is not None:
                peer.stale_timer.cancel()
            if peer.dump_task is not None:
                peer.dump_task.cancel()
        if self.kernel is not None:
            await self.kernel.close()

    def _probe_lag(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.lag_histogram.observe(max(0.0, now - due))
        summary = self.loop_lag.record(now - due, now)
        if summary is not None:
            log.info("event loop lag", p50_ms=summary.p50_ms, p99_ms=summary.p99_ms,
                     max_ms=summary.max_ms, samples=summary.samples)
        self._lag_timer = loop.call_at(now + LAG_INTERVAL, self._probe_lag, now + LAG_INTERVAL)

    # --- service manager (systemd Type=notify) -------------------------------------------

    def sessions_established(self) -> tuple[int, int]:
        up = sum(1 for p in self.peers.values() if p.driver.state.name == "ESTABLISHED")
        return up, len(self.peers)

    def _service_start(self) -> None:
        """READY=1 once the configuration is loaded and the listeners are up; then a tick that
        keeps STATUS= current and, under WatchdogSec=, pings at half the interval: a wedged
        loop stops pinging and systemd restarts the daemon."""
        if not self.notifier.enabled:
            return
        self._service_status = session_summary(*self.sessions_established())
        self.notifier.notify("READY=1", f"STATUS={self._service_status}", f"MAINPID={os.getpid()}")
        self._service_tick()

    def _service_tick(self) -> None:
        lines = ["WATCHDOG=1"] if self.notifier.watchdog else []
        status = session_summary(*self.sessions_established())
        if status != self._service_status:
            self._service_status = status
            lines.append(f"STATUS={status}")
        self.notifier.notify(*lines)
        interval = SERVICE_TICK
        if self.notifier.watchdog:
            interval = min(interval, self.notifier.watchdog / 2)
        self._service_timer = asyncio.get_running_loop().call_later(interval, self._service_tick)

    def _add_peer(self, spec: PeerSpec) -> None:
        password = resolve_password(spec, self.options.secrets_dir)
        settings = peer_settings(spec, self.router_id, password)
        if self._gr_restarting and settings.graceful_restart_time is not None:
            settings = replace(settings, graceful_restart_restarting=True)
        if self.options.max_prefixes is not None:
            settings = replace(
                settings,
                max_prefixes=self.options.max_prefixes,
                max_prefixes_restart=self.options.max_prefixes_restart,
            )
        driver = PeerDriver(settings, self._on_event, max_buffered=self.options.max_send_buffer)
        limit = PrefixLimit(settings.max_prefixes) if settings.max_prefixes else None
        peer = _Peer(spec, settings, driver, prefix_limit=limit)
        self.peers[spec.name] = peer
        self._by_address[str(ipaddress.ip_address(spec.peer_address))] = peer

    # --- live reconfiguration -----------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: read the datastore again and apply what changed."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    async def reload(self) -> None:
        if self.source is None:
            return
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            snapshot = await self.source.load()
        except DatastoreError as exc:
            log.error("reload failed; keeping the current plan", error=str(exc))
        else:
            await self.apply_snapshot(snapshot)
        finally:
            self.notifier.notify("READY=1")

    async def _watch(self, source: SnapshotSource) -> None:
        try:
            async for snapshot in source.updates():
                await self.apply_snapshot(snapshot)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("datastore watch failed; changes are no longer followed")

    async def apply_snapshot(self, snapshot: Snapshot) -> None:
        """A new datastore state: plan it and apply the difference, or, when it cannot be
        planned, log why and keep running the current plan (DESIGN principle 7)."""
        try:
            plan = plan_of(snapshot, self.options)
        except (ConfigError, PlanError, DatastoreError) as exc:
            log.error("new configuration refused; keeping the current plan", error=str(exc))
            return
        await self.apply_plan(plan)

    async def apply_plan(self, new: PeeringPlan) -> None:
        """Move to `new`: start added sessions, stop removed ones, restart changed ones, and
        leave every other session (and its routes) alone. A new router ID or AS restarts all
        sessions, since every OPEN carries them."""
        if self._reconfig is None:
            self._reconfig = asyncio.Lock()
        async with self._reconfig:
            old = self.plan
            identity = (old.router_id, old.local_as) != (new.router_id, new.local_as)
            changes: list[PeerChange]
            if identity:
                changes = [PeerRemoved(s) for s in old.sessions]
                changes += [PeerAdded(s) for s in new.sessions]
            else:
                changes = diff(old, new)
            if old == new:
                return
            if changes:
                log.info(
                    "applying configuration change", node=new.node,
                    added=[c.name for c in changes if isinstance(c, PeerAdded)],
                    removed=[c.name for c in changes if isinstance(c, PeerRemoved)],
                    changed=[c.name for c in changes if isinstance(c, PeerChanged)],
                )
            if new.listen_port != old.listen_port or new.listen_addresses != old.listen_addresses:
                log.warning("listen port or addresses changed: takes effect at the next start")
            # A restarted session's routes stay (stale) until it sends them again. So do those
            # of a Calico node's session removed while others are added (the mesh giving way
            # to reflectors): until the new sessions carry them. An external peer's go now.
            replacing = not identity and any(isinstance(c, PeerAdded) for c in changes)
            # Closing waits for each connection to flush its last message: all at once.
            await asyncio.gather(
                *(
                    self._remove_peer(
                        change.name,
                        keep_routes=isinstance(change, PeerChanged)
                        or (replacing and change.spec.calico_node),
                    )
                    for change in changes
                    if isinstance(change, (PeerRemoved, PeerChanged))
                )
            )
            if identity:
                self.router_id = _router_id_int(new.router_id)
            if identity or new.rr_cluster_id != old.rr_cluster_id:
                cluster = _router_id_int(new.rr_cluster_id) if new.rr_cluster_id else None
                self.rib.set_identity(new.local_as, self.router_id, cluster)
                self.adj_out.set_cluster_id(self.rib.cluster_id)
            # Export policy, originated blocks, blackholes, kernel programming.
            self.apply_routing_plan(new)
            for spec in new.sessions:
                peer = self.peers.get(spec.name)
                if peer is not None and peer.spec is not spec:
                    peer.spec = spec  # same session (plan.diff.same_session), new bookkeeping
            for change in changes:
                if isinstance(change, PeerAdded):
                    self._start_peer(change.spec)
                elif isinstance(change, PeerChanged):
                    self._start_peer(change.new)

    def _start_peer(self, spec: PeerSpec) -> None:
        self._add_peer(spec)
        peer = self.peers[spec.name]
        for listener in self.listeners:
            if peer.settings.password:
                listener.set_md5(peer.settings.peer_address, peer.settings.password)
        peer.driver.start()

    async def _remove_peer(self, name: str, *, keep_routes: bool) -> None:
        peer = self.peers.pop(name)
        address = str(ipaddress.ip_address(peer.spec.peer_address))
        if self._by_address.get(address) is peer:
            del self._by_address[address]
            if peer.settings.password:
                for listener in self.listeners:
                    listener.set_md5(peer.settings.peer_address, None)
        if peer.dump_task is not None:
            peer.dump_task.cancel()
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
        self.adj_out.leave(name)
        # A Calico node is usually reconfigured by the same change: closing without a
        # NOTIFICATION lets its graceful-restart helper keep our routes until its own plan
        # catches up (RFC 4724), so switching the mesh to reflectors drops no route.
        if peer.spec.calico_node:
            await peer.driver.stop(None)
        else:
            await peer.driver.stop()
        if not self.rib.has_peer(name):
            return
        if keep_routes:
            kept = self.rib.mark_stale(name)
            old_timer = self._retired.pop(name, None)
            if old_timer is not None:
                old_timer.cancel()
            self._retired[name] = asyncio.get_running_loop().call_later(
                peer.spec.max_restart_time, self._retire_expired, name
            )
            log.info(
                "session stopped; its routes stay until the new sessions have them",
                peer=name, routes=kept, for_seconds=peer.spec.max_restart_time,
            )
        else:
            self._changed(self.rib.remove_peer(name))
            log.info("session removed and its routes withdrawn", peer=name)

    def _retire_expired(self, name: str) -> None:
        self._retired.pop(name, None)
        if not self.rib.has_peer(name):
            return
        peer = self.peers.get(name)
        if peer is not None and peer.driver.state.name == "ESTABLISHED":
            self._changed(self.rib.sweep_stale(name))
        else:
            self._changed(self.rib.remove_peer(name))

    def _lookup(self, address: str) -> PeerDriver | None:
        peer = self._by_address.get(address)
        return peer.driver if peer is not None else None

    def _originate(self) -> None:
        changes: list[BestChange] = []
        for org in self.plan.originate:
            family, nlri = prefix_to_nlri(org.prefix)
            attrs = PathAttributes(origin=ORIGIN_IGP)
            changes.extend(self.rib.originate(family, nlri, attrs))
        self._changed(changes)

    # --- session events -----------------------------------------------------------------

    def _on_event(self, event: SessionEvent) -> None:
        peer = self.peers.get(getattr(event, "peer", ""))
        if peer is None:
            return
        if isinstance(event, StateChanged):
            log.info(
                "session state", peer=peer.spec.name, address=peer.spec.peer_address,
                old=event.old.name, new=event.new.name,
            )
            return
        # Route work waits its turn, in arrival order, and runs in slices (principle 5).
        self._inbound.append((peer, event))
        if isinstance(event, UpdateReceived):
            self._inbound_items += event.update.size
            if self._inbound_items > INBOUND_HIGH and peer.spec.name not in self._paused:
                self._paused.add(peer.spec.name)
                peer.driver.set_reading(False)
        if self._inbound_task is None:
            self._inbound_task = asyncio.get_running_loop().create_task(self._drain_inbound())

    async def _drain_inbound(self) -> None:
        """Work through queued session events, yielding to the loop every INBOUND_SLICE
        seconds; a big UPDATE is cut into pieces first, so keepalives, timers and the
        control socket are served on time during any burst."""
        loop = asyncio.get_running_loop()
        queue = self._inbound
        slice_ended = _cpu()
        elsewhere = 0.0
        try:
            while queue:
                elsewhere += (_cpu() - slice_ended - elsewhere) / INBOUND_SHARE_SMOOTHING
                deadline = loop.time() + min(INBOUND_SLICE_MAX, max(INBOUND_SLICE, elsewhere))
                while True:  # at least one item per slice
                    peer, item = queue.popleft()
                    if self.peers.get(peer.spec.name) is not peer:
                        # Removed by reconfiguration meanwhile: drop what it sent.
                        if isinstance(item, UpdateReceived | Update):
                            self._inbound_items -= _update_of(item).size
                    elif isinstance(item, UpdateReceived):
                        pieces = self._pieces(peer, item.update)
                        queue.extendleft((peer, p) for p in reversed(pieces))
                    elif isinstance(item, Update):
                        self._inbound_items -= item.size
                        self._on_update(peer, item)
                    else:
                        self._on_session_event(peer, item)
                    if not queue or loop.time() >= deadline:
                        break
                self._schedule_flush()  # a callback of its own, between slices
                if self._paused and self._inbound_items < INBOUND_LOW:
                    for name in self._paused:
                        if (paused := self.peers.get(name)) is not None:
                            paused.driver.set_reading(True)
                    self._paused.clear()
                slice_ended = _cpu()
                await _behind_due_work(loop)
        finally:
            self._inbound_task = None

    def _on_session_event(self, peer: _Peer, event: SessionEvent) -> None:
        try:
            if isinstance(event, SessionEstablished):
                self._on_established(peer, event)
            elif isinstance(event, SessionDown):
                self._on_down(peer, event)
            elif isinstance(event, RouteRefreshReceived):
                self._resend(peer, event.family)
        except Exception:
            # One peer's event must never take the daemon down (DESIGN principle 7).
            log.exception("error handling session event", peer=peer.spec.name)

    def _local_address(self, peer: _Peer, family: Family) -> bytes | None:
        text = peer.spec.source_address
        if text is None or ipaddress.ip_address(text).version != (4 if family.afi == 1 else 6):
            text = self.plan.node_ipv4 if family is Family.IPV4_UNICAST else self.plan.node_ipv6
        return ipaddress.ip_address(text).packed if text else None

    def _on_established(self, peer: _Peer, event: SessionEstablished) -> None:
        spec = peer.spec
        neg = event.negotiated
        info = PeerInfo(
            name=spec.name,
            address=ipaddress.ip_address(spec.peer_address).packed,
            asn=neg.peer_as,
            router_id=neg.peer_id,
            local_as=spec.local_as,
            rr_client=spec.rr_client,
        )
        if peer.stale_timer is not None:
            # The restarting peer is back: its stale routes wait for End-of-RIB.
            peer.stale_timer.cancel()
            peer.stale_timer = None
        self.rib.add_peer(info)
        families = frozenset(f for f in neg.families if self._local_address(peer, f))
        peer.options = event.options
        peer.families = neg.families
        key = GroupKey.for_peer(
            info,
            options=event.options,
            families=families,
            local_ipv4=self._local_address(peer, Family.IPV4_UNICAST)
            if Family.IPV4_UNICAST in families
            else None,
            local_ipv6=self._local_address(peer, Family.IPV6_UNICAST)
            if Family.IPV6_UNICAST in families
            else None,
            next_hop_self=spec.next_hop_self,
        )
        if self._gr_restarting and peer.spec.name in self._gr_waiting:
            self._gr_waiting[peer.spec.name] = set(neg.families)
            if not neg.families:
                self._gr_end_of_rib(peer.spec.name, None)
        # Stage what is pending first so the new member's dump and later flushes agree.
        self._flush()
        group = self.adj_out.join(info, key, self.rib.iter_best)
        log.info(
            "session established", peer=spec.name, address=spec.peer_address,
            peer_as=neg.peer_as, families=sorted(str(f) for f in neg.families),
            hold_time=neg.hold_time,
        )
        peer.dump_task = asyncio.get_running_loop().create_task(
            self._dump(peer, group.initial_dump(spec.name))
        )

    async def _dump(self, peer: _Peer, chunks: Iterator[bytes]) -> None:
        # Principle 5: a full-table dump yields to the loop between slices.
        for chunk in chunks:
            try:
                peer.driver.send(chunk)
            except LocalSessionError:
                return  # the session ended; its SessionDown is on its way through the queue
            await asyncio.sleep(0)
            await peer.driver.drained()

    def _pieces(self, peer: _Peer, update: Update) -> list[Update]:
        if update.error is not None:
            log.warning(
                "malformed UPDATE handled per RFC 7606", peer=peer.spec.name,
                error=str(update.error), action=update.error.handling.name,
            )
        return list(split_update(update, INBOUND_PIECE))

    def _on_update(self, peer: _Peer, update: Update) -> None:
        try:
            eor = update.end_of_rib
            if eor is not None:
                self._changed(self.rib.sweep_stale(peer.spec.name, eor))
                self._gr_end_of_rib(peer.spec.name, eor)
                return
            assert peer.options is not None
            self._changed(self.rib.apply_update(peer.spec.name, update, peer.options))
            if peer.prefix_limit is not None:
                self._enforce_prefix_limit(peer, peer.prefix_limit)
        except Exception:
            log.exception("error handling UPDATE", peer=peer.spec.name)

    def _enforce_prefix_limit(self, peer: _Peer, limit: PrefixLimit) -> None:
        count = self.rib.counts(peer.spec.name).accepted
        verdict = limit.check(count)
        if verdict is None:
            return
        log.warning(
            "maximum prefixes", peer=peer.spec.name, prefixes=count, maximum=limit.maximum,
            action=verdict.value,
        )
        if verdict is PrefixVerdict.TEAR_DOWN:
            note = limit.notification(_FAMILY_OF_SPEC[peer.spec.family])
            peer.driver.close_for(note, peer.settings.max_prefixes_restart)

    def _on_down(self, peer: _Peer, event: SessionDown) -> None:
        name = peer.spec.name
        if peer.prefix_limit is not None:
            peer.prefix_limit.reset()
        log.info(
            "session down", peer=name, address=peer.spec.peer_address, reason=event.reason,
        )
        if peer.dump_task is not None:
            peer.dump_task.cancel()
            peer.dump_task = None
        self.adj_out.leave(name)
        if not self.rib.has_peer(name):
            return
        if event.restart_time:
            # RFC 4724 helper: keep its routes, stale, until End-of-RIB or the restart time.
            kept = self.rib.mark_stale(name)
            log.info("keeping stale routes for restart", peer=name, routes=kept,
                     restart_time=event.restart_time)
            loop = asyncio.get_running_loop()
            if peer.stale_timer is not None:
                peer.stale_timer.cancel()
            peer.stale_timer = loop.call_later(event.restart_time, self._restart_expired, peer)
            return
        self._changed(self.rib.remove_peer(name))

    def _restart_expired(self, peer: _Peer) -> None:
        peer.stale_timer = None
        name = peer.spec.name
        if peer.driver.state.name == "ESTABLISHED":
            self._changed(self.rib.sweep_stale(name))
        elif self.rib.has_peer(name):
            self._changed(self.rib.remove_peer(name))

    def _resend(self, peer: _Peer, family: Family) -> None:
        group = self.adj_out.group_of(peer.spec.name)
        if group is not None:
            peer.dump_task = asyncio.get_running_loop().create_task(
                self._dump(peer, group.initial_dump(peer.spec.name))
            )

    # --- kernel: learned routes, export policy, restart -----------------------------------

    def _ifname_of(self, route: Route) -> str | None:
        if self.kernel is None or route.source is not KERNEL:
            return None
        learned = self.kernel.learner.get(route_key(route.family, route.prefix))
        return learned.ifname if learned is not None else None

    def _on_learned(self, changes: list[LearnChange]) -> None:
        """Felix's routes (and other non-ours routes inside pools) as KERNEL-source routes."""
        out: list[BestChange] = []
        attrs = PathAttributes(origin=ORIGIN_INCOMPLETE)
        for change in changes:
            family, nlri = prefix_to_nlri(_key_prefix(change.key))
            if change.route is not None:
                out.extend(self.rib.originate(family, nlri, attrs, source=KERNEL))
            else:
                out.extend(self.rib.withdraw_local(family, nlri, source=KERNEL))
        self._changed(out)

    def apply_routing_plan(self, plan: PeeringPlan) -> None:
        """The routing half of a new plan: export policy, originated blocks, blackholes, pools
        learned from the kernel and the per-pool FIB programming. Called by reconfiguration
        after `self.plan` has the new value or with the plan about to become it."""
        old = self.plan
        self.plan = plan
        if (plan.blocks, plan.pools) != (old.blocks, old.pools):
            self.export_policy = ExportPolicy(plan.blocks, plan.pools)
            self.policy = Policy(self.export_policy, self._ifname_of)
            self.rib.imports = self.policy
            self._flush()
            self.adj_out.set_policies(self.policy, self.rib.iter_best)
            self._schedule_flush()
        if plan.originate != old.originate:
            changes: list[BestChange] = []
            wanted = {o.prefix for o in plan.originate}
            for org in old.originate:
                if org.prefix not in wanted:
                    family, nlri = prefix_to_nlri(org.prefix)
                    changes.extend(self.rib.withdraw_local(family, nlri))
            self._changed(changes)
            self._originate()
        if self.kernel is not None:
            self.kernel.set_blackholes(plan.blackholes)
            if plan.kernel != old.kernel:
                self.kernel.set_programming(Programming(plan.kernel))
            self.kernel.set_pools(p.cidr for p in plan.pools)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Write out what changed once the gap after the last write-out has passed. A timer
        even when that is now: it then runs after the timers already due and before the
        inbound queue's next slice (see `_behind_due_work`), never ahead of them."""
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        when = max(loop.time(), self._last_flush + self._flush_gap)
        self._flush_handle = loop.call_at(when, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_handle = None
        try:
            self._flush()
        except Exception:  # route work must go on (DESIGN principle 7)
            log.exception("error writing out route changes")

    def _gr_start(self) -> None:
        if not self._gr_restarting:
            return
        self._gr_waiting = {name: set() for name in self.peers}
        wait = max((p.spec.max_restart_time for p in self.peers.values()), default=0)
        log.info("graceful restart: keeping FIB routes until peers send End-of-RIB",
                 peers=len(self._gr_waiting), timeout=wait)
        if not self._gr_waiting:
            self._gr_done("no peers")
            return
        self._gr_timer = asyncio.get_running_loop().call_later(
            wait, self._gr_done, "restart timer expired"
        )

    def _gr_end_of_rib(self, name: str, family: Family | None) -> None:
        if not self._gr_restarting or name not in self._gr_waiting:
            return
        pending = self._gr_waiting[name]
        if family is not None:
            pending.discard(family)
        if not pending:
            del self._gr_waiting[name]
            if not self._gr_waiting:
                self._gr_done("End-of-RIB from every peer")

    def _gr_done(self, why: str) -> None:
        if not self._gr_restarting:
            return
        self._gr_restarting = False
        self._gr_waiting = {}
        if self._gr_timer is not None:
            self._gr_timer.cancel()
            self._gr_timer = None
        log.info("graceful restart converged; removing stale FIB routes", reason=why)
        if self.kernel is not None:
            # Let this tick's changes reach the FIB state first.
            self._flush()
            self.kernel.converged()

    # --- propagation ----------------------------------------------------------------------

    def _changed(self, changes: list[BestChange]) -> None:
        if not changes:
            return
        self.adj_out.stage(changes)
        if self.kernel is not None:
            for change in changes:
                self.kernel.best_changed(change)
        self._schedule_flush()

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        sends = 0
        for group, out in self.adj_out.flush():
            # The group's bytes go to every member: count their messages once, not per peer.
            counts: dict[int, int] = {}
            for name in group.members:
                peer = self.peers.get(name)
                if peer is None:
                    continue
                for data in out.for_member(name):
                    n = counts.get(id(data))
                    if n is None:
                        n = counts[id(data)] = count_messages(data)
                    try:
                        peer.driver.send(data, n)
                    except LocalSessionError:
                        # Its session just ended: the SessionDown waiting in the inbound
                        # queue takes it out of the group.
                        break
                    sends += 1
        self._flush_gap = min(FLUSH_GAP_MAX, sends * FLUSH_GAP_PER_SEND)
        if self.kernel is not None:
            self.kernel.flush()

    # --- DaemonView -----------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        peers = []
        for peer in self.peers.values():
            spec, drv = peer.spec, peer.driver
            name = spec.name
            received = advertised = 0
            if self.rib.has_peer(name):
                received = self.rib.counts(name).accepted
            group = self.adj_out.group_of(name)
            if group is not None:
                advertised = group.advertised_count(name)
            peers.append(
                PeerStatus(
                    name=name,
                    address=spec.peer_address,
                    port=spec.peer_port,
                    type=spec.type,
                    peer_as=spec.peer_as,
                    local_as=spec.local_as,
                    bgp_state=_RFC_STATE_NAMES[drv.state.name],
                    since=drv.state_since,
                    info=drv.info,
                    routes_received=received,
                    routes_advertised=advertised,
                    family=spec.family,
                    passive=spec.passive,
                )
            )
        return DaemonStatus(
            router_id=self.plan.router_id,
            asn=self.plan.local_as,
            node=self.plan.node,
            version=__version__,
            started=self.started,
            peers=peers,
        )

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        entries: list[RouteEntry] = []
        if prefix is not None:
            family, nlri = prefix_to_nlri(prefix)
            dest = self.rib.destination(family, nlri)
            targets: Iterable[tuple[Family, bytes]] = [(family, nlri)] if dest else []
        else:
            targets = (
                (family, d.prefix) for family in Family for d in self.rib.loc.destinations(family)
            )
        for family, nlri in targets:
            ranked = self.rib.paths(family, nlri)
            best = self.rib.best(family, nlri)
            dest = self.rib.destination(family, nlri)
            reason = getattr(dest, "reason", None)
            for route in ranked:
                entries.append(self._route_entry(route, route is best, reason, family, nlri))
        return entries

    def exported(self, peer: str) -> list[ExportedRoute]:
        name = self._peer_name(peer)
        if name not in self.peers:
            raise KeyError(peer)
        if self.adj_out.group_of(name) is None:
            return []
        return exported_routes(self.adj_out, name)

    def _peer_name(self, text: str) -> str:
        if text in self.peers:
            return text
        with contextlib.suppress(ValueError):
            peer = self._by_address.get(str(ipaddress.ip_address(text)))
            if peer is not None:
                return peer.spec.name
        return text

    def explain(self, prefix: str) -> Explanation:
        peers = [
            PeerState(
                name=p.spec.name,
                state=_RFC_STATE_NAMES[p.driver.state.name],
                established=p.driver.state.name == "ESTABLISHED",
                ibgp=p.spec.peer_as == p.spec.local_as,
                rr_client=p.spec.rr_client,
            )
            for p in self.peers.values()
        ]
        return explain(
            self.rib,
            self.adj_out,
            prefix,
            peers,
            self.export_policy,
            self.kernel.fib_state if self.kernel is not None else None,
            self._ifname_of,
        )

    # --- operator commands (control/ops.py) ------------------------------------------------

    def protocols(self) -> list[ProtocolDetail]:
        statuses = {p.name: p for p in self.status().peers}
        details = []
        for peer in self.peers.values():
            session = peer.driver.peer.established
            neg = session.negotiated if session is not None else None
            stats = peer.driver.stats
            details.append(
                ProtocolDetail(
                    peer=statuses[peer.spec.name],
                    neighbor_id=str(ipaddress.IPv4Address(neg.peer_id)) if neg else None,
                    hold_time=neg.hold_time if neg else None,
                    keepalive_time=neg.keepalive_time if neg else None,
                    configured_hold_time=peer.settings.hold_time,
                    families=sorted(_FAMILY_LABEL[f] for f in neg.families) if neg else [],
                    route_refresh=bool(neg and neg.route_refresh),
                    source_address=peer.spec.source_address,
                    messages_received=stats.messages_received,
                    messages_sent=stats.messages_sent,
                    updates_received=stats.updates_received,
                    updates_sent=stats.updates_sent,
                )
            )
        return details

    def metrics_snapshot(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            node=self.plan.node,
            router_id=self.plan.router_id,
            asn=self.plan.local_as,
            version=__version__,
            started=self.started,
            protocols=self.protocols(),
            rib_routes={label: self.rib.loc.size(f) for f, label in _FAMILY_LABEL.items()},
            fib_routes=len(self.kernel.fib) if self.kernel is not None else None,
            fib_batches=self.fib_batches if self.kernel is not None else None,
            loop_lag=self.lag_histogram,
        )

    def reset_peer(self, name: str) -> str:
        """`bgpctl neighbor NAME reset`: Cease / Administrative Reset, then start again."""
        peer = self.peers[self._peer_name(name)]
        if not peer.driver.peer.connection_ids():
            return f"{peer.spec.name}: no connection to reset ({peer.driver.state_text})"
        peer.driver.close_for(Notification(CEASE, CEASE_ADMIN_RESET), 0.0)
        log.info("session reset by operator", peer=peer.spec.name)
        return f"{peer.spec.name}: session reset"

    def refresh_peer(self, name: str) -> list[str]:
        """`bgpctl neighbor NAME refresh`: ROUTE-REFRESH for each negotiated family."""
        peer = self.peers[self._peer_name(name)]
        session = peer.driver.peer.established
        if session is None or session.negotiated is None:
            raise ValueError(f"session is {peer.driver.state_text}, not Established")
        if not session.negotiated.route_refresh:
            raise ValueError("the peer did not advertise the route refresh capability")
        families = sorted(session.negotiated.families, key=lambda f: f.value)
        try:
            for family in families:
                peer.driver.request_refresh(family)
        except LocalSessionError as exc:
            raise ValueError(str(exc)) from None
        log.info("route refresh requested by operator", peer=peer.spec.name)
        return [_FAMILY_LABEL[f] for f in families]

    def _route_entry(
        self, route: Route, best: bool, reason: object, family: Family, nlri: bytes
    ) -> RouteEntry:
        a = route.attrs
        from_peer = source_name(route)  # "local", "kernel" or the peer's name
        in_fib: bool | None = None
        if self.kernel is not None and not route.is_local and best:
            in_fib = self.kernel.in_fib(family, nlri)
        return RouteEntry(
            prefix=nlri_to_prefix(family, nlri),
            family="ipv4" if family is Family.IPV4_UNICAST else "ipv6",
            next_hop=bytes_to_address(a.next_hop) if a.next_hop else "self",
            best=best,
            from_peer=from_peer,
            as_path=as_path_text(a),
            origin=origin_text(a),
            local_pref=a.local_pref,
            med=a.med,
            communities=community_texts(a),
            large_communities=large_community_texts(a),
            originator_id=str(ipaddress.IPv4Address(a.originator_id))
            if a.originator_id is not None
            else None,
            cluster_list=[str(ipaddress.IPv4Address(c)) for c in a.cluster_list],
            reason=getattr(reason, "name", None) if best else None,
            in_fib=in_fib,
        )


def _key_prefix(key: tuple[int, bytes, int, int]) -> str:
    _af, dst, plen, _table = key
    return f"{ipaddress.ip_address(dst)}/{plen}"


async def run_daemon(options: DaemonOptions) -> None:
    source = open_source(options.datastore, options.node)
    try:
        plan = plan_of(await source.load(), options)
    except BaseException:
        await source.close()
        raise
    daemon = Daemon(options, plan, source)
    await daemon.run()


__all__ = ["LOCAL", "ConfigError", "Daemon", "DaemonOptions", "load_plan", "run_daemon"]
