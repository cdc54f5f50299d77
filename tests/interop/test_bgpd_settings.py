"""Calico's BGP settings on the wire (issue 15), against BIRD 2 and FRR in network namespaces:
prefixAdvertisement communities (standard and large) on what bgpd advertises;
numAllowedLocalASNumbers; nextHopMode Keep / keepOriginalNextHop towards eBGP peers;
reachableBy static routes installed and removed with the plan; ADD-PATH both ways, several
paths per prefix at the receiving peer; logSeverityScreen as the log level; ignoredInterfaces
keeping routes out of learning and export; localWorkloadSelector sessions with a workload
running BIRD, with localWorkloadPeeringIPV4 as bgpd's address."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from labs.harness.bgpd_node import Bgpd
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, FrrPeer, Neighbor, Peer, missing_programs
from labs.harness.wait import holds_for, wait_for

PACKAGES = {BirdPeer: "bird2", FrrPeer: "frr"}
BGPD_AS = 64512
POOLS = ["192.168.0.0/16", "fd10::/48", "10.99.0.0/16", "10.98.0.0/16", "172.16.0.0/16"]
BLOCK, BLOCK6, PLAIN_BLOCK = "192.168.10.0/26", "fd10:0:0:10::/122", "172.16.5.0/26"

pytestmark = pytest.mark.interop


def need(*peer_types: type[Peer]) -> None:
    for peer_type in peer_types:
        missing = missing_programs(peer_type)
        if missing:
            pytest.skip(f"{PACKAGES[peer_type]} not installed (missing {', '.join(missing)})")


def res(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def cluster(
    *,
    ipv4: str,
    ipv6: str | None = None,
    config: dict[str, Any] | None = None,
    peers: list[dict[str, Any]] = (),  # type: ignore[assignment]
    blocks: list[str] = (BLOCK,),  # type: ignore[assignment]
    extra: list[dict[str, Any]] = (),  # type: ignore[assignment]
    pools: list[str] = POOLS,
) -> list[dict[str, Any]]:
    bgp: dict[str, Any] = {"ipv4Address": ipv4}
    if ipv6:
        bgp["ipv6Address"] = ipv6
    docs = [
        res(
            "BGPConfiguration",
            "default",
            {"asNumber": BGPD_AS, "nodeToNodeMeshEnabled": False, **(config or {})},
        ),
        res("Node", "node1", {"bgp": bgp}),
    ]
    docs += [res("BGPPeer", f"peer-{i}", p) for i, p in enumerate(peers)]
    docs += [res("IPPool", f"pool-{i}", {"cidr": c}) for i, c in enumerate(pools)]
    docs += [
        res("BlockAffinity", f"node1-block-{i}", {"node": "node1", "cidr": c, "state": "confirmed"})
        for i, c in enumerate(blocks)
    ]
    return [*docs, *extra]


def write(bgpd: Bgpd, docs: list[dict[str, Any]]) -> None:
    tmp = bgpd.config.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, bgpd.config)


def protocol(bgpd: Bgpd, name: str) -> dict[str, Any]:
    out = json.loads(bgpd.bgpctl("show", "protocols", "all", name, "--json").stdout)
    return out[0] if isinstance(out, list) else out  # type: ignore[no-any-return]


# --- communities --------------------------------------------------------------------------


@pytest.mark.parametrize("peer_type", [BirdPeer, FrrPeer], ids=lambda t: t.__name__)
def test_prefix_advertisement_communities_reach_the_peer(lab: Lab, peer_type: type[Peer]) -> None:
    need(peer_type)
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, "10.0.40.1", "10.0.40.2", "fd00:40::1", "fd00:40::2")
    config = {
        "communities": [
            {"name": "site", "value": "65000:100"},
            {"name": "big", "value": "65000:1:2"},
        ],
        "prefixAdvertisements": [
            {"cidr": "192.168.0.0/16", "communities": ["site", "big", "65000:7"]},
            {"cidr": "fd10::/48", "communities": ["big"]},
        ],
    }
    peers = [
        {"peerIP": "10.0.40.2", "asNumber": 65002},
        {"peerIP": "fd00:40::2", "asNumber": 65002},
    ]
    docs = cluster(
        ipv4="10.0.40.1/24",
        ipv6="fd00:40::1/64",
        config=config,
        peers=peers,
        blocks=[BLOCK, BLOCK6, PLAIN_BLOCK],
    )
    peer = peer_type(
        b, "10.255.0.2", 65002, [Neighbor("10.0.40.1", BGPD_AS), Neighbor("fd00:40::1", BGPD_AS)]
    ).start()
    bgpd = Bgpd(a, "node1", docs).start()
    bgpd.wait_established("10.0.40.2", "fd00:40::2")
    peer.wait_received(4, [BLOCK, PLAIN_BLOCK])
    peer.wait_received(6, [BLOCK6])
    got = peer.received_routes(4)[BLOCK][0]
    assert got.communities == {"65000:100", "65000:7"}
    assert got.large_communities == {"65000:1:2"}
    plain = peer.received_routes(4)[PLAIN_BLOCK][0]
    assert not plain.communities and not plain.large_communities  # in no prefixAdvertisement
    six = peer.received_routes(6)[BLOCK6][0]
    assert six.large_communities == {"65000:1:2"} and not six.communities
    # bgpctl shows what each session's exports get.
    detail = protocol(bgpd, "Global_10_0_40_2")
    assert detail["communities"] == ["192.168.0.0/16: 65000:7 65000:100 65000:1:2"]


# --- allow local as -------------------------------------------------------------------------


def test_allow_local_as_accepts_our_as_in_the_path_that_often(lab: Lab) -> None:
    need(BirdPeer)
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, "10.0.41.1", "10.0.41.2")
    once, twice = "10.60.1.0/24", "10.60.2.0/24"
    # BIRD prepends our AS in its export filter (inline: a named one would have to come
    # before the protocol), then its own as it sends.
    prepend = (
        "export filter {"
        f" if net = {once} then bgp_path.prepend({BGPD_AS});"
        f" if net = {twice} then {{ bgp_path.prepend({BGPD_AS}); bgp_path.prepend({BGPD_AS}); }}"
        " if source ~ [RTS_STATIC, RTS_BGP] then accept; reject; };"
    )
    peer = BirdPeer(
        b,
        "10.0.41.2",
        65002,
        [Neighbor("10.0.41.1", BGPD_AS, af_extra=prepend)],
        routes_v4=[once, twice],
    ).start()

    def docs(allowed: int | None) -> list[dict[str, Any]]:
        spec: dict[str, Any] = {"peerIP": "10.0.41.2", "asNumber": 65002}
        if allowed is not None:
            spec["numAllowedLocalASNumbers"] = allowed
        return cluster(ipv4="10.0.41.1/24", peers=[spec])

    bgpd = Bgpd(a, "node1", docs(None)).start()
    bgpd.wait_established("10.0.41.2")
    peer.wait_received(4, [BLOCK])
    # BIRD sent both; each has our AS in its path, so neither is accepted.
    holds_for(
        lambda: not ({once, twice} & bgpd.kernel_prefixes(4)),
        3,
        message="routes with our AS stay out",
    )
    write(bgpd, docs(1))
    wait_for(lambda: once in bgpd.kernel_prefixes(4), 40, message="our AS once: accepted")
    assert twice not in bgpd.kernel_prefixes(4)  # twice is more than allowed
    routes = {r["prefix"]: r for r in bgpd.routes()}
    assert routes[once]["as_path"].split() == ["65002", str(BGPD_AS)]
    assert protocol(bgpd, "Global_10_0_41_2")["allow_local_as"] == 1
    write(bgpd, docs(2))
    wait_for(lambda: twice in bgpd.kernel_prefixes(4), 40, message="our AS twice: accepted")


# --- next hop keep -------------------------------------------------------------------------------


def test_next_hop_keep_towards_ebgp_peers(lab: Lab) -> None:
    """Upstream U announces a route; bgpd passes it on to R1 (keepOriginalNextHop, FRR), R2
    (nextHopMode Keep, BIRD) with U's next hop, and to R3 (default, BIRD) with its own."""
    need(BirdPeer, FrrPeer)
    sw = lab.add_switch("sw", "10.0.42.0/24", "fd00:42::/64")
    nodes = {n: lab.add_node(n) for n in ("bgpd", "up", "r1", "r2", "r3")}
    ip = {n: sw.attach(node, f"10.0.42.{i + 1}").v4 for i, (n, node) in enumerate(nodes.items())}
    route = "10.99.5.0/24"
    BirdPeer(
        nodes["up"], ip["up"], 65001, [Neighbor(ip["bgpd"], BGPD_AS)], routes_v4=[route]
    ).start()
    r1 = FrrPeer(nodes["r1"], ip["r1"], 65003, [Neighbor(ip["bgpd"], BGPD_AS)]).start()
    r2 = BirdPeer(nodes["r2"], ip["r2"], 65004, [Neighbor(ip["bgpd"], BGPD_AS)]).start()
    r3 = BirdPeer(nodes["r3"], ip["r3"], 65005, [Neighbor(ip["bgpd"], BGPD_AS)]).start()
    peers = [
        {"peerIP": ip["up"], "asNumber": 65001},
        {"peerIP": ip["r1"], "asNumber": 65003, "keepOriginalNextHop": True},
        {"peerIP": ip["r2"], "asNumber": 65004, "nextHopMode": "Keep"},
        {"peerIP": ip["r3"], "asNumber": 65005},
    ]
    bgpd = Bgpd(nodes["bgpd"], "node1", cluster(ipv4=f"{ip['bgpd']}/24", peers=peers)).start()
    bgpd.wait_established(*(ip[n] for n in ("up", "r1", "r2", "r3")))
    for receiver in (r1, r2, r3):
        receiver.wait_received(4, [route, BLOCK])
    assert r1.received_routes(4)[route][0].next_hop == ip["up"]
    assert r2.received_routes(4)[route][0].next_hop == ip["up"]
    assert r3.received_routes(4)[route][0].next_hop == ip["bgpd"]
    # Our own block has no next hop to keep: ours, to everyone.
    for receiver in (r1, r2, r3):
        assert receiver.received_routes(4)[BLOCK][0].next_hop == ip["bgpd"]
    for receiver in (r1, r2):
        assert receiver.received_routes(4)[route][0].as_path == (BGPD_AS, 65001)
    names = {"r1": "Global_10_0_42_3", "r2": "Global_10_0_42_4", "r3": "Global_10_0_42_5"}
    assert [protocol(bgpd, names[n])["next_hop"] for n in ("r1", "r2", "r3")] == [
        "keep",
        "keep",
        "auto",
    ]


