"""Per-session and per-node settings in the policy room, checked where they take effect:
`allow local as` on import, `next hop keep` towards eBGP peers, prefixAdvertisement
communities on export (standard and large, per prefix, for every source), and
ignoredInterfaces in Calico's export rules. Each goes through `Policy.evaluate` and through
an update group's bytes, which must agree."""

from __future__ import annotations

import pytest

from bgpd.policy.calico import AffineBlock, ExportPolicy, ExportRule, PoolSpec
from bgpd.policy.communities import CommunityRule, CommunityRules
from bgpd.policy.policy import Direction, PeerContext, Policy, Verdict
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, LOCAL, Identity, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire import decode_message, split_messages
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
AS = 64512
RID = 0x0A000001
ME = Identity(AS, RID, RID)
ME4 = address_to_bytes("10.0.0.1")
ME6 = address_to_bytes("fd00::1")
OPTS = CodecOptions()
POOL = PoolSpec("p", "192.168.0.0/16", "ipv4", "Never", "Never", False, False, False)
POOL6 = PoolSpec("p6", "fd10::/48", "ipv6", "Never", "Never", False, False, False)
BLOCK = AffineBlock("192.168.1.0/26", "ipv4", "confirmed")
CALICO = ExportPolicy((BLOCK,), (POOL, POOL6))


def peer(name: str, last: int, asn: int, **kw: object) -> PeerInfo:
    return PeerInfo(name, bytes([10, 0, 0, last]), asn, 0x0A000000 + last, AS, **kw)  # type: ignore[arg-type]


IBGP = peer("ibgp", 2, AS)
EBGP_IN = peer("ebgp-in", 3, 65001)
EBGP_OUT = peer("ebgp-out", 4, 65002)


def p(text: str) -> tuple[Family, bytes]:
    return prefix_to_nlri(text)


def route(prefix: str, source: object, **attrs: object) -> Route:
    family, nlri = p(prefix)
    return Route(nlri, family, PathAttributes(**attrs), source)  # type: ignore[arg-type]


def key(target: PeerInfo, **kw: object) -> GroupKey:
    return GroupKey.for_peer(
        target, options=OPTS, families=(V4, V6), local_ipv4=ME4, local_ipv6=ME6, **kw  # type: ignore[arg-type]
    )


def exported(policy: Policy, r: Route, target: PeerInfo, k: GroupKey) -> PathAttributes | None:
    """What `policy.evaluate` says and what an update group puts on the wire, checked to be
    the same; the attributes, or None when rejected."""
    verdict, out = policy.evaluate(r, Direction.EXPORT, PeerContext(target, ME, k))
    rib = Rib(AS, RID, imports=policy)
    group = AdjRibOut(RID, policy).join(target, k, rib.iter_best)
    group.stage(BestChange(r.family, r.prefix, None, r, None, False))
    data = group.flush().data
    sent = [
        u
        for m in split_messages(data)[0]
        if isinstance(u := decode_message(m, OPTS), Update) and (u.nlri or u.mp_reach)
    ]
    if verdict is Verdict.REJECT:
        assert not sent
        return None
    (update,) = sent
    attrs = update.attributes
    assert attrs is not None
    next_hop = update.mp_reach.next_hop if update.mp_reach is not None else attrs.next_hop
    assert attrs.replace(next_hop=next_hop) == out.attrs
    return out.attrs


# --- allow local as ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "times", "accepted"),
    [(0, 1, False), (1, 1, True), (1, 2, False), (2, 2, True), (3, 1, True)],
)
def test_allow_local_as_lets_our_as_appear_that_often(
    allowed: int, times: int, accepted: bool
) -> None:
    source = peer("site-b", 5, 65001, allow_local_as=allowed)
    path = ((AS_SEQUENCE, (65001, *([AS] * times), 65100)),)
    r = route("10.50.0.0/16", source, as_path=path, next_hop=source.address)
    verdict, _ = Policy().evaluate(r, Direction.IMPORT, PeerContext(source, ME))
    assert (verdict is Verdict.ACCEPT) == accepted
    # The RIB's import hook says the same, with the reason in the log's words.
    _attrs, loop = Policy().import_attrs(ME, source, r.attrs)
    assert (loop is None) == accepted
    if not accepted and allowed:
        assert loop == f"AS_PATH contains our AS {times} times (allow local as {allowed})"


