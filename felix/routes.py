"""Which routes felix wants in the kernel, and the changes that get them there. Pure.

For every WorkloadEndpoint of this node, each of its ipNetworks gets a device route to its
`cali*` interface in the main table, scope link, proto boot (Felix's default
DeviceRouteProtocol). felix owns the routes to interfaces with its prefix and nothing else:
any such route that no endpoint explains is removed, which at start cleans up after pods
deleted while felix was down.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from felix.workload import INTERFACE_PREFIX, WorkloadEndpoint

RTPROT_BOOT = 3


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