# --- reachableBy ------------------------------------------------------------------------------


def test_reachable_by_installs_the_route_to_the_peer(lab: Lab) -> None:
    """The peer is two hops away, behind router R; bgpd reaches it only through the static
    route reachableBy gives (`route 10.0.44.2/32 via 10.0.43.2`), which comes and goes with
    the BGPPeer."""
    need(BirdPeer)
    a, r, p = lab.add_node("bgpd"), lab.add_node("router"), lab.add_node("peer")
    lab.link(a, r, "10.0.43.1", "10.0.43.2")
    lab.link(r, p, "10.0.44.1", "10.0.44.2")
    p.run(["ip", "route", "add", "10.0.43.0/24", "via", "10.0.44.1"])
    peer = BirdPeer(p, "10.0.44.2", 65002, [Neighbor("10.0.43.1", BGPD_AS, multihop=2)]).start()

    def docs(reachable_by: str | None) -> list[dict[str, Any]]:
        spec: dict[str, Any] = {"peerIP": "10.0.44.2", "asNumber": 65002}
        if reachable_by:
            spec["reachableBy"] = reachable_by
        return cluster(ipv4="10.0.43.1/24", peers=[spec])

    assert not a.ping("10.0.44.2")  # no route: only the static one will do
    bgpd = Bgpd(a, "node1", docs("10.0.43.2")).start()
    static = wait_for(
        lambda: bgpd.kernel_routes(4).get("10.0.44.2/32"),
        20,
        message="the reachableBy route in the kernel",
    )
    assert static["gateway"] == "10.0.43.2"
    bgpd.wait_established("10.0.44.2", timeout=40)
    peer.wait_received(4, [BLOCK])
    # The BGPPeer loses reachableBy: the route goes with it.
    write(bgpd, docs(None))
    wait_for(
        lambda: "10.0.44.2/32" not in bgpd.kernel_prefixes(4),
        30,
        message="the reachableBy route removed",
    )
    assert not a.ping("10.0.44.2")


