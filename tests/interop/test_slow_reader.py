"""A large initial dump to a peer that reads slowly does not stall anyone else: the dump
yields to the event loop per slice and waits for the connection to drain, so keepalives to
other peers keep flowing. The other peer (BIRD) runs a 3 s hold time: a stall of the loop
longer than that would drop its session."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from labs.harness.bgpd_node import Bgpd
from labs.harness.calico_cluster import ASN
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import holds_for, wait_for

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bool(missing_programs(BirdPeer)), reason="bird2 not installed"),
]

ROUTES = 100_000
BIG_POOL = "10.128.0.0/9"
A_IP, K_IP, S_IP = "10.0.44.1", "10.0.44.2", "10.0.44.3"
K_AS, S_AS = 65002, 65005


def progress(path: Path) -> tuple[int, int]:
    try:
        total, updates = path.read_text().split()
    except (OSError, ValueError):
        return (0, 0)
    return int(total), int(updates)


def test_slow_reader_does_not_starve_keepalives(lab: Lab) -> None:
    sw = lab.add_switch("sw", "10.0.44.0/24", "fd00:44::/64")
    a, k, s = lab.add_node("bgpd"), lab.add_node("fast"), lab.add_node("slow")
    for node, ip in ((a, A_IP), (k, K_IP), (s, S_IP)):
        sw.attach(node, ip)
    # /26s inside a pool: routes learned from a peer inside a pool are exported (Calico).
    net = ipaddress.IPv4Network(BIG_POOL)
    prefixes = [str(n) for _, n in zip(range(ROUTES), net.subnets(new_prefix=26), strict=False)]
    fast = BirdPeer(
        k, K_IP, K_AS, [Neighbor(A_IP, ASN, hold_time=3)], routes_v4=prefixes
    ).start()
    docs = [
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
         "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": False}},
        {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "a"},
         "spec": {"bgp": {"ipv4Address": f"{A_IP}/24"}}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "big"},
         "spec": {"cidr": BIG_POOL}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "fast"},
         "spec": {"peerIP": K_IP, "asNumber": K_AS}},
        {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "slow"},
         "spec": {"peerIP": S_IP, "asNumber": S_AS}},
    ]
    bgpd = Bgpd(a, "a", docs, extra_args=("--no-fib",)).start()
    bgpd.wait_established(K_IP, timeout=30)

    def received() -> int:
        peer = next(p for p in bgpd.status()["peers"] if p["address"] == K_IP)
        return int(peer["routes_received"])

    wait_for(lambda: received() >= ROUTES, 60, message=lambda: f"{ROUTES} routes: {received()}")

    progress_file = s.workdir / "progress"
    s.popen(
        [sys.executable, str(Path(__file__).with_name("slow_peer.py")), "--listen", S_IP,
         "--as", str(S_AS), "--progress", str(progress_file)],
        label="slow peer",
    )
    bgpd.wait_established(S_IP, timeout=30)
    wait_for(lambda: progress(progress_file)[1] > 0, 20, message="the dump started")

    def fast_up_while_dumping() -> bool:
        updates = progress(progress_file)[1]
        dumping = updates < ROUTES // 1000  # far fewer UPDATEs than the dump holds
        return (
            dumping
            and fast.session_state(A_IP) == "Established"
            and bgpd.peer_state(K_IP) == "Established"
        )

    start = progress(progress_file)[0]
    # Three hold times: a loop stalled by the dump would have dropped the fast session.
    holds_for(fast_up_while_dumping, 9, interval=0.5, message=lambda: (
        f"fast session up while the slow peer reads (progress {progress(progress_file)}, "
        f"BIRD {fast.session_state(A_IP)})"
    ))
    assert progress(progress_file)[0] > start, "the slow peer read nothing meanwhile"
