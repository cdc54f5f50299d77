"""Snapshot: an immutable set of resources by kind and name."""

from __future__ import annotations

import pytest

from calico import Snapshot
from calico.model import (
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    IPPool,
    Node,
    WorkloadEndpoint,
)


def test_of_and_lookup() -> None:
    peer = BGPPeer("p1", peer_ip="10.0.0.9", as_number=65000)
    snap = Snapshot.of([Node("n1"), peer, IPPool("pool", "10.1.0.0/16")], source="x", revision=7)
    assert snap.nodes["n1"] == Node("n1")
    assert snap.bgp_peers == {"p1": peer}
    assert snap.get("BGPPeer", "p1") is peer
    assert snap.get("BGPPeer", "nope") is None
    assert snap.bgp_configurations == {}
    assert (snap.source, snap.revision, len(snap)) == ("x", 7, 3)
    assert [r.name for r in snap] == ["p1", "pool", "n1"]  # by kind, then name


def test_immutable() -> None:
    snap = Snapshot.of([Node("n1")])
    with pytest.raises(TypeError):
        snap.nodes["n2"] = Node("n2")  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.revision = 3  # type: ignore[misc]


def test_with_and_without() -> None:
    base = Snapshot.of([Node("n1")])
    grown = base.with_resource(Node("n2")).with_resources([Node("n1", bgp=None)])
    assert sorted(grown.nodes) == ["n1", "n2"]
    assert sorted(base.nodes) == ["n1"]  # the original is untouched
    shrunk = grown.without("Node", "n2")
    assert sorted(shrunk.nodes) == ["n1"]
    assert shrunk.without("Node", "n2") is shrunk
    assert shrunk.without("Node", "n1").nodes == {}
    assert shrunk.at(9).revision == 9


def test_equality() -> None:
    assert Snapshot.of([Node("a"), Node("b")]) == Snapshot.of([Node("b"), Node("a")])
    assert Snapshot.of([Node("a")]) != Snapshot.of([Node("b")])


def test_default_config_and_node_config() -> None:
    assert Snapshot().default_config == BGPConfiguration("default")
    cfg = BGPConfiguration("default", as_number=65000)
    per_node = BGPConfiguration("node.n1", listen_port=1790)
    snap = Snapshot.of([cfg, per_node])
    assert snap.default_config is cfg
    assert snap.node_config("n1") is per_node
    assert snap.node_config("n2") is None


def test_affinities_of() -> None:
    snap = Snapshot.of(
        [
            BlockAffinity("b", "n1", "192.168.1.64/26"),
            BlockAffinity("a", "n1", "192.168.1.0/26", "pending"),
            BlockAffinity("c", "n1", "fd00::/122"),
            BlockAffinity("d", "n2", "192.168.2.0/26"),
            BlockAffinity("e", "n1", "192.168.3.0/26", deleted=True),
            BlockAffinity("f", "n1", "192.168.4.0/26", type="virtual"),
        ]
    )
    assert [a.name for a in snap.affinities_of("n1")] == ["a", "b", "c"]
    assert [a.name for a in snap.affinities_of("n2")] == ["d"]


def test_workload_endpoints_are_kept_per_namespace() -> None:
    a = WorkloadEndpoint("w", "ns-a", "n1", ip_networks=("10.0.0.1/32",))
    b = WorkloadEndpoint("w", "ns-b", "n1", ip_networks=("10.0.0.2/32",))
    c = WorkloadEndpoint("x", "ns-a", "n2")
    snap = Snapshot.of([b, c, a])
    assert sorted(snap.workload_endpoints) == ["ns-a/w", "ns-a/x", "ns-b/w"]
    assert snap.workloads_of("n1") == (a, b)
    assert snap.without("WorkloadEndpoint", "ns-a/w").workloads_of("n1") == (b,)
