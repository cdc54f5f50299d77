"""Capabilities: the OPEN we send, and what two OPENs leave both sides agreeing on."""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.session.settings import PeerSettings
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    AS_TRANS,
    AddPath,
    Capability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    Open,
    RouteRefreshCap,
)
from bgpd.wire.options import CodecOptions

_FAMILY_ORDER = tuple(Family)


def build_open(settings: PeerSettings) -> Open:
    """Our OPEN for this neighbor."""
    families = [f for f in _FAMILY_ORDER if f in settings.families]
    caps: list[Capability] = [Multiprotocol(f) for f in families]
    if settings.route_refresh:
        caps.append(RouteRefreshCap())
    if settings.enhanced_route_refresh:
        caps.append(EnhancedRouteRefreshCap())
    if settings.extended_message:
        caps.append(ExtendedMessageCap())
    if settings.graceful_restart_time is not None:
        # The F bit promises our forwarding state survived: true only while restarting.
        caps.append(
            GracefulRestart(
                restart_time=settings.graceful_restart_time,
                restarting=settings.graceful_restart_restarting,
                families=tuple((f, settings.graceful_restart_restarting) for f in families),
            )
        )
    if settings.four_octet_as:
        caps.append(FourOctetAs(settings.local_as))
    if settings.add_path:
        order = {f: i for i, f in enumerate(_FAMILY_ORDER)}
        caps.append(AddPath(tuple(sorted(settings.add_path, key=lambda fm: order[fm[0]]))))
    my_as = settings.local_as if settings.local_as <= 0xFFFF else AS_TRANS
    return Open(
        my_as=my_as,
        hold_time=settings.hold_time,
        bgp_id=settings.router_id,
        capabilities=tuple(caps),
    )


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both OPENs agree on.

    `families`: the AFI/SAFIs both sent Multiprotocol for (IPv4 unicast when a side sent
    none, RFC 4760 8). `hold_time` 0 means neither side sends keepalives nor runs a hold
    timer; `keepalive_time` is then 0 too. `graceful_restart` is the peer's capability when
    both sides sent one (we are its helper), else None. `route_refresh`: the peer sent the
    capability, so we may send it ROUTE-REFRESH; `enhanced_route_refresh`: both sent
    RFC 7313's capability.
    """

    options: CodecOptions
    families: frozenset[Family]
    hold_time: int
    keepalive_time: int
    peer_as: int
    peer_id: int
    route_refresh: bool
    enhanced_route_refresh: bool
    graceful_restart: GracefulRestart | None


def _has(open_: Open, kind: type) -> bool:
    return any(isinstance(c, kind) for c in open_.capabilities)


def _families(open_: Open) -> frozenset[Family]:
    mp = [c.family for c in open_.capabilities if isinstance(c, Multiprotocol)]
    return frozenset(mp) if mp else frozenset({Family.IPV4_UNICAST})


def _add_path_modes(open_: Open) -> dict[Family, int]:
    modes: dict[Family, int] = {}
    for cap in open_.capabilities:
        if isinstance(cap, AddPath):
            for family, mode in cap.families:
                modes[family] = modes.get(family, 0) | mode
    return modes


def hold_and_keepalive(settings: PeerSettings, remote_hold: int) -> tuple[int, int]:
    """Negotiated hold time (the smaller offer, RFC 4271 4.2) and our keepalive interval:
    the configured one, but never more than a third of the hold time."""
    hold = min(settings.hold_time, remote_hold)
    if hold == 0:
        return 0, 0
    third = max(1, hold // 3)
    keepalive = settings.keepalive_time if settings.keepalive_time is not None else third
    return hold, min(keepalive, third)


def negotiate(settings: PeerSettings, local: Open, remote: Open) -> Negotiated:
    families = _families(local) & _families(remote)
    local_modes = _add_path_modes(local)
    remote_modes = _add_path_modes(remote)
    # RFC 7911 5: we receive path ids where we said "receive" and the peer said "send".
    add_path_receive = frozenset(
        f
        for f in families
        if local_modes.get(f, 0) & ADD_PATH_RECEIVE and remote_modes.get(f, 0) & ADD_PATH_SEND
    )
    add_path_send = frozenset(
        f
        for f in families
        if local_modes.get(f, 0) & ADD_PATH_SEND and remote_modes.get(f, 0) & ADD_PATH_RECEIVE
    )
    options = CodecOptions(
        four_octet_as=_has(local, FourOctetAs) and _has(remote, FourOctetAs),
        add_path_receive=add_path_receive,
        add_path_send=add_path_send,
        extended_message=_has(local, ExtendedMessageCap) and _has(remote, ExtendedMessageCap),
    )
    hold, keepalive = hold_and_keepalive(settings, remote.hold_time)
    remote_gr = [c for c in remote.capabilities if isinstance(c, GracefulRestart)]
    graceful = remote_gr[0] if remote_gr and _has(local, GracefulRestart) else None
    return Negotiated(
        options=options,
        families=families,
        hold_time=hold,
        keepalive_time=keepalive,
        peer_as=remote.asn,
        peer_id=remote.bgp_id,
        route_refresh=_has(remote, RouteRefreshCap),
        enhanced_route_refresh=_has(local, EnhancedRouteRefreshCap)
        and _has(remote, EnhancedRouteRefreshCap),
        graceful_restart=graceful,
    )
