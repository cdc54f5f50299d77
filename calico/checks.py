"""Mistakes no single resource shows, found across a Snapshot, with Calico's verdict on each.

Pure: `check(snapshot, node)` returns findings, most severe first. An ERROR is what Calico
itself refuses; a WARNING is what it accepts although it is almost certainly wrong:

- `pool-overlap` (ERROR): two IPPools whose CIDRs overlap. libcalico-go refuses to create a
  pool overlapping another (clientv3 ippool.go, validateAndSetDefaults: "IPPool(a) CIDR
  overlaps with IPPool(b) CIDR ..."), so calicoctl and the API server never store one.
- `node-address` (ERROR for `node`, else WARNING): two Nodes with the same BGP address.
  The API takes it, but calico-node refuses to start on a node whose address another node
  already uses (node/pkg/lifecycle/startup, checkConflictingNodes: "IPv4 address conflict").
  Between two other nodes it is the mesh's problem, and that of those nodes' calico-node.
- `affinity-outside-pools` (WARNING): a host BlockAffinity whose block lies in no IPPool.
  Calico accepts it (IPAM only allocates new blocks from pools); bgpd still advertises the
  block and blackholes it, with no pool's settings (`(no pool)` in `bgpd plan`).

Findings compare by what they say (not by the resources' names), so a caller may ask what a
change introduces: `introduced(before, after)`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations

from calico.snapshot import Snapshot

ERROR = "error"
WARNING = "warning"

POOL_OVERLAP = "pool-overlap"
NODE_ADDRESS = "node-address"
AFFINITY_OUTSIDE_POOLS = "affinity-outside-pools"


@dataclass(frozen=True, slots=True)
class Finding:
    """`severity` ERROR or WARNING, `code` the kind of mistake, `message` one line naming the
    resources; `resources` the (kind, name) pairs involved."""

    severity: str
    code: str
    message: str
    resources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


def check(snapshot: Snapshot, node: str | None = None) -> list[Finding]:
    """Every finding in `snapshot`, errors first; `node` is the node the caller runs as."""
    found = [
        *overlapping_pools(snapshot),
        *duplicate_node_addresses(snapshot, node),
        *affinities_outside_pools(snapshot),
    ]
    return sorted(found, key=lambda f: f.severity != ERROR)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


def introduced(before: Iterable[Finding], after: Iterable[Finding]) -> list[Finding]:
    """The findings of `after` that `before` did not have (what a change brings in)."""
    old = set(before)
    return [f for f in after if f not in old]


def overlapping_pools(snapshot: Snapshot) -> list[Finding]:
    pools = sorted(snapshot.ip_pools.values(), key=lambda p: p.name)
    nets = {p.name: ipaddress.ip_network(p.cidr) for p in pools}
    out: list[Finding] = []
    for a, b in combinations(pools, 2):
        if nets[a.name].overlaps(nets[b.name]):  # False across IP versions
            out.append(Finding(
                ERROR, POOL_OVERLAP,
                f"IPPool({a.name}) CIDR {a.cidr} overlaps with IPPool({b.name}) CIDR {b.cidr}"
                " (Calico refuses to create a pool that overlaps another)",
                (("IPPool", a.name), ("IPPool", b.name)),
            ))
    return out


def duplicate_node_addresses(snapshot: Snapshot, node: str | None = None) -> list[Finding]:
    out: list[Finding] = []
    for version in (4, 6):
        users: dict[str, list[str]] = {}
        for n in snapshot.nodes.values():
            address = n.ipv4 if version == 4 else n.ipv6
            if address is not None:
                users.setdefault(address, []).append(n.name)
        for address, names in sorted(users.items()):
            if len(names) < 2:
                continue
            names.sort()
            involved = tuple(("Node", name) for name in names)
            if node in names:
                others = [repr(n) for n in names if n != node]
                who = f"Node {others[0]} also uses" if len(others) == 1 else (
                    f"Nodes {', '.join(others)} also use"
                )
                out.append(Finding(
                    ERROR, NODE_ADDRESS,
                    f"Node {node!r} has IPv{version} address {address}, which {who} "
                    "(calico-node refuses to start on a conflicting address)",
                    involved,
                ))
            else:
                listed = ", ".join(repr(n) for n in names)
                out.append(Finding(
                    WARNING, NODE_ADDRESS,
                    f"Nodes {listed} have the same IPv{version} address {address}: peers "
                    "cannot tell them apart",
                    involved,
                ))
    return out


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _within(block: Network, pool: Network) -> bool:
    if isinstance(block, ipaddress.IPv4Network) and isinstance(pool, ipaddress.IPv4Network):
        return block.subnet_of(pool)
    if isinstance(block, ipaddress.IPv6Network) and isinstance(pool, ipaddress.IPv6Network):
        return block.subnet_of(pool)
    return False


def affinities_outside_pools(snapshot: Snapshot) -> list[Finding]:
    pools = [ipaddress.ip_network(p.cidr) for p in snapshot.ip_pools.values()]
    out: list[Finding] = []
    affinities = sorted(snapshot.block_affinities.values(), key=lambda a: (a.node, a.cidr))
    for affinity in affinities:
        if affinity.type != "host" or affinity.deleted:
            continue
        block = ipaddress.ip_network(affinity.cidr)
        if any(_within(block, pool) for pool in pools):
            continue
        out.append(Finding(
            WARNING, AFFINITY_OUTSIDE_POOLS,
            f"Node {affinity.node!r}'s block {affinity.cidr} (BlockAffinity) is in no IPPool:"
            " it is still advertised and blackholed, with no pool's settings",
            (("BlockAffinity", affinity.name),),
        ))
    return out
