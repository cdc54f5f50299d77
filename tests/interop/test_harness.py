"""The interop harness itself, proven with real daemons only (no bgpd): if these fail, interop
test failures are the harness's fault, not bgpd's."""

from __future__ import annotations

import pytest

from labs.harness.lab import Lab, Link, Node, netns_names
from labs.harness.peers import (
    BirdPeer,
    ExabgpPeer,
    FrrPeer,
    GobgpPeer,
    Neighbor,
    Peer,
    missing_programs,
    parse_bird_routes,
)
from labs.harness.wait import WaitTimeout, holds_for, wait_for

PACKAGES = {BirdPeer: "bird2", FrrPeer: "frr", GobgpPeer: "gobgpd", ExabgpPeer: "exabgp (PyPI)"}


def need(*peer_types: type[Peer]) -> None:
    for peer_type in peer_types:
        missing = missing_programs(peer_type)
        if missing:
            pytest.skip(f"{PACKAGES[peer_type]} not installed (missing {', '.join(missing)})")


def two_nodes(lab: Lab) -> tuple[Node, Node, Link]:
    a, b = lab.add_node("a"), lab.add_node("b")
    return a, b, lab.link(a, b, "10.0.12.1", "10.0.12.2", "fd00:12::1", "fd00:12::2")


def exchange(
    left: Peer, right: Peer, left_routes: dict[int, str], right_routes: dict[int, str]
) -> None:
    """Both sessions up, each side's IPv4 and IPv6 route at the other, and a withdrawal seen."""
    left.start()
    right.start()
    left.wait_established()
    right.wait_established()
    for family in (4, 6):
        right.wait_received(family, [left_routes[family]])
        left.wait_received(family, [right_routes[family]])
    route = left.received_routes(4)[right_routes[4]][0]
    assert route.as_path == (right.local_as,)
    assert route.next_hop == left.neighbors[0].address  # eBGP: next hop self
    extra = "10.77.0.0/16"
    right.announce(extra)
    left.wait_received(4, [extra])
    right.withdraw(extra)
    left.wait_received(4, absent=[extra])


@pytest.mark.interop
def test_bird_frr_exchange_ipv4_and_ipv6(lab: Lab) -> None:
    need(BirdPeer, FrrPeer)
    a, b, _ = two_nodes(lab)
    bird = BirdPeer(
        a,
        "10.255.0.1",
        65001,
        [Neighbor("10.0.12.2", 65002), Neighbor("fd00:12::2", 65002)],
        routes_v4=["10.99.1.0/24"],
        routes_v6=["fd00:99:1::/64"],
        kernel=True,
    )
    frr = FrrPeer(
        b,
        "10.255.0.2",
        65002,
        [Neighbor("10.0.12.1", 65001), Neighbor("fd00:12::1", 65001)],
        routes_v4=["10.99.2.0/24"],
        routes_v6=["fd00:99:2::/64"],
        kernel=True,
    )
    exchange(
        bird,
        frr,
        {4: "10.99.1.0/24", 6: "fd00:99:1::/64"},
        {4: "10.99.2.0/24", 6: "fd00:99:2::/64"},
    )
    # kernel=True: each daemon put what it learned into its namespace's FIB.
    wait_for(lambda: "10.99.2.0/24" in a.route_prefixes(4, proto="bird"), 15, message="BIRD FIB")
    wait_for(lambda: "fd00:99:1::/64" in b.route_prefixes(6, proto="bgp"), 15, message="FRR FIB")
    assert a.ping("10.0.12.2") and b.ping("fd00:12::1")


@pytest.mark.interop
def test_bird_gobgp_exchange_ipv4_and_ipv6(lab: Lab) -> None:
    need(BirdPeer, GobgpPeer)
    a, b, _ = two_nodes(lab)
    bird = BirdPeer(
        a,
        "10.255.0.1",
        65001,
        [Neighbor("10.0.12.2", 65003), Neighbor("fd00:12::2", 65003)],
        routes_v4=["10.99.1.0/24"],
        routes_v6=["fd00:99:1::/64"],
    )
    gobgp = GobgpPeer(
        b,
        "10.255.0.3",
        65003,
        [Neighbor("10.0.12.1", 65001), Neighbor("fd00:12::1", 65001)],
        routes_v4=["10.99.3.0/24"],
        routes_v6=["fd00:99:3::/64"],
    )
    exchange(
        bird,
        gobgp,
        {4: "10.99.1.0/24", 6: "fd00:99:1::/64"},
        {4: "10.99.3.0/24", 6: "fd00:99:3::/64"},
    )
    assert gobgp.received_routes(6)["fd00:99:1::/64"][0].next_hop == "fd00:12::1"


