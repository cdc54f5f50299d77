"""Cluster routes, tunnel devices and VTEPs, as Calico's Felix decides them (its L3 route
resolver and VXLAN resolver feeding the IPIP, VXLAN and no-encap route managers), pure: a
datastore Snapshot, this node's name and its parent devices in, a `ClusterPlan` out.

* Every IPAM block affine to another node gets a route to that node, and every address
  borrowed from a block by a node other than its owner gets a /32 (/128) to the borrower.
  Pool types: VXLAN (vxlanMode set), IPIP (ipipMode set, IPv4), no encapsulation.
  - IPIP: `via <node IP> dev tunl0 onlink`, protocol 80;
  - VXLAN: `via <the node's VTEP address> dev vxlan.calico onlink`, the device-route
    protocol (boot), with a permanent ARP entry VTEP address -> VTEP MAC and an FDB entry
    VTEP MAC -> node IP on vxlan.calico for every remote VTEP;
  - no encapsulation, and CrossSubnet pools when the node's IP is inside this node's subnet:
    `via <node IP> dev <the device with this node's IP> onlink`, protocol 80.
* Each local block (not a /32 or /128) gets a blackhole, protocol 80.
* Who programs what follows FelixConfiguration.programClusterRoutes (`node.<name>` over
  `default`; default EnabledIPIPOnly): VXLAN pools always; IPIP pools with Enabled or
  EnabledIPIPOnly; unencapsulated pools with Enabled or EnabledNoEncapOnly. bgpd makes the
  same choice from its side with BGPConfiguration.programClusterRoutes.
* Devices: tunl0 carries the node's IPIP tunnel address when any IPIP pool exists (none
  left on it when none does); vxlan.calico (VNI 4096, UDP 4789, the node's IP as source,
  the parent device, no learning, the node's VTEP MAC) carries its VXLAN tunnel address
  when any IPv4 VXLAN pool exists, and is removed when none does.

What cannot be decided (a node without an address, a VXLAN peer without a VTEP, no parent
device) is left out and said in `problems`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from calico.model import (
    DEFAULT_VXLAN_PORT,
    DEFAULT_VXLAN_VNI,
    ENCAP_CROSS_SUBNET,
    ENCAP_NEVER,
    IPAMBlock,
    IPPool,
    Node,
)
from calico.snapshot import Snapshot
from common.netlink.route import RTPROT_BOOT
from felix.tunnel import IPIP, VXLAN, vtep_mac

# Felix's dataplanedefs.DefaultRouteProto: its blackhole, IPIP and same-subnet routes.
RTPROT_FELIX = 80
IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.calico"

ENABLED = "Enabled"
DISABLED = "Disabled"
ENABLED_IPIP_ONLY = "EnabledIPIPOnly"
ENABLED_NO_ENCAP_ONLY = "EnabledNoEncapOnly"
DEFAULT_PROGRAM_CLUSTER_ROUTES = ENABLED_IPIP_ONLY


class PoolType(enum.Enum):
    NONE = "none"  # LoadBalancer-only pools: no cluster routes
    NO_ENCAP = "no-encap"
    IPIP = "ipip"
    VXLAN = "vxlan"


@dataclass(frozen=True, slots=True)
class ClusterRoute:
    """A route felix wants in the main table. `device` None: a blackhole; `gateway` None:
    a device route (scope link); otherwise `via gateway dev device onlink`."""

    prefix: str
    protocol: int
    device: str | None = None
    gateway: str | None = None
    node: str | None = None  # the node it leads to, for logs


@dataclass(frozen=True, slots=True)
class VxlanDevice:
    """vxlan.calico as it should be; `parent` is the device with this node's IP."""

    vni: int
    port: int
    local: str
    parent: str
    mac: bytes
    address: str


@dataclass(frozen=True, slots=True)
class Vtep:
    """A remote node's VXLAN tunnel endpoint."""

    node: str
    tunnel_ip: str
    mac: bytes
    node_ip: str


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    routes: tuple[ClusterRoute, ...] = ()
    # tunl0's address; None with `ipip_pools`: not known yet, leave tunl0 alone.
    ipip_address: str | None = None
    ipip_pools: bool = False
    vxlan: VxlanDevice | None = None
    vxlan_pools: bool = False
    vteps: tuple[Vtep, ...] = ()
    programs: frozenset[PoolType] = frozenset()
    problems: tuple[str, ...] = field(default=(), compare=False)


