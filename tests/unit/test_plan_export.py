"""What a node originates and what its export policy lets out (calico.md 4.2, 4.3)."""

from __future__ import annotations

import pytest

from bgpd.plan import CommunityRule, PeeringPlan, compute
from bgpd.plan.originate import pool_of
from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec
from calico import Snapshot
from calico.model import BGPConfiguration, BlockAffinity, Community, IPPool, Node, NodeBGP
from calico.model import PrefixAdvertisement as Adv

ME = Node("me", bgp=NodeBGP(ipv4_address="10.0.0.1/24", ipv6_address="fd00::1/64"))
POOLS = [
    IPPool("main", "192.168.0.0/16"),
    IPPool("quiet", "172.16.0.0/16", disable_bgp_export=True),
    IPPool("v6", "fd10::/48"),
    IPPool("off", "172.17.0.0/16", disabled=True, vxlan_mode="Always"),
]


def aff(cidr: str, state: str = "confirmed", node: str = "me") -> BlockAffinity:
    return BlockAffinity(f"{node}-{cidr}", node, cidr, state)


def plan_with(*affinities: BlockAffinity) -> PeeringPlan:
    return compute(Snapshot.of([ME, *POOLS, *affinities]), "me")


def test_blocks_blackholes_and_originations() -> None:
    plan = plan_with(
        aff("192.168.1.0/26"),
        aff("192.168.1.64/26", "pending"),  # not ours yet: nothing
        aff("192.168.1.128/26", "pendingDeletion"),  # blackholed, exported via the pool rule
        aff("192.168.9.9/32"),  # a /32 block gets no blackhole
        aff("172.16.1.0/26"),  # in a disableBGPExport pool: blackholed, never exported
        aff("10.50.0.0/26"),  # in no pool: still exported (calico_aggr comes first)
        aff("10.60.0.0/26", "pendingDeletion"),  # in no pool and not confirmed: not exported
        aff("fd10::/122"),
        aff("192.168.2.0/26", node="other"),
    )
    assert [(b.cidr, b.state) for b in plan.blocks] == [
        ("10.50.0.0/26", "confirmed"),
        ("10.60.0.0/26", "pendingDeletion"),
        ("172.16.1.0/26", "confirmed"),
        ("192.168.1.0/26", "confirmed"),
        ("192.168.1.128/26", "pendingDeletion"),
        ("192.168.9.9/32", "confirmed"),
        ("fd10::/122", "confirmed"),
    ]
    assert plan.blackholes == (
        "10.50.0.0/26",
        "10.60.0.0/26",
        "172.16.1.0/26",
        "192.168.1.0/26",
        "192.168.1.128/26",
        "fd10::/122",
    )
    assert [(o.prefix, o.family, o.pool.name if o.pool else None) for o in plan.originate] == [
        ("10.50.0.0/26", "ipv4", None),
        ("192.168.1.0/26", "ipv4", "main"),
        ("192.168.1.128/26", "ipv4", "main"),
        ("fd10::/122", "ipv6", "v6"),
    ]
    main = plan.originate[1].pool
    assert main == PoolSpec("main", "192.168.0.0/16", "ipv4", "Never", "Never", False, False, False)


def test_pools_in_the_plan() -> None:
    plan = plan_with()
    assert [(p.name, p.family, p.disable_bgp_export, p.disabled) for p in plan.pools] == [
        ("quiet", "ipv4", True, False),
        ("off", "ipv4", False, True),
        ("main", "ipv4", False, False),
        ("v6", "ipv6", False, False),
    ]
    assert plan.originate == () and plan.blackholes == ()


