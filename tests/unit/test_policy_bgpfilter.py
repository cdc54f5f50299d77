"""The BGPFilter engine (bgpd/policy/bgpfilter.py) and its place in the policy: the compiled
prefix checks give the rule-by-rule answer, each condition and operation means what BIRD
makes of confd's rendering, the export chain runs in confd's order (protocol, priority,
filters, Calico's rules), and the RIB re-decides a peer's routes when its import rules change.
Conformance with the golden files and BIRD 1.6 is tests/unit/test_conformance_filters.py and
tests/interop/test_bird16_filters.py."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.plan.diff import same_session
from bgpd.plan.peering import PeerSpec
from bgpd.policy.bgpfilter import EXPORT, FilterChain, notes
from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec, tunnel_ifaces
from bgpd.policy.policy import Direction, PeerContext, Policy, RoutePriority, Verdict
from bgpd.rib.adj_out import AdjRibOut, GroupKey, UpdateGroup
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, LOCAL, Identity, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions
from calico.model import BGPFilter, FilterOperation, FilterRule

V4 = Family.IPV4_UNICAST
V6 = Family.IPV6_UNICAST
AS = 64512
RID = 0x0A000001
ME = Identity(AS, RID, RID)
IBGP = PeerInfo("ibgp", bytes([10, 0, 0, 2]), AS, 2, AS)
EBGP = PeerInfo("ebgp", bytes([10, 0, 0, 3]), 65001, 3, AS)
NH = bytes([10, 0, 0, 9])


def n(prefix: str) -> bytes:
    return prefix_to_nlri(prefix)[1]


def key(peer: PeerInfo, policies: tuple[str, ...] = ("f",)) -> GroupKey:
    return GroupKey.for_peer(
        peer, options=CodecOptions(), families=(V4,), local_ipv4=bytes([10, 0, 0, 1]),
        policies=policies,
    )


def export(policy: Policy, route: Route, to: PeerInfo) -> Route | None:
    verdict, out = policy.evaluate(route, Direction.EXPORT, PeerContext(to, ME, key(to)))
    return out if verdict is Verdict.ACCEPT else None


def imported(policy: Policy, route: Route) -> Route | None:
    verdict, out = policy.evaluate(route, Direction.IMPORT, PeerContext(route.source, ME))  # type: ignore[arg-type]
    return out if verdict is Verdict.ACCEPT else None


# --- compiled checks against the rule-by-rule walk ------------------------------------------

_NETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.2.0.0/16",
         "192.168.0.0/16", "0.0.0.0/0", "10.1.2.3/32"]


@st.composite
def rules(draw: st.DrawFn) -> FilterRule:
    cidr = draw(st.sampled_from([None, *_NETS]))
    op = draw(st.sampled_from(["Equal", "NotEqual", "In", "NotIn"])) if cidr else None
    plen = None
    if cidr is not None and draw(st.booleans()):
        plen = (
            draw(st.sampled_from([None, 8, 16, 20, 24])),
            draw(st.sampled_from([None, 24, 28, 32])),
        )
        low = max(ipaddress.ip_network(cidr).prefixlen, plen[0] or 0)
        if low > (32 if plen[1] is None else plen[1]):
            plen = None
    return FilterRule(
        action=draw(st.sampled_from(["Accept", "Reject"])),
        cidr=cidr,
        match_operator=op,
        prefix_length=plen,
        source=draw(st.sampled_from([None, "RemotePeers"])),
        interface=draw(st.sampled_from([None, "eth*", "*", "vxlan.calico"])),
        peer_type=draw(st.sampled_from([None, "eBGP", "iBGP"])),
        community=draw(st.sampled_from([None, "65000:1", "65000:1:2"])),
        as_path_prefix=draw(st.sampled_from([(), (65000,), (65000, 65001)])),
        priority=draw(st.sampled_from([None, 100, 1024])),
    )


_PREFIXES = st.builds(
    lambda net, extra, k: str(list(ipaddress.ip_network(net).subnets(
        new_prefix=min(32, ipaddress.ip_network(net).prefixlen + extra)))[k % (1 << extra)]),
    st.sampled_from(_NETS[:-1]), st.integers(0, 6), st.integers(0, 63),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(rules(), max_size=8),
    st.lists(rules(), max_size=4),
    st.booleans(),
    st.lists(
        st.tuples(
            _PREFIXES,
            st.booleans(),
            st.sampled_from([None, "", "eth0", "vxlan.calico"]),
            st.sampled_from([(), (65000 << 16 | 1,)]),
            st.sampled_from([(), (65000, 65001, 7)]),
            st.sampled_from([None, 100, 2147483547]),
        ),
        min_size=1,
        max_size=20,
    ),
)
def test_the_compiled_checks_answer_as_the_rules_do(
    first: list[FilterRule], second: list[FilterRule], ibgp: bool,
    routes: list[tuple[str, bool, str | None, tuple[int, ...], tuple[int, ...], int | None]],
) -> None:
    filters = [BGPFilter("a", export_v4=tuple(first)), BGPFilter("b", export_v4=tuple(second))]
    chain = FilterChain(filters, EXPORT, V4, ibgp)
    for prefix, from_bgp, ifname, comms, path, lp in routes:
        view = PathAttributes(
            communities=comms, as_path=((AS_SEQUENCE, path),) if path else (), local_pref=lp,
            large_communities=((65000, 1, 2),) if comms else (),
        )
        want = chain.reference(n(prefix), from_bgp=from_bgp, ifname=ifname, view=view)
        got = chain.decision(
            from_bgp,
            chain.iface_truths(ifname) if chain.needs_iface else (),
            chain.attr_truths(view) if chain.needs_attrs else (),
        )(n(prefix))
        assert got == want, (prefix, from_bgp, ifname, view)
        # Asked again, from the memo.
        assert chain.decision(
            from_bgp,
            chain.iface_truths(ifname) if chain.needs_iface else (),
            chain.attr_truths(view) if chain.needs_attrs else (),
        )(n(prefix)) == want


# --- what each condition means ----------------------------------------------------------------


def one(rule: FilterRule, prefix: str, **route: object) -> int:
    ibgp = bool(route.get("ibgp", True))
    chain = FilterChain([BGPFilter("f", export_v4=(rule,))], EXPORT, V4, ibgp)
    view = route.get("view", PathAttributes())
    assert isinstance(view, PathAttributes)
    return chain.reference(
        n(prefix), from_bgp=bool(route.get("bgp", True)), ifname=route.get("ifname"),  # type: ignore[arg-type]
        view=view,
    )


def test_match_operators_and_prefix_lengths() -> None:
    def r(op: str, plen: tuple[int | None, int | None] | None = None) -> FilterRule:
        return FilterRule("Accept", "10.1.0.0/16", op, prefix_length=plen)

    assert one(r("In"), "10.1.0.0/16") == 0 and one(r("In"), "10.1.9.0/24") == 0
    assert one(r("In"), "10.0.0.0/8") == -1 and one(r("In"), "10.2.0.0/16") == -1
    assert one(r("NotIn"), "10.0.0.0/8") == 0 and one(r("NotIn"), "10.1.9.0/24") == -1
    assert one(r("Equal"), "10.1.0.0/16") == 0 and one(r("Equal"), "10.1.0.0/17") == -1
    assert one(r("NotEqual"), "10.1.0.0/17") == 0 and one(r("NotEqual"), "10.1.0.0/16") == -1
    ranged = r("In", (20, 24))
    lengths = ("10.1.0.0/16", "10.1.0.0/20", "10.1.0.0/24", "10.1.0.0/25")
    assert [one(ranged, p) for p in lengths] == [-1, 0, 0, -1]
    assert one(r("NotIn", (20, 24)), "10.1.0.0/25") == 0
    # BIRD cannot compare a prefix with a prefix set: the rule fails, and so the route.
    chain = FilterChain([BGPFilter("f", export_v4=(r("Equal", (20, 24)),))], EXPORT, V4, True)
    assert chain.rules[0].error and chain.reference(
        n("192.0.2.0/24"), from_bgp=True, ifname=None, view=PathAttributes()) == 0


def test_source_interface_and_peer_type() -> None:
    assert one(FilterRule("Accept", source="RemotePeers"), "10.0.0.0/8", bgp=False) == -1
    assert one(FilterRule("Accept", source="RemotePeers"), "10.0.0.0/8", bgp=True) == 0
    # A route without an interface has BIRD's ifname "": only "*" matches it.
    assert one(FilterRule("Accept", interface="*"), "10.0.0.0/8", ifname=None) == 0
    assert one(FilterRule("Accept", interface="eth*"), "10.0.0.0/8", ifname=None) == -1
    assert one(FilterRule("Accept", interface="eth*"), "10.0.0.0/8", ifname="eth1") == 0
    assert one(FilterRule("Accept", interface="*.calico"), "10.0.0.0/8", ifname="vxlan.calico") == 0
    assert one(FilterRule("Accept", peer_type="eBGP"), "10.0.0.0/8", ibgp=True) == -1
    assert one(FilterRule("Accept", peer_type="iBGP"), "10.0.0.0/8", ibgp=True) == 0


def test_communities_as_path_and_priority() -> None:
    with_c = PathAttributes(communities=(65000 << 16 | 42,), large_communities=((1, 2, 3),))
    assert one(FilterRule("Accept", community="65000:42"), "10.0.0.0/8", view=with_c) == 0
    assert one(FilterRule("Accept", community="65000:43"), "10.0.0.0/8", view=with_c) == -1
    assert one(FilterRule("Accept", community="1:2:3"), "10.0.0.0/8", view=with_c) == 0
    path = PathAttributes(as_path=((AS_SEQUENCE, (65000, 65001, 7)),))
    assert one(FilterRule("Accept", as_path_prefix=(65000, 65001)), "10.0.0.0/8", view=path) == 0
    assert one(FilterRule("Accept", as_path_prefix=(65001,)), "10.0.0.0/8", view=path) == -1
    prio = PathAttributes(local_pref=2147483647 - 100)
    assert one(FilterRule("Accept", priority=100), "10.0.0.0/8", view=prio) == 0
    # No LOCAL_PREF reads as BIRD's default 100: priority 2147483547.
    assert one(FilterRule("Accept", priority=2147483547), "10.0.0.0/8", view=PathAttributes()) == 0


def test_the_first_deciding_rule_of_all_filters_in_order_wins() -> None:
    a = BGPFilter("a", export_v4=(FilterRule("Reject", "10.1.0.0/16", "In"),))
    b = BGPFilter("b", export_v4=(FilterRule("Accept", "10.0.0.0/8", "In"), FilterRule("Reject")))
    chain = FilterChain([a, b], EXPORT, V4, True)
    names = [chain.rules[chain.reference(n(p), from_bgp=True, ifname=None,
                                         view=PathAttributes())].name
             for p in ("10.1.2.0/24", "10.2.0.0/16", "192.0.2.0/24")]
    assert names == ["a[0]", "b[0]", "b[1]"]


def test_notes_say_what_bird_does_that_surprises() -> None:
    f = BGPFilter("f", import_v4=(
        FilterRule("Accept", "10.0.0.0/8", "Equal", prefix_length=(16, 24)),
        FilterRule("Reject", interface="eth*"),
    ))
    text = "\n".join(notes(f))
    assert "importV4[0]: matchOperator Equal with prefixLength is an error in BIRD" in text
    assert "importV4[1]: interface 'eth*'" in text


# --- the export chain -------------------------------------------------------------------------

CALICO = ExportPolicy(
    (AffineBlock("192.168.1.0/26", "ipv4", "confirmed"),),
    (PoolSpec("p", "192.168.0.0/16", "ipv4", "Never", "Never", False, False, False),),
)


def test_local_routes_carry_their_priority_as_local_pref() -> None:
    """confd's export prelude: bgp_local_pref = 2147483647 - krt_metric, krt_metric the
    normal priority unless the (kernel) route has one; never towards eBGP."""
    block = Route(n("192.168.1.0/26"), V4, PathAttributes(), LOCAL)
    default = Policy(CALICO)
    got = export(default, block, IBGP)
    assert got is not None and got.attrs.local_pref == 2147483647 - 1024
    lower = Policy(CALICO, priority=RoutePriority(v4=5000))
    got = export(lower, block, IBGP)
    assert got is not None and got.attrs.local_pref == 2147483647 - 5000
    got = export(default, block, EBGP)
    assert got is not None and got.attrs.local_pref is None
    kernel = Route(n("192.168.7.7/32"), V4, PathAttributes(origin=2), KERNEL)
    metric = Policy(CALICO, metric_of=lambda r: 300)
    got = export(metric, kernel, IBGP)
    assert got is not None and got.attrs.local_pref == 2147483647 - 300


def test_raised_priority_lets_a_route_out_of_its_block() -> None:
    """Calico's `net ~ block && krt_metric < 1024` (live migration): a kernel route with a
    low metric, or a BGP route whose LOCAL_PREF says so, leaves the block's aggregate."""
    inside = n("192.168.1.5/32")
    kernel = Route(inside, V4, PathAttributes(origin=2), KERNEL)
    assert export(Policy(CALICO), kernel, EBGP) is None
    assert export(Policy(CALICO, metric_of=lambda r: 512), kernel, EBGP) is not None
    assert export(Policy(CALICO, metric_of=lambda r: 1024), kernel, EBGP) is None
    raised = Route(inside, V4, PathAttributes(next_hop=NH, local_pref=2147483647 - 512), IBGP)
    plain = Route(inside, V4, PathAttributes(next_hop=NH, local_pref=100), IBGP)
    assert export(Policy(CALICO), raised, EBGP) is not None
    assert export(Policy(CALICO), plain, EBGP) is None


