"""ADD-PATH send (RFC 7911) in the update groups: a group whose members negotiated it
advertises every path of a prefix the policy lets out, each under a path identifier of its
own source, withdraws each by its identifier, keeps split horizon per path, and lets a
joining member catch up on all of them. Checked on the bytes, decoded as the receiving end
(ADD-PATH receive) would."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.policy.policy import Policy
from bgpd.rib.adj_out import AdjRibOut, GroupKey, PathIds
from bgpd.rib.rib import Rib
from bgpd.rib.route import LOCAL, PeerInfo, Route
from bgpd.rib.table import BestChange
from bgpd.wire import decode_message, split_messages
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

V4 = Family.IPV4_UNICAST
AS = 64512
RID = 0x0A000001
ME4 = address_to_bytes("10.0.0.1")
SEND = CodecOptions(add_path_send=frozenset({V4}))
RECEIVE = CodecOptions(add_path_receive=frozenset({V4}))
PLAIN = CodecOptions()


def peer(name: str, last: int, asn: int = AS, rr_client: bool = False) -> PeerInfo:
    return PeerInfo(name, bytes([10, 0, 0, last]), asn, 0x0A000000 + last, AS, rr_client)


EBGP_A = peer("ebgp-a", 2, 65001)
EBGP_B = peer("ebgp-b", 3, 65002)
CLIENT_1 = peer("client-1", 4, rr_client=True)
CLIENT_2 = peer("client-2", 5, rr_client=True)


def p4(text: str) -> bytes:
    return prefix_to_nlri(text)[1]


def announce(rib: Rib, source: PeerInfo, prefix: str, *path: int) -> list[BestChange]:
    update = Update(
        attributes=PathAttributes(next_hop=source.address, as_path=((AS_SEQUENCE, path),)),
        nlri=(p4(prefix),),
    )
    return rib.apply_update(source.name, update, PLAIN)


def withdraw(rib: Rib, source: PeerInfo, prefix: str) -> list[BestChange]:
    return rib.apply_update(source.name, Update(withdrawn=(p4(prefix),)), PLAIN)


def setup(*sources: PeerInfo) -> tuple[Rib, AdjRibOut]:
    policy = Policy()
    rib = Rib(AS, RID, imports=policy)
    for s in sources:
        rib.add_peer(s)
    return rib, AdjRibOut(RID, policy, paths=rib.loc)


def key(target: PeerInfo, opts: CodecOptions = SEND) -> GroupKey:
    return GroupKey.for_peer(target, options=opts, families=(V4,), local_ipv4=ME4)


def decode_all(data: bytes, opts: CodecOptions = RECEIVE) -> list[Update]:
    messages, rest = split_messages(data)
    assert rest == b""
    out = []
    for m in messages:
        msg = decode_message(m, opts)
        assert isinstance(msg, Update)
        out.append(msg)
    return out


def apply(
    view: dict[bytes, PathAttributes], chunks: Iterable[bytes], opts: CodecOptions = RECEIVE
) -> None:
    """A receiver's table: item (path id + prefix) -> attributes."""
    for u in decode_all(b"".join(chunks), opts):
        for item in u.withdrawn:
            view.pop(item, None)
        assert not u.nlri or u.attributes is not None
        for item in u.nlri:
            assert u.attributes is not None
            view[item] = u.attributes


def paths(view: dict[bytes, PathAttributes], prefix: str) -> dict[int, tuple[int, ...]]:
    """path id -> AS path of what `view` holds for `prefix`."""
    nlri = p4(prefix)
    return {
        int.from_bytes(item[:4], "big"): attrs.as_path[0][1] if attrs.as_path else ()
        for item, attrs in view.items()
        if item[4:] == nlri
    }


