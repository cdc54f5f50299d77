"""bgpd's FIB programming against real peers: ECMP from two equal paths, graceful restart as
the helper of a BIRD that crashes and comes back, and per-pool programming (IPIP via tunl0
onlink, VXLAN pools left to Felix)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab, LabError, Node
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

AS, PEER_AS = 64512, 65002
PREFIX = "10.99.0.0/24"


def need_bird() -> None:
    missing = missing_programs(BirdPeer)
    if missing:
        pytest.skip(f"bird2 not installed (missing {', '.join(missing)})")


def bgpd_with_peers(node: Node, my_ip: str, peers: list[str]) -> Bgpd:
    docs = resources(
        node="node1",
        ipv4=f"{my_ip}/24",
        asn=AS,
        peers=[{"peerIP": p, "asNumber": PEER_AS} for p in peers],
        blocks=["192.168.10.0/26"],
    )
    return Bgpd(node, "node1", docs)


@pytest.mark.interop
def test_two_equal_paths_make_an_ecmp_route(lab: Lab) -> None:
    need_bird()
    me = lab.add_node("bgpd")
    a, b = lab.add_node("pa"), lab.add_node("pb")
    lab.link(me, a, "10.0.1.1", "10.0.1.2")
    lab.link(me, b, "10.0.2.1", "10.0.2.2")
    for node, rid, addr in ((a, "10.255.0.2", "10.0.1.1"), (b, "10.255.0.3", "10.0.2.1")):
        BirdPeer(node, rid, PEER_AS, [Neighbor(addr, AS)], routes_v4=[PREFIX]).start()
    bgpd = bgpd_with_peers(me, "10.0.1.1", ["10.0.1.2", "10.0.2.2"]).start()
    bgpd.wait_established("10.0.1.2", "10.0.2.2")

    def hops() -> set[str]:
        route: dict[str, Any] = bgpd.kernel_routes(4).get(PREFIX, {})
        return {h["gateway"] for h in route.get("nexthops", [])}

    wait_for(lambda: hops() == {"10.0.1.2", "10.0.2.2"}, 30, message="an ECMP route")
    text = bgpd.bgpctl("explain", PREFIX).stdout
    assert "FIB: yes: installed via 10.0.1.2, 10.0.2.2" in text
    # Outside every IP pool: learned and installed, but not re-advertised (Calico's filter).
    assert "outside every IP pool" in text


@pytest.mark.interop
def test_graceful_restart_helper_keeps_routes_until_end_of_rib(lab: Lab) -> None:
    need_bird()
    me, p = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(me, p, "10.0.1.1", "10.0.1.2")
    keep, drop = "10.99.1.0/24", "10.99.2.0/24"
    peer = BirdPeer(
        p,
        "10.255.0.2",
        PEER_AS,
        [Neighbor("10.0.1.1", AS, graceful_restart=True)],
        routes_v4=[keep, drop],
    ).start()
    bgpd = bgpd_with_peers(me, "10.0.1.1", ["10.0.1.2"]).start()
    bgpd.wait_established("10.0.1.2")
    wait_for(lambda: {keep, drop} <= bgpd.kernel_prefixes(4), 30, message="routes in the FIB")

    peer.kill()  # a crash: no NOTIFICATION, so bgpd keeps the routes (stale)
    wait_for(lambda: bgpd.peer_state("10.0.1.2") != "Established", 30, message="session down")
    end = time.monotonic() + 2
    while time.monotonic() < end:
        assert {keep, drop} <= bgpd.kernel_prefixes(4), "stale routes left the FIB early"
    stale = {r["prefix"]: r for r in bgpd.routes() if r["from_peer"] != "local"}
    assert set(stale) >= {keep, drop}

    # It comes back without `drop`: kept routes never leave; `drop` goes at End-of-RIB.
    peer.routes[4].discard(drop)
    peer.start()
    deadline = time.monotonic() + 60
    while drop in bgpd.kernel_prefixes(4):
        assert keep in bgpd.kernel_prefixes(4), "re-learned route left the FIB"
        assert time.monotonic() < deadline, "stale route not swept after End-of-RIB"
    assert keep in bgpd.kernel_prefixes(4)
    bgpd.wait_established("10.0.1.2")


def _has_ipip(node: Node) -> bool:
    try:
        node.run(["ip", "link", "show", "tunl0"])
    except LabError:
        return False
    return True


@pytest.mark.interop
def test_ipip_routes_via_tunl0_onlink_and_vxlan_pools_left_to_felix(lab: Lab) -> None:
    switch = lab.add_switch("sw")
    n1, n2 = lab.add_node("n1"), lab.add_node("n2")
    ip1 = str(switch.attach(n1).v4).split("/")[0]
    ip2 = str(switch.attach(n2).v4).split("/")[0]
    real_ipip = _has_ipip(n1)
    if not real_ipip:
        # No ipip module here (`modprobe ipip` unavailable, no tunl0): a veth named tunl0
        # stands in, which shows the programming (dev tunl0 onlink) but carries no traffic.
        n1.run(["ip", "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0p"])
        n1.run(["ip", "link", "set", "tunl0", "up"])
    daemons = {}
    for name, node, me, other in (("n1", n1, ip1, ip2), ("n2", n2, ip2, ip1)):
        other_name = "n2" if name == "n1" else "n1"
        docs = resources(
            node=name,
            ipv4=f"{me}/24",
            asn=AS,
            other_nodes={other_name: (f"{other}/24", None)},
            pools=["192.168.0.0/16", "10.50.0.0/16", "10.60.0.0/16"],
            blocks={
                "n1": ["192.168.1.0/26"],
                "n2": ["192.168.2.0/26", "10.50.2.0/26", "10.60.2.0/26"],
            }[name],
        )
        for doc in docs:
            if doc["kind"] == "BGPConfiguration":
                doc["spec"]["programClusterRoutes"] = "Enabled"
            if doc["kind"] == "IPPool" and doc["spec"]["cidr"] == "192.168.0.0/16":
                doc["spec"]["ipipMode"] = "Always"
            if doc["kind"] == "IPPool" and doc["spec"]["cidr"] == "10.50.0.0/16":
                doc["spec"]["vxlanMode"] = "Always"
        daemons[name] = Bgpd(node, name, docs).start()
    daemons["n1"].wait_established(ip2)
    b1 = daemons["n1"]

    def programmed() -> bool:
        k = b1.kernel_routes(4)
        return "192.168.2.0/26" in k and "10.60.2.0/26" in k

    wait_for(programmed, 30, message="n2's blocks in n1's FIB")
    k = b1.kernel_routes(4)
    ipip = k["192.168.2.0/26"]
    assert ipip["dev"] == "tunl0" and ipip["gateway"] == ip2 and "onlink" in ipip["flags"]
    assert k["10.60.2.0/26"]["dev"] != "tunl0"
    assert "10.50.2.0/26" not in k
    e = b1.bgpctl("explain", "10.50.2.0/26").stdout
    assert "FIB: no: not installed: VXLAN: Felix programs" in e
    assert "Loc-RIB: present" in e
    if not real_ipip:
        pytest.skip("ipip module absent (no tunl0): programming checked, IPIP data plane not")