def test_tunl0_routes_stay_from_internal_peers_unless_bird_programs_ipip() -> None:
    kernel = Route(n("192.168.9.9/32"), V4, PathAttributes(origin=2), KERNEL)
    felix = Policy(CALICO, lambda r: "tunl0")
    assert export(felix, kernel, IBGP) is None and export(felix, kernel, EBGP) is not None
    own = ExportPolicy(CALICO.blocks, CALICO.pools, tunnel_ifaces(False))
    assert export(Policy(own, lambda r: "tunl0"), kernel, IBGP) is not None


def test_filter_operations_follow_the_protocols_attributes() -> None:
    """BIRD prepends our AS before the export filter runs: a prepend operation comes in
    front of it; conditions on the path see it too."""
    ops = (FilterOperation(prepend_as_path=(65000, 65010)), FilterOperation(add_community="1:2"))
    f = BGPFilter("f", export_v4=(
        FilterRule("Accept", as_path_prefix=(AS,), operations=ops), FilterRule("Reject"),
    ))
    policy = Policy(CALICO, filters={"f": f})
    route = Route(
        n("10.9.0.0/16"), V4, PathAttributes(next_hop=NH, as_path=((AS_SEQUENCE, (65001,)),)),
        EBGP,
    )
    got = export(policy, route, PeerInfo("other", bytes([10, 0, 0, 4]), 65002, 4, AS))
    assert got is not None
    assert got.attrs.as_path == ((AS_SEQUENCE, (65000, 65010, AS, 65001)),)
    assert got.attrs.communities == (1 << 16 | 2,)
    # Towards iBGP the path has no AS of ours: the rule does not match; the last rejects.
    assert export(policy, route, IBGP) is None


