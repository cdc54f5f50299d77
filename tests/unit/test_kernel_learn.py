"""Which kernel routes bgpd learns (Felix's cali* routes, non-ours routes inside pools), as
the monitor's events arrive."""

from __future__ import annotations

import ipaddress

from bgpd.kernel.fib import AF_INET, AF_INET6, RTPROT_PYBGPD, KernelRoute, Nexthop, RouteType
from bgpd.kernel.learn import RTPROT_KERNEL, KernelLearner, LearnChange

RTPROT_BOOT = 3
FELIX = 80
CALI, ETH, VXLAN = 7, 2, 9


def r(prefix: str, ifindex: int = CALI, gateway: str | None = None, **kw: object) -> KernelRoute:
    net = ipaddress.ip_network(prefix)
    af = AF_INET if net.version == 4 else AF_INET6
    gw = ipaddress.ip_address(gateway).packed if gateway else b""
    return KernelRoute(
        af,
        net.network_address.packed,
        net.prefixlen,
        (Nexthop(gw, ifindex),),
        **kw,  # type: ignore[arg-type]
    )


def learner() -> KernelLearner:
    lr = KernelLearner(["192.168.0.0/16", "fd10::/48"])
    lr.link_changed(CALI, "cali1234567890a")
    lr.link_changed(ETH, "eth0")
    lr.link_changed(VXLAN, "vxlan.calico")
    return lr


def prefixes(changes: list[LearnChange]) -> list[tuple[str, str | None]]:
    return [
        (str(ipaddress.ip_network((c.key[1], c.key[2]))), c.route.ifname if c.route else None)
        for c in changes
    ]


def test_workload_routes_are_learned_and_forgotten() -> None:
    lr = learner()
    got = lr.route_added(RTPROT_BOOT, r("192.168.1.5/32"))
    assert prefixes(got) == [("192.168.1.5/32", "cali1234567890a")]
    assert lr.route_added(RTPROT_BOOT, r("192.168.1.5/32")) == []  # a repeat
    # A cali route outside every pool is learned too (the export policy keeps it in).
    assert prefixes(lr.route_added(RTPROT_BOOT, r("10.9.9.9/32"))) == [
        ("10.9.9.9/32", "cali1234567890a")
    ]
    got = lr.route_removed(RTPROT_BOOT, r("192.168.1.5/32"))
    assert prefixes(got) == [("192.168.1.5/32", None)]
    assert len(lr) == 1


def test_what_is_not_learned() -> None:
    lr = learner()
    assert lr.route_added(RTPROT_PYBGPD, r("192.168.1.5/32")) == []  # ours
    assert lr.route_added(RTPROT_KERNEL, r("192.168.3.0/24", ETH)) == []  # connected
    assert lr.route_added(RTPROT_BOOT, r("10.0.0.0/8", ETH, "10.0.0.1")) == []  # not in a pool
    assert lr.route_added(RTPROT_BOOT, r("192.168.4.4/32", table=100)) == []  # other table
    bh = KernelRoute(AF_INET, bytes([192, 168, 5, 0]), 26, (), RouteType.BLACKHOLE)
    assert lr.route_added(RTPROT_BOOT, bh) == []
    assert len(lr) == 0


def test_non_workload_routes_inside_pools_are_learned() -> None:
    lr = learner()
    got = lr.route_added(RTPROT_BOOT, r("fd10::5/128", ETH, "fe80::1"))
    assert prefixes(got) == [("fd10::5/128", "eth0")]


def test_felix_cluster_routes_are_not_learned() -> None:
    """Felix's routes to other nodes' blocks (its protocol 80, or through a tunnel device)
    are not this node's to originate: learned, the local origination would beat the BGP
    route it copies (BIRD ranks kernel routes below BGP instead)."""
    lr = learner()
    lr.link_changed(4, "tunl0")
    assert lr.route_added(FELIX, r("192.168.9.0/26", 4, "172.20.0.2")) == []  # IPIP
    assert lr.route_added(FELIX, r("192.168.8.0/26", ETH, "172.20.0.3")) == []  # same subnet
    assert lr.route_added(RTPROT_BOOT, r("192.168.7.0/26", VXLAN, "192.168.7.0")) == []
    assert lr.route_added(RTPROT_BOOT, r("192.168.7.9/32", VXLAN)) == []
    assert len(lr) == 0