def test_the_loop_check_counts_the_session_as() -> None:
    # localASNumber: the session's AS is what BIRD checks (`local as`); the node's own AS
    # may come from such a peer.
    source = PeerInfo("lw", bytes([10, 0, 0, 9]), 65401, 9, 65002, allow_local_as=1)
    once = route("10.51.0.0/16", source, as_path=((AS_SEQUENCE, (65401, 65002, AS, AS)),))
    twice = route("10.51.0.0/16", source, as_path=((AS_SEQUENCE, (65401, 65002, 65002)),))
    assert Policy().import_attrs(ME, source, once.attrs)[1] is None
    assert Policy().import_attrs(ME, source, twice.attrs)[1] is not None


# --- next hop keep ----------------------------------------------------------------------------


def test_next_hop_keep_towards_ebgp_passes_the_learned_next_hop_on() -> None:
    policy = Policy(CALICO)
    learned = route(
        "192.168.7.0/24", EBGP_IN, next_hop=address_to_bytes("10.0.0.3"),
        as_path=((AS_SEQUENCE, (65001,)),),
    )
    default = exported(policy, learned, EBGP_OUT, key(EBGP_OUT))
    assert default is not None and default.next_hop == ME4  # eBGP: next hop self
    keep_key = key(EBGP_OUT, next_hop_keep=True)
    assert not keep_key.next_hop_self and keep_key.next_hop_keep
    kept = exported(policy, learned, EBGP_OUT, keep_key)
    assert kept is not None and kept.next_hop == address_to_bytes("10.0.0.3")
    assert kept.as_path == ((AS_SEQUENCE, (AS, 65001)),)  # eBGP still prepends
    # What we originate has no next hop to keep: ours.
    block = route("192.168.1.0/26", LOCAL)
    mine = exported(policy, block, EBGP_OUT, keep_key)
    assert mine is not None and mine.next_hop == ME4
    # A link-local half stays on its link (RFC 2545).
    v6 = route(
        "fd10:0:0:7::/64", EBGP_IN,
        next_hop=address_to_bytes("fd00::3") + address_to_bytes("fe80::3"),
    )
    kept6 = exported(policy, v6, EBGP_OUT, keep_key)
    assert kept6 is not None and kept6.next_hop == address_to_bytes("fd00::3")


def test_next_hop_self_wins_and_groups_are_apart() -> None:
    both = key(EBGP_OUT, next_hop_self=True, next_hop_keep=True)
    assert both.next_hop_self and not both.next_hop_keep
    assert key(EBGP_OUT) != key(EBGP_OUT, next_hop_keep=True)
    # iBGP with keep: learned routes keep theirs anyway; ours carry ours.
    ibgp_keep = key(IBGP, next_hop_keep=True)
    learned = route("192.168.8.0/24", EBGP_IN, next_hop=address_to_bytes("10.0.0.3"))
    out = exported(Policy(CALICO), learned, IBGP, ibgp_keep)
    assert out is not None and out.next_hop == address_to_bytes("10.0.0.3")


# --- communities --------------------------------------------------------------------------------

RULES = (
    CommunityRule("192.168.0.0/16", "ipv4", ((100, 6532), (5663, 12)), ((100, 555, 107),)),
    CommunityRule("192.168.1.0/24", "ipv4", ((1, 1),), ()),
    CommunityRule("fd10::/48", "ipv6", (), ((100, 555, 107),)),
)


def test_communities_are_added_per_prefix_for_every_source_and_peer() -> None:
    policy = Policy(CALICO, communities=RULES)
    # Our block (inside both v4 rules), a borrowed /32 from the kernel (the wide rule), a
    # route reflected from a client (the wide rule): each gets the communities of the rules
    # holding its prefix, on top of its own.
    block = exported(policy, route("192.168.1.0/26", LOCAL), IBGP, key(IBGP))
    assert block is not None
    assert set(block.communities) == {100 << 16 | 6532, 5663 << 16 | 12, 1 << 16 | 1}
    assert block.large_communities == ((100, 555, 107),)
    borrowed = exported(policy, route("192.168.5.7/32", KERNEL), EBGP_OUT, key(EBGP_OUT))
    assert borrowed is not None
    assert set(borrowed.communities) == {100 << 16 | 6532, 5663 << 16 | 12}
    client = peer("client", 6, AS, rr_client=True)
    reflected = exported(
        policy,
        route("192.168.9.0/26", client, next_hop=client.address, communities=(100 << 16 | 6532,)),
        IBGP,
        key(IBGP),
    )
    assert reflected is not None
    assert sorted(reflected.communities) == sorted({100 << 16 | 6532, 5663 << 16 | 12})
    six = exported(policy, route("fd10::/122", LOCAL), IBGP, key(IBGP))
    assert six is not None and six.large_communities == ((100, 555, 107),) and not six.communities


