"""Per-pool FIB programming: VXLAN pools left to Felix, IPIP via tunl0 (CrossSubnet only off
the node's subnet), programClusterRoutes, and what KernelSync installs from it."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.kernel.driver import KernelSync
from bgpd.kernel.fib import AF_INET, RTPROT_PYBGPD, KernelRoute, Nexthop, RouteType
from bgpd.kernel.programming import Programming
from bgpd.plan.kernel_rules import kernel_rules
from bgpd.policy.calico import PoolSpec
from bgpd.rib.route import LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from common.netlink.driver import KernelRoutes

V4 = Family.IPV4_UNICAST
TUNL0 = 5


def pool(cidr: str, ipip: str = "Never", vxlan: str = "Never") -> PoolSpec:
    return PoolSpec(cidr, cidr, "ipv4", ipip, vxlan, False, False, False)


POOLS = (
    pool("192.168.0.0/16"),
    pool("10.10.0.0/16", ipip="Always"),
    pool("10.20.0.0/16", ipip="CrossSubnet"),
    pool("10.30.0.0/16", vxlan="Always"),
)


def packed(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def treat(prog: Programming, prefix: str, nh: str) -> tuple[bool, str | None]:
    net = ipaddress.ip_network(prefix)
    t = prog.treatment(AF_INET, net.network_address.packed, net.prefixlen, packed(nh))
    return t.install, t.tunnel


@pytest.mark.parametrize(
    ("mode", "expect"),
    [
        (
            "Enabled",
            {
                "192.168.1.0/26": (True, None),
                "10.10.1.0/26": (True, "tunl0"),
                "10.20.1.0/26": (True, "tunl0"),
                "10.30.1.0/26": (False, None),
                "8.8.8.0/24": (True, None),
            },
        ),
        (
            None,
            {  # EnabledNoEncapOnly, the HEAD default: IPIP left to Felix
                "192.168.1.0/26": (True, None),
                "10.10.1.0/26": (False, "tunl0"),
                "10.20.1.0/26": (False, "tunl0"),
                "10.30.1.0/26": (False, None),
            },
        ),
        (
            "Disabled",
            {
                "192.168.1.0/26": (False, None),
                "10.10.1.0/26": (False, "tunl0"),
                "8.8.8.0/24": (True, None),
            },
        ),
    ],
)
def test_treatment_per_pool(mode: str | None, expect: dict[str, tuple[bool, str | None]]) -> None:
    prog = Programming(kernel_rules(POOLS, mode, "172.20.0.0/24"))
    for prefix, (install, tunnel) in expect.items():
        got = treat(prog, prefix, "172.30.0.9")
        assert got[0] is install, prefix
        if install:
            assert got[1] == tunnel, prefix


def test_cross_subnet_goes_direct_inside_the_node_subnet() -> None:
    prog = Programming(kernel_rules(POOLS, "Enabled", "172.20.0.0/24"))
    assert treat(prog, "10.20.1.0/26", "172.20.0.9") == (True, None)
    assert treat(prog, "10.20.1.0/26", "172.21.0.9") == (True, "tunl0")
    assert treat(prog, "10.10.1.0/26", "172.20.0.9") == (True, "tunl0")  # Always


def best(prefix: str, *next_hops: str) -> BestChange:
    family, nlri = prefix_to_nlri(prefix)
    peer = PeerInfo("p", packed(next_hops[0]), 64512, 1, 64512)
    route = Route(nlri, family, PathAttributes(next_hop=packed(next_hops[0])), peer)
    mp = tuple(sorted(packed(n) for n in next_hops))
    return BestChange(family, nlri, None, route, None, len(next_hops) > 1, mp)


def gone(prefix: str) -> BestChange:
    family, nlri = prefix_to_nlri(prefix)
    return BestChange(family, nlri, None, None, None, False)


def sync(mode: str = "Enabled") -> KernelSync:
    ks = KernelSync(
        KernelRoutes(RTPROT_PYBGPD),
        programming=Programming(kernel_rules(POOLS, mode, "172.20.0.0/24")),
    )
    ks.planner.link_changed(TUNL0, "tunl0")  # what the driver does with each link event
    return ks


def key(prefix: str) -> tuple[int, bytes, int, int]:
    net = ipaddress.ip_network(prefix)
    return (AF_INET, net.network_address.packed, net.prefixlen, 254)


def test_kernel_sync_installs_per_treatment() -> None:
    ks = sync()
    ks.best_changed(best("192.168.1.0/26", "172.20.0.2", "172.20.0.3"))  # ECMP
    ks.best_changed(best("10.10.1.0/26", "172.21.0.2"))
    ks.best_changed(best("10.30.1.0/26", "172.21.0.2"))
    fib = ks.fib
    ecmp = fib.desired(key("192.168.1.0/26"))
    assert ecmp is not None and {nh.gateway for nh in ecmp.nexthops} == {
        packed("172.20.0.2"),
        packed("172.20.0.3"),
    }
    assert fib.desired(key("10.10.1.0/26")) == KernelRoute(
        AF_INET, packed("10.10.1.0"), 26, (Nexthop(packed("172.21.0.2"), TUNL0, True),)
    )
    assert fib.desired(key("10.30.1.0/26")) is None
    family, nlri = prefix_to_nlri("10.30.1.0/26")
    assert ks.fib_state(family, nlri) == (False, "not installed: VXLAN: Felix programs")


def test_tunnel_missing_then_appearing() -> None:
    ks = KernelSync(
        KernelRoutes(RTPROT_PYBGPD), programming=Programming(kernel_rules(POOLS, "Enabled", None))
    )
    ks.best_changed(best("10.10.1.0/26", "172.21.0.2"))
    family, nlri = prefix_to_nlri("10.10.1.0/26")
    assert ks.fib_state(family, nlri) == (False, "not installed: tunnel device tunl0 missing")
    ks.planner.link_changed(TUNL0, "tunl0")  # what the driver does with a link event
    assert ks.fib.desired(key("10.10.1.0/26")) is not None


def test_blackholes_survive_local_routes_and_go_with_the_block() -> None:
    ks = sync()
    ks.set_blackholes(["192.168.1.0/26", "192.168.2.0/26"])
    blackhole = ks.fib.desired(key("192.168.1.0/26"))
    assert blackhole is not None and blackhole.type is RouteType.BLACKHOLE
    # Our own origination of the block is the best route: the blackhole stays.
    family, nlri = prefix_to_nlri("192.168.1.0/26")
    local = Route(nlri, family, PathAttributes(), LOCAL)
    ks.best_changed(BestChange(family, nlri, None, local, None, False))
    assert ks.fib.desired(key("192.168.1.0/26")) == blackhole
    ks.best_changed(gone("192.168.1.0/26"))
    assert ks.fib.desired(key("192.168.1.0/26")) == blackhole
    ks.set_blackholes(["192.168.2.0/26"])
    assert ks.fib.desired(key("192.168.1.0/26")) is None
    ops = ks.fib.take_ops()
    assert [(o.kind.value, o.route.dst_len) for o in ops] == [("add", 26)]


def test_adopted_routes_wait_for_convergence_and_explain_themselves() -> None:
    ks = sync()
    old = KernelRoute(AF_INET, packed("10.99.0.0"), 24, (Nexthop(packed("172.20.0.7")),), metric=0)
    kept = KernelRoute(AF_INET, packed("10.99.1.0"), 24, (Nexthop(packed("172.20.0.8")),), metric=0)
    ks.fib.adopt({old.key: old, kept.key: kept})
    ks.best_changed(best("10.99.1.0/24", "172.20.0.8"))  # re-learned, same next hop
    assert ks.fib.take_ops() == []  # nothing to do: the adopted route already is it
    family, nlri = prefix_to_nlri("10.99.0.0/24")
    assert ks.fib_state(family, nlri) == (
        True,
        "left from before a restart; removed once converged",
    )
    ks.fib.reconcile_all()  # what converged() does before flushing
    ops = ks.fib.take_ops()
    assert [(o.kind.value, o.route.dst) for o in ops] == [("delete", packed("10.99.0.0"))]
    family, nlri = prefix_to_nlri("10.99.1.0/24")
    assert ks.fib_state(family, nlri) == (True, "installed via 172.20.0.8")


def test_kernel_refusal_is_explained() -> None:
    from bgpd.kernel.fib import RouteFailure

    ks = sync()
    ks.best_changed(best("10.99.2.0/24", "172.20.0.9"))
    (op,) = ks.fib.take_ops()
    ks.fib.record_failures([RouteFailure(op, 101, "Nexthop has invalid gateway")])
    family, nlri = prefix_to_nlri("10.99.2.0/24")
    assert ks.fib_state(family, nlri) == (False, "kernel refused add: Nexthop has invalid gateway")


def test_static_routes_outrank_bgp_and_go_with_the_plan() -> None:
    """BGPPeer reachableBy: `route 10.99.9.9/32 via 172.20.0.1` is installed, ahead of a BGP
    route to the same prefix (BIRD's static 200 over BGP 100), and removed when the plan
    drops it; the BGP route then takes its place."""
    ks = sync()
    ks.set_static_routes([("10.99.9.9/32", "172.20.0.1")])
    static = KernelRoute(AF_INET, packed("10.99.9.9"), 32, (Nexthop(packed("172.20.0.1")),))
    assert ks.fib.desired(key("10.99.9.9/32")) == static
    assert [(o.kind.value, o.route) for o in ks.fib.take_ops()] == [("add", static)]
    ks.best_changed(best("10.99.9.9/32", "172.20.0.5"))
    assert ks.fib.desired(key("10.99.9.9/32")) == static
    assert ks.fib.take_ops() == []
    family, nlri = prefix_to_nlri("10.99.9.9/32")
    ks.fib.adopt({static.key: static})  # as if the add had been applied
    assert ks.fib_state(family, nlri) == (
        True,
        "static route via 172.20.0.1 (a peer's reachableBy)",
    )
    ks.set_static_routes([("10.99.9.9/32", "172.20.0.1")])  # the same again: nothing to do
    assert ks.fib.take_ops() == []
    ks.set_static_routes([])
    bgp = ks.fib.desired(key("10.99.9.9/32"))
    assert bgp is not None and bgp.nexthops[0].gateway == packed("172.20.0.5")
    ks.best_changed(gone("10.99.9.9/32"))
    assert ks.fib.desired(key("10.99.9.9/32")) is None
    ks.set_static_routes([("10.99.8.0/24", "172.20.0.1")])
    ks.set_static_routes([])
    assert ks.fib.desired(key("10.99.8.0/24")) is None