@pytest.mark.interop
def test_bird_exabgp_exchange_ipv4_and_ipv6(lab: Lab) -> None:
    need(BirdPeer, ExabgpPeer)
    a, b, _ = two_nodes(lab)
    bird = BirdPeer(
        a,
        "10.255.0.1",
        65001,
        [Neighbor("10.0.12.2", 65004), Neighbor("fd00:12::2", 65004)],
        routes_v4=["10.99.1.0/24"],
        routes_v6=["fd00:99:1::/64"],
    )
    exa = ExabgpPeer(
        b,
        "10.255.0.4",
        65004,
        [Neighbor("10.0.12.1", 65001), Neighbor("fd00:12::1", 65001)],
        routes_v4=["10.99.4.0/24"],
        routes_v6=["fd00:99:4::/64"],
    )
    exchange(
        bird,
        exa,
        {4: "10.99.1.0/24", 6: "fd00:99:1::/64"},
        {4: "10.99.4.0/24", 6: "fd00:99:4::/64"},
    )
    assert exa.received_routes(6)["fd00:99:1::/64"][0].next_hop == "fd00:12::1"
    # A peer that goes away takes its routes with it.
    bird.stop()
    exa.wait_not_established()
    assert exa.received_prefixes(4) == set()


@pytest.mark.interop
def test_route_reflection_bird_reflects_between_frr_and_gobgp(lab: Lab) -> None:
    """iBGP on one bridge segment: BIRD reflects between an FRR and a GoBGP client, which see
    ORIGINATOR_ID and CLUSTER_LIST."""
    need(BirdPeer, FrrPeer, GobgpPeer)
    rr, c1, c2 = lab.add_node("rr"), lab.add_node("c1"), lab.add_node("c2")
    segment = lab.add_switch("lan", "10.0.30.0/24", "fd00:30::/64")
    for node in (rr, c1, c2):
        segment.attach(node)
    # Attached in order: rr .1, c1 .2, c2 .3.
    reflector = BirdPeer(
        rr,
        "10.255.0.1",
        65000,
        [
            Neighbor("10.0.30.2", 65000, rr_client=True),
            Neighbor("10.0.30.3", 65000, rr_client=True),
        ],
    )
    frr = FrrPeer(c1, "10.255.0.2", 65000, [("10.0.30.1", 65000)], routes_v4=["10.99.21.0/24"])
    gobgp = GobgpPeer(c2, "10.255.0.3", 65000, [("10.0.30.1", 65000)], routes_v4=["10.99.22.0/24"])
    for peer in (reflector, frr, gobgp):
        peer.start()
    reflector.wait_established()
    gobgp.wait_received(4, ["10.99.21.0/24"])
    frr.wait_received(4, ["10.99.22.0/24"])
    (at_gobgp,) = gobgp.received_routes(4)["10.99.21.0/24"]
    (at_frr,) = frr.received_routes(4)["10.99.22.0/24"]
    assert (at_gobgp.next_hop, at_gobgp.originator_id, at_gobgp.cluster_list) == (
        "10.0.30.2",
        "10.255.0.2",
        ("10.255.0.1",),
    )
    assert (at_frr.next_hop, at_frr.originator_id, at_frr.cluster_list) == (
        "10.0.30.3",
        "10.255.0.3",
        ("10.255.0.1",),
    )
    assert at_frr.as_path == () and at_frr.local_pref == 100


@pytest.mark.interop
def test_bird_bird_tcp_md5(lab: Lab) -> None:
    need(BirdPeer)
    a, b, _ = two_nodes(lab)
    left = BirdPeer(a, "10.255.0.1", 65001, [("10.0.12.2", 65002)], password="s3cret",
                    routes_v4=["10.99.1.0/24"])  # fmt: skip
    right = BirdPeer(b, "10.255.0.2", 65002, [("10.0.12.1", 65001)], password="s3cret",
                     passive=True)  # fmt: skip
    left.start()
    right.start()
    left.wait_established()
    right.wait_received(4, ["10.99.1.0/24"])
    # A wrong key: the kernel drops the segments, so the session must not come back.
    right.stop()
    right.password = "wrong"
    right.start()
    left.wait_not_established()
    holds_for(lambda: not left.established(), 4, message="session with mismatched MD5 key down")