def test_a_filter_accept_overrides_calicos_rules() -> None:
    """accept in a filter function ends the export filter before calico_export_to_bgp_peers:
    a route outside every pool goes out."""
    outside = Route(n("10.9.0.0/16"), V4, PathAttributes(next_hop=NH), EBGP)
    assert export(Policy(CALICO), outside, IBGP) is None
    f = BGPFilter("f", export_v4=(FilterRule("Accept", "10.0.0.0/8", "In"),))
    assert export(Policy(CALICO, filters={"f": f}), outside, IBGP) is not None


# --- import ----------------------------------------------------------------------------------


def test_import_rules_decide_and_operate_per_prefix() -> None:
    f = BGPFilter("f", import_v4=(
        FilterRule("Reject", "10.99.0.0/16", "In"),
        FilterRule("Accept", "10.1.0.0/16", "In",
                   operations=(FilterOperation(set_priority=100),)),
    ))
    policy = Policy(filters={"f": f}, peer_filters={"ebgp": ("f",)})
    attrs = PathAttributes(next_hop=NH, as_path=((AS_SEQUENCE, (65001,)),))
    assert imported(policy, Route(n("10.99.1.0/24"), V4, attrs, EBGP)) is None
    got = imported(policy, Route(n("10.1.1.0/24"), V4, attrs, EBGP))
    assert got is not None and got.attrs.local_pref == 2147483647 - 100
    got = imported(policy, Route(n("10.2.1.0/24"), V4, attrs, EBGP))
    assert got is not None and got.attrs.local_pref is None
    # Another peer names no filter.
    other = PeerInfo("x", bytes([10, 0, 0, 5]), 65001, 5, AS)
    assert imported(policy, Route(n("10.99.1.0/24"), V4, attrs, other)) is not None


