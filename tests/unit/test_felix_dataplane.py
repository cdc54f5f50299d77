"""felix/dataplane/kernel.py: from a ClusterPlan and the kernel's state to requests: tunnel
devices made, fixed or removed, their addresses, felix's cluster routes (and only felix's)
reconciled, the VTEP ARP and FDB entries."""

from __future__ import annotations

import ipaddress

from common.netlink.link import NTF_SELF, Address, Link, Neighbour, Vxlan
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
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
    RouteType,
)
from common.netlink.rtmsg import RouteEntry
from felix.dataplane.cluster import RTPROT_FELIX, ClusterPlan, ClusterRoute, Vtep, VxlanDevice
from felix.dataplane.kernel import (
    device_requests,
    neighbour_requests,
    parent_devices,
    route_ops,
    vxlan_mismatch,
)

MAC = bytes.fromhex("66aabbccddee")
ETH0 = Link(2, "eth0", up=True)
DEV = VxlanDevice(4096, 4789, "172.20.0.1", "eth0", MAC, "10.244.1.0")
GOOD_VX = Link(9, "vxlan.calico", "vxlan", True, 1450, MAC,
               Vxlan(4096, 4789, bytes([172, 20, 0, 1]), 2, False))  # fmt: skip


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def v4(index: int, a: str, plen: int = 32) -> Address:
    return Address(index, AF_INET, ip(a), plen)


def built(reqs: list, seq: int = 1) -> list[tuple[str, bytes]]:  # type: ignore[type-arg]
    return [(r.what, r.encode(seq)) for r in reqs]


def test_parent_device_is_the_one_with_our_address() -> None:
    links = [Link(1, "lo"), ETH0, Link(3, "eth1")]
    addrs = [v4(1, "127.0.0.1", 8), v4(3, "10.9.0.1", 24), v4(2, "172.20.0.1", 24)]
    assert parent_devices(addrs, links, ["172.20.0.1", None]) == {4: "eth0"}
    assert parent_devices(addrs, links, ["172.99.0.1"]) == {}


def test_tunl0_is_made_then_given_its_address_and_set_up() -> None:
    plan = ClusterPlan(ipip_address="10.244.1.1", ipip_pools=True)
    (create,) = device_requests(plan, [ETH0], [])
    assert create.relinks and create.encode(5) == encode_newlink("tunl0", "ipip", 5)
    tunl0 = Link(4, "tunl0", "ipip", up=False)
    stale = v4(4, "10.244.9.9")
    assert built(device_requests(plan, [ETH0, tunl0], [stale, v4(2, "172.20.0.1", 24)])) == [
        ("remove 10.244.9.9/32 from tunl0", encode_deladdr(stale, 1)),
        ("put 10.244.1.1/32 on tunl0", encode_newaddr(v4(4, "10.244.1.1"), 1)),
        ("set tunl0 up", encode_setlink(4, 1, up=True)),
    ]
    done = Link(4, "tunl0", "ipip", up=True)
    assert device_requests(plan, [ETH0, done], [v4(4, "10.244.1.1")]) == []
    # The address is not known yet: tunl0 is left as it is.
    assert device_requests(ClusterPlan(ipip_pools=True), [done], [stale]) == []
    # No IPIP pool any more: no address of ours stays on it (the device stays).
    assert built(device_requests(ClusterPlan(), [done], [v4(4, "10.244.1.1")])) == [
        ("remove 10.244.1.1/32 from tunl0", encode_deladdr(v4(4, "10.244.1.1"), 1))
    ]