def test_every_path_goes_out_under_its_own_id_and_is_withdrawn_by_it() -> None:
    rib, out = setup(EBGP_A, EBGP_B, CLIENT_1)
    group = out.join(CLIENT_1, key(CLIENT_1), rib.iter_best)
    best_only = out.join(CLIENT_2, key(CLIENT_2, PLAIN), rib.iter_best)
    for g, name in ((group, "client-1"), (best_only, "client-2")):
        list(g.catch_up(name))
    view: dict[bytes, PathAttributes] = {}
    plain: dict[bytes, PathAttributes] = {}
    out.stage(announce(rib, EBGP_A, "10.7.0.0/16", 65001))
    # A longer path: not the best, yet a path; only the ADD-PATH group hears of it.
    second = announce(rib, EBGP_B, "10.7.0.0/16", 65002, 65003)
    assert [c.paths_only for c in second] == [True]
    out.stage(second)
    for g, flush in out.flush():
        if g is group:
            apply(view, [flush.data])
        else:
            apply(plain, [flush.data], PLAIN)
    assert paths(view, "10.7.0.0/16") == {1: (65001,), 2: (65002, 65003)}
    assert set(plain) == {p4("10.7.0.0/16")}
    assert group.advertised_paths(V4, p4("10.7.0.0/16")) == [
        (1, group.advertised_entry(V4, p4("10.7.0.0/16"))),  # type: ignore[list-item]
        (2, (view[(2).to_bytes(4, "big") + p4("10.7.0.0/16")], "ebgp-b")),
    ]
    # The best path goes: its id is withdrawn, the other stays as it was.
    out.stage(withdraw(rib, EBGP_A, "10.7.0.0/16"))
    flushes = dict((id(g), f) for g, f in out.flush())
    updates = decode_all(flushes[id(group)].data)
    assert [u.withdrawn for u in updates] == [((1).to_bytes(4, "big") + p4("10.7.0.0/16"),)]
    apply(view, [flushes[id(group)].data])
    assert paths(view, "10.7.0.0/16") == {2: (65002, 65003)}
    # The best-path group now sends the other path in place of the first.
    apply(plain, [flushes[id(best_only)].data], PLAIN)
    assert plain[p4("10.7.0.0/16")].as_path == ((AS_SEQUENCE, (65002, 65003)),)


def test_ids_belong_to_path_sources_and_are_shared_by_every_group() -> None:
    ids = PathIds()
    r1 = Route(p4("10.1.0.0/16"), V4, PathAttributes(), EBGP_A)
    r2 = Route(p4("10.2.0.0/16"), V4, PathAttributes(), EBGP_A)
    r3 = Route(p4("10.1.0.0/16"), V4, PathAttributes(), EBGP_A, path_id=7)
    r4 = Route(p4("10.1.0.0/16"), V4, PathAttributes(), LOCAL)
    assert ids.of(r1) == ids.of(r2) == (1).to_bytes(4, "big")
    assert [ids.of(r3), ids.of(r4)] == [(2).to_bytes(4, "big"), (3).to_bytes(4, "big")]
    rib, out = setup(EBGP_A, EBGP_B, CLIENT_1)
    a = out.join(CLIENT_1, key(CLIENT_1), rib.iter_best)
    b = out.join(EBGP_B, key(EBGP_B), rib.iter_best)
    assert a.path_ids is b.path_ids is out.path_ids


def test_split_horizon_per_path() -> None:
    """Both sources are members of one group: each gets the other's path, never its own
    (the shared bytes carry both; the source's own path is taken back by id)."""
    rib, out = setup(CLIENT_1, CLIENT_2, EBGP_A)
    group = out.join(CLIENT_1, key(CLIENT_1), rib.iter_best)
    assert out.join(CLIENT_2, key(CLIENT_2), rib.iter_best) is group
    views: dict[str, dict[bytes, PathAttributes]] = {"client-1": {}, "client-2": {}}
    for name, view in views.items():
        apply(view, [c for c, _n in group.catch_up(name)])
    for source in (CLIENT_1, CLIENT_2):
        update = Update(
            attributes=PathAttributes(next_hop=source.address, local_pref=100),
            nlri=(p4("192.168.5.0/26"),),
        )
        out.stage(rib.apply_update(source.name, update, PLAIN))
    ((g, flush),) = out.flush()
    for name, view in views.items():
        apply(view, flush.for_member(name))
    got = {name: sorted(paths(v, "192.168.5.0/26")) for name, v in views.items()}
    id_of = {
        r.source.name: int.from_bytes(out.path_ids.of(r), "big")
        for r in rib.paths(V4, p4("192.168.5.0/26"))
    }
    assert got == {"client-1": [id_of["client-2"]], "client-2": [id_of["client-1"]]}
    assert g.advertised_count("client-1") == 1 and g.advertised_count("client-2") == 1


def test_a_joining_member_catches_up_on_every_path() -> None:
    rib, out = setup(EBGP_A, EBGP_B, CLIENT_1, CLIENT_2)
    announce(rib, EBGP_A, "10.8.0.0/16", 65001)
    announce(rib, EBGP_B, "10.8.0.0/16", 65002, 65009)
    announce(rib, EBGP_B, "10.9.0.0/16", 65002)
    group = out.join(CLIENT_1, key(CLIENT_1), rib.iter_best)  # loaded from every path
    view: dict[bytes, PathAttributes] = {}
    apply(view, [c for c, _n in group.catch_up("client-1")])
    assert sorted(paths(view, "10.8.0.0/16").values()) == [(65001,), (65002, 65009)]
    assert list(paths(view, "10.9.0.0/16").values()) == [(65002,)]
    # A second member joining later reads the same from the group's log.
    assert out.join(CLIENT_2, key(CLIENT_2), rib.iter_best) is group
    later: dict[bytes, PathAttributes] = {}
    apply(later, [c for c, _n in group.catch_up("client-2")])
    assert later == view


