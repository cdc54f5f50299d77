"""BFD takes a BGP session down within its detection time: bgpd with a BGPPeer annotated
`pybgpd.io/bfd` against BIRD 2 (`protocol bfd`, `bfd on` in the BGP protocol) and FRR
(`neighbor ... bfd`, bfdd). The peer is frozen (SIGSTOP): its BGP hold time is 240 s, so
only BFD can bring bgpd's session down within a second, and the peer's routes leave bgpd's
RIB and FIB at once (no graceful-restart stale period: the path failed). Thawed, the session
comes back by the BGP rules."""

from __future__ import annotations

import time

import pytest

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, FrrBfdPeer, Neighbor, Peer, missing_programs
from labs.harness.wait import wait_for

pytestmark = pytest.mark.interop

BGPD_V4, PEER_V4 = "10.0.31.1", "10.0.31.2"
BGPD_AS, PEER_AS = 64512, 65031
PEER_ROUTE = "10.99.31.0/24"
INTERVAL_MS, MULTIPLIER = 100, 3
DETECTION = INTERVAL_MS * MULTIPLIER / 1000
# The peer is frozen from the test process; bgpd's timers and event loop, and the polling
# of bgpctl, come on top of the detection time.
ALLOWANCE = 0.7


def bgpd_docs() -> list[dict[str, object]]:
    docs = resources(
        node="node1",
        ipv4=f"{BGPD_V4}/24",
        asn=BGPD_AS,
        peers=[{"peerIP": PEER_V4, "asNumber": PEER_AS}],
        blocks=["192.168.31.0/26"],
    )
    for doc in docs:
        if doc["kind"] == "BGPPeer":
            doc["metadata"]["annotations"] = {  # type: ignore[index]
                "pybgpd.io/bfd": "true",
                "pybgpd.io/bfd-interval": f"{INTERVAL_MS}ms",
                "pybgpd.io/bfd-multiplier": str(MULTIPLIER),
            }
    return docs


def bird_peer(node: object) -> Peer:
    bfd = (
        "protocol bfd {\n"
        f'  interface "*" {{ interval {INTERVAL_MS} ms; multiplier {MULTIPLIER}; }};\n'
        "}\n"
    )
    return BirdPeer(
        node,  # type: ignore[arg-type]
        "10.255.31.2",
        PEER_AS,
        [Neighbor(BGPD_V4, BGPD_AS, passive=True, hold_time=240, extra="bfd on;")],
        routes_v4=[PEER_ROUTE],
        extra=bfd,
    )


def frr_peer(node: object, ifname: str) -> Peer:
    # bgpd registers the session with bfdd through zebra; bfdd's own peer entry for the same
    # address sets its timers.
    return FrrBfdPeer(
        node,
        "10.255.31.2",
        PEER_AS,
        [Neighbor(BGPD_V4, BGPD_AS, passive=True, hold_time=240, extra=f"neighbor {BGPD_V4} bfd")],
        routes_v4=[PEER_ROUTE],
        bfd_peers=[(BGPD_V4, PEER_V4, ifname, INTERVAL_MS, MULTIPLIER)],
    )


def peer_state(bgpd: Bgpd) -> str:
    return str(next(p for p in bgpd.status()["peers"] if p["address"] == PEER_V4)["bgp_state"])


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_bfd_brings_the_bgp_session_down_within_its_detection_time(lab: Lab, kind: str) -> None:
    peer_type = BirdPeer if kind == "bird" else FrrBfdPeer
    missing = missing_programs(peer_type)
    if missing:
        pytest.skip(f"{kind} not installed (missing {', '.join(missing)})")
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    link = lab.link(a, b, BGPD_V4, PEER_V4)
    peer = bird_peer(b) if kind == "bird" else frr_peer(b, link.b.ifname)
    peer.start()
    try:
        bgpd = Bgpd(a, "node1", bgpd_docs()).start()
        bgpd.wait_established(PEER_V4)
        wait_for(lambda: PEER_ROUTE in bgpd.kernel_prefixes(4), 30,
                 message="the peer's route in bgpd's FIB")  # fmt: skip
        sessions = bgpd.bgpctl("show", "bfd", "sessions").stdout
        wait_for(
            lambda: " Up " in bgpd.bgpctl("show", "bfd", "sessions").stdout, 20,
            message=lambda: "BFD session Up: " + bgpd.bgpctl("show", "bfd", "sessions").stdout,
        )
        assert PEER_V4 in sessions

        peer.freeze()
        frozen = time.monotonic()
        try:
            wait_for(lambda: peer_state(bgpd) != "Established", 10, interval=0.02,
                     message="bgpd's session to go down")  # fmt: skip
            took = time.monotonic() - frozen
            assert took <= DETECTION + ALLOWANCE, f"down after {took:.3f} s"
            status = next(p for p in bgpd.status()["peers"] if p["address"] == PEER_V4)
            assert "BFD" in status["info"], status
            # Not kept stale for a restart: gone from the RIB and the FIB.
            wait_for(lambda: PEER_ROUTE not in bgpd.kernel_prefixes(4), 5,
                     message="the frozen peer's route withdrawn")  # fmt: skip
            assert all(r["prefix"] != PEER_ROUTE for r in bgpd.routes())
        finally:
            peer.thaw()
        bgpd.wait_established(PEER_V4)
        wait_for(lambda: PEER_ROUTE in bgpd.kernel_prefixes(4), 30,
                 message="the route back once the session is")  # fmt: skip
    finally:
        peer.stop()