def test_vxlan_calico_made_fixed_and_removed() -> None:
    plan = ClusterPlan(vxlan=DEV, vxlan_pools=True)
    (create,) = device_requests(plan, [ETH0], [])
    want = Vxlan(4096, 4789, ip("172.20.0.1"), 2, False)
    assert create.relinks
    assert create.encode(3) == encode_newlink("vxlan.calico", "vxlan", 3, mac=MAC, vxlan=want)
    assert "vni 4096, port 4789, local 172.20.0.1, dev eth0" in create.what
    # Made with another VNI (or anything Felix checks): deleted, to be made again.
    wrong = Link(9, "vxlan.calico", "vxlan", True, 1450, MAC, Vxlan(1, 4789, b"", 2, False))
    (delete,) = device_requests(plan, [ETH0, wrong], [])
    assert delete.what == "delete vxlan.calico (vni 1 vs 4096)"
    assert delete.encode(4) == encode_dellink(9, 4)
    assert vxlan_mismatch(Link(9, "vxlan.calico", "veth"), want, MAC) == "kind veth, not vxlan"
    other_mac = Link(9, "vxlan.calico", "vxlan", True, 0, bytes(6), want)
    assert vxlan_mismatch(other_mac, want, MAC).startswith("mac 00:00:00:00:00:00")
    assert vxlan_mismatch(GOOD_VX, want, MAC) == ""
    assert [r.what for r in device_requests(plan, [ETH0, GOOD_VX], [])] == [
        "put 10.244.1.0/32 on vxlan.calico"
    ]
    # No VXLAN pool: the device goes; pools but no VTEP of ours yet: left alone.
    (gone,) = device_requests(ClusterPlan(), [ETH0, GOOD_VX], [])
    assert gone.relinks and gone.what == "delete vxlan.calico (no VXLAN pool)"
    assert device_requests(ClusterPlan(vxlan_pools=True), [ETH0, GOOD_VX], []) == []


def route(prefix: str, *hops: Nexthop, metric: int | None = None) -> KernelRoute:
    net = ipaddress.ip_network(prefix)
    rtype = RouteType.UNICAST if hops else RouteType.BLACKHOLE
    return KernelRoute(AF_INET, net.network_address.packed, net.prefixlen, hops, rtype,
                       metric=metric)  # fmt: skip


