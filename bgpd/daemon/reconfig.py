"""Plans in, sessions out: from a datastore snapshot to the sessions this node runs, and from
one plan to the next without touching what did not change.

`plan_of` (plancheck.py) checks a snapshot as the daemon would start it (every session's
settings and password resolve, or nothing starts); `Reconfig` applies a new plan to a
running daemon: it starts added sessions, stops removed ones, restarts changed ones, and
leaves every other session (and its routes) alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import replace
from typing import Protocol

from bgpd.daemon.bfd import BfdLink
from bgpd.daemon.errors import ConfigError
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.plancheck import peer_settings, plan_of, resolve_password
from bgpd.daemon.service import Service
from bgpd.plan.diff import PeerAdded, PeerChange, PeerChanged, PeerRemoved, diff
from bgpd.plan.errors import PlanError
from bgpd.plan.peering import PeeringPlan, PeerSpec
from bgpd.session.driver import Listener, PeerDriver
from bgpd.speaker.driver import SpeakerDriver
from bgpd.speaker.speaker import Speaker
from bgpd.status.records import (
    RELOAD_APPLIED,
    RELOAD_REFUSED,
    RELOAD_UNCHANGED,
    ReloadResult,
)
from calico import checks
from calico.errors import DatastoreError
from calico.snapshot import Snapshot
from calico.source import SnapshotSource
from common.log import get_logger

log = get_logger("bgpd.daemon")


class Host(Protocol):
    """What reconfiguration works on (bgpd/daemon/app.py's Daemon)."""

    options: DaemonOptions
    source: SnapshotSource | None
    speaker: Speaker
    pump: SpeakerDriver
    drivers: dict[str, PeerDriver]
    listeners: list[Listener]
    service: Service
    bfd: BfdLink

    def apply_kernel_plan(self, old: PeeringPlan, new: PeeringPlan) -> None: ...

    def follow_log_severity(self, plan: PeeringPlan) -> None: ...


class Reconfig:
    """The daemon's sessions, kept in step with its plan."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon
        self._lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._reload_tasks: set[asyncio.Task[ReloadResult]] = set()
        # Wall-clock time the last configuration change was applied (None: none yet).
        self.reconfigured: float | None = None
        self._findings: list[checks.Finding] = []

    # --- sessions -----------------------------------------------------------------------

    def add_peer(self, spec: PeerSpec) -> PeerDriver:
        """Make the session's driver (not started) and tell the speaker of it."""
        d = self.daemon
        options = d.options
        password = resolve_password(spec, options.secrets_dir)
        settings = d.speaker.settings_for(peer_settings(spec, d.speaker.router_id, password))
        if options.max_prefixes is not None:
            settings = replace(
                settings,
                max_prefixes=options.max_prefixes,
                max_prefixes_restart=options.max_prefixes_restart,
            )
        driver = PeerDriver(settings, d.pump.on_event, max_buffered=options.max_send_buffer)
        d.drivers[spec.name] = driver
        d.speaker.add_peer(spec, settings)
        return driver

    def start_peer(self, spec: PeerSpec) -> None:
        driver = self.add_peer(spec)
        for listener in self.daemon.listeners:
            if driver.settings.password:
                listener.set_md5(driver.settings.peer_address, driver.settings.password)
        driver.start()

    async def remove_peer(self, name: str, *, keep_routes: bool) -> None:
        d = self.daemon
        peer = d.speaker.detach_peer(name)
        driver = d.drivers.pop(name)
        d.pump.settle()
        address = str(ipaddress.ip_address(peer.spec.peer_address))
        if d.speaker.peer_by_address(address) is None and peer.settings.password:
            for listener in d.listeners:
                listener.set_md5(peer.settings.peer_address, None)
        # A Calico node is usually reconfigured by the same change: closing without a
        # NOTIFICATION lets its graceful-restart helper keep our routes until its own plan
        # catches up (RFC 4724), so switching the mesh to reflectors drops no route.
        if peer.spec.calico_node:
            await driver.stop(None)
        else:
            await driver.stop()
        d.speaker.retire_peer(peer, keep_routes=keep_routes, now=asyncio.get_running_loop().time())
        d.pump.settle()

    # --- new plans ----------------------------------------------------------------------

    def follow(self, source: SnapshotSource) -> None:
        """Apply every new snapshot the source reports."""
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(source))

    def request_reload(self) -> asyncio.Task[ReloadResult]:
        """SIGHUP, `bgpctl reload`: read the datastore again and apply what changed, in a
        task of ours (a shutdown cancels it before it takes the sessions down); await it
        for the outcome."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)
        return task

    async def close(self) -> None:
        for task in (self._watch_task, *self._reload_tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def reload(self) -> ReloadResult:
        """Read the datastore again and apply what changed; the outcome, which a refused
        reload's error is part of (bgpctl reload, systemctl reload)."""
        d = self.daemon
        if d.source is None:
            return ReloadResult(RELOAD_REFUSED, error="this daemon has no datastore to read")
        d.service.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            snapshot = await d.source.load()
        except DatastoreError as exc:
            log.error("reload refused; keeping the current plan", error=str(exc))
            return ReloadResult(RELOAD_REFUSED, error=str(exc))
        else:
            before = set(d.speaker.plan.notes)
            result = await self.apply_snapshot(snapshot)
            # What is not applied is said again at every reload (DESIGN: nothing silent); a
            # note new with this plan the speaker has just logged.
            for note in d.speaker.plan.notes:
                if note in before:
                    log.warning("plan note", note=note)
            return result
        finally:
            d.service.notify("READY=1")

    async def _watch(self, source: SnapshotSource) -> None:
        try:
            async for snapshot in source.updates():
                await self.apply_snapshot(snapshot)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("datastore watch failed; changes are no longer followed")

    def note_findings(self, snapshot: Snapshot) -> None:
        """Log the cross-resource mistakes (calico.checks) a datastore state brings in, each
        once: the daemon runs on (as Calico's own readers do), `bgpd --check` exits 1."""
        findings = checks.check(snapshot, self.daemon.options.node)
        for finding in checks.introduced(self._findings, findings):
            level = "error" if finding.severity == checks.ERROR else "warning"
            getattr(log, level)("configuration problem", problem=finding.message,
                                check=finding.code)
        self._findings = findings

    async def apply_snapshot(self, snapshot: Snapshot) -> ReloadResult:
        """A new datastore state: plan it and apply the difference, or, when it cannot be
        planned, log why and keep running the current plan (DESIGN principle 7)."""
        self.note_findings(snapshot)
        try:
            plan = plan_of(snapshot, self.daemon.options)
        except (ConfigError, PlanError, DatastoreError) as exc:
            log.error("new configuration refused; keeping the current plan", error=str(exc))
            return ReloadResult(RELOAD_REFUSED, error=str(exc))
        return await self.apply_plan(plan)

    async def apply_plan(self, new: PeeringPlan) -> ReloadResult:
        """Move to `new`: start added sessions, stop removed ones, restart changed ones, and
        leave every other session (and its routes) alone. A new router ID or AS restarts all
        sessions, since every OPEN carries them."""
        d = self.daemon
        async with self._lock:
            old = d.speaker.plan
            identity = (old.router_id, old.local_as) != (new.router_id, new.local_as)
            changes: list[PeerChange]
            if identity:
                changes = [PeerRemoved(s) for s in old.sessions]
                changes += [PeerAdded(s) for s in new.sessions]
            else:
                changes = diff(old, new)
            if old == new:
                return ReloadResult(RELOAD_UNCHANGED)
            d.follow_log_severity(new)
            self.reconfigured = time.time()
            result = ReloadResult(
                RELOAD_APPLIED,
                added=tuple(c.name for c in changes if isinstance(c, PeerAdded)),
                removed=tuple(c.name for c in changes if isinstance(c, PeerRemoved)),
                changed=tuple(c.name for c in changes if isinstance(c, PeerChanged)),
            )
            if changes:
                log.info(
                    "applying configuration change", node=new.node, added=list(result.added),
                    removed=list(result.removed), changed=list(result.changed),
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
                    self.remove_peer(
                        change.name,
                        keep_routes=isinstance(change, PeerChanged)
                        or (replacing and change.spec.calico_node),
                    )
                    for change in changes
                    if isinstance(change, (PeerRemoved, PeerChanged))
                )
            )
            if identity or new.rr_cluster_id != old.rr_cluster_id:
                d.speaker.set_identity(new)
            # Export policy, originated blocks; then blackholes and kernel programming.
            d.speaker.apply_routing(new, asyncio.get_running_loop().time())
            d.apply_kernel_plan(old, new)
            await d.bfd.follow(old, new)
            for change in changes:
                if isinstance(change, PeerAdded):
                    self.start_peer(change.spec)
                elif isinstance(change, PeerChanged):
                    self.start_peer(change.new)
            d.pump.settle()
            return result
