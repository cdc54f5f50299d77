"""Planner rules beyond what the golden files cover: IPv6 peers with ports, reverse peering
of a peerIP BGPPeer (AS and port must match the node), self-selection, empty selections
and selector errors."""

from __future__ import annotations

import pytest
from test_plan_peering import NO_MESH, THREE, names, node, peer, res, snap

from bgpd.plan import NODE_SPECIFIC, compute
from calico import ResourceError

N2_ON_500 = res("BGPConfiguration", "node.n2", {"listenPort": 500})


def test_ipv6_global_peer_with_a_port() -> None:
    s = snap(
        NO_MESH,
        node("n1", "10.0.0.1/24", "fd00::1/64"),
        node("n2", "10.0.0.2/24"),
        peer("v6", peerIP="[fd00::9]:1790", asNumber=65000, sourceAddress="UseNodeIP"),
    )
    (spec,) = compute(s, "n1").sessions
    assert (spec.name, spec.peer_address, spec.peer_port, spec.family) == (
        "Global_fd00__9_port_1790", "fd00::9", 1790, "ipv6"
    )
    assert spec.source_address == "fd00::1" and spec.ebgp and not spec.passive
    # A node without IPv6 skips it, and says so.
    plan = compute(s, "n2")
    assert plan.sessions == ()
    assert plan.notes == ("no ipv6 address on this node: skipping peering with fd00::9",)


def test_ipv6_reverse_peering_over_selectors() -> None:
    s = snap(
        NO_MESH,
        node("a", "10.0.0.1/24", "fd00::1/64", labels={"role": "a"}),
        node("b", "10.0.0.2/24", "fd00::2/64", labels={"role": "b"}),
        peer("a-to-b", nodeSelector="role == 'a'", peerSelector="role == 'b'"),
    )
    assert names(compute(s, "a")) == ["Node_10_0_0_2", "Node_fd00__2"]
    b = compute(s, "b")
    assert names(b) == ["Node_10_0_0_1", "Node_fd00__1"]
    assert {x.family for x in b.sessions} == {"ipv4", "ipv6"}
    assert all(x.type == NODE_SPECIFIC and x.peer_node == "a" for x in b.sessions)


@pytest.mark.parametrize(
    ("peer_ip", "on_n1", "on_n2"),
    [
        # No port: the node's own listen port, and the node gets the way back.
        ("10.0.0.2", ["Node_10_0_0_2_port_500"], ["Node_10_0_0_1"]),
        # The port n2 listens on: the same.
        ("10.0.0.2:500", ["Node_10_0_0_2_port_500"], ["Node_10_0_0_1"]),
        # Another port is not n2's BGP: no reverse peering.
        ("10.0.0.2:179", ["Node_10_0_0_2"], []),
    ],
)
def test_reverse_peering_of_a_peer_ip_needs_the_nodes_port(
    peer_ip: str, on_n1: list[str], on_n2: list[str]
) -> None:
    s = snap(NO_MESH, *THREE, N2_ON_500, peer("x", node="n1", peerIP=peer_ip))
    assert names(compute(s, "n1")) == on_n1
    assert names(compute(s, "n2")) == on_n2
    assert names(compute(s, "n3")) == []


def test_reverse_peering_of_a_peer_ip_needs_the_nodes_as() -> None:
    s = snap(NO_MESH, *THREE, peer("x", node="n1", peerIP="10.0.0.2", asNumber=65000))
    assert names(compute(s, "n1")) == ["Node_10_0_0_2"]
    assert compute(s, "n1").sessions[0].ebgp
    assert names(compute(s, "n2")) == []


def test_manual_reverse_peering_of_a_peer_ip() -> None:
    s = snap(NO_MESH, *THREE, peer("x", node="n1", peerIP="10.0.0.2", reversePeering="Manual"))
    assert names(compute(s, "n1")) == ["Node_10_0_0_2"]
    assert names(compute(s, "n2")) == []


def test_a_selector_matching_the_node_itself_skips_it() -> None:
    s = snap(NO_MESH, *THREE, peer("all", nodeSelector="all()", peerSelector="all()"))
    assert [names(compute(s, n)) for n in ("n1", "n2", "n3")] == [
        ["Node_10_0_0_2", "Node_10_0_0_3"],
        ["Node_10_0_0_1", "Node_10_0_0_3"],
        ["Node_10_0_0_1", "Node_10_0_0_2"],
    ]
    # Selector peerings are not one-directional: both ends connect (BIRD resolves it).
    assert not any(x.passive for x in compute(s, "n1").sessions)


def test_selectors_matching_nothing_give_no_sessions() -> None:
    s = snap(
        NO_MESH, *THREE,
        peer("none", nodeSelector="all()", peerSelector="rack in {'x', 'y'}"),
        peer("nobody", nodeSelector="!all()", peerSelector="all()"),
    )
    for n in ("n1", "n2", "n3"):
        plan = compute(s, n)
        assert plan.sessions == () and plan.notes == ()


def test_label_selectors_with_operators() -> None:
    s = snap(
        NO_MESH,
        node("n1", "10.0.0.1/24", labels={"zone": "eu-west-1a", "tier": "edge"}),
        node("n2", "10.0.0.2/24", labels={"zone": "eu-west-1b"}),
        node("n3", "10.0.0.3/24", labels={"zone": "us-east-1a", "tier": "core"}),
        peer(
            "p",
            nodeSelector="zone starts with 'eu-' && !has(tier)",
            peerSelector="(zone ends with '1a' || tier == 'core') && zone contains 'east'",
        ),
    )
    assert names(compute(s, "n2")) == ["Node_10_0_0_3"]
    assert names(compute(s, "n3")) == ["Node_10_0_0_2"]  # the reverse peering
    assert names(compute(s, "n1")) == []


@pytest.mark.parametrize(
    ("selector", "words"),
    [
        ("has(", "expected a label name"),
        ("a ==", "expected a quoted string"),
        ("a = 'b'", "expected '=='"),
        ("zone in 'x'", ""),
    ],
)
def test_bad_selectors_are_refused_with_the_field(selector: str, words: str) -> None:
    with pytest.raises(ResourceError) as info:
        snap(NO_MESH, *THREE, peer("bad", nodeSelector=selector, peerSelector="all()"))
    text = str(info.value)
    assert "BGPPeer 'bad': spec.nodeSelector" in text and "not a valid selector" in text
    assert words in text
