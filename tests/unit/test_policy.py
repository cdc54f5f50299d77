"""The policy room: `Policy.evaluate` is what the RIB and the update groups do, the RIB's
import hook decides acceptance, and the update-group key carries the outbound policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec
from bgpd.policy.imports import ImportRules
from bgpd.policy.policy import Direction, PeerContext, Policy, Verdict
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, LOCAL, Identity, PeerInfo, PrefixCheck, Route
from bgpd.rib.table import BestChange
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

V4 = Family.IPV4_UNICAST
AS = 64512
RID = 0x0A000001
OPTS = CodecOptions()
ME = Identity(AS, RID, RID)
CALICO = ExportPolicy(
    (AffineBlock("192.168.1.0/26", "ipv4", "confirmed"),),
    (PoolSpec("p", "192.168.0.0/16", "ipv4", "Never", "Never", False, False, False),),
)


def ip(text: str) -> bytes:
    return address_to_bytes(text)


def p4(text: str) -> bytes:
    return prefix_to_nlri(text)[1]


CLIENT = PeerInfo("client", ip("10.0.0.2"), AS, 0x0A000002, AS, rr_client=True)
NONCLIENT = PeerInfo("nonclient", ip("10.0.0.3"), AS, 0x0A000003, AS)
EBGP = PeerInfo("ebgp", ip("192.0.2.1"), 65001, 0xC0000201, AS)
PEERS = (CLIENT, NONCLIENT, EBGP)


def key(peer: PeerInfo) -> GroupKey:
    return GroupKey.for_peer(peer, options=OPTS, families=(V4,), local_ipv4=ip("10.0.0.1"))


PREFIXES = ("192.168.1.0/26", "192.168.1.5/32", "192.168.7.9/32", "10.9.0.0/16")
ATTRS = (
    PathAttributes(next_hop=ip("10.0.0.9"), local_pref=100),
    PathAttributes(next_hop=ip("10.0.0.9"), as_path=((AS_SEQUENCE, (65001,)),)),
    PathAttributes(next_hop=ip("10.0.0.9"), communities=(0xFFFFFF01,)),  # NO_EXPORT
)
SOURCES = (LOCAL, KERNEL, *PEERS)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(PREFIXES),
    st.sampled_from(ATTRS),
    st.sampled_from(SOURCES),
    st.sampled_from(PEERS),
)
def test_evaluate_export_is_what_the_update_group_sends(
    prefix: str, attrs: PathAttributes, source: object, target: PeerInfo
) -> None:
    policy = Policy(CALICO)
    route = Route(p4(prefix), V4, attrs, source)  # type: ignore[arg-type]
    rib = Rib(AS, RID, imports=policy)
    out = AdjRibOut(RID, policy)
    group = out.join(target, key(target), rib.iter_best)
    group.stage(BestChange(V4, route.prefix, None, route, None, False))
    group.flush()
    sent = group.advertised(V4, target.name).get(route.prefix)
    verdict, exported = policy.evaluate(
        route, Direction.EXPORT, PeerContext(target, ME, key(target))
    )
    if verdict is Verdict.ACCEPT:
        assert sent == exported.attrs
    else:
        assert sent is None
        assert exported is route


def test_evaluate_import_rejects_loops_and_normalises_ebgp() -> None:
    policy = Policy()
    looped = Route(
        p4("10.1.0.0/16"), V4, PathAttributes(as_path=((AS_SEQUENCE, (65001, AS)),)), EBGP
    )
    assert policy.evaluate(looped, Direction.IMPORT, PeerContext(EBGP, ME))[0] is Verdict.REJECT
    plain = Route(p4("10.1.0.0/16"), V4, PathAttributes(local_pref=300, originator_id=7), EBGP)
    verdict, stored = policy.evaluate(plain, Direction.IMPORT, PeerContext(EBGP, ME))
    assert verdict is Verdict.ACCEPT
    assert stored.attrs.local_pref is None and stored.attrs.originator_id is None
    mine = Route(p4("10.1.0.0/16"), V4, PathAttributes(originator_id=RID), CLIENT)
    assert policy.evaluate(mine, Direction.IMPORT, PeerContext(CLIENT, ME))[0] is Verdict.REJECT


def test_export_needs_the_group_key_and_never_goes_back_to_the_source() -> None:
    route = Route(p4("192.168.7.9/32"), V4, ATTRS[0], CLIENT)
    with pytest.raises(ValueError, match="update group key"):
        Policy(CALICO).evaluate(route, Direction.EXPORT, PeerContext(NONCLIENT, ME))
    back = PeerContext(CLIENT, ME, key(CLIENT))
    assert Policy(CALICO).evaluate(route, Direction.EXPORT, back)[0] is Verdict.REJECT


class DenyPrefix(ImportRules):
    """An import policy with a prefix rule on top of the protocol's."""

    def __init__(self, denied: bytes) -> None:
        self.denied = denied

    def prefix_filter(
        self, peer: PeerInfo, family: Family, attrs: PathAttributes
    ) -> PrefixCheck | None:
        return lambda prefix: prefix != self.denied


