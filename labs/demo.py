"""The demo lab: three Calico nodes running bgpd in a node-to-node mesh on one L2 segment,
plus a BIRD top-of-rack router peering with all of them over eBGP (a global BGPPeer).

Every node advertises its IPAM block; each learns the others' blocks and installs them in its
kernel. Shown: `bgpctl status` (calicoctl's layout), `bgpctl routes`, the kernel routes bgpd
programmed, and BIRD's view. Everything is torn down at the end, even on failure.

Run as root: `python3 labs/demo.py` (after scripts/setup.sh; scripts/demo.sh does both).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The lab plumbing is the same code the interop tests run on.
sys.path.insert(0, str(ROOT / "tests"))

from interop.bgpd_node import Bgpd, resources  # noqa: E402
from interop.lab import Lab  # noqa: E402
from interop.peers import BirdPeer, Neighbor  # noqa: E402
from interop.wait import wait_for  # noqa: E402

NODES = {
    "node1": ("10.0.0.1", "fd00::1", "192.168.1.0/26"),
    "node2": ("10.0.0.2", "fd00::2", "192.168.2.0/26"),
    "node3": ("10.0.0.3", "fd00::3", "192.168.3.0/26"),
}
TOR = ("10.0.0.254", 65000)


def banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 70 - len(text)), flush=True)


def main() -> int:
    with Lab(workdir=Path("/tmp/pybgpd-demo")) as lab:
        switch = lab.add_switch("sw", "10.0.0.0/24", "fd00::/64")
        daemons: dict[str, Bgpd] = {}
        hosts = {}
        for name, (v4, v6, _block) in NODES.items():
            hosts[name] = lab.add_node(name)
            switch.attach(hosts[name], v4=v4, v6=v6)
        tor_node = lab.add_node("tor")
        switch.attach(tor_node, v4=TOR[0], v6="fd00::fe")
        for name, (v4, v6, block) in NODES.items():
            others = {n: (f"{a}/24", f"{b}/64") for n, (a, b, _) in NODES.items() if n != name}
            docs = resources(
                node=name,
                ipv4=f"{v4}/24",
                ipv6=f"{v6}/64",
                other_nodes=others,
                peers=[{"peerIP": TOR[0], "asNumber": TOR[1]}],
                pools=["192.168.0.0/16"],
                blocks=[block],
            )
            daemons[name] = Bgpd(hosts[name], name, docs)
        tor = BirdPeer(
            tor_node,
            TOR[0],
            TOR[1],
            [Neighbor(v4, 64512) for v4, _, _ in NODES.values()],
        )
        banner("starting BIRD (top of rack) and bgpd on node1..node3")
        tor.start()
        for bgpd in daemons.values():
            bgpd.start()
        addresses = [v4 for v4, _, _ in NODES.values()]
        for name, bgpd in daemons.items():
            peers = [a for a in addresses if a != NODES[name][0]] + [TOR[0]]
            bgpd.wait_established(*peers, timeout=60)
        blocks = {block for _, _, block in NODES.values()}
        for name, bgpd in daemons.items():
            want = blocks - {NODES[name][2]}
            wait_for(lambda b=bgpd, w=want: w <= b.kernel_prefixes(4), 30, message=f"{name} FIB")
        tor.wait_received(4, sorted(blocks))

        node1 = daemons["node1"]
        banner("bgpctl status (node1)")
        print(node1.bgpctl("status").stdout)
        banner("bgpctl routes (node1)")
        print(node1.bgpctl("routes").stdout)
        banner("ip route show proto 201 (node1's kernel: routes bgpd installed)")
        print(hosts["node1"].run(["ip", "route", "show", "proto", "201"]).stdout)
        banner("BIRD on the top-of-rack router: birdc show route")
        print(tor.birdc("show route"))
        banner("ping node3's block gateway path: node1 -> 10.0.0.3")
        result = hosts["node1"].run(["ping", "-c", "1", "-W", "2", "10.0.0.3"], check=False)
        print(result.stdout.strip().splitlines()[-2] if result.stdout else result.stderr)
        banner("demo done: tearing the lab down")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        print(f"demo: {exc}\n{exc.stdout or ''}{exc.stderr or ''}", file=sys.stderr)
        sys.exit(1)