# --- ADD-PATH -----------------------------------------------------------------------------------


def test_add_path_both_ways_shows_every_path_at_the_peer(lab: Lab) -> None:
    """Two upstreams announce 10.99.7.0/24; U1 also sends two paths of 10.98.0.0/24 with
    ADD-PATH (two static protocols, `add paths tx`). bgpd advertises every path, each under
    its own path id, to BIRD (`add paths rx`) and FRR (which receives ADD-PATH by default)."""
    need(BirdPeer, FrrPeer)
    sw = lab.add_switch("sw", "10.0.45.0/24", "fd00:45::/64")
    nodes = {n: lab.add_node(n) for n in ("bgpd", "u1", "u2", "bird", "frr")}
    ip = {n: sw.attach(node, f"10.0.45.{i + 1}").v4 for i, (n, node) in enumerate(nodes.items())}
    shared, multi = "10.99.7.0/24", "10.98.0.0/24"
    BirdPeer(
        nodes["u1"],
        ip["u1"],
        65001,
        [Neighbor(ip["bgpd"], BGPD_AS, af_extra="add paths tx;")],
        routes_v4=[shared, multi],
        extra=f"protocol static second4 {{\n  ipv4;\n  route {multi} blackhole;\n}}",
    ).start()
    BirdPeer(
        nodes["u2"], ip["u2"], 65002, [Neighbor(ip["bgpd"], BGPD_AS)], routes_v4=[shared]
    ).start()
    bird = BirdPeer(
        nodes["bird"], ip["bird"], 65003, [Neighbor(ip["bgpd"], BGPD_AS, af_extra="add paths rx;")]
    ).start()
    frr = FrrPeer(nodes["frr"], ip["frr"], 65004, [Neighbor(ip["bgpd"], BGPD_AS)]).start()
    peers = [
        {"peerIP": ip[n], "asNumber": asn}
        for n, asn in (("u1", 65001), ("u2", 65002), ("bird", 65003), ("frr", 65004))
    ]
    bgpd = Bgpd(nodes["bgpd"], "node1", cluster(ipv4=f"{ip['bgpd']}/24", peers=peers)).start()
    bgpd.wait_established(*(ip[n] for n in ("u1", "u2", "bird", "frr")))
    # ADD-PATH receive: both of U1's paths are in bgpd's RIB.
    wait_for(
        lambda: len([r for r in bgpd.routes() if r["prefix"] == multi]) == 2,
        30,
        message="two paths of 10.98.0.0/24 from U1 in bgpd's RIB",
    )

    def paths(peer: Peer, prefix: str) -> list[tuple[int, ...]]:
        return sorted(r.as_path for r in peer.received_routes(4).get(prefix, []))

    for receiver in (bird, frr):
        wait_for(
            lambda rc=receiver: paths(rc, shared) == [(BGPD_AS, 65001), (BGPD_AS, 65002)],
            30,
            message=f"{receiver}: both paths of {shared}",
        )
        wait_for(
            lambda rc=receiver: paths(rc, multi) == [(BGPD_AS, 65001), (BGPD_AS, 65001)],
            30,
            message=f"{receiver}: both of U1's paths of {multi}",
        )
    detail = protocol(bgpd, f"Global_{ip['bird'].replace('.', '_')}")
    assert detail["add_path"] == "rx/tx" and detail["add_path_tx"] == ["ipv4"]
    # One upstream goes: its path is withdrawn by its id, the other stays.
    write(
        bgpd, cluster(ipv4=f"{ip['bgpd']}/24", peers=[p for p in peers if p["asNumber"] != 65002])
    )
    for receiver in (bird, frr):
        wait_for(
            lambda rc=receiver: paths(rc, shared) == [(BGPD_AS, 65001)],
            30,
            message=f"{receiver}: U2's path withdrawn",
        )


