"""bgpd against real BIRD 2, FRR and GoBGP in network namespaces: sessions up as the active and
the passive end, IPv4 and IPv6 routes both ways and in bgpd's kernel, withdrawals, TCP MD5,
and hold-timer expiry when the peer freezes."""

from __future__ import annotations

import pytest

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, FrrPeer, GobgpPeer, Neighbor, Peer, missing_programs
from labs.harness.wait import holds_for, wait_for

PACKAGES = {BirdPeer: "bird2", FrrPeer: "frr", GobgpPeer: "gobgpd"}
PEERS = [BirdPeer, FrrPeer, GobgpPeer]

BGPD_V4, PEER_V4 = "10.0.12.1", "10.0.12.2"
BGPD_V6, PEER_V6 = "fd00:12::1", "fd00:12::2"
BGPD_AS, PEER_AS = 64512, 65002
BLOCK_V4, BLOCK_V6 = "192.168.10.0/26", "fd10:0:0:10::/122"
PEER_ROUTES = {4: "10.99.2.0/24", 6: "fd00:99:2::/64"}


def need(peer_type: type[Peer]) -> None:
    missing = missing_programs(peer_type)
    if missing:
        pytest.skip(f"{PACKAGES[peer_type]} not installed (missing {', '.join(missing)})")


def two_nodes(lab: Lab, bgpd_v4: str = BGPD_V4, peer_v4: str = PEER_V4) -> tuple[Node, Node]:
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, bgpd_v4, peer_v4, BGPD_V6, PEER_V6)
    return a, b


def global_peers(password: bool = False) -> list[dict[str, object]]:
    peers: list[dict[str, object]] = []
    for address in (PEER_V4, PEER_V6):
        spec: dict[str, object] = {"peerIP": address, "asNumber": PEER_AS}
        if password:
            spec["password"] = {"secretKeyRef": {"name": "bgp-secrets", "key": "peer"}}
        peers.append(spec)
    return peers


def make_peer(
    peer_type: type[Peer], node: Node, *, passive: bool, password: str | None = None,
    hold_time: int | None = None,
) -> Peer:
    return peer_type(
        node,
        "10.255.0.2",
        PEER_AS,
        [
            Neighbor(BGPD_V4, BGPD_AS, passive=passive, password=password, hold_time=hold_time),
            Neighbor(BGPD_V6, BGPD_AS, passive=passive, password=password, hold_time=hold_time),
        ],
        routes_v4=[PEER_ROUTES[4]],
        routes_v6=[PEER_ROUTES[6]],
    )


def bgpd_for(node: Node, **kw: object) -> Bgpd:
    docs = resources(
        node="node1",
        ipv4=f"{BGPD_V4}/24",
        ipv6=f"{BGPD_V6}/64",
        asn=BGPD_AS,
        peers=global_peers(password="secrets" in kw),
        blocks=[BLOCK_V4, BLOCK_V6],
    )
    return Bgpd(node, "node1", docs, **kw)  # type: ignore[arg-type]