def test_reimport_moves_routes_between_accepted_and_rejected_and_keeps_counts() -> None:
    tag = (FilterOperation(add_community="65000:1"),)
    first = BGPFilter("f", import_v4=(FilterRule("Reject", "10.1.0.0/16", "In"),
                                      FilterRule("Accept", "10.2.0.0/16", "In", operations=tag)))
    rib = Rib(AS, RID, imports=Policy(filters={"f": first}, peer_filters={"ebgp": ("f",)}))
    rib.add_peer(EBGP)
    attrs = PathAttributes(next_hop=NH, as_path=((AS_SEQUENCE, (65001,)),))
    prefixes = [n(p) for p in ("10.1.1.0/24", "10.2.1.0/24", "10.3.1.0/24")]
    rib.apply_update("ebgp", Update(attributes=attrs, nlri=tuple(prefixes)), CodecOptions())
    assert {r.prefix for r in rib.iter_best(V4)} == set(prefixes[1:])
    assert rib.best(V4, prefixes[1]).attrs.communities == (65000 << 16 | 1,)  # type: ignore[union-attr]
    # Nothing changed: nothing to do.
    assert rib.reimport("ebgp") == []
    second = BGPFilter("f", import_v4=(FilterRule("Reject", "10.3.0.0/16", "In"),
                                       FilterRule("Accept", "10.1.0.0/16", "In", operations=tag)))
    rib.imports = Policy(filters={"f": second}, peer_filters={"ebgp": ("f",)})
    changes = rib.reimport("ebgp")
    assert {(c.prefix, c.new is not None) for c in changes} == {
        (prefixes[0], True), (prefixes[1], True), (prefixes[2], False)}
    assert rib.best(V4, prefixes[0]).attrs.communities == (65000 << 16 | 1,)  # type: ignore[union-attr]
    assert rib.best(V4, prefixes[1]).attrs.communities == ()  # type: ignore[union-attr]
    assert rib.counts("ebgp").accepted == 2 and rib.counts("ebgp").received == 3
    # Graceful restart keeps the policy's attributes on the stale copy; the sweep and the
    # peer's removal give every attribute reference back.
    rib.mark_stale("ebgp")
    assert rib.best(V4, prefixes[0]).stale  # type: ignore[union-attr]
    assert rib.best(V4, prefixes[0]).attrs.communities == (65000 << 16 | 1,)  # type: ignore[union-attr]
    rib.sweep_stale("ebgp")
    assert list(rib.iter_best(V4)) == []
    rib.attr_cache.collect()
    assert len(rib.attr_cache) == 0