def test_lowest_metric_decides() -> None:
    lr = learner()
    lr.route_added(RTPROT_KERNEL, r("192.168.6.0/24", ETH, metric=100))
    assert lr.route_added(RTPROT_BOOT, r("192.168.6.0/24", ETH, metric=200)) == []
    got = lr.route_removed(RTPROT_KERNEL, r("192.168.6.0/24", ETH, metric=100))
    assert prefixes(got) == [("192.168.6.0/24", "eth0")]


def test_interface_rename_and_removal() -> None:
    lr = KernelLearner(["192.168.0.0/16"])
    # Routes may arrive before the link is known; a cali name then makes them learned.
    assert lr.route_added(RTPROT_BOOT, r("10.1.1.1/32", 12)) == []
    assert prefixes(lr.link_changed(12, "cali99")) == [("10.1.1.1/32", "cali99")]
    got = lr.link_changed(12, None)  # deleted: the kernel drops its routes silently
    assert prefixes(got) == [("10.1.1.1/32", None)]
    assert lr.ifindex("cali99") is None


def test_pool_changes_and_resync() -> None:
    lr = learner()
    lr.route_added(RTPROT_BOOT, r("172.16.0.0/24", ETH, "10.0.0.9"))
    assert prefixes(lr.set_pools(["192.168.0.0/16", "172.16.0.0/16"])) == [
        ("172.16.0.0/24", "eth0")
    ]
    assert prefixes(lr.set_pools(["192.168.0.0/16"])) == [("172.16.0.0/24", None)]
    lr.route_added(RTPROT_BOOT, r("192.168.1.5/32"))
    lr.route_added(RTPROT_BOOT, r("192.168.1.6/32"))
    # A dump after lost events: .5 is gone, .7 is new, .6 unchanged.
    got = lr.resync([(RTPROT_BOOT, r("192.168.1.6/32")), (RTPROT_BOOT, r("192.168.1.7/32"))])
    assert sorted(prefixes(got), key=str) == [
        ("192.168.1.5/32", None),
        ("192.168.1.7/32", "cali1234567890a"),
    ]
    assert {lr_.prefix for lr_ in lr.learned.values()} == {"192.168.1.6/32", "192.168.1.7/32"}


def test_ignored_interfaces_keep_routes_out_of_learning() -> None:
    """BGPConfiguration ignoredInterfaces: routes through a matching interface are not
    learned (even a workload's), and come back when the glob no longer matches."""
    lr = learner()
    lr.route_added(RTPROT_BOOT, r("192.168.1.5/32"))
    lr.route_added(RTPROT_BOOT, r("192.168.9.0/26", ETH, "192.168.9.1"))
    assert prefixes(lr.set_ignored(["eth*"])) == [("192.168.9.0/26", None)]
    assert lr.set_ignored(["eth*"]) == []  # the same again
    # While ignored, a new route through the interface is not learned either.
    assert lr.route_added(RTPROT_BOOT, r("192.168.9.64/26", ETH, "192.168.9.1")) == []
    got = prefixes(lr.set_ignored(["cali1234567890a"]))
    assert sorted(got) == [
        ("192.168.1.5/32", None),
        ("192.168.9.0/26", "eth0"),
        ("192.168.9.64/26", "eth0"),
    ]
    # From the start (the daemon sets them before its first dump).
    fresh = KernelLearner(["192.168.0.0/16"], ignored=["cali*"])
    fresh.link_changed(CALI, "cali1234567890a")
    assert fresh.route_added(RTPROT_BOOT, r("192.168.1.6/32")) == []
