"""Every topology in labs/ comes up on network namespaces through the runner (`labs.run`),
the same file containerlab deploys, and converges: sessions Established, every block and
announced prefix in every node's Loc-RIB, the other nodes' blocks in each FIB, the routers
holding every block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, FrrPeer, missing_programs
from labs.run import Running, load

pytestmark = pytest.mark.interop

LABS = Path(__file__).resolve().parents[2] / "labs"
NEEDS = {"bird": BirdPeer, "frr": FrrPeer}


METRICS = "127.0.0.1:9179"  # each node's own loopback: no clash between namespaces
SCRAPE = (
    "import sys, urllib.request; "
    f"sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics', timeout=10)"
    ".read().decode())"
)


@pytest.mark.parametrize("name", ["mesh3", "rr", "frr-tor"])
def test_lab_converges(lab: Lab, name: str) -> None:
    topology = load(LABS / f"{name}.clab.yml")
    for role, peer in NEEDS.items():
        if topology.with_role(role) and missing_programs(peer):
            pytest.skip(f"{role} not installed")
    first = topology.with_role("bgpd")[0].name
    running = Running(topology, lab, bgpd_args={first: ("--metrics-listen", METRICS)}).up()
    running.converge(timeout=120)
    for text in running.report():
        assert "Established" in text

    # With the FIB programmed, the metrics carry its size and programming latency.
    scraped = running.hosts[first].run([sys.executable, "-c", SCRAPE]).stdout
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    fib = families["pybgpd_fib_routes"].samples[0].value
    assert fib >= len(running.expected_blocks())  # the routes plus our own blackhole
    batches = {s.name: s.value for s in families["pybgpd_fib_programming_seconds"].samples}
    assert batches["pybgpd_fib_programming_seconds_count"] >= 1
    up = [s for s in families["pybgpd_peer_established"].samples if s.value == 1]
    assert len(up) == len(running.bgpds[first].status()["peers"])
