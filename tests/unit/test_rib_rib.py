"""The Rib facade: Adj-RIB-In handling, import checks, local routes, graceful restart."""

from __future__ import annotations

import pytest

from bgpd.policy.imports import ImportRules
from bgpd.rib.decision import BestPathReason
from bgpd.rib.rib import PeerCounts, Rib
from bgpd.rib.route import KERNEL, LOCAL, PeerInfo
from bgpd.wire import decode_message, encode_update
from bgpd.wire.attributes import AS_SEQUENCE, AS_SET, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import MpReach, MpUnreach, Update
from bgpd.wire.options import CodecOptions

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
AS = 64512
RID = 0x0A000001
OPTS = CodecOptions()
ADD_PATH = CodecOptions(add_path_receive=frozenset({V4}))


def p4(text: str) -> bytes:
    return prefix_to_nlri(text)[1]


def ip(text: str) -> bytes:
    return address_to_bytes(text)


def peer(name: str, addr: str, asn: int = AS, rid: int = 2, rr_client: bool = False) -> PeerInfo:
    return PeerInfo(name, ip(addr), asn, rid, AS, rr_client)


IBGP = peer("ibgp", "10.0.0.2", rid=0x0A000002)
IBGP2 = peer("ibgp2", "10.0.0.3", rid=0x0A000003)
EBGP = peer("ebgp", "192.0.2.1", asn=65001, rid=0xC0000201)


def announce(*prefixes: str, **kw: object) -> Update:
    kw.setdefault("next_hop", ip("10.0.0.2"))
    return Update(attributes=PathAttributes(**kw), nlri=tuple(p4(p) for p in prefixes))  # type: ignore[arg-type]


def withdraw(*prefixes: str) -> Update:
    return Update(withdrawn=tuple(p4(p) for p in prefixes))


def make_rib(*peers: PeerInfo, cluster_id: int | None = None) -> Rib:
    rib = Rib(AS, RID, cluster_id, imports=ImportRules())
    for p in peers:
        rib.add_peer(p)
    return rib


def test_announce_then_withdraw_ipv4() -> None:
    rib = make_rib(IBGP)
    changes = rib.apply_update("ibgp", announce("10.1.0.0/16", "10.2.0.0/16"), OPTS)
    assert [c.prefix for c in changes] == [p4("10.1.0.0/16"), p4("10.2.0.0/16")]
    assert all(c.old is None and c.reason is BestPathReason.ONLY_PATH for c in changes)
    best = rib.best(V4, p4("10.1.0.0/16"))
    assert best is not None and best.source is IBGP and best.attrs.next_hop == ip("10.0.0.2")
    assert rib.counts("ibgp") == PeerCounts(2, 2)
    assert rib.loc_rib_size() == 2
    # Both routes share one interned attribute object.
    assert changes[0].new is not None and changes[1].new is not None
    assert changes[0].new.attrs is changes[1].new.attrs

    changes = rib.apply_update("ibgp", withdraw("10.1.0.0/16", "10.9.0.0/16"), OPTS)
    assert len(changes) == 1 and changes[0].new is None
    assert rib.counts("ibgp") == PeerCounts(1, 1)
    assert rib.best(V4, p4("10.1.0.0/16")) is None


def test_implicit_withdraw_replaces_and_repeats_are_silent() -> None:
    rib = make_rib(IBGP)
    rib.apply_update("ibgp", announce("10.1.0.0/16", med=5), OPTS)
    assert rib.apply_update("ibgp", announce("10.1.0.0/16", med=5), OPTS) == []
    changes = rib.apply_update("ibgp", announce("10.1.0.0/16", med=7), OPTS)
    assert len(changes) == 1
    ch = changes[0]
    assert ch.old is not None and ch.new is not None
    assert (ch.old.attrs.med, ch.new.attrs.med) == (5, 7)
    assert rib.counts("ibgp") == PeerCounts(1, 1)
    assert len(rib.attr_cache) == 1  # the MED 5 set went with its last route


