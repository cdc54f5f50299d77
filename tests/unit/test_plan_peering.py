"""The peering planner: snapshot fixtures in, sessions out (Calico's rules, calico.md 3-4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.plan import (
    GLOBAL,
    LOCAL_WORKLOAD,
    MESH,
    NODE_SPECIFIC,
    PeeringPlan,
    PeerSpec,
    PlanError,
    compute,
)
from bgpd.plan.peering import hash_router_id
from calico import Snapshot, load_file, load_text
from calico.model import SecretKeyRef


def res(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, **meta},
        "spec": spec or {},
    }


def node(
    name: str,
    v4: str | None = None,
    v6: str | None = None,
    labels: dict[str, str] | None = None,
    **bgp: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"bgp": dict(bgp)}
    if v4:
        spec["bgp"]["ipv4Address"] = v4
    if v6:
        spec["bgp"]["ipv6Address"] = v6
    return res("Node", name, spec, labels=labels or {})


def snap(*docs: dict[str, Any]) -> Snapshot:
    return load_text(yaml.safe_dump_all(docs))


def names(plan: PeeringPlan) -> list[str]:
    return [s.name for s in plan.sessions]


THREE = (
    node("n1", "10.0.0.1/24"),
    node("n2", "10.0.0.2/24"),
    node("n3", "10.0.0.3/24"),
)


# --- the mesh -----------------------------------------------------------------------------


def test_default_mesh() -> None:
    plan = compute(snap(*THREE), "n2")
    assert names(plan) == ["Mesh_10_0_0_1", "Mesh_10_0_0_3"]
    s1, s3 = plan.sessions
    assert s1 == PeerSpec(
        name="Mesh_10_0_0_1",
        peer_address="10.0.0.1",
        peer_port=179,
        peer_as=64512,
        local_as=64512,
        type=MESH,
        family="ipv4",
        passive=False,
        source_address="10.0.0.2",
        calico_node=True,
        peer_node="n1",
    )
    assert s3.passive  # the end whose address string is higher waits
    assert (plan.router_id, plan.local_as, plan.listen_port) == ("10.0.0.2", 64512, 179)
    assert (plan.node_ipv4, plan.node_ipv4_network, plan.node_ipv6) == (
        "10.0.0.2",
        "10.0.0.0/24",
        None,
    )
    assert plan.mesh_enabled and plan.notes == ()


def test_mesh_passive_end_compares_strings_not_numbers() -> None:
    plan = compute(snap(node("a", "10.0.0.9/24"), node("b", "10.0.0.10/24")), "a")
    # "10.0.0.10" < "10.0.0.9" as strings, so .9 waits for .10 to connect.
    assert plan.sessions[0].passive is False
    other = compute(snap(node("a", "10.0.0.9/24"), node("b", "10.0.0.10/24")), "b")
    assert other.sessions[0].passive is True


def test_each_mesh_pair_has_exactly_one_active_end() -> None:
    docs = [node(f"n{i}", f"10.0.{i % 3}.{i}/16", f"fd00::{i:x}/64") for i in range(1, 12)]
    plans = {d["metadata"]["name"]: compute(snap(*docs), d["metadata"]["name"]) for d in docs}
    for a, plan in plans.items():
        for s in plan.sessions:
            back = next(
                x
                for x in plans[s.peer_node or ""].sessions
                if x.family == s.family and x.peer_node == a
            )
            assert s.passive != back.passive


def test_mesh_families_are_separate() -> None:
    plan = compute(
        snap(
            node("n1", "10.0.0.1/24", "fd00::1/64"),
            node("n2", "10.0.0.2/24", "fd00::2/64"),
            node("n3", "10.0.0.3/24"),
        ),
        "n1",
    )
    assert names(plan) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3", "Mesh_fd00__2"]
    v6 = plan.session("Mesh_fd00__2")
    assert v6 is not None
    assert (v6.family, v6.source_address, v6.passive) == ("ipv6", "fd00::1", True)
    # A node without IPv6 has no IPv6 mesh.
    assert names(
        compute(snap(node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24", "fd00::2/64")), "n1")
    ) == ["Mesh_10_0_0_2"]


def test_mesh_off() -> None:
    plan = compute(
        snap(res("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False}), *THREE), "n1"
    )
    assert plan.sessions == () and not plan.mesh_enabled


def test_mesh_skips_nodes_without_addresses_and_the_node_itself() -> None:
    plan = compute(snap(*THREE, node("n4"), res("Node", "n5", {})), "n1")
    assert names(plan) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]


def test_route_reflectors_leave_the_mesh() -> None:
    docs = (*THREE[:2], node("n3", "10.0.0.3/24", routeReflectorClusterID="224.0.0.1"))
    assert names(compute(snap(*docs), "n1")) == ["Mesh_10_0_0_2"]
    rr = compute(snap(*docs), "n3")
    assert rr.sessions == () and rr.rr_cluster_id == "224.0.0.1" and not rr.mesh_enabled


def test_mesh_settings_from_default_config() -> None:
    cfg = res(
        "BGPConfiguration",
        "default",
        {
            "asNumber": 65000,
            "listenPort": 1790,
            "nodeMeshMaxRestartTime": "10s",
            "nodeMeshPassword": {"secretKeyRef": {"name": "bgp", "key": "mesh"}},
        },
    )
    per_node = res("BGPConfiguration", "node.n3", {"listenPort": 1791})
    plan = compute(snap(cfg, per_node, node("n1", "10.0.0.1/24", asNumber=65001), *THREE[1:]), "n1")
    s2, s3 = plan.sessions
    assert (s2.peer_port, s3.peer_port) == (1790, 1791)  # the peer's own listen port
    assert s2.name == "Mesh_10_0_0_2"  # mesh names never carry the port
    assert (s2.peer_as, s2.local_as, plan.local_as) == (65000, 65001, 65001)
    assert s2.max_restart_time == 10
    assert s2.password == SecretKeyRef("bgp", "mesh")
    assert plan.listen_port == 1790
    assert compute(snap(cfg, per_node, *THREE), "n3").listen_port == 1791


# --- router id ----------------------------------------------------------------------------


def test_router_id() -> None:
    s = snap(*THREE)
    assert compute(s, "n1", {"CALICO_ROUTER_ID": "192.0.2.7"}).router_id == "192.0.2.7"
    assert compute(s, "n1", {"CALICO_ROUTER_ID": "hash"}).router_id == hash_router_id("n1")
    assert hash_router_id("kube-master") == "25.79.212.8"  # confd's golden mesh/hash
    for name in ("a", "b", "node-17", "x" * 40):
        first = int(hash_router_id(name).split(".")[0])
        assert first <= 223


def test_router_id_errors() -> None:
    with pytest.raises(PlanError, match=r"CALICO_ROUTER_ID 'x\.y' is neither"):
        compute(snap(*THREE), "n1", {"CALICO_ROUTER_ID": "x.y"})
    v6_only = snap(node("n1", None, "fd00::1/64"), node("n2", None, "fd00::2/64"))
    with pytest.raises(PlanError, match="no IPv4 address for a router ID"):
        compute(v6_only, "n1")
    plan = compute(v6_only, "n1", {"CALICO_ROUTER_ID": "10.9.9.9"})
    assert names(plan) == ["Mesh_fd00__2"]
    with pytest.raises(PlanError, match="no Node resource named 'n9'"):
        compute(snap(*THREE), "n9")


def test_bind_mode_node_ip() -> None:
    cfg = res("BGPConfiguration", "default", {"bindMode": "NodeIP"})
    plan = compute(snap(cfg, node("n1", "10.0.0.1/24", "fd00::1/64")), "n1")
    assert plan.listen_addresses == ("10.0.0.1", "fd00::1")
    assert compute(snap(*THREE), "n1").listen_addresses == ()


# --- explicit peers -----------------------------------------------------------------------

NO_MESH = res("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False})


def peer(name: str, **spec: Any) -> dict[str, Any]:
    return res("BGPPeer", name, spec)


def test_global_peer() -> None:
    plan = compute(snap(NO_MESH, *THREE, peer("tor", peerIP="10.0.1.1", asNumber=64513)), "n2")
    (s,) = plan.sessions
    assert s == PeerSpec(
        name="Global_10_0_1_1",
        peer_address="10.0.1.1",
        peer_port=179,
        peer_as=64513,
        local_as=64512,
        type=GLOBAL,
        family="ipv4",
        source_address="10.0.0.2",
        bgp_peer="tor",
    )
    assert s.ebgp


def test_node_specific_peers() -> None:
    s = snap(
        NO_MESH,
        THREE[0],
        node("n2", "10.0.0.2/24", labels={"rack": "r1"}),
        THREE[2],
        peer("a", node="n1", peerIP="10.0.1.1", asNumber=64513),
        peer("b", nodeSelector="rack == 'r1'", peerIP="10.0.1.2:1790", asNumber=64513),
    )
    assert names(compute(s, "n1")) == ["Node_10_0_1_1"]
    plan = compute(s, "n2")
    assert names(plan) == ["Node_10_0_1_2_port_1790"]
    assert (plan.sessions[0].type, plan.sessions[0].peer_port) == (NODE_SPECIFIC, 1790)
    assert compute(s, "n3").sessions == ()


def test_explicit_port_179_is_the_default_port() -> None:
    plan = compute(
        snap(
            NO_MESH,
            *THREE,
            peer("a", peerIP="10.0.1.1:179", asNumber=1),
            peer("b", peerIP="10.0.1.1", asNumber=1),
        ),
        "n1",
    )
    assert names(plan) == ["Global_10_0_1_1"]
    assert plan.sessions[0].bgp_peer == "a"  # the first by name wins


def test_global_peering_beats_node_specific_to_the_same_address() -> None:
    docs = (
        NO_MESH,
        *THREE,
        peer("a-node", node="n1", peerIP="10.0.1.1", asNumber=1),
        peer("z-global", peerIP="10.0.1.1", asNumber=1),
    )
    plan = compute(snap(*docs), "n1")
    assert names(plan) == ["Global_10_0_1_1"]
    assert plan.notes == ()  # dropped by Calico's rule, not as a clash


def test_peer_to_a_calico_node() -> None:
    cfg = res("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False, "listenPort": 150})
    docs = (
        cfg,
        *THREE,
        peer("p3", peerIP="10.0.0.3", asNumber=64512, sourceAddress="None"),
        peer("p1", peerIP="10.0.0.1", asNumber=64512),
    )
    plan = compute(snap(*docs), "n2")
    # The port comes from the node's listenPort, so the name carries it.
    assert names(plan) == ["Global_10_0_0_1_port_150", "Global_10_0_0_3_port_150"]
    s1, s3 = plan.sessions
    assert (s1.passive, s3.passive) == (False, True)
    assert (s1.calico_node, s1.peer_node) == (True, "n1")
    assert (s1.source_address, s3.source_address) == ("10.0.0.2", None)
    # n1 and n3 skip the peering to themselves but get a reverse one back to every node.
    n1 = compute(snap(*docs), "n1")
    assert names(n1) == ["Global_10_0_0_3_port_150", "Node_10_0_0_2_port_150"]


def test_peer_ip_without_as_number_means_the_calico_node() -> None:
    docs = (NO_MESH, *THREE, peer("to-n1", peerIP="10.0.0.1"), peer("nowhere", peerIP="10.9.9.9"))
    plan = compute(snap(*docs), "n2")
    assert names(plan) == ["Global_10_0_0_1"]
    assert (plan.sessions[0].peer_as, plan.sessions[0].peer_node) == (64512, "n1")
    assert (
        "BGPPeer 'nowhere': no asNumber, and 10.9.9.9 is no Calico node in the cluster's AS 64512"
    ) in plan.notes
    # Without asNumber, only a node in the cluster's AS is meant.
    other_as = (
        NO_MESH,
        node("n1", "10.0.0.1/24", asNumber=65001),
        *THREE[1:],
        peer("to-n1", peerIP="10.0.0.1"),
    )
    plan = compute(snap(*other_as), "n2")
    assert plan.sessions == ()
    assert plan.notes == (
        "BGPPeer 'to-n1': no asNumber, and 10.0.0.1 is no Calico node in the cluster's AS 64512",
    )


def test_peer_settings() -> None:
    docs = (
        NO_MESH,
        *THREE,
        peer(
            "ext",
            peerIP="10.0.1.1",
            asNumber=65100,
            localASNumber=65002,
            ttlSecurity=2,
            keepaliveTime="20s",
            maxRestartTime="15s",
            numAllowedLocalASNumbers=1,
            keepOriginalNextHop=True,
            reachableBy="10.0.0.254",
            filters=["f1"],
            password={"secretKeyRef": {"name": "s", "key": "k"}},
        ),
    )
    plan = compute(snap(*docs), "n1")
    (s,) = plan.sessions
    assert (s.local_as, s.peer_as, s.ebgp) == (65002, 65100, True)
    assert (s.ttl_security, s.multihop) == (True, 2)
    assert (s.keepalive_time, s.max_restart_time, s.allow_local_as) == (20, 15, 1)
    assert (s.keep_original_next_hop, s.next_hop_self) == (True, False)
    assert (s.reachable_by, s.filters, s.password) == (
        "10.0.0.254",
        ("f1",),
        SecretKeyRef("s", "k"),
    )
    assert [(r.prefix, r.via) for r in plan.static_routes] == [("10.0.1.1/32", "10.0.0.254")]
    assert (s.hold_time, s.connect_retry_time) == (240, 5)


@pytest.mark.parametrize(
    ("spec", "self_", "keep"),
    [
        ({"asNumber": 64512, "keepOriginalNextHop": True}, False, False),  # iBGP: legacy ignored
        ({"asNumber": 65000, "keepOriginalNextHop": True}, False, True),
        ({"asNumber": 64512, "localASNumber": 65001, "keepOriginalNextHop": True}, False, True),
        ({"asNumber": 64512, "nextHopMode": "Keep"}, False, True),
        ({"asNumber": 65000, "nextHopMode": "Self"}, True, False),
        ({"asNumber": 65000, "nextHopMode": "Self", "keepOriginalNextHop": True}, True, False),
        ({"asNumber": 65000, "nextHopMode": "Auto", "keepOriginalNextHop": True}, False, True),
        ({"asNumber": 65000, "nextHopMode": "Auto"}, False, False),
    ],
)
def test_next_hop_modes(spec: dict[str, Any], self_: bool, keep: bool) -> None:
    plan = compute(snap(NO_MESH, *THREE, peer("p", peerIP="10.0.1.1", **spec)), "n1")
    assert (plan.sessions[0].next_hop_self, plan.sessions[0].keep_original_next_hop) == (
        self_,
        keep,
    )


def test_selectors_and_reverse_peering() -> None:
    docs = (
        NO_MESH,
        node("n1", "10.0.0.1/24", "fd00::1/64", labels={"group": "one"}),
        node("n2", "10.0.0.2/24", "fd00::2/64", labels={"group": "two"}),
        node("n3", "10.0.0.3/24", labels={"group": "two"}),
        res("BGPConfiguration", "node.n2", {"listenPort": 500}),
        peer("one-to-two", nodeSelector="group == 'one'", peerSelector="group == 'two'"),
    )
    s = snap(*docs)
    assert names(compute(s, "n1")) == [
        "Node_10_0_0_2_port_500",
        "Node_10_0_0_3",
        "Node_fd00__2_port_500",
    ]
    # The selected peers get the way back automatically, over both families.
    assert names(compute(s, "n2")) == ["Node_10_0_0_1", "Node_fd00__1"]
    assert names(compute(s, "n3")) == ["Node_10_0_0_1"]
    manual = snap(
        *docs[:-1],
        peer(
            "one-to-two",
            nodeSelector="group == 'one'",
            peerSelector="group == 'two'",
            reversePeering="Manual",
        ),
    )
    assert names(compute(manual, "n2")) == []
    assert len(compute(manual, "n1").sessions) == 3


def test_route_reflector_clients() -> None:
    docs = (
        NO_MESH,
        node("rr1", "10.0.0.1/24", labels={"rr": "true"}, routeReflectorClusterID="224.0.0.1"),
        node("rr2", "10.0.0.2/24", labels={"rr": "true"}, routeReflectorClusterID="224.0.0.1"),
        node("rr3", "10.0.0.3/24", labels={"rr": "true"}, routeReflectorClusterID="224.0.0.3"),
        node("c1", "10.0.0.11/24"),
        node("c2", "10.0.0.12/24"),
        peer("to-rr", nodeSelector="!has(rr)", peerSelector="has(rr)"),
        peer("rr-mesh", nodeSelector="has(rr)", peerSelector="has(rr)"),
        peer("ext", nodeSelector="has(rr)", peerIP="10.0.1.1", asNumber=65000),
    )
    rr1 = compute(snap(*docs), "rr1")
    by_name = {x.name: x for x in rr1.sessions}
    assert sorted(by_name) == [
        "Node_10_0_0_11",
        "Node_10_0_0_12",
        "Node_10_0_0_2",
        "Node_10_0_0_3",
        "Node_10_0_1_1",
    ]
    clients = {n for n, x in by_name.items() if x.rr_client}
    # Clients and RRs of another cluster are clients; the same cluster and eBGP are not.
    assert clients == {"Node_10_0_0_11", "Node_10_0_0_12", "Node_10_0_0_3"}
    assert by_name["Node_10_0_0_11"].rr_cluster_id == "224.0.0.1"
    assert by_name["Node_10_0_0_2"].rr_cluster_id is None
    c1 = compute(snap(*docs), "c1")
    assert names(c1) == ["Node_10_0_0_1", "Node_10_0_0_2", "Node_10_0_0_3"]
    assert not any(x.rr_client for x in c1.sessions)


def test_peering_of_a_family_this_node_lacks() -> None:
    plan = compute(snap(NO_MESH, *THREE, peer("v6", peerIP="fd00::9", asNumber=1)), "n1")
    assert plan.sessions == ()
    assert "no ipv6 address on this node: skipping peering with fd00::9" in plan.notes


def wep(
    name: str, node: str, *ips: str, namespace: str = "default", **labels: str
) -> dict[str, Any]:
    doc = res("WorkloadEndpoint", name, {"node": node, "ipNetworks": list(ips)}, labels=labels)
    doc["metadata"]["namespace"] = namespace
    return doc


NO_MESH_LW = res(
    "BGPConfiguration",
    "default",
    {
        "nodeToNodeMeshEnabled": False,
        "localWorkloadPeeringIPV4": "169.254.0.179",
        "localWorkloadPeeringIPV6": "fd12::179",
    },
)


def test_local_workload_peers_are_passive_sessions_per_workload_address() -> None:
    plan = compute(
        snap(
            NO_MESH_LW,
            node("n1", "10.0.0.1/24", "fd00::1/64"),
            node("n2", "10.0.0.2/24"),
            peer("lw", localWorkloadSelector="app == 'bird'", asNumber=65401, localASNumber=65002),
            wep("n1-k8s-bird-eth0", "n1", "192.168.1.5/32", "fd10::5/128", app="bird"),
            wep("n1-k8s-web-eth0", "n1", "192.168.1.6/32", app="web"),
            wep("n2-k8s-bird-eth0", "n2", "192.168.2.5/32", app="bird"),  # another node's
        ),
        "n1",
    )
    assert names(plan) == ["Local_Workload_192_168_1_5", "Local_Workload_fd10__5"]
    v4, v6 = plan.sessions
    assert v4 == PeerSpec(
        name="Local_Workload_192_168_1_5",
        peer_address="192.168.1.5",
        peer_port=179,
        peer_as=65401,
        local_as=65002,
        type=LOCAL_WORKLOAD,
        family="ipv4",
        passive=True,
        source_address="169.254.0.179",
        bgp_peer="lw",
    )
    assert (v6.family, v6.source_address, v6.passive) == ("ipv6", "fd12::179", True)
    # Felix's half (the address on the workload's interface) is not done: said, not silent.
    assert plan.notes == tuple(
        f"localWorkloadPeeringIPV{v} {a}: pybgpd's felix does not put it on workloads' "
        f"host-side interfaces yet; add it to each selected workload's (ip addr add {a}/{n} "
        "dev cali...)"
        for v, a, n in ((4, "169.254.0.179", 32), (6, "fd12::179", 128))
    )


def test_local_workload_peer_scope_and_first_peer_by_name() -> None:
    docs = [
        NO_MESH,
        node("n1", "10.0.0.1/24", labels={"rack": "a"}),
        node("n2", "10.0.0.2/24"),
        # Both select the workload; the first by name wins (felix's rule).
        peer("b-wide", localWorkloadSelector="has(bgp)", asNumber=65001),
        peer("a-red", localWorkloadSelector="color == 'red'", asNumber=65002),
        # Selects the node by label; another names the other node.
        peer("c-rack", localWorkloadSelector="color == 'blue'", nodeSelector="rack == 'a'",
             asNumber=65003),
        peer("d-n2", localWorkloadSelector="has(bgp)", node="n2", asNumber=65004),
        wep("red", "n1", "192.168.1.1/32", color="red", bgp="yes"),
        wep("blue", "n1", "192.168.1.2/32", color="blue"),
        wep("plain", "n1", "192.168.1.3/32", bgp="yes"),
    ]
    plan = compute(snap(*docs), "n1")
    got = {s.peer_address: (s.bgp_peer, s.peer_as, s.source_address) for s in plan.sessions}
    assert got == {
        "192.168.1.1": ("a-red", 65002, None),  # no localWorkloadPeeringIPV4
        "192.168.1.2": ("c-rack", 65003, None),
        "192.168.1.3": ("b-wide", 65001, None),
    }
    # The same workloads, other node labels: c-rack no longer applies here.
    docs[1] = node("n1", "10.0.0.1/24")
    plan = compute(snap(*docs), "n1")
    assert "192.168.1.2" not in {s.peer_address for s in plan.sessions}


def test_local_workload_peer_without_as_number_is_noted() -> None:
    plan = compute(
        snap(NO_MESH, *THREE, peer("lw", localWorkloadSelector="app == 'x'"),
             wep("w", "n1", "192.168.1.5/32", app="x")),
        "n1",
    )
    assert plan.sessions == ()
    assert plan.notes == (
        "BGPPeer 'lw': localWorkloadSelector needs asNumber (the workloads' AS); no sessions",
    )


def test_two_sessions_to_one_peer_keep_the_first() -> None:
    # The mesh to n2 and a global BGPPeer to n2's address clash; BIRD would take the first.
    plan = compute(snap(*THREE, peer("to-n2", peerIP="10.0.0.2", asNumber=64512)), "n1")
    assert names(plan) == ["Global_10_0_0_2", "Mesh_10_0_0_3"]
    assert plan.notes == ("Mesh_10_0_0_2: same peer as Global_10_0_0_2; not started",)


def test_plan_is_a_value() -> None:
    a = compute(snap(*THREE), "n1")
    b = compute(snap(*reversed(THREE)), "n1")
    assert a == b
    assert hash(a.sessions[0]) == hash(b.sessions[0])
    with pytest.raises(AttributeError):
        a.sessions[0].passive = True  # type: ignore[misc]
    assert replace(a, notes=("x",)) == a  # notes are for logs, not identity


def test_example_config() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "example-node.yaml"
    plan = compute(load_file(str(example)), "node1")
    assert names(plan) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]
    assert all(s.passive and s.max_restart_time == 120 for s in plan.sessions)
    assert [o.prefix for o in plan.originate] == ["192.168.1.0/26"]
    assert plan.blackholes == ("192.168.1.0/26",)
    assert plan.originate[0].pool is not None and plan.originate[0].pool.ipip_mode == "Always"
    # No felix beside a file datastore: bgpd programs the IPIP pool's routes via tunl0.
    assert [(k.cidr, k.programmed, k.tunnel) for k in plan.kernel] == [
        ("192.168.0.0/16", True, "tunl0")
    ]
