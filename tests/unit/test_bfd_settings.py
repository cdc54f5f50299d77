"""BFD settings from Calico resources: the pybgpd.io/bfd* annotations on BGPPeers and Nodes
(read, written back, rejected with one clear line), how the planner combines them into each
session's `PeerSpec.bfd`, and how plan changes reach BFD without restarting BGP."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bgpd.plan import BfdChange, BfdSpec, bfd_changes, compute, diff
from calico import ResourceError, load_text, parse_resource
from calico.codec import to_v3
from calico.model import NO_BFD, BfdSettings, BGPPeer, Node


def peer_doc(annotations: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "tor"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "kind": "BGPPeer",
        "apiVersion": "projectcalico.org/v3",
        "metadata": meta,
        "spec": {"peerIP": "10.0.0.254", "asNumber": 65001},
    }


def bfd_of(annotations: dict[str, Any] | None) -> BfdSettings:
    peer = parse_resource(peer_doc(annotations))
    assert isinstance(peer, BGPPeer)
    return peer.bfd


def test_annotations_read() -> None:
    assert bfd_of(None) == NO_BFD
    assert bfd_of({"other.io/x": "y"}) == NO_BFD
    assert bfd_of({"pybgpd.io/bfd": "true"}) == BfdSettings(True)
    assert bfd_of({"pybgpd.io/bfd": "False"}) == BfdSettings(False)
    assert bfd_of({"pybgpd.io/bfd": True, "pybgpd.io/bfd-multiplier": 5}) == BfdSettings(
        True, None, 5
    )
    assert bfd_of(
        {
            "pybgpd.io/bfd": "true",
            "pybgpd.io/bfd-interval": "250ms",
            "pybgpd.io/bfd-multiplier": "4",
        }
    ) == BfdSettings(True, 0.25, 4)
    assert bfd_of({"pybgpd.io/bfd-interval": "1s"}) == BfdSettings(None, 1.0)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"pybgpd.io/bfd": "yes"}, '\'yes\' is not "true" or "false"'),
        ({"pybgpd.io/bfd-interval": "300"}, "is not a duration such as '120s'"),
        ({"pybgpd.io/bfd-interval": "5ms"}, "'5ms' is not between 10ms and 60s"),
        ({"pybgpd.io/bfd-interval": "2m"}, "'2m' is not between 10ms and 60s"),
        ({"pybgpd.io/bfd-multiplier": "0"}, "'0' is not a whole number 1..255"),
        ({"pybgpd.io/bfd-multiplier": "2.5"}, "'2.5' is not a whole number 1..255"),
        ({"pybgpd.io/bfd-intervall": "300ms"}, "unknown BFD annotation"),
        ({"pybgpd.io/bfd": ["true"]}, "expected a string"),
    ],
)
def test_bad_annotations(annotations: dict[str, Any], message: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(peer_doc(annotations))
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "metadata.annotations.pybgpd.io/bfd" in text


def test_annotations_round_trip_through_the_stored_form() -> None:
    for settings in (BfdSettings(True, 0.3, 3), BfdSettings(False), BfdSettings(None, 0.0125)):
        peer = replace(BGPPeer(name="tor", peer_ip="10.0.0.254", as_number=65001), bfd=settings)
        assert parse_resource(to_v3(peer)) == peer
        node = replace(Node(name="n1"), bfd=settings)
        assert parse_resource(to_v3(node)) == node
    assert "annotations" not in to_v3(Node(name="n1"))["metadata"]


CLUSTER = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: node1
  annotations: {pybgpd.io/bfd: "true", pybgpd.io/bfd-interval: 200ms}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
  annotations: {pybgpd.io/bfd-multiplier: "5"}
spec: {peerIP: 10.0.0.254, asNumber: 65001}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: far
  annotations: {pybgpd.io/bfd: "true"}
spec: {peerIP: 10.9.0.1, asNumber: 65002, ttlSecurity: 3}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: quiet
  annotations: {pybgpd.io/bfd: "false", pybgpd.io/bfd-interval: 50ms}
spec: {peerIP: 10.0.0.253, asNumber: 65003}
"""


def test_plan_combines_peer_node_and_defaults() -> None:
    plan = compute(load_text(CLUSTER), "node1")
    by_name = {s.name: s for s in plan.sessions}
    # The mesh takes the node's setting; the BGPPeer adds its multiplier to the node's interval.
    assert by_name["Mesh_10_0_0_2"].bfd == BfdSpec(0.2, 3)
    assert by_name["Global_10_0_0_254"].bfd == BfdSpec(0.2, 5)
    assert by_name["Global_10_0_0_254"].bfd.detection_time == pytest.approx(1.0)  # type: ignore[union-attr]
    # Explicitly off on the BGPPeer; single hop only, so a peer three hops away gets none.
    assert by_name["Global_10_0_0_253"].bfd is None
    assert by_name["Global_10_9_0_1"].bfd is None
    notes = "\n".join(plan.notes)
    assert "Global_10_9_0_1: BFD not started: pybgpd runs single-hop BFD only" in notes
    assert "BGPPeer 'quiet': BFD interval/multiplier set but BFD is off" in notes
    # node2 enables nothing: only its peers' own annotations count.
    other = compute(load_text(CLUSTER), "node2")
    assert {s.name: s.bfd for s in other.sessions} == {
        "Global_10_0_0_253": None,
        "Global_10_0_0_254": None,
        "Global_10_9_0_1": None,
        "Mesh_10_0_0_1": None,
    }
    assert "Global_10_9_0_1: BFD not started" in "\n".join(other.notes)


def test_a_bfd_change_retimes_bfd_without_restarting_bgp() -> None:
    before = compute(load_text(CLUSTER), "node1")
    after = compute(
        load_text(CLUSTER.replace("pybgpd.io/bfd-interval: 200ms", "pybgpd.io/bfd-interval: 1s")),
        "node1",
    )
    assert diff(before, after) == []
    assert bfd_changes(before, after) == [
        BfdChange("Global_10_0_0_254", "10.0.0.254", "10.0.0.1", BfdSpec(0.2, 5), BfdSpec(1.0, 5)),
        BfdChange("Mesh_10_0_0_2", "10.0.0.2", "10.0.0.1", BfdSpec(0.2, 3), BfdSpec(1.0, 3)),
    ]
    assert bfd_changes(None, before) == [
        BfdChange("Global_10_0_0_254", "10.0.0.254", "10.0.0.1", None, BfdSpec(0.2, 5)),
        BfdChange("Mesh_10_0_0_2", "10.0.0.2", "10.0.0.1", None, BfdSpec(0.2, 3)),
    ]
    assert bfd_changes(before, before) == []
