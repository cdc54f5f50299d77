"""Switching a running full mesh to a route reflector loses no route (Calico's "switch route
reflector" change): one edit of every node's resource file turns the mesh off, gives one node
a routeReflectorClusterID and adds the BGPPeer that peers the others with it. Every node's
FIB keeps every other node's block throughout: a session a change replaces keeps its routes
(stale) until its replacement has them, and a Calico peer is closed without a NOTIFICATION
so its graceful-restart helper keeps ours while its own plan catches up."""

from __future__ import annotations

import time

import pytest

from labs.harness.bgpd_node import Bgpd
from labs.harness.calico_cluster import (
    PEER_WITH_RR,
    NodeDef,
    cluster_docs,
    missing_blocks,
    paths,
    reflector,
    rewrite,
)
from labs.harness.lab import Lab
from labs.harness.wait import holds_for, wait_for

pytestmark = pytest.mark.interop

CLUSTER_ID = "224.0.0.1"


def test_full_mesh_to_reflector_loses_no_route(lab: Lab) -> None:
    sw = lab.add_switch("sw", "10.0.43.0/24", "fd00:43::/64")
    nodes = {f"n{i}": NodeDef(f"10.0.43.{20 + i}", f"192.168.{20 + i}.0/26") for i in range(1, 6)}
    blocks = {name: n.block or "" for name, n in nodes.items()}
    mesh_docs = cluster_docs(nodes, mesh=True)
    bgpds: dict[str, Bgpd] = {}
    for name, n in nodes.items():
        node = lab.add_node(name)
        sw.attach(node, n.ip)
        bgpds[name] = Bgpd(node, name, mesh_docs)
    for b in bgpds.values():
        b.start()
    for name, b in bgpds.items():
        b.wait_established(*(n.ip for other, n in nodes.items() if other != name), timeout=45)
    wait_for(lambda: not missing_blocks(bgpds, blocks), 30, message="the mesh converged")

    rr_name, rr_ip = "n1", nodes["n1"].ip
    switched = dict(nodes)
    switched[rr_name] = reflector(rr_ip, CLUSTER_ID, nodes[rr_name].block)
    rewrite(bgpds.values(), cluster_docs(switched, mesh=False, peers={"rr": PEER_WITH_RR}))

    rr_session = "Node_" + rr_ip.replace(".", "_")
    clients = {name: b for name, b in bgpds.items() if name != rr_name}

    def reflected_everywhere() -> bool:
        for name, b in clients.items():
            for owner, block in blocks.items():
                if owner in (name, rr_name):
                    continue
                if not any(
                    p["from_peer"] == rr_session and p["cluster_list"] == [CLUSTER_ID]
                    for p in paths(b, block)
                ):
                    return False
        return True

    # Poll every FIB while the nodes reconfigure, until the reflector serves every client.
    deadline = time.monotonic() + 60
    while True:
        lost = missing_blocks(bgpds, blocks)
        assert not lost, f"routes lost during the switch: {lost}"
        statuses = {name: b.status() for name, b in bgpds.items()}
        lost = missing_blocks(bgpds, blocks)
        assert not lost, f"routes lost during the switch: {lost}"
        types = {
            name: {(p["type"], p["bgp_state"]) for p in s["peers"]} for name, s in statuses.items()
        }
        if all(t == {("node specific", "Established")} for t in types.values()) and (
            reflected_everywhere()
        ):
            break
        assert time.monotonic() < deadline, f"the switch did not complete: {types}"
    assert len(statuses[rr_name]["peers"]) == len(clients)
    holds_for(lambda: not missing_blocks(bgpds, blocks), 3, message="no route lost after")
    for name, b in clients.items():
        for owner, block in blocks.items():
            if owner != name:
                assert b.kernel_routes(4)[block]["gateway"] == nodes[owner].ip
