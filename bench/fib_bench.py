"""How fast routes reach the kernel FIB: our batched netlink vs pyroute2 vs `ip -batch`.

Runs as root in a fresh network namespace it creates (and deletes), with a veth whose peer
sits in a second namespace so the gateway is on-link. Prints a markdown table of medians.
Every method installs the same IPv4 /24s via one gateway, with our protocol number.

    python3 bench/fib_bench.py [--routes 20000] [--pyroute2-routes 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgpd.kernel.fib import AF_INET, RTPROT_PYBGPD, KernelRoute, Nexthop, OpKind, RouteOp
from common.netlink.driver import KernelRoutes
from common.netlink.rtmsg import encode_op

BASE = int(ipaddress.ip_address("10.128.0.0"))
GATEWAY = "10.77.0.2"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def prefixes(count: int) -> list[str]:
    return [f"{ipaddress.ip_address(BASE + i * 256)}/24" for i in range(count)]


def kernel_routes(count: int, gateway: str) -> list[KernelRoute]:
    gw = ipaddress.ip_address(gateway).packed
    return [
        KernelRoute(AF_INET, (BASE + i * 256).to_bytes(4, "big"), 24, (Nexthop(gw),))
        for i in range(count)
    ]


def count_ours(ns: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "route", "show", "proto", str(RTPROT_PYBGPD)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len(out.splitlines())


def flush(ns: str) -> None:
    sh("ip", "-n", ns, "route", "flush", "proto", str(RTPROT_PYBGPD))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_ours(ns: str, count: int, ack_each: bool) -> dict[str, float]:
    async def go() -> dict[str, float]:
        out = {}
        async with KernelRoutes(RTPROT_PYBGPD, netns=ns, ack_each=ack_each) as kr:
            for label, ops in (
                ("add", [RouteOp(OpKind.ADD, r) for r in kernel_routes(count, GATEWAY)]),
                (
                    "replace",
                    [RouteOp(OpKind.REPLACE, r) for r in kernel_routes(count, "10.77.0.3")],
                ),
                ("delete", [RouteOp(OpKind.DELETE, r) for r in kernel_routes(count, GATEWAY)]),
            ):
                start = time.perf_counter()
                failures = await kr.apply(ops)
                out[label] = time.perf_counter() - start
                assert not failures, failures[:3]
                if label == "add":
                    assert count_ours(ns) == count
                    start = time.perf_counter()
                    assert len(await kr.dump_ours()) == count
                    out["dump"] = time.perf_counter() - start
        assert count_ours(ns) == 0
        return out

    return asyncio.run(go())


def bench_encode(count: int) -> float:
    ops = [RouteOp(OpKind.ADD, r) for r in kernel_routes(count, GATEWAY)]
    return timed(lambda: [encode_op(op, i, RTPROT_PYBGPD, False) for i, op in enumerate(ops)])


def bench_pyroute2(ns: str, count: int) -> float:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns) as ipr:
        nets = prefixes(count)
        start = time.perf_counter()
        for net in nets:
            ipr.route("add", dst=net, gateway=GATEWAY, proto=RTPROT_PYBGPD)
        elapsed = time.perf_counter() - start
    assert count_ours(ns) == count
    return elapsed


def bench_ip_batch(ns: str, count: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".batch") as f:
        for net in prefixes(count):
            f.write(f"route add {net} via {GATEWAY} proto {RTPROT_PYBGPD}\n")
        f.flush()
        elapsed = timed(lambda: sh("ip", "-n", ns, "-batch", f.name))
    assert count_ours(ns) == count
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=20_000)
    parser.add_argument("--pyroute2-routes", type=int, default=5_000, help="it is slow")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("fib_bench needs root (network namespaces)", file=sys.stderr)
        return 2
    n = args.routes
    ns, peer = f"pyb-bench-{os.getpid()}", f"pyb-bench-{os.getpid()}p"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "add", peer)
        sh("ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer)
        sh("ip", "-n", ns, "addr", "add", "10.77.0.1/24", "dev", "v0")
        sh("ip", "-n", ns, "link", "set", "v0", "up")
        sh("ip", "-n", peer, "link", "set", "v1", "up")

        rows: list[tuple[str, int, float]] = []
        rounds = args.rounds
        rows.append(
            ("rtmsg encode only (no kernel)", n, median(bench_encode(n) for _ in range(rounds)))
        )
        for ack_each, name in ((False, "errors only + barrier"), (True, "ACK per message")):
            runs = [bench_ours(ns, n, ack_each) for _ in range(rounds)]
            for label in ("add", "replace", "delete"):
                rows.append(
                    (f"KernelRoutes.apply {label}, {name}", n, median(r[label] for r in runs))
                )
            rows.append((f"KernelRoutes.dump_ours, {name}", n, median(r["dump"] for r in runs)))
        batch = []
        for _ in range(rounds):
            batch.append(bench_ip_batch(ns, n))
            flush(ns)
        rows.append(("`ip -batch` route add", n, median(batch)))
        m = args.pyroute2_routes
        rows.append(("pyroute2 IPRoute.route('add') one at a time", m, bench_pyroute2(ns, m)))
        flush(ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", peer], check=False, capture_output=True)

    kernel = os.uname().release
    print(f"median of {args.rounds} runs (pyroute2: one run), fresh namespace, kernel {kernel}")
    print()
    print("| method | routes | seconds | routes/s |")
    print("| --- | ---: | ---: | ---: |")
    for name, count, seconds in rows:
        print(f"| {name} | {count} | {seconds:.3f} | {count / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
