"""felix's cluster routes, tunnel devices and VTEPs (felix/dataplane/cluster.py) as Calico's
Felix decides them, from datastore snapshots: IPIP, VXLAN and unencapsulated pools,
CrossSubnet, borrowed addresses, local blackholes and programClusterRoutes."""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.ipam import Attribute, Block
from calico.model import (
    FelixConfiguration,
    IPAMBlock,
    IPPool,
    Node,
    NodeBGP,
    Resource,
)
from calico.snapshot import Snapshot
from felix.dataplane.cluster import (
    RTPROT_FELIX,
    ClusterRoute,
    PoolType,
    Vtep,
    VxlanDevice,
    plan,
    program_cluster_routes,
)
from felix.tunnel import vtep_mac

BOOT = 3
PARENTS = {4: "eth0"}


def node(name: str, ip: str, **spec: Any) -> Node:
    ipip = spec.pop("ipip", None)
    return Node(name=name, bgp=NodeBGP(ipv4_address=ip, ipv4_ipip_tunnel_addr=ipip), **spec)


def block(cidr: str, host: str | None, *borrowed: tuple[int, str, str]) -> IPAMBlock:
    """A block; `borrowed` are (ordinal, node, type) allocations."""
    size = ipaddress.ip_network(cidr).num_addresses
    allocations: list[int | None] = [None] * size
    attrs: list[Attribute] = []
    for ordinal, holder, kind in borrowed:
        allocations[ordinal] = len(attrs)
        secondary = {"node": holder, **({"type": kind} if kind else {})}
        attrs.append(Attribute(f"h{ordinal}", secondary))
    free = tuple(i for i, a in enumerate(allocations) if a is None)
    record = Block(
        cidr, f"host:{host}" if host else None, tuple(allocations), free, tuple(attrs)
    )
    return IPAMBlock(cidr.replace("/", "-"), record)


NODES = [
    node("n1", "172.20.0.1/24", ipip="10.244.1.1"),
    node("n2", "172.20.0.2/24"),
    node("n3", "172.21.0.3/24"),
]
BLOCKS = [block("10.244.1.0/30", "n1"), block("10.244.2.0/30", "n2"), block("10.244.3.0/30", "n3")]


def snap(*resources: Resource) -> Snapshot:
    return Snapshot.of([*NODES, *BLOCKS, *resources])


def routes(p: Any) -> dict[str, tuple[int, str | None, str | None]]:
    return {r.prefix: (r.protocol, r.device, r.gateway) for r in p.routes}


def test_ipip_always_routes_via_tunl0_onlink_and_blackholes_our_block() -> None:
    p = plan(snap(IPPool(name="p", cidr="10.244.0.0/16", ipip_mode="Always")), "n1", PARENTS)
    assert routes(p) == {
        "10.244.1.0/30": (RTPROT_FELIX, None, None),  # our block: blackhole
        "10.244.2.0/30": (RTPROT_FELIX, "tunl0", "172.20.0.2"),
        "10.244.3.0/30": (RTPROT_FELIX, "tunl0", "172.21.0.3"),
    }
    assert (p.ipip_pools, p.ipip_address) == (True, "10.244.1.1")
    assert (p.vxlan_pools, p.vxlan, p.vteps) == (False, None, ())
    assert p.programs == {PoolType.VXLAN, PoolType.IPIP}
    assert p.problems == ()


def test_cross_subnet_goes_direct_inside_our_subnet() -> None:
    p = plan(snap(IPPool(name="p", cidr="10.244.0.0/16", ipip_mode="CrossSubnet")), "n1", PARENTS)
    assert routes(p)["10.244.2.0/30"] == (RTPROT_FELIX, "eth0", "172.20.0.2")
    assert routes(p)["10.244.3.0/30"] == (RTPROT_FELIX, "tunl0", "172.21.0.3")


