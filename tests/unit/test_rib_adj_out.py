"""Adj-RIB-Out update groups: staged changes become UPDATE bytes once per group; the bytes
are checked by decoding them with the codec."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.policy.imports import ImportRules
from bgpd.policy.policy import Policy
from bgpd.rib.adj_out import ADD_PATH_ID, AdjRibOut, GroupKey, UpdateGroup
from bgpd.rib.rib import Rib
from bgpd.rib.route import LOCAL, PeerInfo, Route, Source
from bgpd.rib.table import BestChange
from bgpd.wire import decode_message, split_messages
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
AS = 64512
RID = 0x0A000001
ME4 = address_to_bytes("10.0.0.1")
ME6 = address_to_bytes("fd00::1")
OPTS = CodecOptions()


def p4(text: str) -> bytes:
    return prefix_to_nlri(text)[1]


def peer(name: str, last: int, asn: int = AS, rr_client: bool = False) -> PeerInfo:
    return PeerInfo(name, bytes([10, 0, 0, last]), asn, 0x0A000000 + last, AS, rr_client)


CLIENT1 = peer("client1", 2, rr_client=True)
CLIENT2 = peer("client2", 3, rr_client=True)
MESH1 = peer("mesh1", 4)
MESH2 = peer("mesh2", 5)
EBGP1 = peer("ebgp1", 6, asn=65001)
EBGP2 = peer("ebgp2", 7, asn=65002)


def key_for(p: PeerInfo, families: Iterable[Family] = (V4,), opts: CodecOptions = OPTS) -> GroupKey:
    return GroupKey.for_peer(p, options=opts, families=families, local_ipv4=ME4, local_ipv6=ME6)


def group(*members: PeerInfo, **kw: object) -> UpdateGroup:
    k = key_for(members[0], **kw)  # type: ignore[arg-type]
    g = UpdateGroup(k, policy=Policy().for_group(k, RID))
    for m in members:
        join(g, m)
    return g


def join(g: UpdateGroup, m: PeerInfo) -> list[bytes]:
    """Add `m` and read its whole catch-up at once: it is live from then on."""
    g.add_member(m)
    return [data for data, _count in g.catch_up(m.name)]


def route(source: Source, prefix: str, **kw: object) -> Route:
    family, nlri = prefix_to_nlri(prefix)
    if "next_hop" not in kw and isinstance(source, PeerInfo):
        kw["next_hop"] = source.address
    return Route(nlri, family, PathAttributes(**kw), source)  # type: ignore[arg-type]


def change(new: Route | None, old: Route | None = None, prefix: str | None = None) -> BestChange:
    r = new or old
    if r is None:
        family, nlri = prefix_to_nlri(prefix or "0.0.0.0/0")
    else:
        family, nlri = r.family, r.prefix
    return BestChange(family, nlri, old, new, None, False)


def decode_all(data: bytes, opts: CodecOptions = OPTS) -> list[Update]:
    messages, rest = split_messages(data, opts.max_message_size)
    assert rest == b""
    out = []
    for m in messages:
        msg = decode_message(m, opts)
        assert isinstance(msg, Update)
        out.append(msg)
    return out


def announced(updates: list[Update]) -> dict[bytes, PathAttributes]:
    """prefix (or ADD-PATH item) -> attributes, with the IPv6 next hop folded in."""
    out: dict[bytes, PathAttributes] = {}
    for u in updates:
        for item in u.nlri:
            assert u.attributes is not None
            out[item] = u.attributes
        if u.mp_reach is not None:
            assert u.attributes is not None
            for item in u.mp_reach.nlri:
                out[item] = u.attributes.replace(next_hop=u.mp_reach.next_hop)
    return out


def withdrawn(updates: list[Update]) -> set[bytes]:
    out: set[bytes] = set()
    for u in updates:
        out.update(u.withdrawn)
        if u.mp_unreach is not None:
            out.update(u.mp_unreach.withdrawn)
    return out


def test_flush_buckets_by_attributes_and_decodes() -> None:
    g = group(MESH1, MESH2)
    a1 = route(LOCAL, "10.65.0.0/26")
    a2 = route(LOCAL, "10.65.1.0/26")
    b = route(EBGP1, "198.51.100.0/24", as_path=((AS_SEQUENCE, (65001,)),))
    for r in (a1, a2, b):
        g.stage(change(r))
    out = g.flush()
    assert out.extra == {}
    updates = decode_all(out.data)
    assert len(updates) == 2  # one UPDATE per attribute set
    got = announced(updates)
    assert set(got) == {a1.prefix, a2.prefix, b.prefix}
    assert got[a1.prefix] is not got[b.prefix]
    local = got[a1.prefix]
    # A local route's priority (the normal one, 1024) goes out as LOCAL_PREF 2^31-1-1024,
    # as confd's export filter sets bgp_local_pref = 2147483647 - krt_metric.
    assert (local.next_hop, local.local_pref, local.as_path) == (ME4, 2147482623, ())
    learned = got[b.prefix]
    assert learned.next_hop == EBGP1.address and learned.as_path == ((AS_SEQUENCE, (65001,)),)
    assert g.advertised(V4) == {p: got[p] for p in got}
    assert g.advertised_count("mesh1") == 3


def test_duplicates_are_suppressed_and_last_write_wins() -> None:
    g = group(MESH1)
    r = route(LOCAL, "10.65.0.0/26")
    g.stage(change(r))
    assert g.flush()
    g.stage(change(r))
    assert not g.flush()  # already advertised exactly so
    # Within one tick only the last change per prefix counts.
    r2 = route(LOCAL, "10.65.0.0/26", med=5)
    g.stage(change(r2, r))
    g.stage(change(r, r2))
    assert not g.flush()
    g.stage(change(r2, r))
    (u,) = decode_all(g.flush().data)
    assert u.attributes is not None and u.attributes.med == 5
    assert g.pending() == 0


def test_withdraw_only_what_was_advertised() -> None:
    g = group(MESH1, MESH2)
    # iBGP non-client routes are not exported to the mesh, so their loss is not either.
    hidden = route(peer("mesh3", 9), "10.70.0.0/16")
    g.stage(change(hidden))
    assert not g.flush()
    g.stage(change(None, hidden))
    assert not g.flush()
    # Announced then withdrawn in the same tick: nothing on the wire.
    r = route(LOCAL, "10.65.0.0/26")
    g.stage(change(r))
    g.stage(change(None, r))
    assert not g.flush()
    g.stage(change(r))
    g.flush()
    g.stage(change(None, r))
    updates = decode_all(g.flush().data)
    assert withdrawn(updates) == {r.prefix} and announced(updates) == {}
    assert len(g) == 0


def test_change_to_unexportable_route_withdraws() -> None:
    g = group(MESH1)
    own = route(LOCAL, "10.65.0.0/26")
    g.stage(change(own))
    g.flush()
    learned = route(MESH2, "10.65.0.0/26")  # iBGP non-client: not for the mesh
    g.stage(change(learned, own))
    assert withdrawn(decode_all(g.flush().data)) == {own.prefix}


def test_split_horizon_in_a_shared_group() -> None:
    g = group(CLIENT1, CLIENT2)
    r = route(CLIENT1, "10.65.0.0/26")
    g.stage(change(r))
    out = g.flush()
    # Everyone gets the reflected route in the shared bytes...
    (u,) = decode_all(out.data)
    assert u.nlri == (r.prefix,)
    assert u.attributes is not None and u.attributes.originator_id == CLIENT1.router_id
    assert u.attributes.cluster_list == (RID,)
    # ...and its source a withdrawal after it, so it ends up without its own route.
    assert set(out.extra) == {"client1"}
    tail = decode_all(out.extra["client1"])
    assert withdrawn(tail) == {r.prefix} and announced(tail) == {}
    assert out.for_member("client2") == (out.data,)
    assert out.for_member("client1") == (out.data, out.extra["client1"])
    assert g.advertised_count("client1") == 0 and g.advertised_count("client2") == 1
    # A repeat is still a duplicate; a move to another source reaches the first one again.
    g.stage(change(r))
    assert not g.flush()
    r2 = route(CLIENT2, "10.65.0.0/26")
    g.stage(change(r2, r))
    out = g.flush()
    assert set(out.extra) == {"client2"}
    assert announced(decode_all(b"".join(out.for_member("client1")))) != {}


def test_split_horizon_in_a_single_member_group() -> None:
    g = group(EBGP1)
    own = route(EBGP1, "198.51.100.0/24", as_path=((AS_SEQUENCE, (65001,)),))
    g.stage(change(own))
    assert not g.flush()  # nothing to send back to the only member
    assert g.advertised_count("ebgp1") == 0
    # It had a route from us before: the switch to its own route withdraws ours.
    other = route(LOCAL, "198.51.101.0/24")
    g.stage(change(other))
    g.flush()
    mine = route(EBGP1, "198.51.101.0/24", as_path=((AS_SEQUENCE, (65001,)),))
    g.stage(change(mine, other))
    out = g.flush()
    assert withdrawn(decode_all(out.data)) == {other.prefix} and out.extra == {}


def test_ebgp_group_export_and_key_folding() -> None:
    k1, k2 = key_for(EBGP1), key_for(EBGP2)
    assert k1 == k2 and k1.next_hop_self  # different neighbour ASes, one group
    assert key_for(MESH1) != key_for(CLIENT1)
    g = group(EBGP1, EBGP2)
    r = route(MESH1, "10.80.0.0/16", as_path=((AS_SEQUENCE, (65005,)),), local_pref=300, med=9)
    g.stage(change(r))
    (u,) = decode_all(g.flush().data)
    a = u.attributes
    assert a is not None
    assert a.as_path == ((AS_SEQUENCE, (AS, 65005)),) and a.next_hop == ME4
    assert (a.local_pref, a.med) == (None, None)


def test_ipv6_group_uses_mp_reach_with_our_next_hop() -> None:
    g = group(MESH1, families=(V4, V6))
    r6 = route(LOCAL, "fd00:65::/122")
    g.stage(change(r6))
    updates = decode_all(g.flush().data)
    got = announced(updates)
    assert got[r6.prefix].next_hop == ME6
    g.stage(change(None, r6))
    (u,) = decode_all(g.flush().data)
    assert u.mp_unreach is not None and u.mp_unreach.withdrawn == (r6.prefix,)


def test_families_outside_the_group_are_ignored() -> None:
    g = group(MESH1)  # IPv4 only
    g.stage(change(route(LOCAL, "fd00:65::/122")))
    assert g.pending() == 0 and not g.flush()
    with pytest.raises(ValueError):
        GroupKey.for_peer(MESH1, options=OPTS, families=(V6,), local_ipv4=ME4)


def test_add_path_send_items_carry_a_path_id() -> None:
    opts = CodecOptions(add_path_send=frozenset({V4}))
    g = group(MESH1, opts=opts)
    r = route(LOCAL, "10.65.0.0/26")
    g.stage(change(r))
    data = g.flush().data
    receiver = CodecOptions(add_path_receive=frozenset({V4}))
    (u,) = decode_all(data, receiver)
    assert u.nlri == (ADD_PATH_ID + r.prefix,)
    g.stage(change(None, r))
    (u,) = decode_all(g.flush().data, receiver)
    assert u.withdrawn == (ADD_PATH_ID + r.prefix,)


def test_large_flush_is_split_to_the_message_size() -> None:
    g = group(MESH1)
    routes = [route(LOCAL, f"10.{i // 256}.{i % 256}.0/24") for i in range(3000)]
    for r in routes:
        g.stage(change(r))
    data = g.flush().data
    updates = decode_all(data)
    assert len(updates) > 1
    assert all(len(m) <= 4096 for m in split_messages(data)[0])
    assert set(announced(updates)) == {r.prefix for r in routes}


def test_catch_up_in_slices_then_end_of_rib() -> None:
    g = group(CLIENT1, families=(V4, V6))
    v4 = [route(LOCAL, f"10.65.{i}.0/26") for i in range(10)]
    v6 = [route(LOCAL, f"fd00:65:{i}::/122") for i in range(3)]
    own = route(CLIENT2, "10.99.0.0/16")
    for r in [*v4, *v6, own]:
        g.stage(change(r))
    g.flush()
    g.add_member(CLIENT2)
    chunks = list(g.catch_up("client2", slice_size=4))
    # 11 IPv4 prefixes in slices of 4 (three chunks), IPv6 (one), then the withdrawal of its
    # own route (split horizon), then End-of-RIB for each family.
    assert [c for _data, c in chunks] == [len(decode_all(d)) for d, _c in chunks]
    assert len(chunks) == 3 + 1 + 1 + 2
    eor4, eor6 = decode_all(chunks[5][0]), decode_all(chunks[6][0])
    assert eor4[0].end_of_rib is V4 and eor6[0].end_of_rib is V6
    view: dict[bytes, PathAttributes] = {}
    _apply(view, [d for d, _c in chunks])
    assert set(view) == {r.prefix for r in [*v4, *v6]}  # not its own route
    assert "client2" in g.live
    with pytest.raises(KeyError):
        next(g.catch_up("stranger"))


def test_write_outs_during_a_catch_up_reach_the_member_through_it() -> None:
    g = group(MESH1)
    routes = [route(LOCAL, f"10.65.{i}.0/26") for i in range(6)]
    for r in routes:
        g.stage(change(r))
    g.flush()
    g.add_member(MESH2)
    dump = g.catch_up("mesh2", slice_size=3)
    first = decode_all(next(dump)[0])
    # A change written out mid-catch-up goes to the live members only...
    changed = route(LOCAL, "10.65.5.0/26", med=1)
    g.stage(change(changed, routes[5]))
    g.stage(change(None, routes[4]))
    out = g.flush()
    assert out.for_member("mesh2") == out.for_member("mesh1") and "mesh2" not in g.live
    # ...and to mesh2 through its catch-up, in order, leaving it with the current table.
    rest = [u for data, _c in dump for u in decode_all(data)]
    view: dict[bytes, PathAttributes] = {}
    for u in [*first, *rest]:
        for p in u.withdrawn:
            view.pop(p, None)
        for p in u.nlri:
            assert u.attributes is not None
            view[p] = u.attributes
    assert view == g.advertised(V4)
    assert routes[4].prefix not in view and view[changed.prefix].med == 1
    assert "mesh2" in g.live


def test_members_joining_together_share_the_encoded_bytes() -> None:
    g = group(CLIENT1)
    for i in range(50):
        g.stage(change(route(LOCAL, f"10.66.{i}.0/26")))
    g.flush()
    g.add_member(CLIENT2)
    g.add_member(MESH1)
    a = list(g.catch_up("client2"))
    b = list(g.catch_up("mesh1"))
    assert a and all(x[0] is y[0] for x, y in zip(a, b, strict=True))


def test_a_long_log_is_rebuilt_for_the_next_member() -> None:
    g = group(CLIENT1)
    g.stage(change(route(LOCAL, "10.67.0.0/26")))
    g.flush()
    g.add_member(CLIENT2)
    list(g.catch_up("client2"))  # builds the log: one prefix
    for i in range(1, 4):
        g.stage(change(route(LOCAL, f"10.67.{i}.0/26")))
        g.flush()  # three write-outs, three prefixes: more than the snapshot held
    g.add_member(MESH1)
    chunks = list(g.catch_up("mesh1"))
    # A fresh snapshot (one chunk of four prefixes), then End-of-RIB.
    assert len(chunks) == 2


def test_the_joiners_log_does_not_grow_with_churn() -> None:
    """Route churn with no one joining: the log kept for the next joiner is let go once a
    fresh snapshot would be shorter to read, so a settled group holds no history (the
    soak's RSS grew by one write-out per flip before)."""
    g = group(CLIENT1)
    r = route(LOCAL, "10.68.0.0/26")
    g.stage(change(r))
    g.flush()
    g.add_member(CLIENT2)
    list(g.catch_up("client2"))  # builds the log
    for i in range(200):
        g.stage(change(None, r) if i % 2 == 0 else change(r))
        assert g.flush()
        log = g._log
        assert log is None or not log.stale()
    g.add_member(MESH1)
    assert announced(decode_all(b"".join(d for d, _n in g.catch_up("mesh1")))) == {
        r.prefix: g.advertised(V4)[r.prefix]
    }


def test_group_without_members_keeps_its_table() -> None:
    g = UpdateGroup(key_for(MESH1), policy=Policy().for_group(key_for(MESH1), RID))
    r = route(LOCAL, "10.65.0.0/26")
    g.stage(change(r))
    assert not g.flush()
    assert set(g.advertised(V4)) == {r.prefix}


def test_export_attributes_are_interned_and_released() -> None:
    g = group(MESH1)
    r1, r2 = route(LOCAL, "10.65.0.0/26"), route(LOCAL, "10.65.1.0/26")
    g.stage(change(r1))
    g.stage(change(r2))
    g.flush()
    adv = g.advertised(V4)
    assert adv[r1.prefix] is adv[r2.prefix]
    assert len(g.cache) == 1
    g.stage(change(None, r1))
    g.stage(change(None, r2))
    g.flush()
    assert len(g.cache) == 0


def test_adj_rib_out_end_to_end_with_the_rib() -> None:
    rib = Rib(AS, RID, imports=ImportRules())
    for p in (CLIENT1, CLIENT2, MESH1, EBGP1):
        rib.add_peer(p)
    rib.originate(V4, p4("10.65.0.0/26"), PathAttributes())
    out = AdjRibOut(rib.cluster_id, Policy())
    keys = {p.name: key_for(p) for p in (CLIENT1, CLIENT2, MESH1, EBGP1)}
    for p in (CLIENT1, CLIENT2, MESH1, EBGP1):
        out.join(p, keys[p.name], rib.iter_best)
    assert len(out.groups) == 3
    clients = out.group_of("client1")
    assert clients is not None and clients is out.group_of("client2")
    assert set(clients.advertised(V4)) == {p4("10.65.0.0/26")}  # loaded at creation
    # A client announces a route: reflected to the other client and the mesh, sent to eBGP.
    update = Update(attributes=PathAttributes(next_hop=CLIENT1.address), nlri=(p4("10.66.0.0/26"),))
    out.stage(rib.apply_update("client1", update, OPTS))
    flushed = {g.key: f for g, f in out.flush()}
    assert set(flushed) == {keys["client1"], keys["mesh1"], keys["ebgp1"]}
    for name in ("client2", "mesh1", "ebgp1"):
        got = announced(decode_all(b"".join(flushed[keys[name]].for_member(name))))
        assert set(got) == {p4("10.66.0.0/26")}
    assert withdrawn(decode_all(flushed[keys["client1"]].extra["client1"])) == {p4("10.66.0.0/26")}
    # The mesh peer's own routes do not go to the mesh; the session ends: group dropped.
    update = Update(attributes=PathAttributes(next_hop=MESH1.address), nlri=(p4("10.67.0.0/26"),))
    out.stage(rib.apply_update("mesh1", update, OPTS))
    flushed = {g.key: f for g, f in out.flush()}
    assert keys["mesh1"] not in flushed and keys["client1"] in flushed
    out.leave("mesh1")
    assert out.group_of("mesh1") is None and len(out.groups) == 2
    out.leave("mesh1")  # leaving twice is harmless


MEMBERS = (CLIENT1, CLIENT2, peer("client3", 8, rr_client=True))
SOURCES: tuple[Source, ...] = (*MEMBERS, LOCAL, peer("client9", 9, rr_client=True))
PREFIXES = ("10.65.0.0/26", "10.65.1.0/26", "10.65.2.0/26")

_op = st.one_of(
    st.tuples(
        st.just("change"),
        st.sampled_from(PREFIXES),
        st.one_of(st.none(), st.sampled_from(range(len(SOURCES)))),
        st.sampled_from((None, 1)),
    ),
    st.tuples(st.just("flush")),
    st.tuples(st.just("leave"), st.sampled_from(range(len(MEMBERS)))),
    st.tuples(st.just("join"), st.sampled_from(range(len(MEMBERS)))),
)


def _apply(view: dict[bytes, PathAttributes], chunks: Iterable[bytes]) -> None:
    for u in decode_all(b"".join(chunks)):
        for p in withdrawn([u]):
            view.pop(p, None)
        view.update(announced([u]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=40))
def test_every_member_sees_the_table_minus_its_own_routes(ops: list[tuple[Any, ...]]) -> None:
    """Members join at any time and read their catch-up a chunk at a time, interleaved with
    write-outs that reach only the live members; once caught up, each holds exactly the
    group's table minus its own routes."""
    g = group(MEMBERS[0])
    views: dict[str, dict[bytes, PathAttributes]] = {MEMBERS[0].name: {}}
    dumps: dict[str, Any] = {}

    def advance(name: str) -> None:
        chunk = next(dumps[name], None)
        if chunk is None:
            del dumps[name]
        else:
            _apply(views[name], [chunk[0]])

    for op in ops:
        if op[0] == "change":
            _, prefix, src, med = op
            new = None if src is None else route(SOURCES[src], prefix, med=med)
            g.stage(change(new, prefix=prefix))
        elif op[0] == "flush":
            out = g.flush()
            for name in g.live:
                _apply(views[name], out.for_member(name))
            for name in list(dumps):
                advance(name)  # a catch-up goes on between write-outs
        elif op[0] == "leave":
            name = MEMBERS[op[1]].name
            g.remove_member(name)
            views.pop(name, None)
            dumps.pop(name, None)
        else:
            m = MEMBERS[op[1]]
            if m.name not in views:
                g.add_member(m)
                views[m.name] = {}
                dumps[m.name] = g.catch_up(m.name, slice_size=2)
        for name in g.live:
            if op[0] in ("flush", "join"):
                assert views[name] == g.advertised(V4, member=name)
    for name in list(dumps):
        while name in dumps:
            advance(name)
        assert views[name] == g.advertised(V4, member=name)
