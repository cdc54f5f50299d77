"""Plans in, sessions out: from a datastore snapshot to the sessions this node runs, and from
one plan to the next without touching what did not change.

`plan_of` checks a snapshot as the daemon would start it (every session's settings and
password resolve, or nothing starts); `Reconfig` applies a new plan to a running daemon: it
starts added sessions, stops removed ones, restarts changed ones, and leaves every other
session (and its routes) alone.
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
from bgpd.daemon.secrets import SecretError, read_secret
from bgpd.daemon.service import Service
from bgpd.plan.diff import PeerAdded, PeerChange, PeerChanged, PeerRemoved, diff
from bgpd.plan.errors import PlanError
from bgpd.plan.peering import PeeringPlan, PeerSpec, compute
from bgpd.session.driver import Listener, PeerDriver
from bgpd.session.settings import PeerSettings
from bgpd.speaker.driver import SpeakerDriver
from bgpd.speaker.speaker import Speaker, router_id_int
from bgpd.status.records import (
    RELOAD_APPLIED,
    RELOAD_REFUSED,
    RELOAD_UNCHANGED,
    ReloadResult,
)
from bgpd.wire.family import Family
from bgpd.wire.messages import ADD_PATH_BOTH
from calico import checks
from calico.errors import DatastoreError
from calico.file import load_file
from calico.snapshot import Snapshot
from calico.source import SnapshotSource, file_path
from calico.store.etcdconfig import DatastoreConfig
from common.log import get_logger

log = get_logger("bgpd.daemon")


def datastore_path(url: str | DatastoreConfig) -> str:
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
            peer_settings(spec, router_id_int(plan.router_id), password)
        except ValueError as exc:
            raise ConfigError(f"{options.datastore}: session {spec.name}: {exc}") from None
    return plan


def resolve_password(spec: PeerSpec, secrets_dir: str | None) -> str | None:
    """The TCP MD5 password of a session: its `secretKeyRef` read as the file NAME/KEY under
    `secrets_dir` (the layout of a mounted Kubernetes secret; see secrets.py)."""
    ref = spec.password
    if ref is None:
        return None
    if secrets_dir is None:
        raise ConfigError(
            f"session {spec.name}: password secretKeyRef {ref.name}/{ref.key} needs "
            "--secrets-dir"
        )
    try:
        return read_secret(secrets_dir, ref)
    except SecretError as exc:
        raise ConfigError(f"session {spec.name}: password {exc}") from None


def peer_settings(spec: PeerSpec, router_id: int, password: str | None) -> PeerSettings:
    families = frozenset({Family.of_label(spec.family)})
    # Calico's `add paths on`: receive and send every path, each under its own id.
    add_path = tuple((f, ADD_PATH_BOTH) for f in Family if f in families) if spec.add_path else ()
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
        families=families,
        graceful_restart_time=spec.max_restart_time,
        password=password,
        add_path=add_path,
    )


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
            result = await self.apply_snapshot(snapshot)
            # What is not applied is said again at every reload (DESIGN: nothing silent).
            for note in d.speaker.plan.notes:
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
            for note in new.notes:
                if note not in old.notes:
                    log.warning("plan note", note=note)
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
