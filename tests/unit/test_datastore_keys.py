"""Calico's key layout and stored JSON, both ways (pure: no store)."""

from __future__ import annotations

import json

import pytest

from calico import keys
from calico.codec import decode, encode, to_calico
from calico.errors import ResourceError
from calico.model import (
    AFFINITY_PENDING_DELETION,
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    IPPool,
    Node,
    parse_resource,
)
from calico.store.kv import EventType, KeyValue, WatchEvent, prefix_end
from calico.watch import SnapshotState, watched_prefixes


def test_cidrs_in_keys_as_calico_writes_them() -> None:
    assert keys.cidr_to_key("192.168.221.70/26") == "192.168.221.64-26"
    assert keys.key_to_cidr("192.168.221.64-26") == "192.168.221.64/26"
    assert keys.cidr_to_key("fd00:1:2::/122") == "fd00:1:2::-122"
    assert keys.key_to_cidr("fd00:1:2::-122") == "fd00:1:2::/122"
    assert keys.block_key("192.168.221.64/26") == (
        "/calico/ipam/v2/assignment/ipv4/block/192.168.221.64-26"
    )
    assert keys.affinity_key("node1", "192.168.221.64/26") == (
        "/calico/ipam/v2/host/node1/ipv4/block/192.168.221.64-26"
    )
    v6 = "/calico/ipam/v2/host/n/ipv6/block/fd00:1:2::-122"
    assert keys.affinity_key("n", "fd00:1:2::/122") == v6
    handle = "/calico/ipam/v2/handle/k8s-pod-network.4f3c"
    assert keys.handle_key("k8s-pod-network.4f3c") == handle


def test_resource_keys_round_trip() -> None:
    key = keys.resource_key("BGPPeer", "rack1-tor")
    assert key == "/calico/resources/v3/projectcalico.org/bgppeers/rack1-tor"
    assert keys.parse_resource_key(key) == keys.ResourceKey("BGPPeer", "rack1-tor")
    wep = keys.resource_key("WorkloadEndpoint", "node1-k8s-nginx-eth0", "default")
    assert wep.endswith("/workloadendpoints/default/node1-k8s-nginx-eth0")
    assert keys.parse_resource_key(wep) == keys.ResourceKey(
        "WorkloadEndpoint", "node1-k8s-nginx-eth0", "default"
    )
    assert keys.resource_key("BGPConfiguration", "node.n1").endswith(
        "/bgpconfigurations/node.n1"
    )
    assert keys.parse_resource_key("/calico/resources/v3/projectcalico.org/bgppeers/") is None
    assert keys.parse_resource_key("/calico/resources/v3/projectcalico.org/nope/x") is None
    with pytest.raises(ValueError):
        keys.resource_key("Nope", "x")
    ak = keys.parse_affinity_key("/calico/ipam/v2/virtual/load-balancer/ipv4/block/10.0.0.0-26")
    assert ak == keys.AffinityKey("virtual", "load-balancer", "10.0.0.0/26")
    assert keys.parse_affinity_key("/calico/ipam/v2/host/n/ipv4/block/not-a-cidr") is None


def test_prefix_end_bounds_a_prefix() -> None:
    assert prefix_end("/calico/ipam/v2/host/node1/") == "/calico/ipam/v2/host/node10"
    assert prefix_end("/calico/ipam/v2/host/node1/") <= "/calico/ipam/v2/host/node10/x"


def test_affinity_values_including_old_empty_ones() -> None:
    key = keys.affinity_key("node1", "192.168.1.0/26")
    for raw in (b"", b"{}", b'{"state":"","deleted":false}', b'{"state":"confirmed"}'):
        a = decode(key, raw)
        assert isinstance(a, BlockAffinity) and a.state == "confirmed" and a.node == "node1"
    a = decode(key, b'{"state":"pendingDeletion","deleted":false,"extra":1}')
    assert isinstance(a, BlockAffinity) and a.state == AFFINITY_PENDING_DELETION
    with pytest.raises(ResourceError) as e:
        decode(key, b'{"state":"bogus"}')
    assert key in str(e.value)


