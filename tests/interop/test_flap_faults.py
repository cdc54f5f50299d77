"""Flaps and faults: the link to a BIRD peer flapped (veth down/up) and the peer killed and
restarted, many times. Afterwards bgpd's RIB and FIB must be exactly what a freshly started
bgpd computes, and its open descriptors, threads and memory must be back near where they were.

The issue's counts run in CI: 100 flaps and 50 restarts, about 4 minutes on a shared 2-core
machine (each flap or restart waits out at least BIRD's 1 s connect delay); PYBGPD_FLAPS and
PYBGPD_RESTARTS change them.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.fresh_compare import Usage, assert_fresh_start_agrees, assert_no_leak, usage
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

FLAPS = int(os.environ.get("PYBGPD_FLAPS", "100"))
RESTARTS = int(os.environ.get("PYBGPD_RESTARTS", "50"))

BGPD_V4, PEER_V4 = "10.0.12.1", "10.0.12.2"
BGPD_V6, PEER_V6 = "fd00:12::1", "fd00:12::2"
BGPD_AS, PEER_AS = 64512, 65002
BLOCK_V4, BLOCK_V6 = "192.168.10.0/26", "fd10:0:0:10::/122"
ROUTES = {
    4: [f"10.99.{i}.0/24" for i in range(40)],
    6: [str(ipaddress.ip_network(f"fd00:99:{i:x}::/64")) for i in range(20)],
}

# BIRD doubles its restart delay after each failure within `error forget time` (300 s by
# default), up to the 5 s maximum labs/harness/peers/bird.py sets: back-to-back flaps would
# each wait out BIRD's 5 s, which measures BIRD's backoff, not bgpd. Every link-down counts
# as a first failure.
BIRD_EXTRA = "error forget time 0;"


class Rig:
    def __init__(self, lab: Lab) -> None:
        if missing_programs(BirdPeer):
            pytest.skip("bird2 not installed")
        self.a, b = lab.add_node("bgpd"), lab.add_node("peer")
        # A node keeps its configured addresses across a flap; without this the kernel drops
        # global IPv6 addresses on link down and nothing in the lab would put them back.
        self.a.sysctl(**{"net.ipv6.conf.all.keep_addr_on_down": 1})
        link = lab.link(self.a, b, BGPD_V4, PEER_V4, BGPD_V6, PEER_V6)
        self.ifname = link.a.ifname
        self.docs = resources(
            node="node1",
            ipv4=f"{BGPD_V4}/24",
            ipv6=f"{BGPD_V6}/64",
            asn=BGPD_AS,
            peers=[
                {"peerIP": PEER_V4, "asNumber": PEER_AS},
                {"peerIP": PEER_V6, "asNumber": PEER_AS},
            ],
            blocks=[BLOCK_V4, BLOCK_V6],
        )
        self.bird = BirdPeer(
            b,
            "10.255.0.2",
            PEER_AS,
            [
                Neighbor(BGPD_V4, BGPD_AS, extra=BIRD_EXTRA),
                Neighbor(BGPD_V6, BGPD_AS, extra=BIRD_EXTRA),
            ],
            routes_v4=ROUTES[4],
            routes_v6=ROUTES[6],
        )
        self.bird.start()
        self.bgpd = Bgpd(self.a, "node1", self.docs).start()

    def converged(self) -> bool:
        """Both sessions up, every BIRD route in bgpd's FIB via BIRD, our blocks at BIRD.
        Cheapest first: a poll that finds the FIB incomplete costs two `ip route` dumps, not a
        bgpctl start."""
        for family, gateway in ((4, PEER_V4), (6, PEER_V6)):
            fib = self.bgpd.kernel_routes(family)
            if any(fib.get(p, {}).get("gateway") != gateway for p in ROUTES[family]):
                return False
        if BLOCK_V4 not in self.bird.received_prefixes(4):
            return False
        if BLOCK_V6 not in self.bird.received_prefixes(6):
            return False
        states = {p["address"]: p["bgp_state"] for p in self.bgpd.status()["peers"]}
        return states == dict.fromkeys((PEER_V4, PEER_V6), "Established")

    def wait_converged(self, what: str, timeout: float = 60) -> None:
        wait_for(self.converged, timeout, interval=0.3, message=f"convergence {what}")

    def check_against_fresh_daemon(self) -> None:
        """Stop bgpd, start a fresh one with the same configuration: it must come to the very
        same RIB and FIB."""

        def fresh() -> Bgpd:
            self.bgpd = Bgpd(self.a, "node1", self.docs).start()
            return self.bgpd

        assert_fresh_start_agrees(self.bgpd, fresh, lambda _new: self.converged())

    def resources(self) -> Usage:
        return usage(self.bgpd)

    def check_no_leak(self, baseline: Usage) -> None:
        assert_no_leak(baseline, self.resources())


@pytest.mark.interop
def test_link_flaps_leave_rib_and_fib_as_a_fresh_start(lab: Lab) -> None:
    rig = Rig(lab)
    rig.wait_converged("at start")
    baseline = rig.resources()
    for i in range(FLAPS):
        # Down: the kernel flushes routes via the link at once; the TCP sessions may live on.
        rig.a.run(["ip", "link", "set", rig.ifname, "down"])
        wait_for(
            lambda: not rig.bgpd.kernel_prefixes(4) & set(ROUTES[4]),
            10,
            message=f"kernel dropped the routes at flap {i}",
        )
        rig.a.run(["ip", "link", "set", rig.ifname, "up"])
        rig.wait_converged(f"after flap {i}", timeout=30)
    rig.check_no_leak(baseline)
    rig.check_against_fresh_daemon()


@pytest.mark.interop
def test_peer_killed_and_restarted_leaves_rib_and_fib_as_a_fresh_start(lab: Lab) -> None:
    rig = Rig(lab)
    rig.wait_converged("at start")
    baseline = rig.resources()
    for i in range(RESTARTS):
        # No NOTIFICATION: the kernel closes its sockets. BIRD negotiated graceful restart,
        # so bgpd keeps its routes, stale, until the new session's End-of-RIB sweeps them.
        rig.bird.kill()
        wait_for(
            lambda: rig.bgpd.peer_state(PEER_V4) != "Established",
            30,
            message=f"bgpd saw the killed peer go ({i})",
        )
        rig.bird.start()
        rig.wait_converged(f"after restart {i}")
    rig.check_no_leak(baseline)
    rig.check_against_fresh_daemon()
