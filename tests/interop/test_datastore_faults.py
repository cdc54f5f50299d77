"""The datastore restarted mid-run: bgpd on a real etcd with a BIRD peer; etcd is killed
(SIGKILL, no goodbye) several times. While it is down bgpd keeps its last good state (sessions
Established, RIB and FIB unchanged); once etcd is back on the same data, bgpd resyncs and
follows its watch again: a change written after the resync (a new BGPPeer, a block affinity
added or deleted) takes effect. Afterwards bgpd's RIB and FIB must be exactly what a freshly
started bgpd computes from the same datastore, and its descriptors, threads and memory must be
back near where they were.

CI runs 3 outages; on demand: PYBGPD_OUTAGES=N.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember
from labs.harness.fresh_compare import assert_fresh_start_agrees, assert_no_leak, rib_fib, usage
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import holds_for, wait_for

OUTAGES = max(2, int(os.environ.get("PYBGPD_OUTAGES", "3")))

BGPD_V4, PEER_V4 = "10.0.12.1", "10.0.12.2"
BGPD_V6, PEER_V6 = "fd00:12::1", "fd00:12::2"
BGPD_AS, PEER_AS = 64512, 65002
BLOCK_V4, BLOCK_V6, BLOCK_EXTRA = "192.168.10.0/26", "fd10:0:0:10::/122", "192.168.20.0/26"
ROUTES = {
    4: [f"10.99.{i}.0/24" for i in range(20)],
    6: [str(ipaddress.ip_network(f"fd00:99:{i:x}::/64")) for i in range(10)],
}
# Long enough for bgpd to notice the outage and retry the store a few times.
HOLD_DOWN = 3.0

UNREACHABLE = "datastore unreachable;"
RECOVERED = "datastore reachable again"


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


V6_PEER = _doc("BGPPeer", "peer-v6", {"peerIP": PEER_V6, "asNumber": PEER_AS})
EXTRA_BLOCK = _doc(
    "BlockAffinity", "node1-extra", {"node": "node1", "cidr": BLOCK_EXTRA, "state": "confirmed"}
)


class Rig:
    """bgpd in node `a` on an etcd in the same namespace (127.0.0.1); BIRD in node `b` with
    sessions to both of bgpd's addresses. At first the datastore names only the IPv4 peer."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        if ETCD is None:
            pytest.skip(MISSING)
        if missing_programs(BirdPeer):
            pytest.skip("bird2 not installed")
        self.tmp = tmp
        self.a, b = lab.add_node("bgpd"), lab.add_node("peer")
        lab.link(self.a, b, BGPD_V4, PEER_V4, BGPD_V6, PEER_V6)
        self.etcd = EtcdMember(tmp, node=self.a).start()
        lab.defer(self.etcd.stop)
        self.url = f"etcd://{self.etcd.endpoint}"
        self.apply(
            resources(
                node="node1",
                ipv4=f"{BGPD_V4}/24",
                ipv6=f"{BGPD_V6}/64",
                asn=BGPD_AS,
                peers=[{"peerIP": PEER_V4, "asNumber": PEER_AS}],
                blocks=[BLOCK_V4, BLOCK_V6],
            )
        )
        self.bird = BirdPeer(
            b,
            "10.255.0.2",
            PEER_AS,
            [Neighbor(BGPD_V4, BGPD_AS), Neighbor(BGPD_V6, BGPD_AS)],
            routes_v4=ROUTES[4],
            routes_v6=ROUTES[6],
        )
        self.bird.start()
        self.bgpd = self.new_bgpd()
        self.v6 = False
        self.extra = False

    def new_bgpd(self) -> Bgpd:
        return Bgpd(self.a, "node1", [], datastore=self.url).start()

    # --- the datastore -------------------------------------------------------------------

    def bgpctl(self, verb: str, docs: list[dict[str, Any]]) -> None:
        """`bgpctl apply|delete -f` inside the node, where the etcd listens."""
        f = self.tmp / f"{verb}-{time.monotonic_ns()}.yaml"
        f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        r = self.a.run(
            [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", self.url, verb, "-f", str(f)],
            check=False,
        )
        assert r.returncode == 0, f"bgpctl {verb}: {r.stderr}"

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.bgpctl("apply", docs)

    def kill_etcd(self) -> None:
        assert self.etcd.proc is not None
        os.killpg(self.etcd.proc.pid, signal.SIGKILL)
        self.etcd.proc.wait(10)
        self.etcd.proc = None

    def since(self) -> dict[str, float | None]:
        """When each session last changed state: equal before and after means no reset."""
        return {p["address"]: p["since"] for p in self.bgpd.status()["peers"]}

    def reported(self, after: float) -> bool:
        """node1's status report in the datastore was written at `after` (epoch) or later and
        shows both sessions Established."""
        r = self.a.run(
            [
                sys.executable,
                "-m",
                "bgpd.cli.bgpctl",
                "--datastore",
                self.url,
                "status",
                "--all-nodes",
                "--json",
            ],
            check=False,
        )
        if r.returncode != 0:
            return False
        for n in json.loads(r.stdout):
            if n["node"] == "node1" and (n["last_updated"] or 0) >= int(after):
                states = [p["bgp_state"] for p in n["peers"]]
                return states == ["Established", "Established"]
        return False

    def log_count(self, text: str) -> int:
        return self.bgpd.log_path.read_text(errors="replace").count(text)

    # --- what bgpd should show -----------------------------------------------------------

    def converged(self, bgpd: Bgpd | None = None) -> bool:
        """Every configured session up, BIRD's routes in the FIB via BIRD, our blocks (and the
        extra one exactly when it is configured) at BIRD."""
        bgpd = bgpd or self.bgpd
        peers = [PEER_V4, PEER_V6] if self.v6 else [PEER_V4]
        states = {p["address"]: p["bgp_state"] for p in bgpd.status()["peers"]}
        if states != dict.fromkeys(peers, "Established"):
            return False
        for family, gateway in ((4, PEER_V4), (6, PEER_V6)):
            if family == 6 and not self.v6:
                continue
            fib = bgpd.kernel_routes(family)
            if any(fib.get(p, {}).get("gateway") != gateway for p in ROUTES[family]):
                return False
        at_bird = self.bird.received_prefixes(4)
        if BLOCK_V4 not in at_bird or (BLOCK_EXTRA in at_bird) != self.extra:
            return False
        return not self.v6 or BLOCK_V6 in self.bird.received_prefixes(6)

    def wait_converged(self, what: str, timeout: float = 60) -> None:
        wait_for(self.converged, timeout, interval=0.3, message=f"convergence {what}")

    # --- one outage ----------------------------------------------------------------------

    def outage(self, i: int) -> None:
        """Kill etcd; bgpd holds its state; restart etcd; once bgpd has resynced, write
        change `i` and see it followed."""
        before = rib_fib(self.bgpd)
        self.kill_etcd()
        wait_for(
            lambda: self.log_count(UNREACHABLE) == i + 1, 30, message=f"bgpd noticed outage {i}"
        )
        holds_for(
            lambda: self.converged() and rib_fib(self.bgpd) == before,
            HOLD_DOWN,
            message=f"bgpd's sessions, RIB and FIB during outage {i}",
        )
        self.etcd.start()
        wait_for(
            lambda: self.log_count(RECOVERED) == i + 1,
            60,
            message=f"bgpd resynced after outage {i}",
        )
        # Written after the resync, so only the re-established watch can bring it.
        if i == 0:
            self.v6 = True
            self.apply([V6_PEER])
        elif i % 2:
            self.extra = True
            self.apply([EXTRA_BLOCK])
        else:
            self.extra = False
            self.bgpctl("delete", [EXTRA_BLOCK])
        self.wait_converged(f"after outage {i} and change {i}")


@pytest.mark.interop
def test_etcd_restarts_keep_bgpd_state_and_watch_resumes(lab: Lab, tmp_path: Path) -> None:
    rig = Rig(lab, tmp_path)
    rig.wait_converged("at start")
    v4_since = rig.since()[PEER_V4]
    rig.outage(0)
    # The baseline has both sessions (outage 0 added the IPv6 one).
    baseline, since = usage(rig.bgpd), rig.since()
    assert since[PEER_V4] == v4_since, "the IPv4 session was reset"
    for i in range(1, OUTAGES):
        rig.outage(i)
    assert rig.since() == since, "a session was reset by an outage or a change"
    # The reporter writes every 5 s: a report newer than the last outage shows it writes again.
    recovered = time.time()
    wait_for(lambda: rig.reported(recovered), 30, message="node1's status report written again")
    after = usage(rig.bgpd)
    print(f"bgpd after {OUTAGES} etcd outages: {baseline} -> {after}")
    assert_no_leak(baseline, after)
    assert "changes are no longer followed" not in rig.bgpd.log_path.read_text(errors="replace")
    rig.bgpd = assert_fresh_start_agrees(rig.bgpd, rig.new_bgpd, rig.converged)