@pytest.mark.parametrize(
    ("prefix", "kwargs", "allowed"),
    [
        ("192.168.1.0/26", {}, True),  # our block's aggregate
        ("192.168.1.5/32", {}, False),  # a local workload inside it
        ("192.168.1.5/32", {"elevated": True}, True),  # unless raised (live migration)
        ("192.168.1.0/27", {}, False),
        ("192.168.1.0/25", {}, True),  # wider than the block: just a pool route
        ("192.168.7.7/32", {}, True),  # borrowed from another node's block
        ("192.168.7.0/26", {}, True),  # a route learned from a peer, in the pool
        ("192.168.0.0/16", {}, True),
        ("192.0.0.0/8", {}, False),  # wider than the pool
        ("172.16.1.0/26", {}, False),  # our block, but its pool is not exported
        ("172.16.9.9/32", {"elevated": True}, False),
        ("172.17.0.0/24", {}, True),  # a disabled pool is still exported
        ("10.9.0.0/16", {}, False),  # outside every pool
        ("fd10::1/128", {}, True),
        ("fd10::/122", {}, True),
        ("fd99::/64", {}, False),
        ("192.168.7.7/32", {"ifname": "vxlan.calico"}, False),  # Felix's tunnel routes
        ("192.168.7.7/32", {"ifname": "wireguard.cali"}, False),
        ("192.168.7.7/32", {"ifname": "vxlan.calico", "internal_peer": False}, True),
        ("192.168.7.7/32", {"ifname": "bpfout.cali", "internal_peer": False}, False),
        ("192.168.7.7/32", {"ifname": "cali12345"}, True),  # a workload veth
    ],
)
def test_export_policy(prefix: str, kwargs: dict[str, object], allowed: bool) -> None:
    plan = plan_with(aff("192.168.1.0/26"), aff("172.16.1.0/26"))
    policy = ExportPolicy(plan.blocks, plan.pools)
    assert policy.allows(prefix, **kwargs) is allowed  # type: ignore[arg-type]


def test_pending_deletion_block_does_not_aggregate() -> None:
    policy = ExportPolicy((AffineBlock("10.60.0.0/26", "ipv4", "pendingDeletion"),), ())
    assert not policy.allows("10.60.0.0/26")
    assert not policy.allows("10.60.0.1/32")
    policy = ExportPolicy((AffineBlock("10.60.0.0/26", "ipv4", "confirmed"),), ())
    assert policy.allows("10.60.0.0/26")


def test_pool_of_picks_the_most_specific() -> None:
    pools = (
        PoolSpec("wide", "10.0.0.0/8", "ipv4", "Never", "Never", False, False, False),
        PoolSpec("narrow", "10.1.0.0/16", "ipv4", "Never", "Never", False, False, False),
    )
    assert pool_of("10.1.2.0/26", pools) is pools[1]
    assert pool_of("10.2.2.0/26", pools) is pools[0]
    assert pool_of("11.0.0.0/26", pools) is None
    assert pool_of("::/0", pools) is None


def test_community_rules() -> None:
    default = BGPConfiguration(
        "default",
        communities=(Community("std", "65000:100"), Community("big", "65000:1:2")),
        prefix_advertisements=(
            Adv("192.168.0.0/16", ("std", "65001:7", "big", "std", "unknown-name")),
            Adv("fd10::/48", ("big",)),
            Adv("10.0.0.0/8", ("unknown-name",)),  # nothing resolves: no rule
        ),
    )
    plan = compute(Snapshot.of([ME, default]), "me")
    assert plan.communities == (
        CommunityRule("192.168.0.0/16", "ipv4", ((65000, 100), (65001, 7)), ((65000, 1, 2),)),
        CommunityRule("fd10::/48", "ipv6", (), ((65000, 1, 2),)),
    )
    # A node's own prefixAdvertisements replace the default ones, with its own names.
    mine = BGPConfiguration(
        "node.me",
        communities=(Community("big", "9:9:9"),),
        prefix_advertisements=(Adv("192.168.0.0/16", ("big", "std")),),
    )
    plan = compute(Snapshot.of([ME, default, mine]), "me")
    assert plan.communities == (CommunityRule("192.168.0.0/16", "ipv4", (), ((9, 9, 9),)),)
