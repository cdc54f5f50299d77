"""Decision process: each step decides with its reason; select() is order independent."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.rib.decision import (
    MULTIPATH_STEPS,
    STEPS,
    BestPathReason,
    compare,
    ranked,
    select,
)
from bgpd.rib.route import KERNEL, LOCAL, PeerInfo, Route, Source
from bgpd.wire.attributes import AS_SEQUENCE, AS_SET, ORIGIN_EGP, ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri

V4 = Family.IPV4_UNICAST
PREFIX = prefix_to_nlri("10.1.0.0/16")[1]
LOCAL_AS = 64512


def peer(name: str, asn: int = LOCAL_AS, rid: int = 1, addr: str = "10.0.0.1") -> PeerInfo:
    return PeerInfo(name, bytes(int(x) for x in addr.split(".")), asn, rid, LOCAL_AS)


IBGP_A = peer("ibgp-a", rid=10, addr="10.0.0.10")
IBGP_B = peer("ibgp-b", rid=20, addr="10.0.0.20")
EBGP_A = peer("ebgp-a", asn=65001, rid=30, addr="10.0.0.30")
EBGP_B = peer("ebgp-b", asn=65002, rid=40, addr="10.0.0.40")


def route(source: Source, path_id: int = 0, **attrs: object) -> Route:
    attrs.setdefault("next_hop", bytes([192, 0, 2, sum(source.name.encode()) % 250 + 1]))
    return Route(PREFIX, V4, PathAttributes(**attrs), source, path_id)  # type: ignore[arg-type]


def seq(*asns: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    return ((AS_SEQUENCE, asns),)


# (better, worse, deciding step): each row differs first at the step it names.
TABLE = [
    (route(LOCAL), route(IBGP_A, local_pref=500), BestPathReason.LOCAL_ORIGIN),
    (route(IBGP_A, local_pref=200), route(IBGP_B, local_pref=100), BestPathReason.LOCAL_PREF),
    # Absent LOCAL_PREF counts as 100: it beats 90 and loses to 110.
    (route(EBGP_A, as_path=seq(65001)), route(IBGP_A, local_pref=90), BestPathReason.LOCAL_PREF),
    (route(IBGP_A, local_pref=110), route(EBGP_A, as_path=seq(65001)), BestPathReason.LOCAL_PREF),
    (route(IBGP_B, as_path=seq(1)), route(IBGP_A, as_path=seq(1, 2)), BestPathReason.AS_PATH),
    # An AS_SET counts as one AS, whatever its size.
    (
        route(IBGP_B, as_path=((AS_SEQUENCE, (1,)), (AS_SET, (2, 3, 4)))),
        route(IBGP_A, as_path=seq(1, 2, 3)),
        BestPathReason.AS_PATH,
    ),
    (route(IBGP_B, origin=ORIGIN_IGP), route(IBGP_A, origin=ORIGIN_EGP), BestPathReason.ORIGIN),
    (
        route(IBGP_B, as_path=seq(7), med=5),
        route(IBGP_A, as_path=seq(7), med=10),
        BestPathReason.MED,
    ),
    # Missing MED is 0.
    (route(IBGP_B, as_path=seq(7)), route(IBGP_A, as_path=seq(7), med=1), BestPathReason.MED),
    (route(EBGP_B, as_path=seq(9)), route(IBGP_A, as_path=seq(9)), BestPathReason.ASN),
    (route(IBGP_A), route(IBGP_B), BestPathReason.ROUTER_ID),
    # ORIGINATOR_ID stands in for the router ID (RFC 4456 9).
    (route(IBGP_B, originator_id=5), route(IBGP_A), BestPathReason.ROUTER_ID),
    (
        route(IBGP_B, originator_id=5),
        route(IBGP_A, originator_id=5, cluster_list=(1,)),
        BestPathReason.CLUSTER_LIST,
    ),
    (
        route(IBGP_A, originator_id=5),
        route(peer("ibgp-c", rid=10, addr="10.0.0.99"), originator_id=5),
        BestPathReason.NEIGHBOR_ADDR,
    ),
    (route(IBGP_A, path_id=1), route(IBGP_A, path_id=2), BestPathReason.PATH_ID),
]


@pytest.mark.parametrize(("better", "worse", "reason"), TABLE)
def test_each_step_decides_with_its_reason(
    better: Route, worse: Route, reason: BestPathReason
) -> None:
    assert compare(better, worse) == (better, reason)
    assert compare(worse, better) == (better, reason)
    sel = select([worse, better])
    assert sel.best is better
    assert sel.reason is reason


def test_med_is_only_compared_within_one_neighbouring_as() -> None:
    # Lower MED but from another AS: MED is skipped, router ID decides.
    a = route(IBGP_A, as_path=seq(7), med=50)
    b = route(IBGP_B, as_path=seq(8), med=1)
    assert compare(a, b) == (a, BestPathReason.ROUTER_ID)


def test_only_path() -> None:
    r = route(IBGP_A)
    sel = select([r])
    assert (sel.best, sel.reason, sel.multipath) == (r, BestPathReason.ONLY_PATH, (r,))


def test_identical_paths_tie_as_unknown() -> None:
    r = route(IBGP_A)
    assert compare(r, r) == (r, BestPathReason.UNKNOWN)


def test_local_sources_rank_by_preference() -> None:
    a, b = route(LOCAL), route(KERNEL)
    assert compare(b, a) == (a, BestPathReason.LOCAL_ORIGIN)


def test_select_is_independent_of_order_despite_med() -> None:
    # MED is not a total order. Comparing pairwise in arrival order A, B, C gives C
    # (A beats B on router ID, then C beats A on MED); the RFC elimination drops A against C
    # within AS 100 first, and B then beats C on router ID.
    a = route(peer("a", rid=1, addr="10.0.0.1"), as_path=seq(100), med=200)
    b = route(peer("b", rid=2, addr="10.0.0.2"), as_path=seq(200), med=100)
    c = route(peer("c", rid=3, addr="10.0.0.3"), as_path=seq(100), med=100)
    assert compare(compare(a, b)[0], c)[0] is c
    for order in itertools.permutations([a, b, c]):
        sel = select(list(order))
        assert sel.best is b
        assert sel.reason is BestPathReason.ROUTER_ID


def test_multipath_is_the_set_tied_through_ebgp_over_ibgp() -> None:
    a = route(EBGP_A, as_path=seq(65001, 1), next_hop=b"\x0a\x00\x00\x1e")
    b = route(EBGP_B, as_path=seq(65002, 1), next_hop=b"\x0a\x00\x00\x28")
    worse = route(IBGP_A, as_path=seq(65003, 1), next_hop=b"\x0a\x00\x00\x0a")
    sel = select([b, worse, a])
    assert sel.best is a  # lower router ID
    assert sel.reason is BestPathReason.ROUTER_ID
    assert set(sel.multipath) == {a, b}


def test_multipath_excludes_paths_that_lose_before_router_id() -> None:
    a = route(EBGP_A, as_path=seq(65001))
    b = route(EBGP_B, as_path=seq(65002, 3))
    sel = select([a, b])
    assert sel.multipath == (a,)
    assert sel.reason is BestPathReason.AS_PATH


def test_ranked_puts_best_first() -> None:
    a = route(IBGP_A, local_pref=300)
    b = route(IBGP_B, local_pref=200)
    c = route(EBGP_A, as_path=seq(65001))
    assert ranked([c, b, a]) == [a, b, c]
    assert ranked([]) == []


def _eliminations(paths: list[Route]) -> tuple[Route, BestPathReason, tuple[Route, ...]]:
    """The RFC's definition, straight: every step removes each route some other candidate
    is preferred to (pairwise, with the step's `prefer`), in order."""
    candidates, reason, multipath = list(paths), BestPathReason.UNKNOWN, None
    for i, step in enumerate(STEPS):
        survivors = [r for r in candidates if not any(step.prefer(o, r) < 0 for o in candidates)]
        if len(survivors) < len(candidates):
            candidates, reason = survivors, step.reason
        if i + 1 == MULTIPATH_STEPS:
            multipath = tuple(candidates)
        if len(candidates) == 1:
            break
    best = candidates[0]
    if len(paths) == 1:
        reason = BestPathReason.ONLY_PATH
    return best, reason, multipath if multipath is not None else (best,)


SOURCES = [LOCAL, KERNEL, IBGP_A, IBGP_B, EBGP_A, EBGP_B]
candidate = st.builds(
    lambda source, lp, path, origin, med, oid, clusters, pid: route(
        source,
        pid,
        local_pref=lp,
        as_path=seq(*path) if path else (),
        origin=origin,
        med=med,
        originator_id=oid,
        cluster_list=tuple(clusters),
    ),
    st.sampled_from(SOURCES),
    st.sampled_from([None, 90, 100, 200]),
    st.lists(st.sampled_from([7, 9, 65001]), max_size=3),
    st.sampled_from([ORIGIN_IGP, ORIGIN_EGP]),
    st.sampled_from([None, 0, 5, 10]),
    st.sampled_from([None, 1, 50]),
    st.lists(st.sampled_from([1, 2]), max_size=2),
    st.integers(0, 2),
)


@given(st.lists(candidate, min_size=1, max_size=6))
def test_select_agrees_with_pairwise_successive_elimination(paths: list[Route]) -> None:
    sel = select(paths)
    assert (sel.best, sel.reason, sel.multipath) == _eliminations(paths)