def pool_type(pool: IPPool) -> PoolType:
    if pool.allowed_uses == ("LoadBalancer",):
        return PoolType.NONE
    if pool.vxlan_mode != ENCAP_NEVER:
        return PoolType.VXLAN
    if pool.ipip_mode != ENCAP_NEVER and pool.version == 4:
        return PoolType.IPIP
    return PoolType.NO_ENCAP


def program_cluster_routes(snapshot: Snapshot, node: str) -> str:
    """The effective FelixConfiguration.programClusterRoutes for `node`."""
    configs = snapshot.felix_configurations
    for name in (f"node.{node}", "default"):
        config = configs.get(name)
        if config is not None and config.program_cluster_routes is not None:
            return config.program_cluster_routes
    return DEFAULT_PROGRAM_CLUSTER_ROUTES


def programmed_types(mode: str) -> frozenset[PoolType]:
    types = {PoolType.VXLAN}
    if mode in (ENABLED, ENABLED_IPIP_ONLY):
        types.add(PoolType.IPIP)
    if mode in (ENABLED, ENABLED_NO_ENCAP_ONLY):
        types.add(PoolType.NO_ENCAP)
    return frozenset(types)


def _vxlan_setting(snapshot: Snapshot, node: str, attr: str, default: int) -> int:
    configs = snapshot.felix_configurations
    for name in (f"node.{node}", "default"):
        config = configs.get(name)
        value = getattr(config, attr) if config is not None else None
        if value is not None:
            return int(value)
    return default