def test_policy_changes_restage_every_path() -> None:
    rib, out = setup(EBGP_A, EBGP_B, CLIENT_1)
    announce(rib, EBGP_A, "10.8.0.0/16", 65001)
    announce(rib, EBGP_B, "10.8.0.0/16", 65002, 65009)
    group = out.join(CLIENT_1, key(CLIENT_1), rib.iter_best)
    view: dict[bytes, PathAttributes] = {}
    apply(view, [c for c, _n in group.catch_up("client-1")])

    class OnlyA(Policy):
        def for_group(self, k: GroupKey, cluster_id: int) -> Any:
            export = super().for_group(k, cluster_id)
            export.allows = lambda r: r.source.name == "ebgp-a"
            return export

    out.set_policies(OnlyA(), rib.iter_best)
    ((_g, flush),) = out.flush()
    apply(view, [flush.data])
    assert list(paths(view, "10.8.0.0/16").values()) == [(65001,)]


_SOURCES = (EBGP_A, EBGP_B, CLIENT_1, CLIENT_2)
_PREFIXES = ("10.1.0.0/16", "10.2.0.0/16", "192.168.3.0/26")
_op = st.one_of(
    st.tuples(
        st.just("announce"),
        st.integers(0, 3),
        st.sampled_from(_PREFIXES),
        st.integers(1, 3),  # AS path length: decides which path is best
    ),
    st.tuples(st.just("withdraw"), st.integers(0, 3), st.sampled_from(_PREFIXES)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("toggle")),  # client-2 leaves, or joins and catches up
)


MESH_1 = peer("mesh-1", 6)
MESH_2 = peer("mesh-2", 7)


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=30))
def test_members_hold_every_exportable_path_of_others(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the sources announce and withdraw, after each write-out every member holds,
    per prefix, one path per other source whose route may go to it (an eBGP route to a
    client; a client's route to the other client), each once, with the attributes the
    policy gives it."""
    _hold_every_exportable_path(ops, _SOURCES, (CLIENT_1, CLIENT_2))


@settings(max_examples=200, deadline=None)
@given(st.lists(_op, max_size=30))
def test_mesh_members_hold_only_the_paths_they_may_have(ops: list[tuple[Any, ...]]) -> None:
    """A Calico mesh under `add paths on`: a node holds its eBGP paths and those its mesh
    peers passed on, and may send its mesh peers only the first (several paths of a prefix,
    one of them exportable, or none, or two)."""
    _hold_every_exportable_path(ops, (EBGP_A, EBGP_B, MESH_1, MESH_2), (MESH_1, MESH_2))


def _hold_every_exportable_path(
    ops: list[tuple[Any, ...]], sources: tuple[PeerInfo, ...], members: tuple[PeerInfo, ...]
) -> None:
    rib, out = setup(*sources)
    first, second = members
    group = out.join(first, key(first), rib.iter_best)
    assert out.join(second, key(second), rib.iter_best) is group
    views: dict[str, dict[bytes, PathAttributes]] = {}
    for m in members:
        views[m.name] = {}
        apply(views[m.name], [c for c, _n in group.catch_up(m.name)])
    for op in ops:
        if op[0] == "announce":
            _, src, prefix, length = op
            source = sources[src]
            asns = (source.asn,) * length if not source.ibgp else ()
            update = Update(
                attributes=PathAttributes(
                    next_hop=source.address, as_path=((AS_SEQUENCE, asns),) if asns else ()
                ),
                nlri=(p4(prefix),),
            )
            out.stage(rib.apply_update(source.name, update, PLAIN))
        elif op[0] == "withdraw":
            out.stage(withdraw(rib, sources[op[1]], op[2]))
        elif op[0] == "toggle":
            # Alone in the group, the first member is sent no path of its own at all.
            if second.name in views:
                out.leave(second.name)
                del views[second.name]
            else:
                assert out.join(second, key(second), rib.iter_best) is group
                views[second.name] = {}
                apply(views[second.name], [c for c, _n in group.catch_up(second.name)])
        else:
            for _g, flush in out.flush():
                for name, view in views.items():
                    apply(view, flush.for_member(name))
            for name, view in views.items():
                # From eBGP, or from a client to a client; never a mesh peer's to the mesh.
                want = {
                    out.path_ids.of(r) + r.prefix
                    for prefix in _PREFIXES
                    for r in rib.paths(V4, p4(prefix))
                    if r.source.name != name
                    and (not r.source.ibgp or r.source.rr_client or first.rr_client)
                }
                assert set(view) == want
                for item, attrs in view.items():
                    (entry,) = [
                        e for pid, e in group.advertised_paths(V4, item[4:])
                        if pid == int.from_bytes(item[:4], "big")
                    ]
                    assert attrs == entry[0]