# --- logSeverityScreen ------------------------------------------------------------------------


def test_log_severity_screen_sets_the_log_level(lab: Lab) -> None:
    need(BirdPeer)
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, "10.0.46.1", "10.0.46.2")
    peers = [{"peerIP": "10.0.46.2", "asNumber": 65002}]
    BirdPeer(b, "10.0.46.2", 65002, [Neighbor("10.0.46.1", BGPD_AS)]).start()
    quiet = cluster(ipv4="10.0.46.1/24", config={"logSeverityScreen": "Warning"}, peers=peers)
    bgpd = Bgpd(a, "node1", quiet, log_level=None).start()
    bgpd.wait_established("10.0.46.2")
    log = bgpd.log_path.read_text()
    assert '"session established"' not in log  # info, below Warning
    loud = cluster(ipv4="10.0.46.1/24", config={"logSeverityScreen": "Debug"}, peers=peers)
    write(bgpd, loud)
    # The Warning level was logged at start: wait for the line naming the new one.
    wait_for(
        lambda: '"severity": "Debug"' in bgpd.log_path.read_text(),
        20,
        message="the new level taken",
    )
    bgpd.bgpctl("neighbor", "10.0.46.2", "reset")
    wait_for(
        lambda: '"session established"' in bgpd.log_path.read_text(),
        40,
        message="info lines at Debug",
    )
    # The command line wins over the datastore.
    bgpd.stop()
    fixed = Bgpd(a, "node1", quiet, log_level="info").start()
    fixed.wait_established("10.0.46.2")
    wait_for(
        lambda: '"session established"' in fixed.log_path.read_text(),
        20,
        message="--log-level info keeps info lines under logSeverityScreen Warning",
    )


