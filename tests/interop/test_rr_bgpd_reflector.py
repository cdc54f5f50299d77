"""bgpd as an RFC 4456 route reflector, set up the way Calico's docs do it: the reflector
node has spec.bgp.routeReflectorClusterID and a label, the mesh is off, and one BGPPeer
(nodeSelector `!has(route-reflector)`, peerSelector `has(route-reflector)`) peers every
other node with it; reverse peering gives the reflector its client sessions."""

from __future__ import annotations

import pytest

from labs.harness.bgpd_node import Bgpd
from labs.harness.calico_cluster import (
    ASN,
    PEER_WITH_RR,
    RR_MESH,
    NodeDef,
    cluster_docs,
    missing_blocks,
    paths,
    reflector,
    rewrite,
)
from labs.harness.lab import Lab, stop_process
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import holds_for, wait_for

CLUSTER_ID = "224.0.0.1"

pytestmark = pytest.mark.interop


def session_name(ip: str) -> str:
    return "Node_" + ip.replace(".", "_")


def reflected_ok(bgpd: Bgpd, prefix: str, owner_ip: str, via_rr: str) -> bool:
    """The path from reflector `via_rr` keeps the owner's next hop and carries
    ORIGINATOR_ID (the owner's router ID) and our cluster in CLUSTER_LIST."""
    return any(
        p["from_peer"] == session_name(via_rr)
        and p["next_hop"] == owner_ip
        and p["originator_id"] == owner_ip
        and p["cluster_list"] == [CLUSTER_ID]
        for p in paths(bgpd, prefix)
    )


@pytest.mark.skipif(bool(missing_programs(BirdPeer)), reason="bird2 not installed")
def test_bgpd_reflects_for_bgpd_and_bird_clients(lab: Lab) -> None:
    sw = lab.add_switch("sw", "10.0.40.0/24", "fd00:40::/64")
    nodes = {
        "rr": reflector("10.0.40.1", CLUSTER_ID),
        "c1": NodeDef("10.0.40.11", "192.168.1.0/26"),
        "c2": NodeDef("10.0.40.12", "192.168.2.0/26"),
        "c3": NodeDef("10.0.40.13", "192.168.3.0/26"),
        "bird": NodeDef("10.0.40.14", "192.168.4.0/26"),
    }
    docs = cluster_docs(nodes, mesh=False, peers={"peer-with-rr": PEER_WITH_RR})
    netns = {name: lab.add_node(name) for name in nodes}
    for name, n in nodes.items():
        sw.attach(netns[name], n.ip)
    rr_ip = nodes["rr"].ip
    bird = BirdPeer(
        netns["bird"], nodes["bird"].ip, ASN, [Neighbor(rr_ip, ASN)],
        routes_v4=[nodes["bird"].block or ""],
    ).start()
    bgpds = {name: Bgpd(netns[name], name, docs).start() for name in ("rr", "c1", "c2", "c3")}

    rr = bgpds["rr"]
    status = rr.status()
    assert {p["address"] for p in status["peers"]} == {
        n.ip for name, n in nodes.items() if name != "rr"
    }
    assert {p["type"] for p in status["peers"]} == {"node specific"}
    rr.wait_established(*(n.ip for name, n in nodes.items() if name != "rr"), timeout=45)

    clients = {name: b for name, b in bgpds.items() if name != "rr"}
    blocks = {name: n.block for name, n in nodes.items() if n.block}
    for name, b in clients.items():
        for owner, block in blocks.items():
            if owner == name:
                continue
            owner_ip = nodes[owner].ip
            wait_for(
                lambda b=b, block=block, ip=owner_ip: reflected_ok(b, block, ip, rr_ip),
                30,
                message=lambda b=b, block=block: f"{b.name}: reflected {block}: "
                f"{paths(b, block)}",
            )
            # Forwarding goes straight to the owner, not through the reflector.
            wait_for(
                lambda b=b, block=block: block in b.kernel_prefixes(4), 20,
                message=f"{name}: {block} in the FIB",
            )
            assert b.kernel_routes(4)[block]["gateway"] == owner_ip

    for owner in ("c1", "c2", "c3"):
        block = blocks[owner]
        bird.wait_received(4, [block], timeout=30)
        got = bird.received_routes(4)[block][0]
        assert got.next_hop == nodes[owner].ip, got
        assert got.originator_id == nodes[owner].ip, got
        assert got.cluster_list == (CLUSTER_ID,), got


