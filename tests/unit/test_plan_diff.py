"""diff(old, new): the session changes between two plans."""

from __future__ import annotations

from dataclasses import replace

from bgpd.plan import MESH, PeerAdded, PeerChanged, PeeringPlan, PeerRemoved, PeerSpec, diff


def spec(n: int, **kw: object) -> PeerSpec:
    base = PeerSpec(
        name=f"Mesh_10_0_0_{n}",
        peer_address=f"10.0.0.{n}",
        peer_port=179,
        peer_as=64512,
        local_as=64512,
        type=MESH,
        family="ipv4",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def plan(*sessions: PeerSpec, router_id: str = "10.0.0.1") -> PeeringPlan:
    return PeeringPlan(
        node="n1",
        router_id=router_id,
        local_as=64512,
        listen_port=179,
        node_ipv4="10.0.0.1",
        node_ipv6=None,
        sessions=sessions,
    )


def test_from_nothing_everything_is_added() -> None:
    new = plan(spec(3), spec(2))
    assert diff(None, new) == [PeerAdded(spec(2)), PeerAdded(spec(3))]


def test_no_change() -> None:
    assert diff(plan(spec(2), spec(3)), plan(spec(3), spec(2))) == []
    # Notes are for the log only.
    assert diff(plan(spec(2)), replace(plan(spec(2)), notes=("x",))) == []


def test_removed_then_changed_then_added() -> None:
    old = plan(spec(2), spec(3), spec(4))
    new = plan(spec(3, passive=True), spec(4), spec(5), spec(6))
    changes = diff(old, new)
    assert changes == [
        PeerRemoved(spec(2)),
        PeerChanged("Mesh_10_0_0_3", spec(3), spec(3, passive=True)),
        PeerAdded(spec(5)),
        PeerAdded(spec(6)),
    ]
    assert [c.name for c in changes] == [
        "Mesh_10_0_0_2",
        "Mesh_10_0_0_3",
        "Mesh_10_0_0_5",
        "Mesh_10_0_0_6",
    ]


def test_everything_removed() -> None:
    assert diff(plan(spec(2)), plan()) == [PeerRemoved(spec(2))]


def test_new_router_id_restarts_every_session() -> None:
    old = plan(spec(2), spec(3))
    new = plan(spec(2), spec(3), router_id="10.9.9.9")
    assert diff(old, new) == [
        PeerChanged("Mesh_10_0_0_2", spec(2), spec(2)),
        PeerChanged("Mesh_10_0_0_3", spec(3), spec(3)),
    ]


def test_only_sessions_matter() -> None:
    old = plan(spec(2))
    new = replace(old, blackholes=("192.168.1.0/26",), listen_port=1790)
    assert diff(old, new) == []


def test_renamed_source_resource_is_not_a_change() -> None:
    """Which BGPPeer a session comes from is bookkeeping: no restart when it is renamed."""
    old = plan(replace(spec(2), bgp_peer="peer-1", peer_node="node2"))
    new = plan(replace(spec(2), bgp_peer="peer-0", peer_node=None))
    assert diff(old, new) == []
    assert diff(old, plan(replace(spec(2), bgp_peer="peer-0", keepalive_time=10))) == [
        PeerChanged("Mesh_10_0_0_2", old.sessions[0], replace(spec(2), bgp_peer="peer-0",
                                                               keepalive_time=10))
    ]