# --- ignoredInterfaces --------------------------------------------------------------------------


def _veth(node: Node, name: str) -> None:
    node.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"])
    node.run(["ip", "link", "set", name, "up"])
    node.run(["ip", "link", "set", f"{name}p", "up"])


def test_ignored_interfaces_keep_routes_out_of_learning_and_export(lab: Lab) -> None:
    need(BirdPeer)
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, "10.0.47.1", "10.0.47.2")
    _veth(a, "ign0")
    _veth(a, "keep0")
    ignored, kept = "192.168.50.0/26", "192.168.50.64/26"
    a.run(["ip", "route", "add", ignored, "dev", "ign0"])
    a.run(["ip", "route", "add", kept, "dev", "keep0"])
    peer = BirdPeer(b, "10.0.47.2", 65002, [Neighbor("10.0.47.1", BGPD_AS)]).start()
    peers = [{"peerIP": "10.0.47.2", "asNumber": 65002}]

    def docs(globs: list[str]) -> list[dict[str, Any]]:
        return cluster(ipv4="10.0.47.1/24", peers=peers, config={"ignoredInterfaces": globs})

    bgpd = Bgpd(a, "node1", docs(["ign*"])).start()
    bgpd.wait_established("10.0.47.2")
    peer.wait_received(4, [kept, BLOCK])
    holds_for(
        lambda: ignored not in peer.received_prefixes(4),
        3,
        message="the route through ign0 is not advertised",
    )
    assert ignored not in {r["prefix"] for r in bgpd.routes()}  # nor learned
    write(bgpd, docs([]))
    peer.wait_received(4, [ignored])