def check_exchange(bgpd: Bgpd, peer: Peer) -> None:
    """Routes both ways, in bgpd's kernel with the peer as next hop, and withdrawals."""
    peer.wait_received(4, [BLOCK_V4])
    peer.wait_received(6, [BLOCK_V6])
    got = peer.received_routes(4)[BLOCK_V4][0]
    assert got.next_hop == BGPD_V4
    assert got.as_path == (BGPD_AS,)
    assert peer.received_routes(6)[BLOCK_V6][0].next_hop == BGPD_V6

    for family in (4, 6):
        wait_for(
            lambda f=family: PEER_ROUTES[f] in bgpd.kernel_prefixes(f),
            30,
            message=f"IPv{family} route from the peer in bgpd's FIB",
        )
    assert bgpd.kernel_routes(4)[PEER_ROUTES[4]]["gateway"] == PEER_V4
    assert bgpd.kernel_routes(6)[PEER_ROUTES[6]]["gateway"] == PEER_V6

    routes = {(r["prefix"], r["from_peer"]) for r in bgpd.routes()}
    assert any(p == PEER_ROUTES[4] for p, _ in routes)
    status = bgpd.status()
    v4 = next(p for p in status["peers"] if p["address"] == PEER_V4)
    assert v4["routes_received"] >= 1 and v4["routes_advertised"] >= 1

    extra = "10.77.0.0/16"
    peer.announce(extra)
    wait_for(lambda: extra in bgpd.kernel_prefixes(4), 30, message="announced route in FIB")
    peer.withdraw(extra)
    wait_for(lambda: extra not in bgpd.kernel_prefixes(4), 30, message="withdrawn route gone")
    peer.withdraw(PEER_ROUTES[6])
    wait_for(
        lambda: PEER_ROUTES[6] not in bgpd.kernel_prefixes(6), 30, message="IPv6 withdraw"
    )


@pytest.mark.interop
@pytest.mark.parametrize("peer_type", PEERS, ids=lambda t: t.__name__)
def test_bgpd_active_end(lab: Lab, peer_type: type[Peer]) -> None:
    """The peer only listens: bgpd connects (IPv4 and IPv6 sessions)."""
    need(peer_type)
    a, b = two_nodes(lab)
    peer = make_peer(peer_type, b, passive=True)
    peer.start()
    bgpd = bgpd_for(a).start()
    bgpd.wait_established(PEER_V4, PEER_V6)
    peer.wait_established()
    check_exchange(bgpd, peer)
    peer.stop()
    if peer_type is FrrPeer:
        # FRR stops as a graceful-restart speaker (no NOTIFICATION): as its helper we keep
        # its routes, stale, in RIB and FIB (RFC 4724), for the advertised restart time.
        holds_for(
            lambda: PEER_ROUTES[4] in bgpd.kernel_prefixes(4), 4, message="stale routes kept"
        )
    else:
        # A Cease ends the session for good: the peer's routes leave the FIB.
        wait_for(
            lambda: PEER_ROUTES[4] not in bgpd.kernel_prefixes(4), 30, message="routes gone"
        )


@pytest.mark.interop
@pytest.mark.parametrize("peer_type", PEERS, ids=lambda t: t.__name__)
def test_bgpd_passive_end(lab: Lab, peer_type: type[Peer]) -> None:
    """A node-to-node mesh where bgpd's address sorts higher: bgpd only listens (Calico's
    rule) and the peer, playing the other Calico node, connects."""
    need(peer_type)
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, "10.0.12.9", "10.0.12.2", "fd00:12::9", "fd00:12::2")
    docs = resources(
        node="node1",
        ipv4="10.0.12.9/24",
        ipv6="fd00:12::9/64",
        asn=BGPD_AS,
        other_nodes={"node2": ("10.0.12.2/24", "fd00:12::2/64")},
        blocks=[BLOCK_V4, BLOCK_V6],
    )
    bgpd = Bgpd(a, "node1", docs).start()
    status = bgpd.status()
    assert {p["type"] for p in status["peers"]} == {"node-to-node mesh"}
    peer = peer_type(
        b,
        "10.0.12.2",
        BGPD_AS,
        [Neighbor("10.0.12.9", BGPD_AS), Neighbor("fd00:12::9", BGPD_AS)],
        routes_v4=[PEER_ROUTES[4]],
        routes_v6=[PEER_ROUTES[6]],
    )
    peer.start()
    bgpd.wait_established("10.0.12.2", "fd00:12::2")
    peer.wait_received(4, [BLOCK_V4])
    peer.wait_received(6, [BLOCK_V6])
    assert peer.received_routes(4)[BLOCK_V4][0].next_hop == "10.0.12.9"
    for family in (4, 6):
        wait_for(
            lambda f=family: PEER_ROUTES[f] in bgpd.kernel_prefixes(f),
            30,
            message=f"IPv{family} route from the mesh peer in bgpd's FIB",
        )


