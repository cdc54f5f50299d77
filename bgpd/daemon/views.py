"""The read side of the control API (and the two operator commands that act on one session):
what `bgpctl`, the status reporter and the metrics endpoint ask of the daemon, answered from
the speaker's and the drivers' state without awaiting anything."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Protocol

from bgpd import __version__
from bgpd.bfd.status import BfdSessionStatus
from bgpd.control.birdsock.view import BirdFacts, RestartRecovery
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
from bgpd.daemon.bfd import BfdLink
from bgpd.daemon.memory import estimate
from bgpd.daemon.reconfig import Reconfig
from bgpd.daemon.service import Service
from bgpd.metrics.histogram import Histogram
from bgpd.metrics.snapshot import MetricsSnapshot
from bgpd.plan.render import add_path_mode, next_hop_mode, session_communities
from bgpd.rib.route import Route
from bgpd.session.driver import PeerDriver
from bgpd.session.errors import CEASE_ADMIN_RESET, LocalSessionError
from bgpd.speaker.speaker import Speaker
from bgpd.status.records import (
    DaemonStatus,
    Explanation,
    ExportedRoute,
    PeerStatus,
    ProtocolDetail,
    ReloadResult,
    RouteEntry,
)
from bgpd.wire.errors import CEASE
from bgpd.wire.family import FAMILIES, Family, bytes_to_address, nlri_to_prefix, prefix_to_nlri
from bgpd.wire.messages import Notification
from common.log import get_logger

if TYPE_CHECKING:
    from bgpd.kernel.driver import KernelSync

log = get_logger("bgpd.daemon")


class Host(Protocol):
    """What the views read (bgpd/daemon/app.py's Daemon)."""

    speaker: Speaker
    drivers: dict[str, PeerDriver]
    kernel: KernelSync | None
    reconfig: Reconfig
    service: Service
    bfd: BfdLink
    started: float
    fib_batches: Histogram

    def ifname_of(self, route: Route) -> str | None: ...


class DaemonViews:
    """`DaemonView` and `OpsView` (bgpd/control) over a running daemon."""

    def __init__(self, daemon: Host) -> None:
        self.daemon = daemon

    # --- DaemonView ---------------------------------------------------------------------

    def status(self) -> DaemonStatus:
        d = self.daemon
        speaker = d.speaker
        rib, adj_out = speaker.rib, speaker.adj_out
        peers = []
        for name, peer in speaker.peers.items():
            spec, drv = peer.spec, d.drivers[name]
            received = rib.counts(name).accepted if rib.has_peer(name) else 0
            group = adj_out.group_of(name)
            peers.append(
                PeerStatus(
                    name=name,
                    address=spec.peer_address,
                    port=spec.peer_port,
                    type=spec.type,
                    peer_as=spec.peer_as,
                    local_as=spec.local_as,
                    bgp_state=str(drv.state),
                    since=drv.state_since,
                    info=drv.info,
                    routes_received=received,
                    routes_advertised=group.advertised_count(name) if group is not None else 0,
                    family=spec.family,
                    passive=spec.passive,
                )
            )
        plan = speaker.plan
        return DaemonStatus(
            router_id=plan.router_id,
            asn=plan.local_as,
            node=plan.node,
            version=__version__,
            started=d.started,
            peers=peers,
        )

    def longest_match(self, prefix: str) -> str | None:
        rib = self.daemon.speaker.rib
        family, nlri = prefix_to_nlri(prefix)
        address = nlri[1:].ljust(FAMILIES[family].addr_len, b"\0")
        # At most 33 (129) lookups, most specific first: no walk of the table.
        for plen in range(nlri[0], -1, -1):
            candidate = _masked(address, plen)
            if rib.destination(family, candidate):
                return nlri_to_prefix(family, candidate)
        return None

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        rib = self.daemon.speaker.rib
        targets: Iterable[tuple[Family, bytes]]
        if prefix is not None:
            family, nlri = prefix_to_nlri(prefix)
            targets = [(family, nlri)] if rib.destination(family, nlri) else []
        else:
            targets = ((f, d.prefix) for f in Family for d in rib.loc.destinations(f))
        entries: list[RouteEntry] = []
        for family, nlri in targets:
            best = rib.best(family, nlri)
            dest = rib.destination(family, nlri)
            reason = getattr(dest, "reason", None)
            for route in rib.paths(family, nlri):
                entries.append(self._route_entry(route, route is best, reason, family, nlri))
        return entries

    def exported(self, peer: str) -> list[ExportedRoute]:
        speaker = self.daemon.speaker
        name = speaker.peer_name(peer)
        if name not in speaker.peers:
            raise KeyError(peer)
        if speaker.adj_out.group_of(name) is None:
            return []
        return exported_routes(speaker.adj_out, name)

    def explain(self, prefix: str) -> Explanation:
        d = self.daemon
        speaker = d.speaker
        peers = [
            PeerState(
                name=name,
                state=str(d.drivers[name].state),
                established=d.drivers[name].state.name == "ESTABLISHED",
                ibgp=p.spec.peer_as == p.spec.local_as,
                rr_client=p.spec.rr_client,
            )
            for name, p in speaker.peers.items()
        ]
        return explain(
            speaker.rib,
            speaker.adj_out,
            prefix,
            peers,
            speaker.export_policy,
            d.kernel.fib_state if d.kernel is not None else None,
            d.ifname_of,
        )

    # --- OpsView ------------------------------------------------------------------------

    def protocols(self) -> list[ProtocolDetail]:
        d = self.daemon
        statuses = {p.name: p for p in self.status().peers}
        details = []
        for name, peer in d.speaker.peers.items():
            driver = d.drivers[name]
            session = driver.peer.established
            neg = session.negotiated if session is not None else None
            stats = driver.stats
            details.append(
                ProtocolDetail(
                    peer=statuses[name],
                    neighbor_id=str(ipaddress.IPv4Address(neg.peer_id)) if neg else None,
                    hold_time=neg.hold_time if neg else None,
                    keepalive_time=neg.keepalive_time if neg else None,
                    configured_hold_time=peer.settings.hold_time,
                    families=sorted(FAMILIES[f].label for f in neg.families) if neg else [],
                    route_refresh=bool(neg and neg.route_refresh),
                    source_address=peer.spec.source_address,
                    messages_received=stats.messages_received,
                    messages_sent=stats.messages_sent,
                    updates_received=stats.updates_received,
                    updates_sent=stats.updates_sent,
                    next_hop=next_hop_mode(peer.spec),
                    allow_local_as=peer.spec.allow_local_as,
                    add_path=add_path_mode(peer.spec),
                    add_path_rx=sorted(FAMILIES[f].label for f in neg.options.add_path_receive)
                    if neg
                    else [],
                    add_path_tx=sorted(FAMILIES[f].label for f in neg.options.add_path_send)
                    if neg
                    else [],
                    filters=list(peer.spec.filters),
                    communities=session_communities(peer.spec, d.speaker.plan.communities),
                )
            )
        return details

    def reset_peer(self, name: str) -> str:
        """`bgpctl neighbor NAME reset`: Cease / Administrative Reset, then start again."""
        speaker = self.daemon.speaker
        peer = speaker.peers[speaker.peer_name(name)]
        driver = self.daemon.drivers[peer.spec.name]
        if not driver.peer.connection_ids():
            return f"{peer.spec.name}: no connection to reset ({driver.state_text})"
        driver.close_for(Notification(CEASE, CEASE_ADMIN_RESET), 0.0)
        log.info("session reset by operator", peer=peer.spec.name)
        return f"{peer.spec.name}: session reset"

    def refresh_peer(self, name: str) -> list[str]:
        """`bgpctl neighbor NAME refresh`: ROUTE-REFRESH for each negotiated family."""
        speaker = self.daemon.speaker
        peer = speaker.peers[speaker.peer_name(name)]
        driver = self.daemon.drivers[peer.spec.name]
        session = driver.peer.established
        if session is None or session.negotiated is None:
            raise ValueError(f"session is {driver.state_text}, not Established")
        if not session.negotiated.route_refresh:
            raise ValueError("the peer did not advertise the route refresh capability")
        families = sorted(session.negotiated.families, key=lambda f: f.value)
        try:
            for family in families:
                driver.request_refresh(family)
        except LocalSessionError as exc:
            raise ValueError(str(exc)) from None
        log.info("route refresh requested by operator", peer=peer.spec.name)
        return [FAMILIES[f].label for f in families]

    def reload(self) -> Awaitable[ReloadResult]:
        return self.daemon.reconfig.request_reload()

    def bfd_sessions(self) -> list[BfdSessionStatus] | None:
        """`show bfd sessions` (None: this daemon runs no BFD)."""
        return self.daemon.bfd.sessions()

    # --- the BIRD socket ----------------------------------------------------------------

    def bird_facts(self) -> BirdFacts:
        d = self.daemon
        speaker = d.speaker
        restart: RestartRecovery | None = None
        if speaker.restarting is not None:
            # The speaker's clock is the event loop's, which is time.monotonic().
            wait = max((p.spec.max_restart_time for p in speaker.peers.values()), default=0)
            restart = RestartRecovery(
                waiting=len(speaker.restarting.waiting),
                remaining=max(0.0, speaker.restarting.deadline - time.monotonic()),
                wait=float(wait),
            )
        return BirdFacts(
            hostname=os.uname().nodename,
            reconfigured=d.reconfig.reconfigured or d.started,
            kernel=d.kernel is not None,
            restart=restart,
            memory=estimate(speaker.rib, (drv.buffered_bytes for drv in d.drivers.values())),
        )

    # --- metrics ------------------------------------------------------------------------

    def metrics_snapshot(self) -> MetricsSnapshot:
        d = self.daemon
        plan = d.speaker.plan
        loc = d.speaker.rib.loc
        return MetricsSnapshot(
            node=plan.node,
            router_id=plan.router_id,
            asn=plan.local_as,
            version=__version__,
            started=d.started,
            protocols=self.protocols(),
            rib_routes={spec.label: loc.size(f) for f, spec in FAMILIES.items()},
            fib_routes=len(d.kernel.fib) if d.kernel is not None else None,
            fib_batches=d.fib_batches if d.kernel is not None else None,
            loop_lag=d.service.lag_histogram,
        )

    # --- helpers ------------------------------------------------------------------------

    def _route_entry(
        self, route: Route, best: bool, reason: object, family: Family, nlri: bytes
    ) -> RouteEntry:
        a = route.attrs
        kernel = self.daemon.kernel
        in_fib: bool | None = None
        if kernel is not None and not route.is_local and best:
            in_fib = kernel.in_fib(family, nlri)
        return RouteEntry(
            prefix=nlri_to_prefix(family, nlri),
            family=FAMILIES[family].label,
            next_hop=bytes_to_address(a.next_hop) if a.next_hop else "self",
            best=best,
            from_peer=source_name(route),  # "local", "kernel" or the peer's name
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
            stale=route.stale,
            interface=self.daemon.ifname_of(route),
        )


def _masked(address: bytes, plen: int) -> bytes:
    """The NLRI prefix form of `address` cut to `plen` bits."""
    whole, rest = divmod(plen, 8)
    body = address[:whole]
    if rest:
        body += bytes([address[whole] & (0xFF << (8 - rest)) & 0xFF])
    return bytes([plen]) + body