def test_program_cluster_routes_decides_which_pools_are_ours() -> None:
    pools = (
        IPPool(name="ipip", cidr="10.244.0.0/16", ipip_mode="Always"),
        IPPool(name="plain", cidr="10.245.0.0/16"),
    )
    blocks = (block("10.245.2.0/30", "n2"), block("10.245.1.0/30", "n1"))
    default = plan(snap(*pools, *blocks), "n1", PARENTS)
    assert sorted(routes(default)) == ["10.244.1.0/30", "10.244.2.0/30", "10.244.3.0/30"]
    cfg = FelixConfiguration("default", program_cluster_routes="EnabledNoEncapOnly")
    noencap = plan(snap(*pools, *blocks, cfg), "n1", PARENTS)
    assert routes(noencap) == {
        "10.245.1.0/30": (RTPROT_FELIX, None, None),
        "10.245.2.0/30": (RTPROT_FELIX, "eth0", "172.20.0.2"),
    }
    # tunl0 keeps its address whoever programs the routes.
    assert noencap.ipip_address == "10.244.1.1"
    mine = FelixConfiguration("node.n1", program_cluster_routes="Disabled")
    s = snap(*pools, *blocks, cfg, mine)
    assert program_cluster_routes(s, "n1") == "Disabled"
    assert program_cluster_routes(s, "n2") == "EnabledNoEncapOnly"
    assert plan(s, "n1", PARENTS).routes == ()
    both = FelixConfiguration("default", program_cluster_routes="Enabled")
    assert len(plan(snap(*pools, *blocks, both), "n1", PARENTS).routes) == 5
    # Unencapsulated routes need the device that holds our address.
    lost = plan(snap(*pools, *blocks, both), "n1", {})
    assert "10.245.2.0/30" not in routes(lost)
    assert lost.problems == ("no device holds this node's IPv4 address: no direct routes",)


def test_vxlan_routes_vteps_and_device() -> None:
    nodes = [
        node("n1", "172.20.0.1/24", ipv4_vxlan_tunnel_addr="10.244.1.0"),
        node("remotehostname", "172.20.0.2/24", ipv4_vxlan_tunnel_addr="10.244.2.0"),
        node("n3", "172.21.0.3/24", ipv4_vxlan_tunnel_addr="10.244.3.0",
             vxlan_tunnel_mac_addr="66:00:00:00:00:03"),
        node("n4", "172.21.0.4/24"),  # no VTEP yet
    ]  # fmt: skip
    blocks = [block("10.244.2.0/30", "remotehostname"), block("10.244.3.0/30", "n3"),
              block("10.244.4.0/30", "n4")]  # fmt: skip
    pool = IPPool(name="v", cidr="10.244.0.0/16", vxlan_mode="Always")
    p = plan(Snapshot.of([*nodes, *blocks, pool]), "n1", PARENTS)
    assert routes(p) == {
        "10.244.2.0/30": (BOOT, "vxlan.calico", "10.244.2.0"),
        "10.244.3.0/30": (BOOT, "vxlan.calico", "10.244.3.0"),
    }
    assert p.problems == ("node n4 has no VXLAN tunnel address: no route to its blocks",)
    # Calico's own test vector for the derived MAC (felix/calc/states_for_test.go).
    derived = bytes.fromhex("663ecaa4db65")
    assert vtep_mac(nodes[1]) == derived
    assert p.vteps == (
        Vtep("n3", "10.244.3.0", bytes.fromhex("660000000003"), "172.21.0.3"),
        Vtep("remotehostname", "10.244.2.0", derived, "172.20.0.2"),
    )
    mine = vtep_mac(nodes[0])
    assert p.vxlan == VxlanDevice(4096, 4789, "172.20.0.1", "eth0", mine, "10.244.1.0")
    cfg = FelixConfiguration("default", vxlan_vni=4097, vxlan_port=8472)
    vx = plan(Snapshot.of([*nodes, *blocks, pool, cfg]), "n1", PARENTS).vxlan
    assert vx is not None and (vx.vni, vx.port) == (4097, 8472)
    # Felix programs VXLAN routes whatever programClusterRoutes says.
    off = FelixConfiguration("default", program_cluster_routes="Disabled")
    assert len(plan(Snapshot.of([*nodes, *blocks, pool, off]), "n1", PARENTS).routes) == 2
    # CrossSubnet: a node in our subnet is reached directly, protocol 80.
    cross = IPPool(name="v", cidr="10.244.0.0/16", vxlan_mode="CrossSubnet")
    p = plan(Snapshot.of([*nodes, *blocks, cross]), "n1", PARENTS)
    assert routes(p)["10.244.2.0/30"] == (RTPROT_FELIX, "eth0", "172.20.0.2")
    assert routes(p)["10.244.3.0/30"] == (BOOT, "vxlan.calico", "10.244.3.0")
    # No VXLAN tunnel address of our own yet: no device, no VTEP entries.
    bare = [node("n1", "172.20.0.1/24"), *nodes[1:]]
    p = plan(Snapshot.of([*bare, *blocks, pool]), "n1", PARENTS)
    assert (p.vxlan, p.vteps, p.vxlan_pools) == (None, (), True)
    assert "this node has no VXLAN tunnel address yet: no vxlan.calico" in p.problems