def test_ipv6_next_hop_comes_from_mp_reach() -> None:
    rib = make_rib(IBGP)
    nh = ip("fd00::2") + ip("fe80::2")
    prefix = prefix_to_nlri("fd00:10::/64")[1]
    update = Update(
        attributes=PathAttributes(as_path=()),
        mp_reach=MpReach(V6, nh, (prefix,)),
    )
    (ch,) = rib.apply_update("ibgp", update, OPTS)
    assert ch.family is V6 and ch.new is not None and ch.new.attrs.next_hop == nh
    assert rib.multipath(V6, prefix) == (nh,)
    (ch,) = rib.apply_update("ibgp", Update(mp_unreach=MpUnreach(V6, (prefix,))), OPTS)
    assert ch.new is None and rib.loc_rib_size(V6) == 0


def test_decoded_bytes_round_trip_into_the_rib() -> None:
    rib = make_rib(EBGP)
    msg = encode_update(
        announce("198.51.100.0/24", as_path=((AS_SEQUENCE, (65001,)),), next_hop=ip("192.0.2.1"))
    )
    update = decode_message(msg, OPTS)
    assert isinstance(update, Update)
    (ch,) = rib.apply_update("ebgp", update, OPTS)
    assert ch.new is not None and ch.new.source is EBGP


def test_add_path_keys_by_prefix_and_path_id() -> None:
    rib = make_rib(IBGP)
    prefix = p4("10.1.0.0/16")
    item1 = (1).to_bytes(4, "big") + prefix
    item2 = (2).to_bytes(4, "big") + prefix
    rib.apply_update(
        "ibgp", Update(attributes=PathAttributes(next_hop=ip("10.0.0.7")), nlri=(item2,)), ADD_PATH
    )
    rib.apply_update(
        "ibgp", Update(attributes=PathAttributes(next_hop=ip("10.0.0.8")), nlri=(item1,)), ADD_PATH
    )
    paths = rib.paths(V4, prefix)
    assert [p.path_id for p in paths] == [1, 2]
    assert rib.counts("ibgp") == PeerCounts(2, 2)
    assert rib.loc_rib_size() == 1
    (ch,) = rib.apply_update("ibgp", Update(withdrawn=(item1,)), ADD_PATH)
    assert ch.new is not None and ch.new.path_id == 2


def test_ebgp_as_path_loop_is_received_not_accepted() -> None:
    rib = make_rib(EBGP)
    looped = announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001,)), (AS_SET, (7, AS))))
    assert rib.apply_update("ebgp", looped, OPTS) == []
    assert rib.counts("ebgp") == PeerCounts(1, 0)
    assert rib.best(V4, p4("10.1.0.0/16")) is None
    # A clean announcement replaces it...
    clean = announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001,)),))
    (ch,) = rib.apply_update("ebgp", clean, OPTS)
    assert rib.counts("ebgp") == PeerCounts(1, 1)
    # ...and a looped one after it is an implicit withdraw.
    (ch,) = rib.apply_update("ebgp", looped, OPTS)
    assert ch.new is None
    assert rib.counts("ebgp") == PeerCounts(1, 0)
    # Withdrawing the looped route changes nothing visible.
    assert rib.apply_update("ebgp", withdraw("10.1.0.0/16"), OPTS) == []
    assert rib.counts("ebgp") == PeerCounts(0, 0)
    assert len(rib.attr_cache) == 0


def test_ebgp_loop_check_uses_the_session_local_as_too() -> None:
    rib = Rib(AS, RID, imports=ImportRules())
    other_local = PeerInfo("tor", ip("192.0.2.9"), 65010, 9, 65099)
    rib.add_peer(other_local)
    update = announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65010, 65099)),))
    assert rib.apply_update("tor", update, OPTS) == []