@pytest.mark.interop
def test_freeze_lets_the_hold_timer_expire(lab: Lab) -> None:
    need(BirdPeer, GobgpPeer)
    a, b, _ = two_nodes(lab)
    bird = BirdPeer(a, "10.255.0.1", 65001, [("10.0.12.2", 65003)], hold_time=3)
    gobgp = GobgpPeer(b, "10.255.0.3", 65003, [("10.0.12.1", 65001)], hold_time=3,
                      routes_v4=["10.99.3.0/24"])  # fmt: skip
    bird.start()
    gobgp.start()
    bird.wait_received(4, ["10.99.3.0/24"])
    gobgp.freeze()
    bird.wait_not_established(timeout=10)
    bird.wait_received(4, absent=["10.99.3.0/24"], timeout=5)
    gobgp.thaw()
    bird.wait_received(4, ["10.99.3.0/24"], timeout=30)


@pytest.mark.interop
def test_lab_cleans_up_namespaces_and_processes(netns_ok: None) -> None:
    need(BirdPeer)
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        hosts = [lab.add_node(f"h{i}") for i in range(3)]
        switch = lab.add_switch("sw")
        ends = [switch.attach(h) for h in hosts]
        v4, v6 = [str(e.v4) for e in ends], [str(e.v6) for e in ends]
        assert hosts[0].ping(v4[2]) and hosts[2].ping(v6[1])
        BirdPeer(hosts[0], "10.255.0.1", 65001, [(v4[1], 65002)]).start()
        hosts[1].popen(["sleep", "300"])
        # A process the lab did not start itself still dies with its namespace.
        hosts[2].run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        names = lab.namespaces()
        pids = [pid for h in hosts for pid in h.pids()]
        assert len(pids) == 3
        raise RuntimeError("boom")
    assert not set(names) & set(netns_names())
    assert not lab.rundir.exists()
    wait_for(lambda: not any(_alive(pid) for pid in pids), 5, message=f"pids {pids} gone")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_wait_for_returns_value_or_times_out() -> None:
    values = iter([0, None, 7])
    assert wait_for(lambda: next(values), timeout=5, interval=0.01) == 7
    with pytest.raises(WaitTimeout, match="the answer"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, message="the answer")
    errors = iter([OSError("not yet"), OSError("still not")])

    def flaky() -> str:
        error = next(errors, None)
        if error:
            raise error
        return "up"

    assert wait_for(flaky, timeout=5, interval=0.01, ignore=(OSError,)) == "up"
    with pytest.raises(WaitTimeout, match="went false"):
        holds_for(iter([True, True, False]).__next__, 5, 0.01, message="went false")


BIRD_SHOW_ROUTE_ALL = """\
BIRD 2.0.12 ready.
Table master4:
10.99.2.0/24         unicast [n10_0_12_2 11:31:21.224] * (100) [AS65002i]
\tvia 10.0.12.2 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65002 65010
\tBGP.next_hop: 10.0.12.2
\tBGP.med: 5
\tBGP.local_pref: 100
\tBGP.community: (65000,1) (65000,2)
\tBGP.large_community: (65000, 1, 2)
                     unicast [n10_0_13_2 11:31:22.000 from 10.0.13.9] (100) [AS65003i]
\tvia 10.0.13.2 on eth1
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path:
\tBGP.next_hop: 10.0.13.2
\tBGP.local_pref: 200
\tBGP.originator_id: 10.255.0.7
\tBGP.cluster_list: 10.255.0.9 10.255.0.8

Table master6:
fd00:99:2::/64       unicast [nfd00_12__2 11:31:21.224] * (100) [AS65002i]
\tvia fd00:12::2 on eth0
\tType: BGP univ
\tBGP.origin: IGP
\tBGP.as_path: 65002
\tBGP.next_hop: fd00:12::2 fe80::5441:9dff:fea9:abdf
\tBGP.local_pref: 100
"""


def test_parse_bird_routes() -> None:
    routes = parse_bird_routes(
        BIRD_SHOW_ROUTE_ALL,
        {"n10_0_12_2": "10.0.12.2", "n10_0_13_2": "10.0.13.2", "nfd00_12__2": "fd00:12::2"},
    )
    first, second = routes["10.99.2.0/24"]
    assert (first.neighbor, first.best, first.as_path, first.med) == (
        "10.0.12.2",
        True,
        (65002, 65010),
        5,
    )
    assert first.communities == {"65000:1", "65000:2"}
    assert first.large_communities == {"65000:1:2"}
    assert (second.neighbor, second.best, second.as_path, second.local_pref) == (
        "10.0.13.2",
        False,
        (),
        200,
    )
    assert second.originator_id == "10.255.0.7"
    assert second.cluster_list == ("10.255.0.9", "10.255.0.8")
    (v6,) = routes["fd00:99:2::/64"]
    assert v6.next_hop == "fd00:12::2"
