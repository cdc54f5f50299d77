"""FibPlanner, the pure decision half of bgpd's kernel side: best routes, blackholes, per-pool
programming and tunnel link indexes in; the route ops the driver would send out."""

from __future__ import annotations

import ipaddress

from bgpd.kernel.fib import AF_INET, AF_INET6, OpKind, RouteOp
from bgpd.kernel.planner import FibPlanner, route_key
from bgpd.kernel.programming import Programming
from bgpd.plan.kernel_rules import kernel_rules
from bgpd.policy.calico import PoolSpec
from bgpd.rib.route import LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from common.netlink.route import KernelRoute, Nexthop, RouteType

TUNL0 = 7


def pool(cidr: str, ipip: str = "Never", vxlan: str = "Never") -> PoolSpec:
    family = "ipv6" if ":" in cidr else "ipv4"
    return PoolSpec(cidr, cidr, family, ipip, vxlan, False, False, False)


POOLS = (
    pool("192.168.0.0/16"),
    pool("10.10.0.0/16", ipip="Always"),
    pool("10.20.0.0/16", ipip="CrossSubnet"),
    pool("10.30.0.0/16", vxlan="Always"),
)
NODE_NET = "172.20.0.0/24"


def programming(mode: str | None) -> Programming:
    return Programming(kernel_rules(POOLS, mode, NODE_NET))


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def net(prefix: str) -> tuple[int, bytes, int]:
    n = ipaddress.ip_network(prefix)
    return (AF_INET if n.version == 4 else AF_INET6), n.network_address.packed, n.prefixlen


def best(prefix: str, *next_hops: bytes) -> BestChange:
    family, nlri = prefix_to_nlri(prefix)
    peer = PeerInfo("p", next_hops[0][:4], 64512, 1, 64512)
    route = Route(nlri, family, PathAttributes(next_hop=next_hops[0]), peer)
    return BestChange(family, nlri, None, route, None, len(next_hops) > 1, tuple(next_hops))


def gone(prefix: str) -> BestChange:
    family, nlri = prefix_to_nlri(prefix)
    return BestChange(family, nlri, None, None, None, False)


def local(prefix: str) -> BestChange:
    family, nlri = prefix_to_nlri(prefix)
    return BestChange(family, nlri, None, Route(nlri, family, PathAttributes(), LOCAL), None, False)


def ops(p: FibPlanner) -> list[tuple[str, str, tuple[Nexthop, ...], RouteType]]:
    return [
        (o.kind.value, f"{ipaddress.ip_address(o.route.dst)}/{o.route.dst_len}",
         o.route.nexthops, o.route.type)
        for o in p.fib.take_ops()
    ]  # fmt: skip


def state(p: FibPlanner, prefix: str) -> tuple[bool, str]:
    family, nlri = prefix_to_nlri(prefix)
    return p.fib_state(family, nlri)


UNICAST, BLACKHOLE = RouteType.UNICAST, RouteType.BLACKHOLE


def test_direct_and_ecmp_routes_become_adds() -> None:
    p = FibPlanner(programming("Enabled"))
    p.best_changed(best("192.168.1.0/26", ip("172.20.0.2"), ip("172.20.0.3")))
    p.best_changed(best("8.8.8.0/24", ip("172.20.0.9")))
    assert ops(p) == [
        ("add", "192.168.1.0/26", (Nexthop(ip("172.20.0.2")), Nexthop(ip("172.20.0.3"))), UNICAST),
        ("add", "8.8.8.0/24", (Nexthop(ip("172.20.0.9")),), UNICAST),
    ]
    p.best_changed(gone("8.8.8.0/24"))
    assert ops(p) == [("delete", "8.8.8.0/24", (Nexthop(ip("172.20.0.9")),), UNICAST)]
    assert state(p, "8.8.8.0/24") == (False, "no best path")


