"""What this node originates: its blocks' aggregates and blackholes, static routes and
community rules, from Calico's resources (reference/calico.md 4.2, 4.3). Which routes go
out is the export policy's business (bgpd/policy/calico.py).

* Every block affine to this node (state confirmed, implicitly confirmed, or pendingDeletion;
  pending ones do not count) gets a blackhole route, except /32 and /128 blocks.
* A block is originated when the export policy lets it out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.policy.calico import (
    AffineBlock,
    ExportPolicy,
    PoolSpec,
    family_of,
    net_of,
    within,
)
from bgpd.policy.communities import CommunityRule as CommunityRule
from calico.model import AFFINITY_PENDING, BGPConfiguration
from calico.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Origination:
    """A route this node injects itself: a block aggregate, backed by its blackhole route.
    `pool` is the IP pool holding the block (None when the block lies in no pool)."""

    prefix: str
    family: str
    pool: PoolSpec | None


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """`route <prefix> via <gateway>`: how a peer with reachableBy is reached."""

    prefix: str
    via: str


def pool_specs(snapshot: Snapshot) -> tuple[PoolSpec, ...]:
    return tuple(
        sorted(
            (PoolSpec.of(p) for p in snapshot.ip_pools.values()),
            key=lambda p: (p.family, net_of(p.cidr)),
        )
    )


def affine_blocks(snapshot: Snapshot, node: str) -> tuple[AffineBlock, ...]:
    return tuple(
        AffineBlock(a.cidr, family_of(a.cidr), a.state)
        for a in snapshot.affinities_of(node)
        if a.state != AFFINITY_PENDING
    )


def pool_of(prefix: str, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """The most specific pool holding `prefix`."""
    net = net_of(prefix)
    holding = [p for p in pools if within(net, net_of(p.cidr))]
    return max(holding, key=lambda p: net_of(p.cidr).prefixlen, default=None)


def blackholes(blocks: Iterable[AffineBlock]) -> tuple[str, ...]:
    return tuple(b.cidr for b in blocks if not b.host_route)


def originations(
    blocks: Iterable[AffineBlock], pools: tuple[PoolSpec, ...]
) -> tuple[Origination, ...]:
    """The blackholed blocks that the export policy lets out."""
    policy = ExportPolicy(tuple(blocks), pools)
    return tuple(
        Origination(b.cidr, b.family, pool_of(b.cidr, pools))
        for b in policy.blocks
        if not b.host_route and policy.allows(b.cidr)
    )


_STANDARD = re.compile(r"(\d+):(\d+)")
_LARGE = re.compile(r"(\d+):(\d+):(\d+)")


def community_rules(snapshot: Snapshot, node: str) -> tuple[CommunityRule, ...]:
    """prefixAdvertisements of `node.<node>` if it has any, else of `default`; names resolve
    against the same resource's communities, unknown names are dropped (as confd does)."""
    config: BGPConfiguration | None = snapshot.node_config(node)
    if config is None or not config.prefix_advertisements:
        config = snapshot.default_config
    defined = {c.name: c.value for c in config.communities}
    rules: list[CommunityRule] = []
    for adv in config.prefix_advertisements:
        standard: set[tuple[int, int]] = set()
        large: set[tuple[int, int, int]] = set()
        for item in adv.communities:
            value = item if (_STANDARD.fullmatch(item) or _LARGE.fullmatch(item)) else None
            value = value or defined.get(item)
            if value is None:
                continue
            parts = tuple(int(p) for p in value.split(":"))
            if len(parts) == 2 and all(p <= 0xFFFF for p in parts):
                standard.add((parts[0], parts[1]))
            elif len(parts) == 3 and all(p <= 0xFFFFFFFF for p in parts):
                large.add((parts[0], parts[1], parts[2]))
        if standard or large:
            rules.append(
                CommunityRule(
                    adv.cidr, family_of(adv.cidr), tuple(sorted(standard)), tuple(sorted(large))
                )
            )
    return tuple(rules)
