"""Destination and Loc-RIB: best-path diffs as BestChange values, multipath tracking."""

from __future__ import annotations

from bgpd.rib.decision import BestPathReason
from bgpd.rib.route import LOCAL, PeerInfo, Route, Source
from bgpd.rib.table import BestChange, Destination, LocRib
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri

V4 = Family.IPV4_UNICAST
P1 = prefix_to_nlri("10.1.0.0/16")[1]
P2 = prefix_to_nlri("10.2.0.0/16")[1]
AS = 64512

A = PeerInfo("a", b"\x0a\x00\x00\x01", 65001, 1, AS)
B = PeerInfo("b", b"\x0a\x00\x00\x02", 65002, 2, AS)
C = PeerInfo("c", b"\x0a\x00\x00\x03", AS, 3, AS)

NH_A, NH_B, NH_C = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x03"


def route(
    source: Source, nh: bytes, path: tuple[int, ...] = (1,), prefix: bytes = P1, **kw: object
) -> Route:
    attrs = PathAttributes(as_path=((AS_SEQUENCE, path),), next_hop=nh, **kw)  # type: ignore[arg-type]
    return Route(prefix, V4, attrs, source)


def test_first_path_is_best_as_only_path() -> None:
    d = Destination(V4, P1)
    r = route(A, NH_A)
    assert d.update(r) == BestChange(V4, P1, None, r, BestPathReason.ONLY_PATH, True, (NH_A,))
    assert d.best is r and d.multipath == (NH_A,)


def test_better_path_replaces_best_worse_path_changes_not_the_best() -> None:
    d = Destination(V4, P1)
    a = route(A, NH_A, (65001, 1))
    d.update(a)
    worse = route(C, NH_C, (7, 8, 1))
    # Only the path set changed: for those who advertise every path (ADD-PATH send).
    ch = d.update(worse)
    assert ch is not None and ch.paths_only and ch.old is a and ch.new is a
    assert not ch.multipath_changed
    better = route(B, NH_B, (65002,))
    ch = d.update(better)
    assert ch is not None
    assert (ch.old, ch.new, ch.reason) == (a, better, BestPathReason.AS_PATH)
    assert ch.multipath_changed and ch.multipath == (NH_B,)  # next hop moved
    assert len(d) == 3


def test_replacing_a_path_from_the_same_source() -> None:
    d = Destination(V4, P1)
    first = route(A, NH_A)
    d.update(first)
    second = route(A, NH_A, (1, 2))
    ch = d.update(second)
    assert ch is not None and ch.old is first and ch.new is second
    assert d.paths == [second]


def test_same_attrs_and_source_is_no_change_even_if_stale_flag_differs() -> None:
    d = Destination(V4, P1)
    r = route(A, NH_A)
    d.update(r)
    stale = Route(r.prefix, r.family, r.attrs, r.source, r.path_id, stale=True)
    assert d.update(stale) is None
    assert d.best is stale
    fresh = Route(r.prefix, r.family, r.attrs, r.source)
    assert d.update(fresh) is None
    assert d.best is fresh and not d.best.stale


def test_withdrawals() -> None:
    d = Destination(V4, P1)
    a = route(A, NH_A, (65001,))
    b = route(B, NH_B, (65002, 5))
    d.update(a)
    d.update(b)
    ch = d.withdraw("b")  # not the best; the multipath set was just {a}
    assert ch is not None and ch.paths_only and ch.new is a
    assert d.withdraw("nobody") is None
    d.update(b)
    ch = d.withdraw("a")
    assert ch is not None and (ch.old, ch.new, ch.reason) == (a, b, BestPathReason.ONLY_PATH)
    ch = d.withdraw("b")
    assert ch == BestChange(V4, P1, b, None, None, True, ())
    assert d.best is None and not d.paths


def test_multipath_change_without_best_change() -> None:
    d = Destination(V4, P1)
    a = route(A, NH_A, (65001, 1))
    d.update(a)
    # Equal up to the router ID: joins the multipath set, does not win.
    b = route(B, NH_B, (65002, 1))
    ch = d.update(b)
    assert ch is not None
    assert ch.old is a and ch.new is a and ch.reason is BestPathReason.ROUTER_ID
    assert ch.multipath_changed and ch.multipath == (NH_A, NH_B)
    ch = d.withdraw("b")
    assert ch is not None and ch.multipath_changed and ch.multipath == (NH_A,)