def test_cluster_routes_are_reconciled_and_others_left_alone() -> None:
    links = [ETH0, Link(4, "tunl0", "ipip"), GOOD_VX, Link(7, "cali1")]
    tunl = Nexthop(ip("172.20.0.2"), 4, onlink=True)
    planned = [
        ClusterRoute("10.244.1.0/30", RTPROT_FELIX),  # blackhole, there already
        ClusterRoute("10.244.2.0/30", RTPROT_FELIX, "tunl0", "172.20.0.2"),  # there already
        ClusterRoute("10.244.3.0/30", 3, "vxlan.calico", "10.244.3.0"),  # wrong gateway now
        ClusterRoute("10.244.4.0/30", RTPROT_FELIX, "eth0", "172.20.0.4"),  # bgpd's, taken over
        ClusterRoute("10.244.5.0/30", RTPROT_FELIX, "tunl0", "172.20.0.5"),  # moved, metric 100
        ClusterRoute("10.244.6.2/32", 3, "vxlan.calico"),  # a device route, missing
        ClusterRoute("10.244.7.0/30", RTPROT_FELIX, "wg0", "172.20.0.7"),  # no such device
    ]
    old_vx = route("10.244.3.0/30", Nexthop(ip("10.244.3.9"), 9, onlink=True))
    bgpd = route("10.244.4.0/30", Nexthop(ip("172.20.0.4"), 2))
    metric = route("10.244.5.0/30", Nexthop(ip("172.20.0.55"), 4, onlink=True), metric=100)
    stale = route("10.244.8.0/30", Nexthop(ip("172.20.0.8"), 4, onlink=True))
    stale_vx = route("10.244.9.0/30", Nexthop(ip("10.244.9.0"), 9, onlink=True))
    entries = [
        RouteEntry(RTPROT_FELIX, route("10.244.1.0/30")),
        RouteEntry(RTPROT_FELIX, route("10.244.2.0/30", tunl)),
        RouteEntry(3, old_vx),
        RouteEntry(201, bgpd),
        RouteEntry(RTPROT_FELIX, metric),
        RouteEntry(RTPROT_FELIX, stale),  # ours, wanted no more
        RouteEntry(3, stale_vx),  # through vxlan.calico: ours whatever its protocol
        RouteEntry(3, route("10.244.1.2/32", Nexthop(b"", 7))),  # a workload route: routes.py's
        RouteEntry(201, route("10.50.0.0/24", Nexthop(ip("172.20.0.9"), 2))),  # bgpd's own
        RouteEntry(2, route("172.20.0.0/24", Nexthop(b"", 2))),  # the kernel's
    ]
    ops, waiting = route_ops(planned, links, entries)
    assert ops == [
        RouteOp(OpKind.REPLACE, route("10.244.3.0/30", Nexthop(ip("10.244.3.0"), 9, True)), 3),
        RouteOp(OpKind.REPLACE, route("10.244.4.0/30", Nexthop(ip("172.20.0.4"), 2, True)),
                RTPROT_FELIX),
        RouteOp(OpKind.REPLACE, route("10.244.5.0/30", Nexthop(ip("172.20.0.5"), 4, True)),
                RTPROT_FELIX),
        RouteOp(OpKind.DELETE, metric, RTPROT_FELIX),  # a replace would leave it beside
        RouteOp(OpKind.REPLACE, route("10.244.6.2/32", Nexthop(b"", 9)), 3),
        RouteOp(OpKind.DELETE, route("10.244.8.0/30", *stale.nexthops, metric=0), RTPROT_FELIX),
        RouteOp(OpKind.DELETE, route("10.244.9.0/30", *stale_vx.nexthops, metric=0), 3),
    ]  # fmt: skip
    assert waiting == ["10.244.7.0/30: device wg0 missing"]
    # Done: nothing more to do.
    after = [RouteEntry(op.protocol or 0, op.route) for op in ops if op.kind is OpKind.REPLACE]
    kept = entries[:2]
    again, _ = route_ops(planned[:6], links, [*kept, *after])
    assert again == []


def test_vtep_neighbour_entries() -> None:
    vteps = [Vtep("n2", "10.244.2.0", MAC, "172.20.0.2")]
    arp = Neighbour(AF_INET, 9, MAC, ip("10.244.2.0"))
    fdb = Neighbour(AF_BRIDGE, 9, MAC, ip("172.20.0.2"), flags=NTF_SELF)
    assert built(neighbour_requests(vteps, 9, [])) == [
        ("add arp 10.244.2.0 lladdr 66:aa:bb:cc:dd:ee on vxlan.calico", encode_newneigh(arp, 1)),
        ("add fdb 66:aa:bb:cc:dd:ee dst 172.20.0.2 on vxlan.calico", encode_newneigh(fdb, 1)),
    ]
    assert neighbour_requests(vteps, 9, [arp, fdb]) == []
    # The node moved: its FDB entry follows; a departed VTEP's entries go; dynamic entries
    # and other devices' entries are not ours.
    moved = Neighbour(AF_BRIDGE, 9, MAC, ip("172.20.0.99"), flags=NTF_SELF)
    old = Neighbour(AF_INET, 9, bytes(6), ip("10.244.7.0"))
    dynamic = Neighbour(AF_INET, 9, bytes(6), ip("10.244.8.0"), state=0x02)
    elsewhere = Neighbour(AF_INET, 2, bytes(6), ip("172.20.0.7"))
    got = built(neighbour_requests(vteps, 9, [arp, moved, old, dynamic, elsewhere]))
    assert got == [
        ("remove arp 10.244.7.0 lladdr 00:00:00:00:00:00 on vxlan.calico",
         encode_delneigh(old, 1)),
        ("add fdb 66:aa:bb:cc:dd:ee dst 172.20.0.2 on vxlan.calico", encode_newneigh(fdb, 1)),
    ]  # fmt: skip