_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Planner:
    def __init__(self, snapshot: Snapshot, node: str, parents: Mapping[int, str]) -> None:
        self.snapshot = snapshot
        self.node = node
        self.parents = parents
        self.me = snapshot.nodes.get(node)
        self.problems: list[str] = []
        self.pools = sorted(
            ((ipaddress.ip_network(p.cidr), p) for p in snapshot.ip_pools.values()),
            key=lambda item: -item[0].prefixlen,
        )
        self.types = programmed_types(program_cluster_routes(snapshot, node))
        self.vteps = self._vteps()

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def pool_of(self, net: _Net) -> IPPool | None:
        for pnet, pool in self.pools:
            if pnet.version == net.version and net.subnet_of(pnet):  # type: ignore[arg-type]
                return pool
        return None

    def _vteps(self) -> dict[str, Vtep]:
        out: dict[str, Vtep] = {}
        for name, n in sorted(self.snapshot.nodes.items()):
            if name == self.node or n.ipv4_vxlan_tunnel_addr is None or n.ipv4 is None:
                continue
            try:
                mac = vtep_mac(n)
            except ValueError:
                self.problem(f"node {name}: vxlanTunnelMACAddr {n.vxlan_tunnel_mac_addr!r} "
                             "is not a MAC address; no VTEP")  # fmt: skip
                continue
            out[name] = Vtep(name, n.ipv4_vxlan_tunnel_addr, mac, n.ipv4)
        return out

    def same_subnet(self, remote_ip: str) -> bool:
        if self.me is None:
            return False
        ip = ipaddress.ip_address(remote_ip)
        mine = self.me.ipv4_network if ip.version == 4 else self.me.ipv6_network
        return mine is not None and ip in ipaddress.ip_network(mine)

    def route_to(
        self, prefix: str, net: _Net, owner: str, pool: IPPool, vxlan_tunnel_ip: bool = False
    ) -> ClusterRoute | None:
        ptype = pool_type(pool)
        if ptype not in self.types:
            return None
        remote = self.snapshot.nodes.get(owner)
        remote_ip = None
        if remote is not None:
            remote_ip = remote.ipv4 if net.version == 4 else remote.ipv6
        if remote_ip is None:
            self.problem(f"node {owner} has no IPv{net.version} address: no route to its blocks")
            return None
        cross = ENCAP_CROSS_SUBNET in (pool.ipip_mode, pool.vxlan_mode)
        if ptype is PoolType.NO_ENCAP or (cross and self.same_subnet(remote_ip)):
            parent = self.parents.get(net.version)
            if parent is None:
                self.problem(f"no device holds this node's IPv{net.version} address: "
                             "no direct routes")  # fmt: skip
                return None
            return ClusterRoute(prefix, RTPROT_FELIX, parent, remote_ip, owner)
        if ptype is PoolType.IPIP:
            return ClusterRoute(prefix, RTPROT_FELIX, IPIP_DEVICE, remote_ip, owner)
        if net.version == 6:
            self.problem(f"IPv6 VXLAN pool {pool.name}: not supported (no vxlan-v6.calico)")
            return None
        if vxlan_tunnel_ip:
            # A borrowed VTEP address: on the device itself (Felix's remote-tunnel route).
            return ClusterRoute(prefix, RTPROT_BOOT, VXLAN_DEVICE, None, owner)
        vtep = self.vteps.get(owner)
        if vtep is None:
            self.problem(f"node {owner} has no VXLAN tunnel address: no route to its blocks")
            return None
        return ClusterRoute(prefix, RTPROT_BOOT, VXLAN_DEVICE, vtep.tunnel_ip, owner)

    def block_routes(self, block: IPAMBlock) -> list[ClusterRoute]:
        net = ipaddress.ip_network(block.cidr)
        pool = self.pool_of(net)
        if pool is None:
            return []
        out: list[ClusterRoute] = []
        host = block.host
        if host == self.node:
            full = 32 if net.version == 4 else 128
            if net.prefixlen < full and pool_type(pool) in self.types:
                out.append(ClusterRoute(str(net), RTPROT_FELIX, node=host))
        elif host is not None:
            route = self.route_to(str(net), net, host, pool)
            if route is not None:
                out.append(route)
        # Addresses of the block that another node holds (borrowed, or in a block whose
        # affinity was released): a host route to the node that holds them.
        base = int(net.network_address)
        full = 32 if net.version == 4 else 128
        record = block.block
        for ordinal, index in enumerate(record.allocations):
            if index is None or index >= len(record.attributes):
                continue
            attrs = record.attributes[index].secondary or {}
            holder = attrs.get("node")
            if not holder or holder == host or holder == self.node:
                continue
            ip = ipaddress.ip_address(base + ordinal)
            prefix = f"{ip}/{full}"
            vxlan_ip = attrs.get("type") == VXLAN.attr_type
            route = self.route_to(prefix, ipaddress.ip_network(prefix), holder, pool, vxlan_ip)
            if route is not None:
                out.append(route)
        return out

    def plan(self) -> ClusterPlan:
        routes: dict[str, ClusterRoute] = {}
        for _name, block in sorted(self.snapshot.ipam_blocks.items()):
            if block.block.deleted:
                continue
            for route in self.block_routes(block):
                routes.setdefault(route.prefix, route)
        pools = list(self.snapshot.ip_pools.values())
        ipip_pools = any(pool_type(p) is PoolType.IPIP for p in pools)
        vxlan_pools = any(pool_type(p) is PoolType.VXLAN and p.version == 4 for p in pools)
        me = self.me
        ipip_address = IPIP.address_of(me) if me is not None and ipip_pools else None
        vxlan = self._vxlan_device(me) if vxlan_pools else None
        return ClusterPlan(
            routes=tuple(routes.values()),
            ipip_address=ipip_address,
            ipip_pools=ipip_pools,
            vxlan=vxlan,
            vxlan_pools=vxlan_pools,
            vteps=tuple(self.vteps.values()) if vxlan is not None else (),
            programs=self.types,
            problems=tuple(self.problems),
        )

    def _vxlan_device(self, me: Node | None) -> VxlanDevice | None:
        if me is None or me.ipv4 is None:
            self.problem("this node has no IPv4 address: no vxlan.calico")
            return None
        address = VXLAN.address_of(me)
        if address is None:
            self.problem("this node has no VXLAN tunnel address yet: no vxlan.calico")
            return None
        parent = self.parents.get(4)
        if parent is None:
            self.problem(f"no device holds {me.ipv4}: no vxlan.calico")
            return None
        try:
            mac = vtep_mac(me)
        except ValueError:
            self.problem(f"vxlanTunnelMACAddr {me.vxlan_tunnel_mac_addr!r} is not a MAC address")
            return None
        vni = _vxlan_setting(self.snapshot, self.node, "vxlan_vni", DEFAULT_VXLAN_VNI)
        port = _vxlan_setting(self.snapshot, self.node, "vxlan_port", DEFAULT_VXLAN_PORT)
        return VxlanDevice(vni, port, me.ipv4, parent, mac, address)


def plan(snapshot: Snapshot, node: str, parents: Mapping[int, str]) -> ClusterPlan:
    """What felix wants for the cluster: `parents` maps IP version to the device that holds
    this node's address of that version (from the kernel's address dump)."""
    return _Planner(snapshot, node, parents).plan()
