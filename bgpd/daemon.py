"""The bgpd process: the asyncio shell that joins the pure rooms.

Flow per event-loop tick (DESIGN.md "Shape"): session drivers deliver events; UPDATEs go into
the RIB, whose `BestChange`s are staged into the Adj-RIB-Out update groups and the FIB state.
One flush per tick then writes each group's joined UPDATE bytes to all of its members and
sends the tick's kernel route ops as one netlink batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bgpd import __version__
from bgpd.control.api import DaemonStatus, PeerStatus, RouteEntry
from bgpd.control.server import ControlServer
from bgpd.datastore.file import load_file
from bgpd.kernel.driver import KernelSync
from bgpd.log import get_logger
from bgpd.plan.peering import PeeringPlan, PeerSpec, compute
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.session.driver import Listener, PeerDriver
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    SessionEvent,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.settings import PeerSettings
from bgpd.wire.attributes import AS_SEQUENCE, ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, bytes_to_address, nlri_to_prefix, prefix_to_nlri
from bgpd.wire.options import CodecOptions

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


def datastore_path(url: str) -> str:
    """The file of a `file:///PATH.yaml` datastore URL (the only kind this build reads)."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" not in url:
        return url
    raise ConfigError(f"unsupported datastore URL {url!r}: use file:///PATH.yaml")


def load_plan(options: DaemonOptions) -> PeeringPlan:
    snapshot = load_file(datastore_path(options.datastore))
    plan = compute(snapshot, options.node, options.env)
    if plan.node_ipv4 is None and plan.node_ipv6 is None:
        raise ConfigError(
            f"{options.datastore}: Node {options.node!r}: spec.bgp: no ipv4Address or "
            "ipv6Address for this node"
        )
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

    def __init__(self, options: DaemonOptions, plan: PeeringPlan) -> None:
        self.options = options
        self.plan = plan
        self.router_id = _router_id_int(plan.router_id)
        cluster = _router_id_int(plan.rr_cluster_id) if plan.rr_cluster_id else None
        self.rib = Rib(plan.local_as, self.router_id, cluster)
        self.adj_out = AdjRibOut(self.rib.cluster_id)
        self.kernel: KernelSync | None = None
        self.peers: dict[str, _Peer] = {}
        self._by_address: dict[str, _Peer] = {}
        self.listeners: list[Listener] = []
        self.control: ControlServer | None = None
        self.started = time.time()
        self._flush_scheduled = False
        self._stopping = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.options.fib:
            self.kernel = KernelSync()
            await self.kernel.start()
        for spec in self.plan.sessions:
            self._add_peer(spec)
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
        for peer in self.peers.values():
            peer.driver.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
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

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Close sessions with a Cease; our FIB routes stay for a graceful restart and are
        swept by the next start (RFC 4724 restarting speaker)."""
        log.info("bgpd stopping")
        if self.control is not None:
            await self.control.close()
        await asyncio.gather(
            *(p.driver.stop() for p in self.peers.values()), return_exceptions=True
        )
        for listener in self.listeners:
            await listener.close()
        for peer in self.peers.values():
            if peer.stale_timer is not None:
                peer.stale_timer.cancel()
            if peer.dump_task is not None:
                peer.dump_task.cancel()
        if self.kernel is not None:
            await self.kernel.close()

    def _add_peer(self, spec: PeerSpec) -> None:
        password = resolve_password(spec, self.options.secrets_dir)
        settings = peer_settings(spec, self.router_id, password)
        driver = PeerDriver(settings, self._on_event)
        peer = _Peer(spec, settings, driver)
        self.peers[spec.name] = peer
        self._by_address[str(ipaddress.ip_address(spec.peer_address))] = peer

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
        try:
            if isinstance(event, UpdateReceived):
                self._on_update(peer, event)
            elif isinstance(event, SessionEstablished):
                self._on_established(peer, event)
            elif isinstance(event, SessionDown):
                self._on_down(peer, event)
            elif isinstance(event, StateChanged):
                log.info(
                    "session state", peer=peer.spec.name, address=peer.spec.peer_address,
                    old=event.old.name, new=event.new.name,
                )
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
            peer.driver.send(chunk)
            await asyncio.sleep(0)
            await peer.driver.drained()

    def _on_update(self, peer: _Peer, event: UpdateReceived) -> None:
        update = event.update
        if update.error is not None:
            log.warning(
                "malformed UPDATE handled per RFC 7606", peer=peer.spec.name,
                error=str(update.error), action=update.error.handling.name,
            )
        eor = update.end_of_rib
        if eor is not None:
            self._changed(self.rib.sweep_stale(peer.spec.name, eor))
            return
        assert peer.options is not None
        self._changed(self.rib.apply_update(peer.spec.name, update, peer.options))

    def _on_down(self, peer: _Peer, event: SessionDown) -> None:
        name = peer.spec.name
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

    # --- propagation ----------------------------------------------------------------------

    def _changed(self, changes: list[BestChange]) -> None:
        if not changes:
            return
        self.adj_out.stage(changes)
        if self.kernel is not None:
            for change in changes:
                self.kernel.best_changed(change)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for group, out in self.adj_out.flush():
            for name in group.members:
                peer = self.peers.get(name)
                if peer is None:
                    continue
                for data in out.for_member(name):
                    peer.driver.send(data)
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

    def _route_entry(
        self, route: Route, best: bool, reason: object, family: Family, nlri: bytes
    ) -> RouteEntry:
        a = route.attrs
        source = route.source
        from_peer = "local" if route.is_local else source.name
        in_fib: bool | None = None
        if self.kernel is not None and not route.is_local and best:
            in_fib = self.kernel.in_fib(family, nlri)
        return RouteEntry(
            prefix=nlri_to_prefix(family, nlri),
            family="ipv4" if family is Family.IPV4_UNICAST else "ipv6",
            next_hop=bytes_to_address(a.next_hop) if a.next_hop else "self",
            best=best,
            from_peer=from_peer,
            as_path=_as_path_text(a),
            origin=("IGP", "EGP", "incomplete")[a.origin] if a.origin < 3 else str(a.origin),
            local_pref=a.local_pref,
            med=a.med,
            communities=[f"{c >> 16}:{c & 0xFFFF}" for c in a.communities],
            large_communities=[f"{x}:{y}:{z}" for x, y, z in a.large_communities],
            originator_id=str(ipaddress.IPv4Address(a.originator_id))
            if a.originator_id is not None
            else None,
            cluster_list=[str(ipaddress.IPv4Address(c)) for c in a.cluster_list],
            reason=getattr(reason, "name", None) if best else None,
            in_fib=in_fib,
        )


def _as_path_text(attrs: PathAttributes) -> str:
    """BIRD's notation: sequences as plain numbers, sets in braces."""
    parts: list[str] = []
    for seg_type, asns in attrs.as_path:
        if seg_type == AS_SEQUENCE:
            parts.extend(map(str, asns))
        else:
            parts.append("{" + ",".join(map(str, asns)) + "}")
    return " ".join(parts)


async def run_daemon(options: DaemonOptions) -> None:
    plan = load_plan(options)
    for spec in plan.sessions:
        # Every session's settings are checked before anything starts: no half-configured daemon.
        password = resolve_password(spec, options.secrets_dir)
        try:
            peer_settings(spec, _router_id_int(plan.router_id), password)
        except ValueError as exc:
            raise ConfigError(f"{options.datastore}: session {spec.name}: {exc}") from None
    daemon = Daemon(options, plan)
    await daemon.run()


__all__ = ["LOCAL", "ConfigError", "Daemon", "DaemonOptions", "load_plan", "run_daemon"]