def test_ibgp_routes_are_not_as_path_loop_checked() -> None:
    rib = make_rib(IBGP)
    update = announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001, AS)),))
    assert len(rib.apply_update("ibgp", update, OPTS)) == 1


@pytest.mark.parametrize(
    ("cluster_id", "attrs", "looped"),
    [
        (None, {"originator_id": RID}, True),
        (None, {"originator_id": 99}, False),
        (None, {"cluster_list": (5, RID)}, True),  # cluster ID defaults to the router ID
        (77, {"cluster_list": (77,)}, True),
        (77, {"cluster_list": (RID,)}, False),
    ],
)
def test_rfc4456_loop_checks(
    cluster_id: int | None, attrs: dict[str, object], looped: bool
) -> None:
    rib = make_rib(IBGP, cluster_id=cluster_id)
    changes = rib.apply_update("ibgp", announce("10.1.0.0/16", **attrs), OPTS)
    assert (changes == []) is looped
    assert rib.counts("ibgp") == PeerCounts(1, 0 if looped else 1)


def test_ebgp_local_pref_and_reflection_attributes_are_ignored() -> None:
    rib = make_rib(EBGP)
    update = announce(
        "10.1.0.0/16",
        as_path=((AS_SEQUENCE, (65001,)),),
        local_pref=1000,
        originator_id=RID,
        cluster_list=(RID,),
    )
    (ch,) = rib.apply_update("ebgp", update, OPTS)
    assert ch.new is not None
    a = ch.new.attrs
    assert (a.local_pref, a.originator_id, a.cluster_list) == (None, None, ())


def test_ebgp_beats_ibgp_and_ibgp_local_pref_counts() -> None:
    rib = make_rib(IBGP, EBGP)
    rib.apply_update("ibgp", announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001,)),)), OPTS)
    (ch,) = rib.apply_update(
        "ebgp", announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001,)),), local_pref=1), OPTS
    )
    assert ch.new is not None and ch.new.source is EBGP and ch.reason is BestPathReason.ASN
    (ch,) = rib.apply_update(
        "ibgp", announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (65001,)),), local_pref=101), OPTS
    )
    assert ch.new is not None and ch.new.source is IBGP and ch.reason is BestPathReason.LOCAL_PREF


def test_remove_peer_withdraws_everything_it_sent() -> None:
    rib = make_rib(IBGP, IBGP2)
    rib.apply_update("ibgp", announce("10.1.0.0/16", "10.2.0.0/16"), OPTS)
    rib.apply_update("ibgp2", announce("10.1.0.0/16", next_hop=ip("10.0.0.3")), OPTS)
    changes = rib.remove_peer("ibgp")
    by_prefix = {c.prefix: c for c in changes}
    assert by_prefix[p4("10.2.0.0/16")].new is None
    moved = by_prefix[p4("10.1.0.0/16")].new
    assert moved is not None and moved.source is IBGP2
    assert rib.loc_rib_size() == 1
    assert [p.name for p in rib.peers()] == ["ibgp2"]
    with pytest.raises(KeyError):
        rib.apply_update("ibgp", announce("10.3.0.0/16"), OPTS)


def test_local_routes_win_and_can_be_withdrawn() -> None:
    rib = make_rib(IBGP)
    prefix = p4("10.65.0.0/26")
    rib.apply_update("ibgp", announce("10.65.0.0/26", local_pref=500), OPTS)
    (ch,) = rib.originate(V4, prefix, PathAttributes())
    assert (
        ch.new is not None and ch.new.source is LOCAL and ch.reason is BestPathReason.LOCAL_ORIGIN
    )
    assert rib.originate(V4, prefix, PathAttributes()) == []  # same again: no change
    assert [r.prefix for r in rib.local_routes(V4)] == [prefix]
    # A kernel route for the same prefix is a candidate but ranks below our own: a change of
    # the path set only.
    assert [c.paths_only for c in rib.originate(V4, prefix, PathAttributes(), source=KERNEL)] == [
        True
    ]
    assert [r.source for r in rib.paths(V4, prefix)] == [LOCAL, KERNEL, IBGP]
    (ch,) = rib.withdraw_local(V4, prefix)
    assert ch.new is not None and ch.new.source is KERNEL
    (ch,) = rib.withdraw_local(V4, prefix, source=KERNEL)
    assert ch.new is not None and ch.new.source is IBGP
    assert rib.withdraw_local(V4, prefix) == []
    with pytest.raises(ValueError):
        rib.originate(V4, b"\x20\x0a", PathAttributes())