# --- update groups ---------------------------------------------------------------------------


def test_one_flush_of_two_families_gives_each_its_own_next_hop() -> None:
    """The export memo is per family: a local route's attributes are shared by both."""
    k = GroupKey.for_peer(IBGP, options=CodecOptions(), families=(V4, V6),
                          local_ipv4=bytes([10, 0, 0, 1]),
                          local_ipv6=ipaddress.ip_address("2001:db8::1").packed)
    g = UpdateGroup(k, policy=Policy().for_group(k, RID))
    g.add_member(IBGP)
    attrs = PathAttributes()
    four, six = n("10.1.0.0/24"), n("2001:db8:1::/64")
    g.stage_all([BestChange(V4, four, None, Route(four, V4, attrs, LOCAL), None, False),
                 BestChange(V6, six, None, Route(six, V6, attrs, LOCAL), None, False)])
    g.flush()
    assert g.advertised(V4)[four].next_hop == bytes([10, 0, 0, 1])
    assert g.advertised(V6)[six].next_hop == ipaddress.ip_address("2001:db8::1").packed


def test_new_policies_restage_only_the_groups_they_change() -> None:
    f = BGPFilter("f", export_v4=(FilterRule("Reject", "10.1.0.0/24", "Equal"),))
    old = Policy(CALICO, filters={"f": f})
    rib = Rib(AS, RID, imports=old)
    out = AdjRibOut(RID, old)
    plain = out.join(IBGP, key(IBGP, ()), rib.iter_best)
    filtered = out.join(PeerInfo("x", bytes(4), AS, 9, AS), key(IBGP), rib.iter_best)
    new = Policy(CALICO, filters={"f": BGPFilter("f")})
    restaged = out.set_policies(new, rib.iter_best,
                                lambda k: old.export_rules(k) != new.export_rules(k))
    assert restaged == [filtered] and plain.policy is not filtered.policy