def test_tunnel_routes_follow_the_device() -> None:
    p = FibPlanner(programming("Enabled"))
    p.best_changed(best("10.10.1.0/26", ip("172.21.0.2")))
    assert ops(p) == []
    assert state(p, "10.10.1.0/26") == (False, "not installed: tunnel device tunl0 missing")
    p.link_changed(3, "eth0")  # not a tunnel: nothing to redo
    assert ops(p) == []
    p.link_changed(TUNL0, "tunl0")
    via = (Nexthop(ip("172.21.0.2"), TUNL0, onlink=True),)
    assert ops(p) == [("add", "10.10.1.0/26", via, UNICAST)]
    assert state(p, "10.10.1.0/26") == (True, "installed via 172.21.0.2 onlink")
    # CrossSubnet: a next hop in the node's subnet goes direct, another through tunl0.
    p.best_changed(best("10.20.1.0/26", ip("172.20.0.5")))
    p.best_changed(best("10.20.2.0/26", ip("172.22.0.5")))
    assert ops(p) == [
        ("add", "10.20.1.0/26", (Nexthop(ip("172.20.0.5")),), UNICAST),
        ("add", "10.20.2.0/26", (Nexthop(ip("172.22.0.5"), TUNL0, onlink=True),), UNICAST),
    ]
    # The device comes back under another index: routes through it move along.
    p.link_changed(TUNL0, None)
    p.link_changed(TUNL0 + 1, "tunl0")
    moved = (Nexthop(ip("172.21.0.2"), TUNL0 + 1, onlink=True),)
    assert ops(p)[0] == ("replace", "10.10.1.0/26", moved, UNICAST)
    # And goes: nothing of ours points at a missing device.
    p.link_changed(TUNL0 + 1, None)
    assert [(k, d) for k, d, _, _ in ops(p)] == [
        ("delete", "10.10.1.0/26"),
        ("delete", "10.20.2.0/26"),
    ]
    assert p.ifindex("tunl0") is None


def test_program_cluster_routes_moves_ipip_to_felix_and_back() -> None:
    p = FibPlanner(programming("Enabled"))
    p.link_changed(TUNL0, "tunl0")
    p.best_changed(best("10.10.1.0/26", ip("172.21.0.2")))
    p.best_changed(best("10.30.1.0/26", ip("172.21.0.2")))
    p.best_changed(best("192.168.1.0/26", ip("172.20.0.2")))
    assert [d for _, d, _, _ in ops(p)] == ["10.10.1.0/26", "192.168.1.0/26"]
    assert state(p, "10.30.1.0/26") == (False, "not installed: VXLAN: Felix programs")
    p.set_programming(programming(None))  # EnabledNoEncapOnly, the default
    assert [(k, d) for k, d, _, _ in ops(p)] == [("delete", "10.10.1.0/26")]
    assert state(p, "10.10.1.0/26") == (
        False,
        "not installed: IPIP with programClusterRoutes EnabledNoEncapOnly: Felix programs",
    )
    p.set_programming(programming("Disabled"))
    assert [(k, d) for k, d, _, _ in ops(p)] == [("delete", "192.168.1.0/26")]
    p.set_programming(programming("Enabled"))
    assert [(k, d) for k, d, _, _ in ops(p)] == [("add", "10.10.1.0/26"), ("add", "192.168.1.0/26")]


def test_blackholes_only_in_pools_we_program() -> None:
    p = FibPlanner(programming(None))
    p.set_blackholes(["192.168.1.0/26", "10.10.1.0/26", "10.30.1.0/26"])
    assert ops(p) == [("add", "192.168.1.0/26", (), BLACKHOLE)]
    assert state(p, "192.168.1.0/26") == (True, "blackhole route for a local block")
    assert state(p, "10.10.1.0/26") == (
        False,
        "blackhole not installed: IPIP with programClusterRoutes EnabledNoEncapOnly: "
        "Felix programs",
    )
    assert state(p, "10.30.1.0/26") == (False, "blackhole not installed: VXLAN: Felix programs")
    p.set_programming(programming("Enabled"))
    assert ops(p) == [("add", "10.10.1.0/26", (), BLACKHOLE)]
    p.set_blackholes(["10.10.1.0/26"])
    assert ops(p) == [("delete", "192.168.1.0/26", (), BLACKHOLE)]