def test_resource_values_named_by_their_key_unknown_fields_ignored() -> None:
    key = keys.resource_key("IPPool", "default-ipv4-ippool")
    value = b'{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"other"},' \
        b'"spec":{"cidr":"192.168.0.0/16","someFutureField":true}}'
    pool = decode(key, value)
    assert isinstance(pool, IPPool)
    assert (pool.name, pool.block_size, pool.node_selector) == ("default-ipv4-ippool", 26, "all()")
    assert decode(keys.handle_key("h"), b'{"block":{}}') is None
    assert decode(keys.resource_key("StagedNetworkPolicy", "w", "ns"), b"{}") is None
    with pytest.raises(ResourceError):
        decode(key, b"{broken")


SAMPLES = [
    BGPConfiguration("default", as_number=65000, node_to_node_mesh_enabled=False,
                     listen_port=1790, node_mesh_max_restart_time=120),
    Node("node2", bgp=None),
    BGPPeer("p", node_selector="rack == 'a'", peer_ip="10.0.0.5", peer_port=1790,
            as_number=65001, keep_original_next_hop=True, ttl_security=1, max_restart_time=15),
    BGPPeer("rr", peer_selector="has(route-reflector)"),
    IPPool("pool", "fd10::/48", block_size=122, vxlan_mode="Always", disable_bgp_export=True),
    BlockAffinity("x", "node1", "192.168.1.0/26", state="pending"),
]


@pytest.mark.parametrize("resource", SAMPLES, ids=lambda r: f"{r.kind}-{r.name}")
def test_encode_then_decode_is_identity(resource: object) -> None:
    key, value = encode(resource)  # type: ignore[arg-type]
    back = decode(key, value)
    if isinstance(resource, BlockAffinity):
        assert isinstance(back, BlockAffinity)
        assert back == BlockAffinity(back.name, "node1", "192.168.1.0/26", state="pending")
    else:
        assert back == resource
        assert parse_resource(json.loads(value)) == resource


def test_node_labels_and_camel_case_spec() -> None:
    node = parse_resource({
        "kind": "Node", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "n", "labels": {"route-reflector": "true"}},
        "spec": {"bgp": {"ipv4Address": "10.0.0.2/24", "routeReflectorClusterID": "224.0.0.1"}},
    })
    assert node is not None
    value = to_calico(node)
    assert value["metadata"]["labels"] == {"route-reflector": "true"}
    assert value["spec"]["bgp"] == {"ipv4Address": "10.0.0.2/24",
                                    "routeReflectorClusterID": "224.0.0.1"}


def test_snapshot_state_applies_events_and_drops_bad_values() -> None:
    peer_key = keys.resource_key("BGPPeer", "p")
    good = encode(SAMPLES[2])[1]
    state = SnapshotState(source="test")
    errors = state.reset([KeyValue(peer_key, good, 2, 2, 1)], 5)
    assert not errors and set(state.snapshot().bgp_peers) == {"p"}
    errors = state.apply([WatchEvent(EventType.PUT, peer_key, b'{"spec":{}}', 6)])
    assert len(errors) == 1 and peer_key in str(errors[0])
    assert state.snapshot().bgp_peers == {} and state.revision == 6
    state.apply([WatchEvent(EventType.PUT, peer_key, good, 7),
                 WatchEvent(EventType.DELETE, peer_key, b"", 8)])
    assert state.snapshot().bgp_peers == {} and state.snapshot().revision == 8


def test_watched_prefixes_cover_the_planner_and_one_nodes_affinities() -> None:
    prefixes = watched_prefixes("node1")
    assert "/calico/ipam/v2/host/node1/" in prefixes
    assert keys.BLOCKS not in prefixes
    assert keys.BLOCKS in watched_prefixes(None, blocks=True)
    assert "/calico/ipam/v2/host/" in watched_prefixes(None)