# --- local workload peers ----------------------------------------------------------------------


def test_local_workload_peer_with_the_peering_address(lab: Lab) -> None:
    """A workload on the node runs BIRD and peers with 169.254.0.179 (the node's
    localWorkloadPeeringIPV4, which felix puts on the workload's host-side interface, as the
    test does here); bgpd runs the passive Local_Workload_<ip> session, learns the
    workload's routes and sends its own with 169.254.0.179 as next hop."""
    need(BirdPeer)
    host, wl, up = lab.add_node("bgpd"), lab.add_node("workload"), lab.add_node("upstream")
    lab.link(host, up, "10.0.48.1", "10.0.48.2")
    wl_ip, peering, veth = "192.168.20.5", "169.254.0.179", "calia1b2c3d4e5f"
    lab.veth(host, veth, wl, "eth0")
    # The workload: its address, the host reached on-link (as Calico's CNI sets it up).
    wl.run(["ip", "addr", "add", f"{wl_ip}/32", "dev", "eth0"])
    wl.run(["ip", "route", "add", peering, "dev", "eth0", "scope", "link"])
    wl.run(["ip", "route", "add", "default", "via", peering, "dev", "eth0", "onlink"])
    # The host side as felix programs it: the workload's route and the peering address.
    host.run(["ip", "route", "add", f"{wl_ip}/32", "dev", veth, "scope", "link"])
    host.run(["ip", "addr", "add", f"{peering}/32", "dev", veth])
    child = "10.123.0.0/26"
    workload = BirdPeer(
        wl,
        wl_ip,
        65401,
        [Neighbor(peering, BGPD_AS, local_address=wl_ip, multihop=2)],
        routes_v4=[child],
    ).start()
    upstream = BirdPeer(up, "10.0.48.2", 65002, [Neighbor("10.0.48.1", BGPD_AS)]).start()
    wep = res(
        "WorkloadEndpoint",
        "node1-k8s-bird-eth0",
        {"node": "node1", "ipNetworks": [f"{wl_ip}/32"], "interfaceName": veth},
        namespace="default",
        labels={"app": "bird"},
    )
    peers = [
        {"localWorkloadSelector": "app == 'bird'", "asNumber": 65401},
        {"peerIP": "10.0.48.2", "asNumber": 65002},
    ]
    config = {"localWorkloadPeeringIPV4": peering}
    docs = cluster(
        ipv4="10.0.48.1/24",
        config=config,
        peers=peers,
        extra=[wep],
        blocks=["192.168.20.0/26"],
        pools=[*POOLS, "10.123.0.0/16"],
    )
    bgpd = Bgpd(host, "node1", docs).start()
    bgpd.wait_established(wl_ip, "10.0.48.2")
    detail = protocol(bgpd, "Local_Workload_192_168_20_5")
    assert (detail["type"], detail["passive"], detail["address"]) == ("local workload", True, wl_ip)
    assert detail["source_address"] == peering
    # calicoctl-style status leaves local workloads out, as calicoctl does.
    assert wl_ip not in bgpd.bgpctl("status").stdout
    # The workload's route is learned and reaches the FIB via the workload.
    wait_for(lambda: child in bgpd.kernel_prefixes(4), 30, message="the child block in the FIB")
    assert bgpd.kernel_routes(4)[child]["gateway"] == wl_ip
    # What bgpd sends the workload: our next hop is the peering address.
    workload.wait_received(4, ["192.168.20.0/26"])
    assert workload.received_routes(4)["192.168.20.0/26"][0].next_hop == peering
    # And the child block goes on upstream (it is in a pool) with our next hop.
    upstream.wait_received(4, [child])
    assert upstream.received_routes(4)[child][0].next_hop == "10.0.48.1"
    # The workload goes: so does its session.
    write(bgpd, [d for d in docs if d["kind"] != "WorkloadEndpoint"])
    wait_for(
        lambda: wl_ip not in {p["address"] for p in bgpd.status()["peers"]},
        20,
        message="the local workload session removed",
    )