def test_reserved_peer_names() -> None:
    rib = Rib(AS, RID, imports=ImportRules())
    with pytest.raises(ValueError):
        rib.add_peer(peer(LOCAL.name, "10.0.0.9"))


def test_graceful_restart_stale_routes_are_kept_then_swept() -> None:
    rib = make_rib(IBGP)
    rib.apply_update("ibgp", announce("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"), OPTS)
    nh = ip("fd00::2")
    v6 = prefix_to_nlri("fd00:1::/64")[1]
    rib.apply_update(
        "ibgp", Update(attributes=PathAttributes(), mp_reach=MpReach(V6, nh, (v6,))), OPTS
    )
    assert rib.mark_stale("ibgp") == 4
    best = rib.best(V4, p4("10.1.0.0/16"))
    assert best is not None and best.stale
    assert all(r.stale for r in rib.adj_rib_in("ibgp").routes(V4))
    # The session comes back (the peer's info may be refreshed) and re-sends two routes.
    rib.add_peer(IBGP)
    assert rib.apply_update("ibgp", announce("10.1.0.0/16"), OPTS) == []
    changes = rib.apply_update("ibgp", announce("10.2.0.0/16", med=3), OPTS)
    assert len(changes) == 1
    best = rib.best(V4, p4("10.1.0.0/16"))
    assert best is not None and not best.stale
    # End-of-RIB for IPv4: what is still stale goes, IPv6 stays until its own sweep.
    changes = rib.sweep_stale("ibgp", V4)
    assert [(c.prefix, c.new) for c in changes] == [(p4("10.3.0.0/16"), None)]
    assert rib.counts("ibgp", V4) == PeerCounts(2, 2)
    assert rib.counts("ibgp", V6) == PeerCounts(1, 1)
    changes = rib.sweep_stale("ibgp")
    assert [(c.family, c.new) for c in changes] == [(V6, None)]
    assert rib.sweep_stale("ibgp") == []


def test_stale_marking_keeps_rejected_routes_rejected() -> None:
    rib = make_rib(EBGP)
    rib.apply_update("ebgp", announce("10.1.0.0/16", as_path=((AS_SEQUENCE, (AS,)),)), OPTS)
    assert rib.mark_stale("ebgp", [V4]) == 1
    assert rib.counts("ebgp") == PeerCounts(1, 0)
    assert rib.sweep_stale("ebgp", V4) == []
    assert rib.counts("ebgp") == PeerCounts(0, 0)


def test_attribute_cache_follows_the_routes() -> None:
    rib = make_rib(IBGP, IBGP2)
    for i in range(5):
        rib.apply_update("ibgp", announce(f"10.{i}.0.0/16", med=i % 2), OPTS)
        rib.apply_update("ibgp2", announce(f"10.{i}.0.0/16", med=i % 2), OPTS)
    rib.originate(V4, p4("10.99.0.0/16"), PathAttributes())
    assert len(rib.attr_cache) == 3
    rib.apply_update("ibgp", withdraw(*(f"10.{i}.0.0/16" for i in range(5))), OPTS)
    assert len(rib.attr_cache) == 3  # ibgp2 still uses both MED sets
    rib.remove_peer("ibgp2")
    assert len(rib.attr_cache) == 1
    rib.withdraw_local(V4, p4("10.99.0.0/16"))
    assert len(rib.attr_cache) == 0
