"""The bgpd process: wiring and lifecycle. It makes the speaker (bgpd/speaker), its asyncio
shell, the session drivers, the listeners, the kernel side, the control socket, the metrics
endpoint and the status reporter, starts them in order and stops them in reverse.

Where the rest lives: reconfig.py turns plans into sessions, views.py answers the control
API, service.py speaks to systemd and probes the loop's lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import time
from typing import TYPE_CHECKING

from bgpd import __version__
from bgpd.control.birdsock.dialect import DIALECTS
from bgpd.control.server import ControlServer
from bgpd.daemon.bfd import BfdLink
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.plancheck import plan_of
from bgpd.daemon.reconfig import Reconfig
from bgpd.daemon.service import Service
from bgpd.daemon.views import DaemonViews
from bgpd.metrics.histogram import Histogram
from bgpd.plan.peering import PeeringPlan
from bgpd.rib.route import KERNEL, Route
from bgpd.session.driver import Listener, PeerDriver
from bgpd.session.errors import ADMIN_SHUTDOWN
from bgpd.speaker.driver import SpeakerDriver
from bgpd.speaker.speaker import Speaker
from calico.source import SnapshotSource, file_path, open_source
from common.log import current_level, get_logger, parse_level, set_level

if TYPE_CHECKING:
    from bgpd.control.birdsock.driver import BirdSocketServer
    from bgpd.kernel.driver import KernelSync
    from bgpd.kernel.learn import LearnChange
    from bgpd.metrics.driver import MetricsServer
    from bgpd.status.reporter import StatusReporter

log = get_logger("bgpd.daemon")

# BGPConfiguration logSeverityScreen -> our log level (confd: Debug -> `debug all`, Info ->
# `debug { states }`, anything else -> no debug). bgpd cannot go quieter than critical.
_SEVERITY_LEVELS = {
    "Trace": "debug",
    "Debug": "debug",
    "Info": "info",
    "Warning": "warning",
    "Error": "error",
    "Fatal": "critical",
    "Panic": "critical",
    "None": "critical",
}


def log_level_for(severity: str) -> str:
    return _SEVERITY_LEVELS.get(severity, "info")


class Daemon:
    """One bgpd: the speaker and everything around it."""

    def __init__(
        self, options: DaemonOptions, plan: PeeringPlan, source: SnapshotSource | None = None
    ) -> None:
        self.options = options
        self.source = source
        self.started = time.time()
        self.kernel: KernelSync | None = None
        self.speaker = Speaker(plan, ifname_of=self.ifname_of)
        self.drivers: dict[str, PeerDriver] = {}
        self.pump = SpeakerDriver(self.speaker, self.drivers)
        self.reconfig = Reconfig(self)
        self.views = DaemonViews(self)
        self.service = Service(self.sessions_established)
        self.bfd = BfdLink(self.drivers)
        self.listeners: list[Listener] = []
        self.control: ControlServer | None = None
        self.bird_sockets: list[BirdSocketServer] = []
        self.metrics: MetricsServer | None = None
        # This node's BGP status, written to a sqlite/etcd datastore under a lease.
        self._status_reporter: StatusReporter | None = None
        # FIB programming latency per netlink batch (a Prometheus histogram).
        self.fib_batches = Histogram()
        self._stopping = asyncio.Event()

    @property
    def plan(self) -> PeeringPlan:
        return self.speaker.plan

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.service.start_probe()
        plan = self.plan
        self.follow_log_severity(plan)
        if self.options.fib:
            # The kernel side (netlink, ctypes) only when it programs the FIB.
            from bgpd.kernel.driver import KernelSync
            from bgpd.kernel.programming import Programming

            self.kernel = KernelSync(programming=Programming(plan.kernel))
            self.kernel.learner.set_pools(p.cidr for p in plan.pools)
            self.kernel.learner.set_ignored(plan.ignored_interfaces)
            self.kernel.on_learned = self._on_learned
            self.kernel.on_batch = self.fib_batches.observe
            self.pump.kernel = self.kernel
            # Routes of ours still in the FIB mean bgpd restarted: keep them forwarding.
            self.speaker.adopted_routes = await self.kernel.start(adopt=True) > 0
            self.kernel.set_blackholes(plan.blackholes)
            self.kernel.set_static_routes((r.prefix, r.via) for r in plan.static_routes)
        for spec in plan.sessions:
            self.reconfig.add_peer(spec)
        port = self.options.listen_port or plan.listen_port
        if self.options.listen_address:
            hosts: tuple[str, ...] = (self.options.listen_address,)
        else:
            # bindMode NodeIP listens on the node's addresses only; otherwise on all.
            hosts = plan.listen_addresses or ("::",)
        for host in hosts:
            try:
                listener = await Listener.start(host, port, self._lookup)
            except OSError:
                if host != "::":
                    raise
                # No IPv6 on this host: all IPv4 addresses instead.
                listener = await Listener.start("0.0.0.0", port, self._lookup)
            self.listeners.append(listener)
            for driver in self.drivers.values():
                if driver.settings.password:
                    listener.set_md5(driver.settings.peer_address, driver.settings.password)
        self.speaker.begin(loop.time())
        self.pump.settle()
        self.control = ControlServer(self.options.control_socket, self.views)
        await self.control.start()
        for path, families in self.options.bird_sockets():
            from bgpd.control.birdsock.driver import BirdSocketServer  # only when asked for

            bird = BirdSocketServer(
                path, self.views, DIALECTS[self.options.bird_dialect], families
            )
            await bird.start()
            self.bird_sockets.append(bird)
        if self.options.metrics_listen:
            # The Prometheus client only when the endpoint is on (about 2 MB and 35 ms).
            from bgpd.metrics.collector import DaemonCollector
            from bgpd.metrics.driver import MetricsServer, parse_listen

            host, metrics_port = parse_listen(self.options.metrics_listen)
            self.metrics = MetricsServer(
                host, metrics_port, DaemonCollector(self.views.metrics_snapshot)
            )
            await self.metrics.start()
        await self.bfd.follow(None, plan)
        for driver in self.drivers.values():
            driver.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        if self.source is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, self.reconfig.request_reload)
            self.reconfig.follow(self.source)
        if file_path(self.options.datastore) is None:  # a file datastore holds no status
            from bgpd.status.reporter import reporter_for

            self._status_reporter = reporter_for(
                self.options.datastore, plan.node, self.views.status
            )
        if self._status_reporter is not None:
            self._status_reporter.start()
        log.info(
            "bgpd started",
            node=plan.node,
            router_id=plan.router_id,
            asn=plan.local_as,
            listen=[f"{h}:{port}" for h in hosts],
            peers=len(self.drivers),
            version=__version__,
        )
        for note in plan.notes:
            log.warning("plan note", note=note)
        self.service.ready()

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
        self.service.stopping()
        await self.reconfig.close()
        await self.pump.close()
        if self._status_reporter is not None:
            await self._status_reporter.stop()
        if self.source is not None:
            await self.source.close()
        if self.control is not None:
            await self.control.close()
        for bird in self.bird_sockets:
            await bird.close()
        if self.metrics is not None:
            await self.metrics.close()
        # RFC 4724: a session that ends without a NOTIFICATION lets a graceful-restart peer
        # keep our routes (and forwarding) while we restart; a Cease would flush them.
        await asyncio.gather(
            *(
                d.stop(None if d.settings.graceful_restart_time else ADMIN_SHUTDOWN)
                for d in self.drivers.values()
            ),
            return_exceptions=True,
        )
        await self.bfd.close()
        for listener in self.listeners:
            await listener.close()
        if self.kernel is not None:
            await self.kernel.close()

    def sessions_established(self) -> tuple[int, int]:
        up = sum(1 for d in self.drivers.values() if d.state.name == "ESTABLISHED")
        return up, len(self.drivers)

    # --- the kernel ---------------------------------------------------------------------

    def ifname_of(self, route: Route) -> str | None:
        """The outgoing interface of a route learned from the kernel."""
        if self.kernel is None or route.source is not KERNEL:
            return None
        from bgpd.kernel.driver import route_key

        learned = self.kernel.learner.get(route_key(route.family, route.prefix))
        return learned.ifname if learned is not None else None

    def follow_log_severity(self, plan: PeeringPlan) -> None:
        """Log at the plan's logSeverityScreen, unless the command line set a level."""
        if self.options.log_level is not None:
            return
        level, before = log_level_for(plan.log_severity), current_level()
        if level == before:
            return
        # Said at the more verbose of the two levels, so that it shows either way.
        quieter = parse_level(level) > parse_level(before)
        if quieter:
            log.info("log level from logSeverityScreen", severity=plan.log_severity, level=level)
        set_level(level)
        if not quieter:
            log.info("log level from logSeverityScreen", severity=plan.log_severity, level=level)

    def _on_learned(self, changes: list[LearnChange]) -> None:
        """Felix's routes (and other non-ours routes inside pools) as KERNEL-source routes."""
        self.speaker.learned((_key_prefix(c.key), c.route is not None) for c in changes)
        self.pump.settle()

    def apply_kernel_plan(self, old: PeeringPlan, new: PeeringPlan) -> None:
        """The kernel's half of a new plan: blackholes, per-pool programming, and which
        routes are learned."""
        if self.kernel is None:
            return
        self.kernel.set_blackholes(new.blackholes)
        self.kernel.set_static_routes((r.prefix, r.via) for r in new.static_routes)
        if new.kernel != old.kernel:
            from bgpd.kernel.programming import Programming

            self.kernel.set_programming(Programming(new.kernel))
        self.kernel.set_pools(p.cidr for p in new.pools)
        self.kernel.set_ignored_interfaces(new.ignored_interfaces)
        self.kernel.flush()

    def _lookup(self, address: str) -> PeerDriver | None:
        peer = self.speaker.peer_by_address(address)
        return self.drivers.get(peer.spec.name) if peer is not None else None


def _key_prefix(key: tuple[int, bytes, int, int]) -> str:
    _af, dst, plen, _table = key
    return f"{ipaddress.ip_address(dst)}/{plen}"


async def run_daemon(options: DaemonOptions) -> None:
    source = open_source(options.datastore, options.node)
    try:
        snapshot = await source.load()
        plan = plan_of(snapshot, options)
    except BaseException:
        await source.close()
        raise
    daemon = Daemon(options, plan, source)
    daemon.reconfig.note_findings(snapshot)
    await daemon.run()
