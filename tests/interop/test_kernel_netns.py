"""KernelRoutes against the real kernel, in network namespaces this test creates.

Topology: namespace `ns` holds v0 (10.77.0.1/24, fd77::1/64), whose veth peer v1 lives in
a second namespace, so 10.77.0.0/24 and fd77::/64 gateways are on-link. The test drives `ns`
from outside through KernelRoutes(RTPROT_PYBGPD, netns=...) and checks the result with `ip -j`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    RTPROT_PYBGPD,
    FibState,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
    RouteType,
    reconcile,
)
from common.netlink.driver import KernelRoutes, NetlinkOverrun, RouteMonitor
from common.netlink.rtmsg import decode_route, split_messages

pytestmark = pytest.mark.interop
RTPROT_STATIC = 4

_counter = itertools.count()


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = f"pyb-k-{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


_REASON = _why_not()
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)


def sh(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def wait_for(what: str, check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval of a deadline-bounded wait


class Lab:
    def __init__(self, ns: str, peer: str) -> None:
        self.ns = ns
        self.peer = peer

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.ns, *args)

    def routes(self, *selector: str, v6: bool = False) -> list[dict[str, Any]]:
        fam = ["-6"] if v6 else ["-4"]
        out = sh("ip", "-n", self.ns, *fam, "-j", "route", "show", "table", "all", *selector)
        return list(json.loads(out or "[]"))

    def ours(self, v6: bool = False) -> list[dict[str, Any]]:
        return self.routes("proto", str(RTPROT_PYBGPD), v6=v6)


@pytest.fixture
def lab() -> Iterator[Lab]:
    n = next(_counter)
    ns, peer = f"pyb-k-{os.getpid()}-{n}", f"pyb-k-{os.getpid()}-{n}p"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "add", peer)
        lab = Lab(ns, peer)
        lab.ip("link", "set", "lo", "up")
        lab.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", peer)
        lab.ip("addr", "add", "10.77.0.1/24", "dev", "v0")
        lab.ip("addr", "add", "fd77::1/64", "dev", "v0", "nodad")
        lab.ip("link", "set", "v0", "up")
        sh("ip", "-n", peer, "addr", "add", "10.77.0.2/24", "dev", "v1")
        sh("ip", "-n", peer, "addr", "add", "fd77::2/64", "dev", "v1", "nodad")
        sh("ip", "-n", peer, "link", "set", "v1", "up")
        wait_for(
            "v0 to come up",
            lambda: json.loads(lab.ip("-j", "link", "show", "v0"))[0]["operstate"] == "UP",
        )
        yield lab
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", peer], check=False, capture_output=True)


def a(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def route(prefix: str, *gws: str, **kw: Any) -> KernelRoute:
    n = ipaddress.ip_network(prefix)
    family = AF_INET if n.version == 4 else AF_INET6
    rtype = RouteType.UNICAST if gws else RouteType.BLACKHOLE
    nhs = tuple(Nexthop(a(g)) for g in gws)
    return KernelRoute(family, n.network_address.packed, n.prefixlen, nhs, rtype, **kw)


def v4_block(count: int, *gws: str) -> list[KernelRoute]:
    base = int(ipaddress.ip_address("10.128.0.0"))
    return [
        KernelRoute(
            AF_INET, (base + i * 256).to_bytes(4, "big"), 24, tuple(Nexthop(a(g)) for g in gws)
        )
        for i in range(count)
    ]


def adds(routes: list[KernelRoute]) -> list[RouteOp]:
    return [RouteOp(OpKind.ADD, r) for r in routes]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("ack_each", [False, True], ids=["errors-only", "ack-each"])
def test_install_replace_delete_many(lab: Lab, ack_each: bool) -> None:
    v4 = v4_block(10_000, "10.77.0.2")
    v6 = [route(f"fd90:0:0:{i:x}::/64", "fd77::2") for i in range(200)]
    ecmp = [
        route("10.200.1.0/24", "10.77.0.2", "10.77.0.3"),
        route("fd91::/64", "fd77::2", "fd77::3", "fd77::4"),
    ]
    holes = [route("192.168.221.64/26"), route("fd92::/56"), route("10.201.0.0/16", metric=7)]
    other_table = [route("10.202.0.0/24", "10.77.0.2", table=1000, metric=50)]
    desired = v4 + v6 + ecmp + holes + other_table

    async def body() -> None:
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns, ack_each=ack_each) as kr:
            assert await kr.apply(adds(desired)) == []
            seen = await kr.dump_ours()
            assert reconcile({r.key: r for r in desired}, seen) == []
            assert len(seen) == len(desired)

            routes4, routes6 = lab.ours(), lab.ours(v6=True)
            assert len(routes4) == 10_000 + 1 + 2 + 1
            assert len(routes6) == 200 + 1 + 1
            by_dst = {r["dst"]: r for r in routes4 + routes6}
            assert by_dst["10.128.0.0/24"]["gateway"] == "10.77.0.2"
            assert by_dst["10.167.15.0/24"]["dev"] == "v0"  # the 10,000th /24
            assert by_dst["fd90:0:0:c7::/64"]["gateway"] == "fd77::2"
            assert [h["gateway"] for h in by_dst["10.200.1.0/24"]["nexthops"]] == [
                "10.77.0.2",
                "10.77.0.3",
            ]
            assert len(by_dst["fd91::/64"]["nexthops"]) == 3
            assert by_dst["192.168.221.64/26"]["type"] == "blackhole"
            assert by_dst["fd92::/56"]["type"] == "blackhole"
            assert by_dst["10.201.0.0/16"]["metric"] == 7
            assert by_dst["10.202.0.0/24"]["table"] == "1000"

            moved = [
                *v4_block(10_000, "10.77.0.3"),
                route("fd91::/64", "fd77::5"),  # ECMP down to one path
                route("192.168.221.64/26", "10.77.0.4"),  # blackhole to unicast
                route("fd90::/64", "fd77::6", "fd77::7"),  # one path up to ECMP
            ]
            assert await kr.apply([RouteOp(OpKind.REPLACE, r) for r in moved]) == []
            routes4 = lab.ours()
            assert len(routes4) == 10_004
            assert {r.get("gateway") for r in routes4 if r["dst"].startswith("10.1")} == {
                "10.77.0.3"
            }
            by_dst = {r["dst"]: r for r in routes4 + lab.ours(v6=True)}
            assert by_dst["fd91::/64"]["gateway"] == "fd77::5"
            assert by_dst["192.168.221.64/26"]["gateway"] == "10.77.0.4"
            assert len(by_dst["fd90::/64"]["nexthops"]) == 2
            final = {r.key: r for r in desired} | {r.key: r for r in moved}
            assert reconcile(final, await kr.dump_ours()) == []

            gone = await kr.apply([RouteOp(OpKind.DELETE, r) for r in final.values()])
            assert gone == []
            assert lab.ours() == []
            assert lab.ours(v6=True) == []

    run(body())


@pytest.mark.parametrize("ack_each", [False, True], ids=["errors-only", "ack-each"])
def test_each_error_maps_back_to_its_route(lab: Lab, ack_each: bool) -> None:
    batch = v4_block(3000, "10.77.0.2")
    bad_at = (0, 17, 1500, 2999)
    for i in bad_at:
        batch[i] = KernelRoute(AF_INET, batch[i].dst, 24, (Nexthop(a("10.99.0.1")),))
    ops = adds(batch)
    bad6 = RouteOp(OpKind.ADD, route("fd93::/64", "fd99::1"))
    missing = RouteOp(OpKind.DELETE, route("10.203.0.0/24", "10.77.0.2"))
    ops[100:100] = [bad6, missing]

    async def body() -> None:
        kr_ = KernelRoutes(RTPROT_PYBGPD, netns=lab.ns, ack_each=ack_each, chunk_size=4096)
        async with kr_ as kr:
            failures = await kr.apply(ops)
            assert [f.op for f in failures] == [
                ops[0],
                ops[17],
                bad6,
                missing,
                ops[1502],
                ops[3001],
            ]
            codes = {f.op.route.dst: f.errno for f in failures}
            assert codes[batch[17].dst] == errno.ENETUNREACH
            assert codes[bad6.route.dst] in (errno.ENETUNREACH, errno.EHOSTUNREACH)
            assert codes[missing.route.dst] == errno.ESRCH
            assert "gateway" in failures[0].message.lower() or failures[0].message == ""
            assert len(lab.ours()) == 3000 - len(bad_at)

    run(body())


def test_sweep_removes_ours_and_nothing_else(lab: Lab) -> None:
    lab.ip("route", "add", "10.210.0.0/24", "via", "10.77.0.2", "proto", "static")
    lab.ip("route", "add", "10.211.0.0/24", "via", "10.77.0.2", "proto", "boot", "metric", "5")
    lab.ip("-6", "route", "add", "fd94::/64", "via", "fd77::2", "proto", "static")
    lab.ip("route", "add", "blackhole", "10.212.0.0/24", "proto", "static", "table", "1000")
    ours = [
        *v4_block(500, "10.77.0.2"),
        route("10.211.0.0/24", "10.77.0.2", metric=10),  # same prefix as the boot route
        route("fd95::/64", "fd77::2"),
        route("fd96::/64"),
        route("10.212.0.0/24", table=1001),
    ]

    async def body() -> int:
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns) as kr:
            assert await kr.apply(adds(ours)) == []
            # A delete carries our protocol, so it cannot take the static route of that key.
            (miss,) = await kr.apply([RouteOp(OpKind.DELETE, route("fd94::/64", "fd77::2"))])
            assert miss.errno == errno.ESRCH
            (miss,) = await kr.apply([RouteOp(OpKind.DELETE, route("10.210.0.0/24", "10.77.0.2"))])
            assert miss.errno == errno.ESRCH
        # A fresh socket, as a restarted daemon would open.
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns) as kr:
            removed = await kr.sweep()
            assert await kr.dump_ours() == {}
            assert await kr.sweep() == 0
            return removed

    assert run(body()) == len(ours)
    assert lab.ours() == []
    assert lab.ours(v6=True) == []
    static = {r["dst"] for r in lab.routes("proto", "static")}
    assert static == {"10.210.0.0/24", "10.212.0.0/24"}
    assert [r["dst"] for r in lab.routes("proto", "static", v6=True)] == ["fd94::/64"]
    assert [(r["dst"], r["metric"]) for r in lab.routes("proto", "boot")] == [("10.211.0.0/24", 5)]


def test_fibstate_ticks_and_restart_adoption(lab: Lab) -> None:
    async def body() -> None:
        fib = FibState()
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns) as kr:
            v0 = await kr.link_index("v0")
            assert v0 == json.loads(lab.ip("-j", "link", "show", "v0"))[0]["ifindex"]
            with pytest.raises(OSError) as missing:
                await kr.link_index("nope0")
            assert missing.value.errno == errno.ENODEV

            for r in v4_block(1000, "10.77.0.2"):
                fib.set(r)
            fib.set(route("10.99.0.0/24", "10.99.0.1"))  # not on-link: refused
            fib.record_failures(await kr.apply(fib.take_ops()))
            assert list(fib.failed) == [route("10.99.0.0/24", "10.99.0.1").key]

            # Many changes to the same prefixes within a tick: one message per prefix.
            for r in v4_block(10, "10.77.0.3") + v4_block(10, "10.77.0.4"):
                fib.set(r)
            ops = fib.take_ops()
            assert len(ops) == 10
            assert {op.kind for op in ops} == {OpKind.REPLACE}
            fib.record_failures(await kr.apply(ops))
            gws = {r["dst"]: r["gateway"] for r in lab.ours()}
            assert gws["10.128.9.0/24"] == "10.77.0.4"
            assert gws["10.128.10.0/24"] == "10.77.0.2"

        # Restart: adopt what the kernel holds, re-learn half, then drop the stale rest.
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns) as kr:
            after = FibState()
            after.adopt(await kr.dump_ours())
            for r in v4_block(500, "10.77.0.2"):
                after.set(r)
            ops = after.take_ops()
            assert {op.kind for op in ops} == {OpKind.REPLACE}  # only the 10 moved to .4
            assert len(ops) == 10
            after.record_failures(await kr.apply(ops))
            assert len(lab.ours()) == 1000
            after.reconcile_all()
            stale = after.take_ops()
            assert len(stale) == 500
            assert {op.kind for op in stale} == {OpKind.DELETE}
            assert await kr.apply(stale) == []
            assert reconcile({r.key: r for r in after}, await kr.dump_ours()) == []
            assert len(lab.ours()) == 500

    run(body())


def test_small_receive_buffer_still_hears_every_failure(lab: Lab) -> None:
    # Every op fails: the batch must be cut so that a chunk's answers fit the buffer.
    doomed = v4_block(3000, "10.99.0.1")

    async def body() -> None:
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns, buffer_size=4096) as kr:
            failures = await kr.apply(adds(doomed))
            assert [f.op.route for f in failures] == doomed
            assert {f.errno for f in failures} == {errno.ENETUNREACH}

            # Defeat the bound on purpose: answers get dropped, the caller is told so, and
            # the object carries on with a fresh socket.
            kr._max_per_chunk = 10_000
            with pytest.raises(NetlinkOverrun):
                await kr.apply(adds(doomed))
            assert await kr.apply(adds(v4_block(100, "10.77.0.2"))) == []
            assert len(await kr.dump_ours()) == 100

    run(body())


def test_add_never_overwrites_another_protocols_route(lab: Lab) -> None:
    """A BGP route for the connected subnet (or for Felix's workload /32) is refused with
    EEXIST rather than replacing the kernel's route; the other adds in the batch land."""
    lab.ip("route", "add", "10.213.0.5/32", "via", "10.77.0.2", "proto", "boot")
    connected = route("10.77.0.0/24", "10.77.0.2")
    workload = route("10.213.0.5/32", "10.77.0.2")
    fine = route("10.214.0.0/24", "10.77.0.2")

    async def body() -> list[Any]:
        async with KernelRoutes(RTPROT_PYBGPD, netns=lab.ns) as kr:
            return await kr.apply(adds([connected, workload, fine]))

    failures = run(body())
    assert sorted((f.op.route.dst_len, f.errno) for f in failures) == [
        (24, errno.EEXIST),
        (32, errno.EEXIST),
    ]
    kernel = json.loads(lab.ip("-j", "route", "show", "10.77.0.0/24"))
    assert [r.get("protocol") for r in kernel] == ["kernel"]
    # `ip` leaves out the protocol when it is boot, the default: ask for it instead.
    assert json.loads(lab.ip("-j", "route", "show", "10.213.0.5/32", "proto", "boot"))
    assert [r["dst"] for r in lab.ours()] == ["10.214.0.0/24"]


def test_monitor_filter_drops_our_own_route_notifications_in_the_kernel(lab: Lab) -> None:
    """The monitor's socket filter: a route of ours changing wakes nobody; another
    protocol's route arrives as before."""

    async def first_datagram() -> bytes:
        monitor = RouteMonitor(netns=lab.ns, skip_protocol=RTPROT_PYBGPD)
        monitor.open()
        try:
            lab.ip("route", "add", "10.91.0.0/24", "via", "10.77.0.2", "proto",
                   str(RTPROT_PYBGPD))
            lab.ip("route", "add", "10.92.0.0/24", "via", "10.77.0.2", "proto", "static")
            sock = monitor._sock  # the raw datagrams, before read()'s own skip
            assert sock is not None
            loop = asyncio.get_running_loop()
            return await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        finally:
            monitor.close()

    messages = split_messages(run(first_datagram()))
    entry = decode_route(messages[0][3])
    assert entry is not None
    assert (ipaddress.ip_address(entry.route.dst), entry.protocol) == (
        ipaddress.ip_address("10.92.0.0"), RTPROT_STATIC
    )
