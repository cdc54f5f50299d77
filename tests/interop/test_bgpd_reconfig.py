"""Live reconfiguration: bgpd follows edits of its resource file without a restart. Only the
sessions a change touches are added, removed or reset; the others stay up with their routes
(their `since` does not move), and a removed peer's session closes and its routes go."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import yaml

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import holds_for, wait_for

BGPD_AS, PEER_AS = 64512, 65002
BLOCK = "192.168.10.0/26"
B_ROUTE, C_ROUTE = "10.99.2.0/24", "10.99.3.0/24"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bool(missing_programs(BirdPeer)), reason="bird2 not installed"),
]


def peer_of(status: dict[str, Any], address: str) -> dict[str, Any] | None:
    return next((p for p in status["peers"] if p["address"] == address), None)


def write(bgpd: Bgpd, docs: list[dict[str, Any]]) -> None:
    # Write-then-rename, as editors and config managers do.
    tmp = bgpd.config.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, bgpd.config)


def test_adding_and_removing_peers_leaves_the_others_alone(lab: Lab) -> None:
    sw = lab.add_switch("sw", "10.0.30.0/24", "fd00:30::/64")
    a, b, c = lab.add_node("bgpd"), lab.add_node("peerb"), lab.add_node("peerc")
    a_ip = sw.attach(a, "10.0.30.1").v4
    b_ip = sw.attach(b, "10.0.30.2").v4
    c_ip = sw.attach(c, "10.0.30.3").v4
    peer_b = BirdPeer(b, b_ip, PEER_AS, [Neighbor(a_ip, BGPD_AS)], routes_v4=[B_ROUTE]).start()
    peer_c = BirdPeer(c, c_ip, PEER_AS, [Neighbor(a_ip, BGPD_AS)], routes_v4=[C_ROUTE]).start()

    def docs(*peers: str) -> list[dict[str, Any]]:
        return resources(
            node="node1", ipv4=f"{a_ip}/24", asn=BGPD_AS, blocks=[BLOCK],
            peers=[{"peerIP": p, "asNumber": PEER_AS} for p in peers],
        )

    bgpd = Bgpd(a, "node1", docs(b_ip)).start()
    bgpd.wait_established(b_ip)
    wait_for(lambda: B_ROUTE in bgpd.kernel_prefixes(4), 30, message="B's route in the FIB")
    peer_b.wait_received(4, [BLOCK])
    since_b = peer_of(bgpd.status(), b_ip)["since"]  # type: ignore[index]

    # Add C: B's session is not touched.
    write(bgpd, docs(b_ip, c_ip))
    wait_for(lambda: peer_of(bgpd.status(), c_ip) is not None, 20, message="C configured")
    bgpd.wait_established(c_ip)
    wait_for(lambda: C_ROUTE in bgpd.kernel_prefixes(4), 30, message="C's route in the FIB")
    # (Routes from outside the pools are not re-advertised: Calico's export policy.)
    peer_c.wait_received(4, [BLOCK])
    b_now = peer_of(bgpd.status(), b_ip)
    assert b_now is not None and b_now["bgp_state"] == "Established"
    assert b_now["since"] == since_b, "B's session was reset by adding C"
    assert B_ROUTE in bgpd.kernel_prefixes(4)

    # Remove B: its session closes and its routes leave our FIB; C stays up.
    since_c = peer_of(bgpd.status(), c_ip)["since"]  # type: ignore[index]
    write(bgpd, docs(c_ip))
    wait_for(lambda: peer_of(bgpd.status(), b_ip) is None, 20, message="B unconfigured")
    wait_for(lambda: B_ROUTE not in bgpd.kernel_prefixes(4), 20, message="B's route withdrawn")
    peer_b.wait_not_established(a_ip, timeout=20)
    c_now = peer_of(bgpd.status(), c_ip)
    assert c_now is not None and c_now["bgp_state"] == "Established"
    assert c_now["since"] == since_c

    # A bad edit is refused: the last good state keeps running.
    bgpd.config.write_text("kind: [unclosed\n")
    holds_for(
        lambda: peer_of(bgpd.status(), c_ip)["bgp_state"] == "Established",  # type: ignore[index]
        3,
        message="C stays up across a bad file",
    )
    assert "keeping the last good state" in bgpd.log_path.read_text()

    # SIGHUP re-reads the file (here: the good one again, with B back).
    write(bgpd, docs(b_ip, c_ip))
    assert bgpd.proc is not None
    os.kill(bgpd.proc.pid, signal.SIGHUP)
    bgpd.wait_established(b_ip)
    wait_for(lambda: B_ROUTE in bgpd.kernel_prefixes(4), 30, message="B's route back")
    assert peer_of(bgpd.status(), c_ip)["since"] == since_c  # type: ignore[index]
