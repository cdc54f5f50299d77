"""Calico's export policy as rules with reasons, and as the Adj-RIB-Out's filter: rejected
prefixes are never advertised, and a policy change withdraws or announces the difference."""

from __future__ import annotations

import pytest

from bgpd.policy.calico import AffineBlock, ExportPolicy, ExportRule, PoolSpec
from bgpd.policy.imports import ImportRules
from bgpd.policy.policy import Policy
from bgpd.rib.adj_out import AdjRibOut, GroupKey, UpdateGroup
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire import decode_message, split_messages
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

V4 = Family.IPV4_UNICAST
AS = 64512
OPTS = CodecOptions()


def pool(cidr: str, *, disabled_export: bool = False, ipip: str = "Never") -> PoolSpec:
    fam = "ipv6" if ":" in cidr else "ipv4"
    return PoolSpec(cidr, cidr, fam, ipip, "Never", disabled_export, False, False)


POOLS = (
    pool("192.168.0.0/16"),
    pool("10.244.0.0/16", disabled_export=True),
    pool("fd10::/48"),
)
BLOCKS = (
    AffineBlock("192.168.1.0/26", "ipv4", "confirmed"),
    AffineBlock("192.168.2.0/26", "ipv4", "pendingDeletion"),
    AffineBlock("10.244.3.0/26", "ipv4", "confirmed"),
    AffineBlock("fd10::100/122", "ipv6", "confirmed"),
)
POLICY = ExportPolicy(BLOCKS, POOLS)


@pytest.mark.parametrize(
    ("prefix", "kwargs", "rule"),
    [
        ("192.168.1.0/26", {}, ExportRule.BLOCK_AGGREGATE),
        ("192.168.1.5/32", {}, ExportRule.INSIDE_LOCAL_BLOCK),
        ("192.168.1.5/32", {"elevated": True}, ExportRule.ELEVATED_IN_BLOCK),
        # A borrowed IP: inside the pool, inside another node's block.
        ("192.168.7.9/32", {}, ExportRule.IN_POOL),
        # pendingDeletion does not aggregate: its /32s are just pool routes.
        ("192.168.2.3/32", {}, ExportRule.IN_POOL),
        ("192.168.9.0/26", {}, ExportRule.IN_POOL),
        # disableBGPExport comes first, even for a local block.
        ("10.244.3.0/26", {}, ExportRule.DISABLED_POOL),
        ("10.244.9.1/32", {}, ExportRule.DISABLED_POOL),
        ("10.0.0.0/8", {}, ExportRule.NOT_IN_POOL),
        ("0.0.0.0/0", {}, ExportRule.NOT_IN_POOL),
        ("192.168.7.9/32", {"ifname": "vxlan.calico"}, ExportRule.TUNNEL_TO_IBGP),
        ("192.168.7.9/32", {"ifname": "wireguard.cali"}, ExportRule.TUNNEL_TO_IBGP),
        ("192.168.7.9/32", {"ifname": "vxlan.calico", "internal_peer": False}, ExportRule.IN_POOL),
        (
            "192.168.7.9/32",
            {"ifname": "bpfout.cali", "internal_peer": False},
            ExportRule.LOCAL_INTERFACE,
        ),
        ("192.168.7.9/32", {"ifname": "cali12345678901"}, ExportRule.IN_POOL),
        ("fd10::100/122", {}, ExportRule.BLOCK_AGGREGATE),
        ("fd10::101/128", {}, ExportRule.INSIDE_LOCAL_BLOCK),
        ("fd10:0:0:1::5/128", {}, ExportRule.IN_POOL),
        ("fd11::/64", {}, ExportRule.NOT_IN_POOL),
    ],
)
def test_rules(prefix: str, kwargs: dict[str, object], rule: ExportRule) -> None:
    decision = POLICY.decide(prefix, **kwargs)  # type: ignore[arg-type]
    assert decision.rule is rule
    assert decision.allowed is (
        rule in (ExportRule.BLOCK_AGGREGATE, ExportRule.ELEVATED_IN_BLOCK, ExportRule.IN_POOL)
    )
    assert POLICY.allows(prefix, **kwargs) is decision.allowed  # type: ignore[arg-type]
    assert decision.text.startswith("accepted: " if decision.allowed else "rejected: ")


ME = address_to_bytes("10.0.0.1")
MESH = PeerInfo("mesh", address_to_bytes("10.0.0.2"), AS, 0x0A000002, AS)
MESH3 = PeerInfo("mesh3", address_to_bytes("10.0.0.3"), AS, 0x0A000003, AS)
EBGP = PeerInfo("tor", address_to_bytes("10.0.0.254"), 65001, 0x0A0000FE, AS)