def test_regroup_withdraws_what_the_new_group_does_not_send() -> None:
    rib = Rib(AS, RID, imports=Policy())
    for p in ("10.1.0.0/24", "10.2.0.0/24"):
        rib.originate(V4, n(p), PathAttributes())
    f = BGPFilter("f", export_v4=(FilterRule("Reject", "10.1.0.0/24", "Equal"),))
    policy = Policy(filters={"f": f})
    out = AdjRibOut(RID, policy)
    group = out.join(IBGP, key(IBGP, ()), rib.iter_best)
    for _ in group.catch_up(IBGP.name):
        pass
    new, chunks = out.regroup(IBGP, key(IBGP), rib.iter_best)
    assert new is not group and new.key.policies == ("f",)
    first, count = next(chunks)
    assert count == 1 and n("10.1.0.0/24") in first
    rest = b"".join(c for c, _ in chunks)
    assert n("10.2.0.0/24")[1:] in rest
    assert out.group_of(IBGP.name) is new and IBGP.name in new.live


def test_same_session_ignores_filters() -> None:
    spec = PeerSpec("Global_10_0_0_2", "10.0.0.2", 179, AS, AS, "global", "ipv4", filters=("a",))
    assert same_session(spec, replace(spec, filters=("b", "a")))
    assert not same_session(spec, replace(spec, peer_as=65001))