def test_no_rule_no_change() -> None:
    policy = Policy(CALICO, communities=RULES)
    out = exported(
        policy, route("10.9.0.0/16", IBGP, next_hop=IBGP.address), EBGP_OUT, key(EBGP_OUT)
    )
    assert out is None  # outside every pool: not exported at all
    rules = CommunityRules(RULES)
    assert rules.variant_of(V4)(p("10.9.0.0/16")[1]) == 0
    assert rules.variant_of(V4)(p("192.168.1.0/26")[1]) == 0b011
    assert rules.variant_of(V6)(p("fd10::/122")[1]) == 0b100
    assert [r.cidr for r in rules.matching("192.168.1.0/26")] == ["192.168.0.0/16",
                                                                   "192.168.1.0/24"]


def test_one_group_encodes_each_variant_once() -> None:
    """Routes with one attribute set but different matching rules go out in different
    buckets; routes with the same rules share one."""
    policy = Policy(CALICO, communities=RULES)
    rib = Rib(AS, RID, imports=policy)
    group = AdjRibOut(RID, policy).join(IBGP, key(IBGP), rib.iter_best)
    # Outside the local block (whose more specifics stay in): both v4 rules, then one.
    routes = [route(x, KERNEL) for x in ("192.168.1.70/32", "192.168.1.71/32", "192.168.9.9/32")]
    group.stage_all([BestChange(r.family, r.prefix, None, r, None, False) for r in routes])
    updates = [
        u for m in split_messages(group.flush().data)[0]
        if isinstance(u := decode_message(m, OPTS), Update)
    ]
    assert sorted(len(u.nlri) for u in updates) == [1, 2]


# --- ignored interfaces -------------------------------------------------------------------------


def test_ignored_interfaces_are_not_exported() -> None:
    calico = ExportPolicy((BLOCK,), (POOL,), ignored_interfaces=("eth9", "veth*"))
    assert calico.decide("192.168.9.0/26", ifname="veth0").rule is ExportRule.IGNORED_INTERFACE
    assert calico.decide("192.168.9.0/26", ifname="eth0").allowed
    assert not calico.iface_allows("eth9", internal_peer=False)
    policy = Policy(calico, lambda r: "veth7" if r.source is KERNEL else None)
    assert exported(policy, route("192.168.9.0/26", KERNEL), EBGP_OUT, key(EBGP_OUT)) is None
    other = Policy(calico, lambda r: "cali1" if r.source is KERNEL else None)
    assert exported(other, route("192.168.9.0/26", KERNEL), EBGP_OUT, key(EBGP_OUT)) is not None


@pytest.mark.parametrize(
    "changed",
    [
        ExportPolicy((BLOCK,), (POOL,), ignored_interfaces=()),
        ExportPolicy((BLOCK,), (POOL,), ignored_interfaces=("ign*", "x")),
        ExportPolicy((), (POOL,), ignored_interfaces=("ign*",)),
        ExportPolicy((BLOCK,), (POOL, POOL6), ignored_interfaces=("ign*",)),
        ExportPolicy((BLOCK,), (POOL,), ("tunl0",), ignored_interfaces=("ign*",)),
    ],
)
def test_a_change_of_calicos_rules_reaches_the_running_groups(changed: ExportPolicy) -> None:
    """Each of ExportPolicy's inputs is part of a group's export rules, so a new plan that
    changes it re-decides the group's routes: with ignoredInterfaces dropped, the route
    through ign0 goes out on the session already up (CI caught the group keeping the old
    closure)."""
    ifname = lambda r: "ign0" if r.source is KERNEL else None  # noqa: E731
    old = Policy(ExportPolicy((BLOCK,), (POOL,), ignored_interfaces=("ign*",)), ifname)
    new = Policy(changed, ifname)
    k = key(EBGP_OUT)
    assert old.export_rules(k) != new.export_rules(k)
    assert Policy(ExportPolicy((BLOCK,), (POOL,), ignored_interfaces=("ign*",)), ifname
                  ).export_rules(k) == old.export_rules(k)
    rib = Rib(AS, RID, imports=old)
    out = AdjRibOut(RID, old)
    group = out.join(EBGP_OUT, k, rib.iter_best)
    r = route("192.168.9.0/26", KERNEL)
    group.stage(BestChange(r.family, r.prefix, None, r, None, False))
    assert not group.flush().data
    assert out.set_policies(new, lambda f: [r] if f is r.family else [],
                            lambda g: old.export_rules(g) != new.export_rules(g)) == [group]
    if changed.ignored_interfaces == ():
        assert group.flush().data  # now advertised
