"""From a ClusterPlan and what the kernel holds to the netlink requests that close the gap.
Pure: links, addresses, routes and neighbour entries (as read by the driver) in; route ops
and `Request`s (a message builder and a description for the log) out.

Ownership, as Felix's main-table policy has it with its default DeviceRouteProtocol: a route
of protocol 80 is felix's wherever it points, and so is any IPv4 route through vxlan.calico
(other than the kernel's own); felix's workload routes (proto boot to cali*) are
routes.py's. A route felix wants replaces whatever holds its prefix; a route of felix's that
nobody wants goes. On vxlan.calico only permanent ARP and FDB entries are touched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from common.netlink.link import (
    KIND_IPIP,
    KIND_VXLAN,
    NTF_SELF,
    NUD_PERMANENT,
    Address,
    Link,
    Neighbour,
    Vxlan,
    mac_text,
)
from common.netlink.linkmsg import (
    encode_deladdr,
    encode_dellink,
    encode_delneigh,
    encode_newaddr,
    encode_newlink,
    encode_newneigh,
    encode_setlink,
)
from common.netlink.route import (
    AF_BRIDGE,
    AF_INET,
    AF_INET6,
    DEFAULT_METRIC,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteKey,
    RouteOp,
    RouteType,
    effective_metric,
    route_matches,
)
from common.netlink.rtmsg import RouteEntry
from felix.dataplane.cluster import (
    IPIP_DEVICE,
    RTPROT_FELIX,
    VXLAN_DEVICE,
    ClusterPlan,
    ClusterRoute,
    Vtep,
    VxlanDevice,
)

_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Request:
    """One netlink request: `encode(seq)` builds it. `relinks`: it creates or deletes a
    device, so links are read again before anything that needs their indexes."""

    what: str
    encode: Callable[[int], bytes]
    relinks: bool = False


def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def parent_devices(
    addresses: Iterable[Address], links: Iterable[Link], ips: Iterable[str | None]
) -> dict[int, str]:
    """IP version -> the name of the device holding this node's address of that version
    (Felix's parent device: VXLAN's underlay, the same-subnet routes' device)."""
    names = {link.index: link.name for link in links}
    wanted = {_packed(ip): ipaddress.ip_address(ip).version for ip in ips if ip}
    out: dict[int, str] = {}
    for a in addresses:
        version = wanted.get(a.address)
        name = names.get(a.index)
        if version is not None and name is not None:
            out.setdefault(version, name)
    return out


# -- devices --------------------------------------------------------------------------------


def _vxlan_want(dev: VxlanDevice, parent: int) -> Vxlan:
    return Vxlan(dev.vni, dev.port, _packed(dev.local), parent, learning=False)


def vxlan_mismatch(have: Link, want: Vxlan, mac: bytes) -> str:
    """Why an existing vxlan.calico must be made again (Felix's vxlanLinksIncompat); ""
    when it is fine."""
    v = have.vxlan
    if have.kind != KIND_VXLAN or v is None:
        return f"kind {have.kind or 'none'}, not vxlan"
    for what, a, b in (
        ("vni", v.vni, want.vni),
        ("parent", v.link, want.link),
        ("learning", v.learning, want.learning),
    ):
        if a != b:
            return f"{what} {a} vs {b}"
    if v.local and v.local != want.local:
        return f"source {ipaddress.ip_address(v.local)} vs {ipaddress.ip_address(want.local)}"
    if v.port and v.port != want.port:
        return f"port {v.port} vs {want.port}"
    if have.mac and have.mac != mac:
        return f"mac {mac_text(have.mac)} vs {mac_text(mac)}"
    return ""


def _address_requests(
    link: Link, address: str | None, addresses: Iterable[Address]
) -> list[Request]:
    """Make `address`/32 the only IPv4 address on `link` (none when None), then set it up."""
    out: list[Request] = []
    want = Address(link.index, AF_INET, _packed(address), 32) if address else None
    have = [a for a in addresses if a.index == link.index and a.family == AF_INET]
    for a in have:
        if want is None or (a.address, a.prefixlen) != (want.address, want.prefixlen):
            text = f"{ipaddress.ip_address(a.address)}/{a.prefixlen}"
            out.append(Request(f"remove {text} from {link.name}", _bind(encode_deladdr, a)))
    if want is not None:
        if not any((a.address, a.prefixlen) == (want.address, 32) for a in have):
            out.append(Request(f"put {address}/32 on {link.name}", _bind(encode_newaddr, want)))
        if not link.up:
            index = link.index
            up = Request(f"set {link.name} up", lambda seq: encode_setlink(index, seq, up=True))
            out.append(up)
    return out


def _bind(encode: Callable[[_V, int], bytes], value: _V) -> Callable[[int], bytes]:
    return lambda seq: encode(value, seq)


def _new_ipip(seq: int) -> bytes:
    return encode_newlink(IPIP_DEVICE, KIND_IPIP, seq)


def device_requests(
    plan: ClusterPlan, links: Sequence[Link], addresses: Sequence[Address]
) -> list[Request]:
    """The next requests for tunl0 and vxlan.calico. Creating or deleting a device comes
    alone (`relinks`): call again with fresh links for what follows."""
    by_name = {link.name: link for link in links}
    create: list[Request] = []
    rest: list[Request] = []
    tunl0 = by_name.get(IPIP_DEVICE)
    if plan.ipip_pools and plan.ipip_address is not None:
        if tunl0 is None:
            # With the ipip module loaded the kernel makes tunl0 itself; creating an ipip
            # device of that name loads the module where it can.
            create.append(Request(f"create {IPIP_DEVICE}", _new_ipip, relinks=True))
        else:
            rest += _address_requests(tunl0, plan.ipip_address, addresses)
    elif not plan.ipip_pools and tunl0 is not None:
        rest += _address_requests(tunl0, None, addresses)
    vx = by_name.get(VXLAN_DEVICE)
    dev = plan.vxlan
    if dev is not None:
        parent = by_name.get(dev.parent)
        if parent is not None:
            want = _vxlan_want(dev, parent.index)
            why = vxlan_mismatch(vx, want, dev.mac) if vx is not None else ""
            if vx is not None and why:
                index = vx.index
                create.append(
                    Request(f"delete {VXLAN_DEVICE} ({why})",
                            lambda seq: encode_dellink(index, seq), relinks=True)
                )  # fmt: skip
            elif vx is None:
                mac = dev.mac

                def new_vxlan(seq: int) -> bytes:
                    return encode_newlink(VXLAN_DEVICE, KIND_VXLAN, seq, mac=mac, vxlan=want)

                what = (f"create {VXLAN_DEVICE} (vni {want.vni}, port {want.port}, "
                        f"local {dev.local}, dev {dev.parent})")  # fmt: skip
                create.append(Request(what, new_vxlan, relinks=True))
            else:
                rest += _address_requests(vx, dev.address, addresses)
    elif not plan.vxlan_pools and vx is not None:
        index = vx.index
        what = f"delete {VXLAN_DEVICE} (no VXLAN pool)"
        create.append(Request(what, lambda seq: encode_dellink(index, seq), relinks=True))
    return create or rest


# -- routes ---------------------------------------------------------------------------------


def _kernel_route(route: ClusterRoute, index: Mapping[str, int]) -> KernelRoute | str:
    """The kernel form of a planned route, or why it cannot be made yet."""
    net = ipaddress.ip_network(route.prefix)
    af = AF_INET if net.version == 4 else AF_INET6
    dst = net.network_address.packed
    if route.device is None:
        return KernelRoute(af, dst, net.prefixlen, (), RouteType.BLACKHOLE)
    ifindex = index.get(route.device)
    if ifindex is None:
        return f"device {route.device} missing"
    if route.gateway is None:
        return KernelRoute(af, dst, net.prefixlen, (Nexthop(b"", ifindex),))
    hop = Nexthop(_packed(route.gateway), ifindex, onlink=True)
    return KernelRoute(af, dst, net.prefixlen, (hop,))


def owns(entry: RouteEntry, names: Mapping[int, str]) -> bool:
    """Whether a main-table route is one of felix's cluster routes."""
    if entry.protocol == RTPROT_FELIX:
        return True
    if entry.protocol == RTPROT_KERNEL or entry.route.family != AF_INET:
        return False
    return any(names.get(nh.ifindex) == VXLAN_DEVICE for nh in entry.route.nexthops)


def _explicit(route: KernelRoute) -> KernelRoute:
    """The route with its metric spelled out: a delete then takes exactly it."""
    if route.metric is None:
        return replace(route, metric=DEFAULT_METRIC[route.family])
    return route


def route_ops(
    routes: Iterable[ClusterRoute], links: Iterable[Link], entries: Iterable[RouteEntry]
) -> tuple[list[RouteOp], list[str]]:
    """The ops that make felix's cluster routes the planned ones, and the routes that have
    to wait (their device is missing)."""
    index = {link.name: link.index for link in links}
    names = {i: n for n, i in index.items()}
    owned: dict[RouteKey, list[RouteEntry]] = {}
    for e in entries:
        if e.route.table == RT_TABLE_MAIN and owns(e, names):
            owned.setdefault(e.route.key, []).append(e)
    ops: list[RouteOp] = []
    waiting: list[str] = []
    for planned in routes:
        want = _kernel_route(planned, index)
        if isinstance(want, str):
            waiting.append(f"{planned.prefix}: {want}")
            continue
        have = owned.pop(want.key, [])
        if (
            len(have) == 1
            and have[0].protocol == planned.protocol
            and route_matches(want, have[0].route)
        ):
            continue
        ops.append(RouteOp(OpKind.REPLACE, want, planned.protocol))
        for e in have:
            if effective_metric(e.route) != effective_metric(want):
                ops.append(RouteOp(OpKind.DELETE, _explicit(e.route), e.protocol))
    for stale in owned.values():
        for e in stale:
            ops.append(RouteOp(OpKind.DELETE, _explicit(e.route), e.protocol))
    return ops, waiting


# -- VTEP neighbour entries -----------------------------------------------------------------


def neighbour_requests(
    vteps: Iterable[Vtep], ifindex: int, observed: Iterable[Neighbour]
) -> list[Request]:
    """Permanent ARP (VTEP address -> MAC) and FDB (MAC -> node IP, NTF_SELF) entries on
    vxlan.calico for every remote VTEP; permanent ones nobody wants go."""
    want: dict[tuple[int, bytes], Neighbour] = {}
    for v in vteps:
        arp = Neighbour(AF_INET, ifindex, v.mac, _packed(v.tunnel_ip))
        fdb = Neighbour(AF_BRIDGE, ifindex, v.mac, _packed(v.node_ip), flags=NTF_SELF)
        want[(AF_INET, arp.dst)] = arp
        want[(AF_BRIDGE, fdb.lladdr)] = fdb
    have: dict[tuple[int, bytes], Neighbour] = {}
    for n in observed:
        if n.ifindex != ifindex or not n.state & NUD_PERMANENT:
            continue
        if n.family == AF_INET:
            have[(AF_INET, n.dst)] = n
        elif n.family == AF_BRIDGE and n.flags & NTF_SELF:
            have[(AF_BRIDGE, n.lladdr)] = n
    out: list[Request] = []
    for key, n in have.items():
        if key not in want:
            out.append(Request(f"remove {_describe(n)}", _bind(encode_delneigh, n)))
    for key, n in want.items():
        old = have.get(key)
        if old is None or (old.lladdr, old.dst) != (n.lladdr, n.dst):
            out.append(Request(f"add {_describe(n)}", _bind(encode_newneigh, n)))
    return out


def _describe(n: Neighbour) -> str:
    ip = ipaddress.ip_address(n.dst)
    if n.is_fdb:
        return f"fdb {mac_text(n.lladdr)} dst {ip} on {VXLAN_DEVICE}"
    return f"arp {ip} lladdr {mac_text(n.lladdr)} on {VXLAN_DEVICE}"