def test_redundant_reflectors_in_one_cluster(lab: Lab) -> None:
    """Two reflectors of one cluster, each client peering with both: kill one, and every
    block stays in every client's FIB, now through the other (even blocks added later)."""
    sw = lab.add_switch("sw", "10.0.41.0/24", "fd00:41::/64")
    nodes = {
        "rr1": reflector("10.0.41.1", CLUSTER_ID),
        "rr2": reflector("10.0.41.2", CLUSTER_ID),
        "c1": NodeDef("10.0.41.11", "192.168.1.0/26"),
        "c2": NodeDef("10.0.41.12", "192.168.2.0/26"),
        "c3": NodeDef("10.0.41.13", "192.168.3.0/26"),
    }
    # A short restart time so the dead reflector's stale paths go within the test.
    peers = {"peer-with-rr": {**PEER_WITH_RR, "maxRestartTime": "4s"}, "rr-mesh": RR_MESH}
    docs = cluster_docs(nodes, mesh=False, peers=peers)
    bgpds: dict[str, Bgpd] = {}
    for name, n in nodes.items():
        node = lab.add_node(name)
        sw.attach(node, n.ip)
        bgpds[name] = Bgpd(node, name, docs)
    for b in bgpds.values():
        b.start()
    rr1_ip, rr2_ip = nodes["rr1"].ip, nodes["rr2"].ip
    clients = {name: bgpds[name] for name in ("c1", "c2", "c3")}
    blocks = {name: nodes[name].block or "" for name in clients}
    for b in clients.values():
        b.wait_established(rr1_ip, rr2_ip, timeout=45)
    bgpds["rr1"].wait_established(rr2_ip, timeout=30)
    for name, b in clients.items():
        for owner, block in blocks.items():
            if owner != name:
                for rr_ip in (rr1_ip, rr2_ip):
                    wait_for(
                        lambda b=b, block=block, o=owner, r=rr_ip: reflected_ok(
                            b, block, nodes[o].ip, r
                        ),
                        30,
                        message=lambda b=b, block=block: f"{b.name}: {block} via both "
                        f"reflectors: {paths(b, block)}",
                    )
    assert not missing_blocks(clients, blocks)

    rr1 = bgpds["rr1"]
    assert rr1.proc is not None
    rr1.proc.kill()
    stop_process(rr1.proc)
    rr1.proc = None
    # Longer than the 4 s restart time: the stale paths through rr1 are swept meanwhile.
    holds_for(
        lambda: not missing_blocks(clients, blocks), 8, message="every block stays reachable"
    )
    for name, b in clients.items():
        for owner, block in blocks.items():
            if owner != name:
                wait_for(
                    lambda b=b, block=block: {p["from_peer"] for p in paths(b, block)}
                    == {session_name(rr2_ip)},
                    20,
                    message=lambda b=b, block=block: f"{b.name}: {block} only via rr2: "
                    f"{paths(b, block)}",
                )

    # A block added after the kill reaches the others through the surviving reflector.
    grown = dict(nodes)
    grown["c4"] = NodeDef("10.0.41.14", "192.168.44.0/26")
    live = [b for name, b in bgpds.items() if name != "rr1"]
    docs = cluster_docs(grown, mesh=False, peers=peers)
    docs.append(
        {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
         "metadata": {"name": "c2-block-2"},
         "spec": {"node": "c2", "cidr": "192.168.22.0/26", "state": "confirmed"}}
    )
    rewrite(live, docs)
    for name in ("c1", "c3"):
        wait_for(
            lambda b=clients[name]: "192.168.22.0/26" in b.kernel_prefixes(4), 30,
            message=f"{name}: c2's new block via rr2",
        )
        assert clients[name].kernel_routes(4)["192.168.22.0/26"]["gateway"] == nodes["c2"].ip
