"""bgpd nodes as route-reflector clients of a BIRD and of an FRR reflector (a global BGPPeer
in the cluster's AS, the mesh off): each learns the others' blocks with the original next
hop and the reflector's ORIGINATOR_ID / CLUSTER_LIST, and forwards straight to the owner."""

from __future__ import annotations

import pytest

from labs.harness.bgpd_node import Bgpd
from labs.harness.calico_cluster import ASN, NodeDef, cluster_docs, missing_blocks, paths
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, FrrPeer, Neighbor, Peer, missing_programs
from labs.harness.wait import wait_for

pytestmark = pytest.mark.interop

RR_IP = "10.0.42.1"


@pytest.mark.parametrize("rr_type", [BirdPeer, FrrPeer], ids=lambda t: t.__name__)
def test_bgpd_clients_of_an_external_reflector(lab: Lab, rr_type: type[Peer]) -> None:
    if missing_programs(rr_type):
        pytest.skip(f"{rr_type.__name__}: missing {', '.join(missing_programs(rr_type))}")
    sw = lab.add_switch("sw", "10.0.42.0/24", "fd00:42::/64")
    nodes = {
        "c1": NodeDef("10.0.42.11", "192.168.1.0/26"),
        "c2": NodeDef("10.0.42.12", "192.168.2.0/26"),
        "c3": NodeDef("10.0.42.13", "192.168.3.0/26"),
    }
    docs = cluster_docs(nodes, mesh=False, peers={"rr": {"peerIP": RR_IP, "asNumber": ASN}})
    rr_node = lab.add_node("rr")
    sw.attach(rr_node, RR_IP)
    bgpds: dict[str, Bgpd] = {}
    for name, n in nodes.items():
        node = lab.add_node(name)
        sw.attach(node, n.ip)
        bgpds[name] = Bgpd(node, name, docs)
    rr = rr_type(
        rr_node, RR_IP, ASN, [Neighbor(n.ip, ASN, rr_client=True) for n in nodes.values()]
    ).start()
    for b in bgpds.values():
        b.start()
    for b in bgpds.values():
        b.wait_established(RR_IP, timeout=45)
    rr.wait_established(timeout=30)

    blocks = {name: n.block or "" for name, n in nodes.items()}
    session = "Global_" + RR_IP.replace(".", "_")
    for name, b in bgpds.items():
        for owner, block in blocks.items():
            if owner == name:
                continue
            owner_ip = nodes[owner].ip
            wait_for(
                lambda b=b, block=block, ip=owner_ip: any(
                    p["from_peer"] == session
                    and p["next_hop"] == ip
                    and p["originator_id"] == ip
                    and p["cluster_list"] == [RR_IP]  # the cluster ID defaults to the router ID
                    for p in paths(b, block)
                ),
                30,
                message=lambda b=b, block=block: f"{b.name}: {block} reflected by "
                f"{rr_type.__name__}: {paths(b, block)}",
            )
    wait_for(lambda: not missing_blocks(bgpds, blocks), 20, message="every block in every FIB")
    for name, b in bgpds.items():
        for owner, block in blocks.items():
            if owner != name:
                assert b.kernel_routes(4)[block]["gateway"] == nodes[owner].ip