def test_the_rib_import_hook_decides_acceptance_per_prefix() -> None:
    rib = Rib(AS, RID, imports=DenyPrefix(p4("10.99.1.0/24")))
    rib.add_peer(NONCLIENT)
    update = Update(
        attributes=PathAttributes(next_hop=ip("10.0.0.3")),
        nlri=(p4("10.99.1.0/24"), p4("10.1.0.0/16")),
    )
    changes = rib.apply_update("nonclient", update, OPTS)
    assert [c.prefix for c in changes] == [p4("10.1.0.0/16")]
    counts = rib.counts("nonclient")
    assert (counts.received, counts.accepted) == (2, 1)
    # Withdrawing the rejected one changes no best path.
    assert rib.apply_update("nonclient", Update(withdrawn=(p4("10.99.1.0/24"),)), OPTS) == []
    assert rib.counts("nonclient").received == 1


def test_peers_with_different_outbound_policies_never_share_a_group() -> None:
    class Named(Policy):
        def for_group(self, key: GroupKey, cluster_id: int):  # type: ignore[no-untyped-def]
            return super().for_group(GroupKey(**{**_fields(key), "policies": ()}), cluster_id)

    out = AdjRibOut(RID, Named(CALICO))
    rib = Rib(AS, RID, imports=Policy())
    a = out.join(CLIENT, key(CLIENT), rib.iter_best)
    other = PeerInfo("client2", ip("10.0.0.4"), AS, 4, AS, rr_client=True)
    b = out.join(other, GroupKey(**{**_fields(key(other)), "policies": ("filter-a",)}),
                 rib.iter_best)
    c = out.join(PeerInfo("client3", ip("10.0.0.5"), AS, 5, AS, rr_client=True),
                 key(CLIENT), rib.iter_best)
    assert a is c and a is not b


def test_an_undefined_filter_is_left_out_as_confd_does() -> None:
    """confd calls only the filter functions that exist (bgpfilter/filter_deletion step 2):
    a group naming a missing filter exports what the group without it does."""
    k = GroupKey(**{**_fields(key(CLIENT)), "policies": ("nope",)})
    route = Route(p4("192.168.7.9/32"), V4, ATTRS[0], NONCLIENT)
    named = Policy(CALICO).evaluate(route, Direction.EXPORT, PeerContext(CLIENT, ME, k))
    plain = Policy(CALICO).evaluate(route, Direction.EXPORT, PeerContext(CLIENT, ME, key(CLIENT)))
    assert named == plain and named[0] is Verdict.ACCEPT


def _fields(k: GroupKey) -> dict[str, object]:
    return {name: getattr(k, name) for name in GroupKey.__dataclass_fields__}
