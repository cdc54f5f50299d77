"""End to end: a BIRD peer announces N routes; how long until they are all in the receiver's
kernel FIB. The receiver is bgpd, then (same run, same announcer) BIRD with a kernel protocol.

Runs as root with network namespaces (the interop lab harness). The clock starts when the
announcer is started (the receiver already runs and waits), and stops when `ip route` counts
all N routes of the receiver's protocol.

    python3 bench/learn_bench.py [--routes 10000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from statistics import median

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, Neighbor

AS, PEER_AS = 64512, 65002
BASE = int(ipaddress.ip_address("10.128.0.0"))


def prefixes(count: int) -> list[str]:
    return [f"{ipaddress.ip_address(BASE + i * 256)}/24" for i in range(count)]


def count(node: Node, proto: str) -> int:
    out = node.run(["ip", "-4", "route", "show", "proto", proto]).stdout
    return out.count("\n")


def wait_count(node: Node, proto: str, n: int, timeout: float = 600) -> float:
    start = time.monotonic()
    while count(node, proto) < n:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{count(node, proto)} of {n} routes after {timeout}s")
        time.sleep(0.05)
    return time.monotonic()


def run(receiver: str, routes: list[str]) -> float:
    with Lab() as lab:
        me, peer = lab.add_node("rx"), lab.add_node("tx")
        lab.link(me, peer, "10.0.1.1", "10.0.1.2")
        if receiver == "bgpd":
            docs = resources(
                node="node1",
                ipv4="10.0.1.1/24",
                asn=AS,
                mesh=False,
                peers=[{"peerIP": "10.0.1.2", "asNumber": PEER_AS}],
            )
            rx = Bgpd(me, "node1", docs, extra_args=("--log-level", "info")).start()
            proto = "201"
        else:
            BirdPeer(me, "10.255.0.1", AS, [Neighbor("10.0.1.2", PEER_AS)], kernel=True).start()
            proto = "bird"
        tx = BirdPeer(peer, "10.255.0.2", PEER_AS, [Neighbor("10.0.1.1", AS)], routes_v4=routes)
        start = time.monotonic()
        tx.start()
        end = wait_count(me, proto, len(routes))
        if receiver == "bgpd":
            rx.stop()
        return end - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    routes = prefixes(args.routes)
    print(f"| receiver | routes | seconds to all in the FIB (median of {args.rounds}) | routes/s |")
    print("|---|---:|---:|---:|")
    for receiver in ("bgpd", "bird"):
        t = median(run(receiver, routes) for _ in range(args.rounds))
        print(f"| {receiver} | {args.routes} | {t:.2f} | {args.routes / t:,.0f} |")


if __name__ == "__main__":
    main()