def key(p: PeerInfo) -> GroupKey:
    return GroupKey.for_peer(p, options=OPTS, families=(V4,), local_ipv4=ME)


def announced_withdrawn(data: bytes) -> tuple[set[bytes], set[bytes]]:
    messages, rest = split_messages(data, OPTS.max_message_size)
    assert rest == b""
    ann: set[bytes] = set()
    wd: set[bytes] = set()
    for m in messages:
        u = decode_message(m, OPTS)
        assert isinstance(u, Update)
        ann.update(u.nlri)
        wd.update(u.withdrawn)
    return ann, wd


def nlri(prefix: str) -> bytes:
    return prefix_to_nlri(prefix)[1]


def local(prefix: str, source: object = LOCAL) -> Route:
    return Route(nlri(prefix), V4, PathAttributes(), source)  # type: ignore[arg-type]


def test_group_filter_keeps_rejected_prefixes_out() -> None:
    ifnames = {nlri("192.168.7.9/32"): "vxlan.calico"}
    policy = Policy(POLICY, lambda r: ifnames.get(r.prefix))
    ibgp = UpdateGroup(key(MESH), policy=policy.for_group(key(MESH), 1))
    ibgp.add_member(MESH)
    ebgp = UpdateGroup(key(EBGP), policy=policy.for_group(key(EBGP), 1))
    ebgp.add_member(EBGP)
    routes = [
        local("192.168.1.0/26"),  # block: out
        local("192.168.1.5/32", KERNEL),  # workload in our block: not
        local("192.168.8.5/32", KERNEL),  # borrowed: out
        local("192.168.7.9/32", KERNEL),  # via a tunnel device: eBGP only
        local("10.9.0.0/16", KERNEL),  # outside the pools: not
    ]
    for g in (ibgp, ebgp):
        g.stage_all(BestChange(V4, r.prefix, None, r, None, False) for r in routes)
    ann, _ = announced_withdrawn(ibgp.flush().data)
    assert ann == {nlri("192.168.1.0/26"), nlri("192.168.8.5/32")}
    ann, _ = announced_withdrawn(ebgp.flush().data)
    assert ann == {nlri("192.168.1.0/26"), nlri("192.168.8.5/32"), nlri("192.168.7.9/32")}


def test_policy_change_withdraws_and_announces_the_difference() -> None:
    rib = Rib(AS, 0x0A000001, imports=ImportRules())
    rib.add_peer(MESH3)
    rib.originate(V4, nlri("192.168.1.0/26"), PathAttributes())
    rib.originate(V4, nlri("192.168.1.5/32"), PathAttributes(), source=KERNEL)
    rib.originate(V4, nlri("172.16.0.0/24"), PathAttributes(), source=KERNEL)
    out = AdjRibOut(rib.cluster_id, Policy(POLICY))
    group = out.join(MESH, key(MESH), rib.iter_best)
    assert set(group.advertised(V4)) == {nlri("192.168.1.0/26")}
    # The block's affinity goes away and 172.16/16 becomes a pool: the /32 is now a
    # borrowed-style pool route, 172.16.0.0/24 is inside a pool, the aggregate stays (a pool
    # route too).
    policy = ExportPolicy((), (*POOLS, pool("172.16.0.0/16")))
    out.set_policies(Policy(policy), rib.iter_best)
    (flushed,) = [f for g, f in out.flush() if g is group]
    ann, wd = announced_withdrawn(flushed.data)
    assert ann == {nlri("192.168.1.5/32"), nlri("172.16.0.0/24")}
    assert wd == set()
    # And back: the /32 and 172.16.0.0/24 are withdrawn.
    out.set_policies(Policy(POLICY), rib.iter_best)
    (flushed,) = [f for g, f in out.flush() if g is group]
    ann, wd = announced_withdrawn(flushed.data)
    assert ann == set()
    assert wd == {nlri("192.168.1.5/32"), nlri("172.16.0.0/24")}


def test_routes_from_peers_outside_pools_are_not_reexported() -> None:
    rib = Rib(AS, 0x0A000001, imports=ImportRules())
    rr_client = PeerInfo("client", address_to_bytes("10.0.0.3"), AS, 0x0A000003, AS, True)
    rib.add_peer(rr_client)
    update = Update(
        attributes=PathAttributes(next_hop=rr_client.address),
        nlri=(nlri("192.168.9.0/26"), nlri("10.50.0.0/24")),
    )
    out = AdjRibOut(rib.cluster_id, Policy(POLICY))
    group = out.join(MESH, key(MESH), rib.iter_best)
    out.stage(rib.apply_update("client", update, OPTS))
    (flushed,) = [f for g, f in out.flush() if g is group]
    ann, _ = announced_withdrawn(flushed.data)
    assert ann == {nlri("192.168.9.0/26")}