def test_borrowed_addresses_get_host_routes() -> None:
    blocks = [
        # n2's block: .1 borrowed by n3, .2 by us (our workload route covers it).
        block("10.244.2.0/30", "n2", (1, "n3", ""), (2, "n1", "")),
        # Our block: .3 borrowed by n2; the blackhole stays for the rest.
        block("10.244.1.0/30", "n1", (3, "n2", "")),
        # A block without affinity still routes what is allocated in it.
        block("10.244.5.0/30", None, (0, "n2", "")),
    ]
    s = Snapshot.of([*NODES, *blocks, IPPool(name="p", cidr="10.244.0.0/16", ipip_mode="Always")])
    assert routes(plan(s, "n1", PARENTS)) == {
        "10.244.2.0/30": (RTPROT_FELIX, "tunl0", "172.20.0.2"),
        "10.244.2.1/32": (RTPROT_FELIX, "tunl0", "172.21.0.3"),
        "10.244.1.0/30": (RTPROT_FELIX, None, None),
        "10.244.1.3/32": (RTPROT_FELIX, "tunl0", "172.20.0.2"),
        "10.244.5.0/32": (RTPROT_FELIX, "tunl0", "172.20.0.2"),
    }
    # A VTEP address borrowed from another node's block: a device route on vxlan.calico.
    nodes = [node("n1", "172.20.0.1/24", ipv4_vxlan_tunnel_addr="10.244.1.0"),
             node("n2", "172.20.0.2/24", ipv4_vxlan_tunnel_addr="10.244.3.2")]  # fmt: skip
    b = block("10.244.3.0/30", "n3", (2, "n2", "vxlanTunnelAddress"))
    s = Snapshot.of([*nodes, b, IPPool(name="v", cidr="10.244.0.0/16", vxlan_mode="Always")])
    got = plan(s, "n1", PARENTS)
    assert ClusterRoute("10.244.3.2/32", BOOT, "vxlan.calico", None, "n2") in got.routes
    assert "node n3 has no IPv4 address: no route to its blocks" in got.problems


def test_what_gets_no_route() -> None:
    pools = (
        IPPool(name="p", cidr="10.244.0.0/16", ipip_mode="Always"),
        IPPool(name="lb", cidr="10.250.0.0/16", allowed_uses=("LoadBalancer",)),
    )
    blocks = (
        block("10.250.2.0/30", "n2"),  # a LoadBalancer-only pool
        block("10.99.2.0/30", "n2"),  # outside every pool
        block("10.244.1.4/32", "n1"),  # our /32 block: no blackhole over its workload
    )
    p = plan(Snapshot.of([*NODES, *pools, *blocks]), "n1", PARENTS)
    assert routes(p) == {}
    assert p.ipip_pools and not p.vxlan_pools
    # No IPIP pool at all: tunl0 is cleaned (ipip_pools False).
    assert not plan(Snapshot.of([*NODES, *blocks]), "n1", PARENTS).ipip_pools
