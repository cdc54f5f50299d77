"""Cost per prefix of Calico's export filter, alone and inside an update group's flush.

The workload is a route reflector's (bench/rr_bench.py): M clients each announce N IPv4 /32s
inside the IP pool 100.64.0.0/10, all in one update group of route-reflector clients. The
policy also holds a disableBGPExport pool and a few confirmed blocks, so the filter walks
more than one network per prefix as a node's own would; a share of the prefixes falls in
the blocks or outside every pool.

    python3 bench/export_bench.py [--clients 100] [--prefixes 1000] [--repeat 5]

Prints nanoseconds per prefix (best of `--repeat`, garbage collector off) for:

- `filter, first sight`: the `calico_filter` callable on each route once, with a fresh
  policy each run (nothing remembered from a previous run);
- `filter, seen before`: the same routes again on the same policy (a second group, churn);
- `flush, no filter` / `flush, with filter`: `stage_all` + `flush` of one update group of
  M members for all M x N changes; the difference is what the filter costs in the real loop.
- `flush, with filter + BGPFilter`: the same, every member naming one BGPFilter of
  `--rules` export rules (CIDR rules of every match operator and prefix-length ranges, in
  and out of the pool, none deciding most routes: they go on to Calico's rules); the
  ratio to `flush, with filter` is the BGPFilter's cost (within 1.5x is the bar);
- `flush, ADD-PATH send`: the same group with ADD-PATH send negotiated (every path of a
  prefix read from the Loc-RIB and sent under its own id; here one path per prefix);
- `flush, ADD-PATH send, mesh node`: bench/soak.py's pattern: a node of a Calico mesh (add
  paths on) holds three paths per prefix, its ToR's over eBGP and the two its mesh peers
  pass on; its group of mesh peers may be sent only the first.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec
from bgpd.policy.calico import ExportPolicy as _ExportPolicy
from bgpd.policy.policy import Policy, calico_filter
from bgpd.rib.adj_out import GroupKey, UpdateGroup
from bgpd.rib.route import PeerInfo, Route
from bgpd.rib.table import BestChange, LocRib
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family
from bgpd.wire.options import CodecOptions
from calico.model import BGPFilter, parse_resource

V4 = Family.IPV4_UNICAST
AS = 64512


def pool(cidr: str, *, disable_export: bool = False) -> PoolSpec:
    fam = "ipv6" if ":" in cidr else "ipv4"
    return PoolSpec(cidr, cidr, fam, "Never", "Never", disable_export, False, False)


def make_policy() -> ExportPolicy:
    pools = (
        pool("10.244.0.0/16", disable_export=True),
        pool("100.64.0.0/10"),
        pool("fd10::/48"),
    )
    blocks = tuple(AffineBlock(f"100.64.{i}.0/26", "ipv4", "confirmed") for i in range(4))
    return ExportPolicy(blocks, pools)


def workload(clients: int, prefixes: int, seed: int = 1) -> tuple[list[PeerInfo], list[Route]]:
    rng = random.Random(seed)
    peers = [
        PeerInfo(f"c{i}", bytes((10, 0, i >> 8 & 0xFF, i & 0xFF)), AS, 0x0A000000 + i, AS, True)
        for i in range(clients)
    ]
    routes: list[Route] = []
    for i, p in enumerate(peers):
        attrs = PathAttributes(origin=0, next_hop=p.address, local_pref=100)
        for j in range(prefixes):
            roll = rng.random()
            if roll < 0.9:  # the pool: what a reflector mostly carries
                addr = (100 << 24 | 64 << 16) + ((i * prefixes + j) % (1 << 22))
            elif roll < 0.95:  # outside every pool
                addr = rng.getrandbits(32)
            else:  # a disableBGPExport pool
                addr = (10 << 24 | 244 << 16) + rng.getrandbits(16)
            routes.append(Route(bytes((32,)) + addr.to_bytes(4, "big"), V4, attrs, p))
    return peers, routes


def best_ns(fn: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.disable()
        try:
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        finally:
            gc.enable()
    return best * 1e9 / n


def filter_first(routes: list[Route]) -> float:
    elapsed = float("inf")
    for _ in range(3):
        flt = calico_filter(make_policy(), None, True)
        gc.disable()
        t = time.perf_counter()
        for r in routes:
            flt(r)
        elapsed = min(elapsed, time.perf_counter() - t)
        gc.enable()
    return elapsed * 1e9 / len(routes)


def bgp_filter_resource(rules: int, seed: int = 2) -> dict[str, Any]:
    """A Calico BGPFilter named `bench` of `rules` export rules as a user might write them:
    rejects of /24s and /32s inside the pool, accepts of networks outside it with
    prefix-length ranges, NotIn rules around the pool; most routes match none of them and go
    on to Calico's rules. bench/rr_bench.py's `bgpd-filter` reflector applies the same one."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(rules):
        kind = i % 5
        third = rng.randrange(64, 128)
        if kind == 0:
            rule = {"action": "Reject", "cidr": f"100.{third}.{rng.randrange(256)}.0/24",
                    "matchOperator": "In"}  # fmt: skip
        elif kind == 1:
            rule = {"action": "Reject", "cidr": f"100.{third}.{rng.randrange(256)}.7/32",
                    "matchOperator": "Equal"}  # fmt: skip
        elif kind == 2:
            rule = {"action": "Accept", "cidr": f"198.{rng.randrange(18, 20)}.{i}.0/24",
                    "matchOperator": "In"}  # fmt: skip
        elif kind == 3:
            rule = {"action": "Accept", "cidr": f"172.{16 + i % 16}.0.0/16",
                    "matchOperator": "In", "prefixLength": {"min": 20, "max": 28}}  # fmt: skip
        else:
            rule = {"action": "Reject", "cidr": "64.0.0.0/2", "matchOperator": "NotIn",
                    "prefixLength": {"min": 8 + i % 24, "max": 32}}  # fmt: skip
        out.append(rule)
    return {"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter",
            "metadata": {"name": "bench"}, "spec": {"exportV4": out}}  # fmt: skip