def test_add_path_paths_from_one_source_are_distinct() -> None:
    d = Destination(V4, P1)
    p1 = Route(P1, V4, PathAttributes(next_hop=NH_A), A, path_id=1)
    p2 = Route(P1, V4, PathAttributes(next_hop=NH_B), A, path_id=2)
    d.update(p2)
    d.update(p1)
    assert len(d) == 2 and d.best is p1
    assert d.get("a", 2) is p2
    ch = d.withdraw("a", 1)
    assert ch is not None and ch.new is p2


def test_locrib_tables_and_cleanup() -> None:
    loc = LocRib()
    r1 = route(A, NH_A)
    r2 = route(LOCAL, NH_A, (), prefix=P2)
    assert loc.update(r1) is not None
    assert loc.update(r2) is not None
    assert loc.size() == 2 and loc.size(V4) == 2 and loc.size(Family.IPV6_UNICAST) == 0
    assert set(loc.iter_best(V4)) == {r1, r2}
    assert loc.best(V4, P1) is r1
    ch = loc.withdraw(V4, P1, "a")
    assert ch is not None and ch.new is None
    assert loc.get(V4, P1) is None and len(loc) == 1
    assert loc.withdraw(V4, P1, "a") is None


# --- a prefix of one path holds its route, not a destination --------------------------------


def test_a_single_path_prefix_holds_its_route_and_a_second_path_makes_a_destination() -> None:
    loc = LocRib()
    a = route(A, NH_A)
    loc.update(a)
    assert loc.table(V4)[P1] is a  # no Destination, list or multipath tuple for it
    view = loc.get(V4, P1)
    assert view is not None and view.best is a and view.multipath == (NH_A,)
    assert view.reason is BestPathReason.ONLY_PATH and view.paths == [a]
    b = route(B, NH_B, (1, 2))
    loc.update(b)
    assert isinstance(loc.table(V4)[P1], Destination)
    loc.withdraw(V4, P1, "a")
    assert loc.table(V4)[P1] is b  # back to the route when one path is left
    assert loc.swap(Route(P1, V4, b.attrs, B, stale=True)) and loc.best(V4, P1) == Route(
        P1, V4, b.attrs, B, stale=True
    )
    assert loc.withdraw(V4, P1, "a") is None  # not its path
    change = loc.withdraw(V4, P1, "b")
    assert change is not None and change.new is None and change.multipath_changed
    assert len(loc) == 0


def test_the_loc_rib_answers_as_destinations_alone_would() -> None:
    # Every operation on a few prefixes from three sources, against a reference that keeps
    # a Destination per prefix always: the same BestChanges, best routes and paths.
    import random

    rng = random.Random(17)
    sources = (A, B, C)
    loc = LocRib()
    reference: dict[bytes, Destination] = {}
    for _ in range(3000):
        prefix = rng.choice((P1, P2))
        source = rng.choice(sources)
        op = rng.random()
        dest = reference.setdefault(prefix, Destination(V4, prefix))
        if op < 0.5:
            r = route(source, rng.choice((NH_A, NH_B, NH_C)), rng.choice(((1,), (1, 2))), prefix,
                      local_pref=rng.choice((None, 100, 200)))  # fmt: skip
            assert loc.update(r) == dest.update(r)
        elif op < 0.9:
            assert loc.withdraw(V4, prefix, source.name) == dest.withdraw(source.name)
        else:
            held = dest.get(source.name)
            if held is not None:
                stale = Route(prefix, V4, held.attrs, source, stale=not held.stale)
                assert loc.swap(stale) == dest.swap(stale)
        if not dest.paths:
            del reference[prefix]
        for p in (P1, P2):
            want = reference.get(p)
            got = loc.get(V4, p)
            if want is None:
                assert got is None and loc.best(V4, p) is None
                continue
            assert got is not None and loc.best(V4, p) is want.best
            assert (got.best, got.reason, got.multipath) == (want.best, want.reason, want.multipath)
            assert sorted(map(id, got.paths)) == sorted(map(id, want.paths))
            entry = loc.table(V4)[p]
            assert isinstance(entry, Route) == (len(want.paths) == 1)
    assert sorted(map(id, loc.iter_best(V4))) == sorted(id(d.best) for d in reference.values())
