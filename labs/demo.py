"""The demo: the mesh3 lab (labs/mesh3.clab.yml, the file containerlab deploys) brought up on
network namespaces: three Calico nodes running bgpd in a node-to-node mesh on one segment, and
a BIRD top-of-rack router peering with all of them over eBGP (a global BGPPeer).

Every node advertises its IPAM block; each learns the others' blocks and installs them in its
kernel. Shown: `bgpctl status` (calicoctl's layout), `bgpctl show protocols`, `bgpctl routes`,
the kernel routes bgpd programmed, BIRD's view and a ping across the segment. Everything is
torn down at the end, even on failure.

Run as root: `python3 labs/demo.py` (after scripts/setup.sh; scripts/demo.sh does both).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository (for labs.run) and tests/ (the lab plumbing the interop tests run on).
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from interop.lab import Lab  # noqa: E402

from labs.run import Running, load  # noqa: E402

TOPOLOGY = ROOT / "labs" / "mesh3.clab.yml"
STARTED = time.monotonic()


def step(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {text}", flush=True)


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def main() -> int:
    topology = load(TOPOLOGY)
    step(f"lab {topology.name}: {len(topology.nodes)} namespaces from {TOPOLOGY.name}")
    with Lab(workdir=Path("/tmp/pybgpd-demo")) as lab:
        running = Running(topology, lab).up()
        step("BIRD (top of rack) and bgpd on node1..node3 started")
        running.converge(timeout=60)
        step("converged: sessions Established, blocks in every node's FIB and at the ToR")

        node1 = running.bgpds["node1"]
        banner("bgpctl status (node1)")
        print(node1.bgpctl("status").stdout)
        banner("bgpctl show protocols (node1)")
        print(node1.bgpctl("show", "protocols").stdout)
        banner("bgpctl routes (node1)")
        print(node1.bgpctl("routes").stdout)
        banner("ip route show proto 201 (node1's kernel: routes bgpd installed)")
        print(running.hosts["node1"].run(["ip", "route", "show", "proto", "201"]).stdout)
        banner("BIRD on the top-of-rack router: birdc show route")
        tor = running.routers["tor"]
        assert hasattr(tor, "birdc")
        print(tor.birdc("show route"))
        banner("ping node3 from node1 across the segment")
        result = running.hosts["node1"].run(["ping", "-c", "1", "-W", "2", "10.0.0.3"], check=False)
        print(result.stdout.strip().splitlines()[-2] if result.stdout else result.stderr)
        step("demo done: tearing the lab down")
    step("lab torn down")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: {exc}\n{exc.stdout or ''}{exc.stderr or ''}", file=sys.stderr)
        sys.exit(1)