@pytest.mark.interop
def test_tcp_md5_with_bird(lab: Lab) -> None:
    need(BirdPeer)
    a, b = two_nodes(lab)
    secrets = {"bgp-secrets": {"peer": "s3cret-key"}}
    peer = make_peer(BirdPeer, b, passive=False, password="s3cret-key")
    peer.start()
    bgpd = bgpd_for(a, secrets=secrets).start()
    bgpd.wait_established(PEER_V4, PEER_V6)
    peer.wait_received(4, [BLOCK_V4])


@pytest.mark.interop
def test_tcp_md5_wrong_password_refused(lab: Lab) -> None:
    need(BirdPeer)
    a, b = two_nodes(lab)
    peer = make_peer(BirdPeer, b, passive=False, password="the-right-one")
    peer.start()
    bgpd = bgpd_for(a, secrets={"bgp-secrets": {"peer": "a-wrong-one"}}).start()
    # Both ends keep trying for a while; neither may come up.
    holds_for(
        lambda: bgpd.peer_state(PEER_V4) != "Established"
        and peer.session_state(BGPD_V4) != "Established",
        8,
        message="session with a wrong MD5 password stays down",
    )


@pytest.mark.interop
@pytest.mark.parametrize("peer_type", PEERS, ids=lambda t: t.__name__)
def test_hold_timer_expiry_when_peer_freezes(lab: Lab, peer_type: type[Peer]) -> None:
    need(peer_type)
    a, b = two_nodes(lab)
    peer = make_peer(peer_type, b, passive=True, hold_time=3)
    peer.start()
    bgpd = bgpd_for(a).start()
    bgpd.wait_established(PEER_V4)
    wait_for(lambda: PEER_ROUTES[4] in bgpd.kernel_prefixes(4), 30, message="route in FIB")
    peer.freeze()
    try:
        wait_for(
            lambda: bgpd.peer_state(PEER_V4) != "Established", 15, message="hold timer expiry"
        )
        info = next(p for p in bgpd.status()["peers"] if p["address"] == PEER_V4)["info"]
        assert "Hold timer expired" in info
        wait_for(
            lambda: PEER_ROUTES[4] not in bgpd.kernel_prefixes(4),
            15,
            message="frozen peer's routes removed",
        )
    finally:
        peer.thaw()


@pytest.mark.interop
def test_routes_of_an_earlier_run_are_adopted_then_swept(lab: Lab) -> None:
    """Our protocol's routes left behind are adopted at start (a graceful restart keeps them
    forwarding) and removed once the peers' End-of-RIB shows nobody re-announced them;
    another protocol's route stays."""
    need(BirdPeer)
    a, b = two_nodes(lab)
    a.run(["ip", "route", "add", "10.55.0.0/24", "via", PEER_V4, "proto", "201"])
    a.run(["ip", "-6", "route", "add", "fd55::/64", "via", PEER_V6, "proto", "201"])
    a.run(["ip", "route", "add", "10.56.0.0/24", "via", PEER_V4, "proto", "static"])
    bgpd = bgpd_for(a).start()
    assert "10.55.0.0/24" in bgpd.kernel_prefixes(4)  # adopted, still forwarding
    make_peer(BirdPeer, b, passive=False).start()
    wait_for(
        lambda: not {"10.55.0.0/24"} & bgpd.kernel_prefixes(4)
        and not {"fd55::/64"} & bgpd.kernel_prefixes(6),
        60,
        message="leftover routes swept after End-of-RIB",
    )
    assert "kernel routes adopted" in bgpd.log_path.read_text()
    assert PEER_ROUTES[4] in bgpd.kernel_prefixes(4)
    assert "10.56.0.0/24" in a.route_prefixes(4, proto="static")
