"""Which routes felix wants in the kernel, and the changes that get them there. Pure.

For every WorkloadEndpoint of this node, each of its ipNetworks gets a device route to its
`cali*` interface in the main table, scope link, proto boot (Felix's default
DeviceRouteProtocol). felix owns the routes to interfaces with its prefix and nothing else:
any such route that no endpoint explains is removed, which at start cleans up after pods
deleted while felix was down. The changes become route ops (`route_ops`) that the driver
sends in one netlink batch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from common.netlink.route import (
    AF_INET,
    AF_INET6,
    RT_TABLE_MAIN,
    RTPROT_BOOT,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
)
from felix.workload import INTERFACE_PREFIX, WorkloadEndpoint


@dataclass(frozen=True, slots=True)
class DeviceRoute:
    prefix: str  # "10.0.0.5/32"
    ifname: str


@dataclass(frozen=True, slots=True)
class RouteChange:
    """Program `route` (replace whatever is there for its prefix) or, when `remove`, delete
    it."""

    route: DeviceRoute
    remove: bool = False


def desired_routes(endpoints: Iterable[WorkloadEndpoint], node: str) -> dict[str, DeviceRoute]:
    """prefix -> route, for the endpoints on `node`. Two endpoints claiming one prefix (a
    stale WEP beside its replacement) resolve to the lexically last interface name, so every
    felix picks the same one."""
    out: dict[str, DeviceRoute] = {}
    for wep in endpoints:
        if wep.node != node or not wep.interface_name:
            continue
        for network in wep.ip_networks:
            prefix = str(ipaddress.ip_network(network, strict=False))
            current = out.get(prefix)
            if current is None or wep.interface_name > current.ifname:
                out[prefix] = DeviceRoute(prefix, wep.interface_name)
    return out


def reconcile(
    desired: Mapping[str, DeviceRoute],
    observed: Iterable[DeviceRoute],
    links: Iterable[str],
) -> list[RouteChange]:
    """Changes that make the kernel's workload routes (`observed`: routes to `cali*`
    interfaces) equal `desired`. A route whose interface does not exist (yet) is left for
    the next pass: the CNI plugin creates the interface before it writes the endpoint, but
    an endpoint may outlive its interface."""
    present = set(links)
    seen: dict[str, set[str]] = {}
    for route in observed:
        if route.ifname.startswith(INTERFACE_PREFIX):
            seen.setdefault(route.prefix, set()).add(route.ifname)
    changes: list[RouteChange] = []
    for prefix, ifnames in sorted(seen.items()):
        want = desired.get(prefix)
        for ifname in sorted(ifnames):
            if want is None or want.ifname != ifname:
                changes.append(RouteChange(DeviceRoute(prefix, ifname), remove=True))
    for prefix, route in sorted(desired.items()):
        if route.ifname in seen.get(prefix, ()):
            continue
        if route.ifname in present:
            changes.append(RouteChange(route))
    return changes


def device_route(route: DeviceRoute, ifindex: int) -> KernelRoute:
    """The kernel form: `PREFIX dev IFNAME scope link` in the main table (the protocol, boot,
    is the socket's)."""
    net = ipaddress.ip_network(route.prefix, strict=False)
    af = AF_INET if net.version == 4 else AF_INET6
    return KernelRoute(af, net.network_address.packed, net.prefixlen, (Nexthop(b"", ifindex),))


def observed_routes(
    entries: Iterable[tuple[int, KernelRoute]], names: Mapping[int, str]
) -> list[DeviceRoute]:
    """felix's workload routes among a dump's (protocol, route) pairs: device routes of
    proto boot in the main table to interfaces with felix's prefix."""
    out: list[DeviceRoute] = []
    for protocol, route in entries:
        if protocol != RTPROT_BOOT or route.table != RT_TABLE_MAIN or len(route.nexthops) != 1:
            continue
        nh = route.nexthops[0]
        ifname = names.get(nh.ifindex, "")
        if nh.gateway or not ifname.startswith(INTERFACE_PREFIX):
            continue
        prefix = f"{ipaddress.ip_address(route.dst)}/{route.dst_len}"
        out.append(DeviceRoute(prefix, ifname))
    return out


def route_ops(
    changes: Iterable[RouteChange], links: Mapping[str, int]
) -> tuple[list[tuple[RouteChange, RouteOp]], list[RouteChange]]:
    """Each change with its op (the route replaced, or deleted by prefix and interface), and
    the changes whose interface has no index (gone since the read; the next pass decides)."""
    placed: list[tuple[RouteChange, RouteOp]] = []
    unplaced: list[RouteChange] = []
    for change in changes:
        index = links.get(change.route.ifname)
        if index is None:
            unplaced.append(change)
            continue
        kind = OpKind.DELETE if change.remove else OpKind.REPLACE
        placed.append((change, RouteOp(kind, device_route(change.route, index))))
    return placed, unplaced