def test_blackhole_stays_under_our_own_route_and_backs_a_skipped_one() -> None:
    p = FibPlanner(programming("Enabled"))
    p.set_blackholes(["192.168.1.0/26", "10.10.2.0/26"])
    assert len(ops(p)) == 2
    # Our own origination of the block is the best route: the blackhole stays.
    p.best_changed(local("192.168.1.0/26"))
    p.best_changed(gone("192.168.1.0/26"))
    assert ops(p) == []
    # A peer's route for our block wins while it lasts (the kernel forwards it), then the
    # blackhole is back.
    p.best_changed(best("192.168.1.0/26", ip("172.20.0.2")))
    assert ops(p) == [("replace", "192.168.1.0/26", (Nexthop(ip("172.20.0.2")),), UNICAST)]
    p.best_changed(gone("192.168.1.0/26"))
    assert ops(p) == [("replace", "192.168.1.0/26", (), BLACKHOLE)]
    # A route that cannot go in (no tunl0 yet) leaves the blackhole where it is.
    p.best_changed(best("10.10.2.0/26", ip("172.21.0.2")))
    assert ops(p) == []
    assert state(p, "10.10.2.0/26") == (True, "not installed: tunnel device tunl0 missing")
    p.link_changed(TUNL0, "tunl0")
    assert [(k, t) for k, _, _, t in ops(p)] == [("replace", UNICAST)]


def test_ipv6_next_hop_keeps_the_global_half_and_keys_are_masked() -> None:
    p = FibPlanner()
    family, nlri = prefix_to_nlri("fd10:1::/64")
    both = ip("fd00::2") + ip("fe80::2")  # MP_REACH global + link-local
    peer = PeerInfo("p", ip("fd00::2"), 64512, 1, 64512)
    route = Route(nlri, family, PathAttributes(next_hop=both), peer)
    p.best_changed(BestChange(family, nlri, None, route, None, False))
    assert ops(p) == [("add", "fd10:1::/64", (Nexthop(ip("fd00::2")),), UNICAST)]
    # A prefix with host bits set (a sloppy peer) lands on the masked key.
    assert route_key(Family.IPV4_UNICAST, bytes([22, 10, 1, 7])) == (
        AF_INET, ip("10.1.4.0"), 22, 254
    )  # fmt: skip


def test_no_usable_next_hop_is_explained() -> None:
    p = FibPlanner()
    family, nlri = prefix_to_nlri("10.99.0.0/24")
    peer = PeerInfo("p", ip("172.20.0.2"), 64512, 1, 64512)
    route = Route(nlri, family, PathAttributes(next_hop=b"\x01\x02"), peer)
    p.best_changed(BestChange(family, nlri, None, route, None, False))
    assert ops(p) == []
    assert state(p, "10.99.0.0/24") == (False, "not installed: no usable next hop")


def test_adopted_route_matching_the_decision_needs_no_op() -> None:
    p = FibPlanner()
    old = KernelRoute(*net("10.99.1.0/24"), (Nexthop(ip("172.20.0.8")),), metric=0)
    p.fib.adopt({old.key: old})
    p.best_changed(best("10.99.1.0/24", ip("172.20.0.8")))
    assert p.fib.take_ops() == []
    p.best_changed(best("10.99.1.0/24", ip("172.20.0.9")))
    (op,) = p.fib.take_ops()
    # The kernel's metric is kept: a replace without it would add a second route.
    assert op == RouteOp(
        OpKind.REPLACE, KernelRoute(*net("10.99.1.0/24"), (Nexthop(ip("172.20.0.9")),), metric=0)
    )