def bgp_filter(rules: int, seed: int = 2) -> BGPFilter:
    flt = parse_resource(bgp_filter_resource(rules, seed))
    assert isinstance(flt, BGPFilter)
    return flt


def flush_once(
    peers: list[PeerInfo],
    changes: list[BestChange],
    flt: Callable[[], _ExportPolicy | None],
    bgp_filter: BGPFilter | None = None,
    loc: LocRib | None = None,
) -> Callable[[], object]:
    options = CodecOptions(add_path_send=frozenset({V4})) if loc is not None else CodecOptions()
    key = GroupKey.for_peer(
        peers[0],
        options=options,
        families=(V4,),
        local_ipv4=bytes((10, 0, 0, 1)),
        policies=(bgp_filter.name,) if bgp_filter else (),
    )
    filters = {bgp_filter.name: bgp_filter} if bgp_filter else {}

    def run() -> object:
        policy = Policy(flt(), filters=filters)
        group = UpdateGroup(key, policy=policy.for_group(key, 0x0A000001), paths=loc)
        for p in peers:
            group.add_member(p)
        group.stage_all(changes)
        return group.flush()

    return run


def mesh_flush(prefixes: int) -> tuple[Callable[[], object], int]:
    """A mesh node's flush of `prefixes` changes, each prefix with three paths in the
    Loc-RIB (one from an eBGP ToR, two from iBGP mesh peers), to its two mesh peers."""
    tor = PeerInfo("tor", bytes((10, 1, 0, 2)), 65000, 0x0A010002, AS, False)
    mesh = [
        PeerInfo(f"m{i}", bytes((10, 0, 0, 2 + i)), AS, 0x0A000002 + i, AS, False)
        for i in range(2)
    ]
    loc = LocRib()
    changes: list[BestChange] = []
    ebgp = PathAttributes(origin=0, as_path=((2, (65000,)),), next_hop=tor.address)
    # One attributes object per peer, as the RIB interns them.
    passed_on = [
        PathAttributes(origin=0, as_path=((2, (65000,)),), next_hop=m.address, local_pref=100)
        for m in mesh
    ]
    for j in range(prefixes):
        prefix = bytes((32,)) + ((100 << 24 | 64 << 16) + j).to_bytes(4, "big")
        best = Route(prefix, V4, ebgp, tor)
        loc.update(best)
        for m, attrs in zip(mesh, passed_on, strict=True):
            loc.update(Route(prefix, V4, attrs, m))
        changes.append(BestChange(V4, prefix, None, best, None, False))
    key = GroupKey.for_peer(
        mesh[0],
        options=CodecOptions(add_path_send=frozenset({V4})),
        families=(V4,),
        local_ipv4=bytes((10, 0, 0, 1)),
    )

    def run() -> object:
        policy = Policy(make_policy())
        group = UpdateGroup(key, policy=policy.for_group(key, 0), paths=loc)
        for m in mesh:
            group.add_member(m)
        group.stage_all(changes)
        flushed = group.flush()
        assert flushed.data, "the ToR's paths go to the mesh"
        return flushed

    return run, prefixes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--prefixes", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rules", type=int, default=100)
    args = p.parse_args()
    peers, routes = workload(args.clients, args.prefixes)
    n = len(routes)
    changes = [BestChange(V4, r.prefix, None, r, None, False) for r in routes]
    warm = calico_filter(make_policy(), None, True)
    for r in routes:
        warm(r)

    def seen() -> None:
        for r in routes:
            warm(r)

    loc = LocRib()
    for r in routes:
        loc.update(r)
    rows = [
        ("filter, first sight", filter_first(routes)),
        ("filter, seen before", best_ns(seen, n, args.repeat)),
        ("flush, no filter", best_ns(flush_once(peers, changes, lambda: None), n, args.repeat)),
        (
            "flush, with filter",
            best_ns(flush_once(peers, changes, make_policy), n, args.repeat),
        ),
        (
            f"flush, with filter + BGPFilter of {args.rules} rules",
            best_ns(
                flush_once(peers, changes, make_policy, bgp_filter(args.rules)), n, args.repeat
            ),
        ),
        (
            "flush, ADD-PATH send",
            best_ns(flush_once(peers, changes, make_policy, loc=loc), n, args.repeat),
        ),
        ("flush, ADD-PATH send, mesh node", best_ns(*mesh_flush(n), args.repeat)),
    ]
    print(f"{args.clients} clients x {args.prefixes} prefixes ({n} routes), best of {args.repeat}")
    print()
    print("| step | ns per prefix |")
    print("|---|---:|")
    for name, ns in rows:
        print(f"| {name} | {ns:,.0f} |")
    print()
    print(f"BGPFilter flush / Calico-only flush: {rows[4][1] / rows[3][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
