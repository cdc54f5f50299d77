"""The demo: a 3-node Calico cluster on network namespaces, the whole path of a packet.

Three nodes on one L2 segment, each running bgpd (node-to-node mesh) and felix, all sharing
one embedded datastore (a SQLite file every namespace sees). One pod per node is created
through the CNI plugin (felix-cni ADD, run as a container runtime runs it, into the pod's own
network namespace): IPAM gives each node a block of 192.168.0.0/16, bgpd advertises it and
installs the others' blocks, and every pod pings every other pod across nodes. Shown:
`bgpctl status` of each node and the ping matrix; everything is torn down at the end, even
on failure.

Run as root: `python3 labs/demo.py` (after scripts/setup.sh; scripts/demo.sh does both).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from typing import Any

from labs.harness.bgpd_node import Bgpd, bgpctl_apply, resources
from labs.harness.felix_node import Felix, Pod, add_pod, del_pod
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

NODES = ("node1", "node2", "node3")
POOL: dict[str, Any] = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "default-ipv4-ippool"},
    "spec": {
        "cidr": "192.168.0.0/16",
        "blockSize": 26,
        "ipipMode": "Never",  # one segment: pod traffic is routed natively
        "natOutgoing": False,
        "nodeSelector": "all()",
    },
}
STARTED = time.monotonic()


def step(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {text}", flush=True)


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def ping_matrix(pods: list[Pod]) -> bool:
    """Every pod pings every other pod; a line per pair. True when all answered."""
    ok = True
    for a, b in itertools.permutations(pods, 2):
        try:
            # The first pings may race the block routes reaching the other nodes' FIBs.
            wait_for(lambda a=a, b=b: a.netns.ping(b.address), 20, interval=0.1)
            verdict = "ok"
        except AssertionError:
            verdict = "FAILED"
            ok = False
        print(f"  {a.name} ({a.host}, {a.address}) -> {b.name} ({b.host}, {b.address}): "
              f"{verdict}", flush=True)
    return ok


def main() -> int:
    with Lab() as lab:
        switch = lab.add_switch("seg")
        hosts: dict[str, Node] = {}
        ips: dict[str, str] = {}
        for name in NODES:
            hosts[name] = lab.add_node(name)
            ips[name] = switch.attach(hosts[name]).v4 or ""
        step("lab: 3 node namespaces on one segment (" + ", ".join(ips.values()) + ")")

        url = f"sqlite://{lab.workdir}/calico.db"  # every namespace sees the same file
        docs = resources(
            node=NODES[0],
            ipv4=f"{ips[NODES[0]]}/24",
            other_nodes={n: (f"{ips[n]}/24", None) for n in NODES[1:]},
            pools=[],
        )
        bgpctl_apply(hosts[NODES[0]], url, lab.workdir, [*docs, POOL])
        step(f"datastore {url}: BGPConfiguration, 3 Nodes, IPPool 192.168.0.0/16 applied")

        bgpds = {n: Bgpd(hosts[n], n, [], datastore=url).start() for n in NODES}
        step("bgpd started on node1..node3")
        for n in NODES:
            Felix(hosts[n], n, url).start()
        step("felix started on node1..node3")
        for n in NODES:
            bgpds[n].wait_established(*(ips[o] for o in NODES if o != n), timeout=40)
        step("BGP mesh: every node's sessions Established")

        pods = [add_pod(lab, hosts[n], n, url, f"pod{i}") for i, n in enumerate(NODES, 1)]
        step("pods created through felix-cni ADD: " + ", ".join(
            f"{p.name} on {p.host} = {p.address}" for p in pods))

        for n in NODES:
            banner(f"bgpctl status ({n})")
            print(bgpds[n].bgpctl("status").stdout.rstrip(), flush=True)
        banner("ip route (node1's kernel: pod routes from felix, blocks from bgpd)")
        print(hosts[NODES[0]].run(["ip", "route"]).stdout.rstrip(), flush=True)

        banner("pods ping every pod on the other nodes")
        ok = ping_matrix(pods)
        step("pings: every pod reached every other pod" if ok else "pings: some pings FAILED")

        for pod in pods:
            del_pod(hosts[pod.host], url, pod)
        step("pods deleted through felix-cni DEL; tearing the lab down")
    step("lab torn down")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (subprocess.CalledProcessError, AssertionError) as exc:
        detail = f"\n{exc.stdout or ''}{exc.stderr or ''}" if isinstance(
            exc, subprocess.CalledProcessError) else ""
        print(f"demo failed: {exc}{detail}", file=sys.stderr)
        sys.exit(1)
