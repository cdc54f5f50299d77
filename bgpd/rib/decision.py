"""The decision process (RFC 4271 9.1.2 with RFC 4456 9) as an ordered list of steps.

Each `prefer_*` step compares two routes and names the `BestPathReason` (GoBGP's vocabulary)
it decides by. `compare()` runs them pairwise; `select()` runs them over a whole candidate set
the RFC way, as successive eliminations, so the MED step (which only compares routes from the
same neighbouring AS and so is not a total order) gives the same answer whatever order the
candidates arrive in.

Routes still tied after the eBGP-over-iBGP step (the one before IGP cost, which we do not
have) are the multipath set: equal for forwarding, installed together in the FIB.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

from bgpd.rib.route import LocalSource, Route

DEFAULT_LOCAL_PREF = 100


class BestPathReason(enum.Enum):
    """Why the best path won (GoBGP's BestPathReason, plus the two RFC 4456 / ADD-PATH steps
    GoBGP folds elsewhere)."""

    UNKNOWN = "Unknown"
    ONLY_PATH = "Only Path"
    LOCAL_ORIGIN = "Local Origin"
    LOCAL_PREF = "Local Pref"
    AS_PATH = "AS Path"
    ORIGIN = "Origin"
    MED = "MED"
    ASN = "ASN"  # eBGP over iBGP
    ROUTER_ID = "Router ID"
    CLUSTER_LIST = "Cluster List"
    NEIGHBOR_ADDR = "Neighbor Address"
    PATH_ID = "Path ID"

    def __str__(self) -> str:
        return self.value


Prefer = Callable[[Route, Route], int]
"""Negative when the first route is better, positive when the second is, 0 on a tie."""


@dataclass(frozen=True, slots=True)
class Step:
    reason: BestPathReason
    prefer: Prefer
    # A sort key (lower is better) when the step is a total order; elimination then keeps
    # the minimum in one pass instead of comparing every pair.
    key: Callable[[Route], Any] | None = None


def _cmp(x: Any, y: Any) -> int:
    return int(x > y) - int(x < y)


def _local_origin_key(r: Route) -> int:
    src = r.source
    return -src.preference if isinstance(src, LocalSource) else 1


def _local_pref_key(r: Route) -> int:
    lp = r.attrs.local_pref
    return -(DEFAULT_LOCAL_PREF if lp is None else lp)


def _as_path_key(r: Route) -> int:
    return r.attrs.as_path_length()


def _origin_key(r: Route) -> int:
    return r.attrs.origin


def _ebgp_key(r: Route) -> int:
    src = r.source
    return 1 if not isinstance(src, LocalSource) and src.ibgp else 0


def _router_id_key(r: Route) -> int:
    oid = r.attrs.originator_id
    if oid is not None:
        return oid
    src = r.source
    return 0 if isinstance(src, LocalSource) else src.router_id


def _cluster_list_key(r: Route) -> int:
    return len(r.attrs.cluster_list)


def _neighbor_addr_key(r: Route) -> tuple[int, int, bytes]:
    src = r.source
    if isinstance(src, LocalSource):
        return (0, 0, src.name.encode())
    return (1, len(src.address), src.address)


def _path_id_key(r: Route) -> int:
    return r.path_id


def prefer_local_origin(a: Route, b: Route) -> int:
    """Routes this node originates beat learned ones, the more preferred local source first
    (BIRD ranks its static and kernel protocols against BGP by preference)."""
    return _cmp(_local_origin_key(a), _local_origin_key(b))


def prefer_local_pref(a: Route, b: Route) -> int:
    """Highest LOCAL_PREF; absent counts as 100 (it is stripped on import from eBGP)."""
    return _cmp(_local_pref_key(a), _local_pref_key(b))


def prefer_as_path(a: Route, b: Route) -> int:
    """Shortest AS_PATH, an AS_SET counting as one."""
    return _cmp(_as_path_key(a), _as_path_key(b))


def prefer_origin(a: Route, b: Route) -> int:
    """Lowest ORIGIN: IGP, then EGP, then INCOMPLETE."""
    return _cmp(_origin_key(a), _origin_key(b))


def prefer_med(a: Route, b: Route) -> int:
    """Lowest MED, compared only between routes from the same neighbouring AS; a missing MED
    is 0 (RFC 4271 9.1.2.2 c)."""
    if a.attrs.first_as() != b.attrs.first_as():
        return 0
    return _cmp(a.attrs.med or 0, b.attrs.med or 0)


def prefer_ebgp(a: Route, b: Route) -> int:
    """Routes learned over eBGP beat routes learned over iBGP."""
    return _cmp(_ebgp_key(a), _ebgp_key(b))


def prefer_router_id(a: Route, b: Route) -> int:
    """Lowest router ID, taking ORIGINATOR_ID in its place when present (RFC 4456 9)."""
    return _cmp(_router_id_key(a), _router_id_key(b))


def prefer_cluster_list(a: Route, b: Route) -> int:
    """Shortest CLUSTER_LIST (RFC 4456 9)."""
    return _cmp(_cluster_list_key(a), _cluster_list_key(b))


def prefer_neighbor_addr(a: Route, b: Route) -> int:
    """Lowest peer address."""
    return _cmp(_neighbor_addr_key(a), _neighbor_addr_key(b))


def prefer_path_id(a: Route, b: Route) -> int:
    """Lowest ADD-PATH identifier: the only difference left between two paths one peer sent."""
    return _cmp(a.path_id, b.path_id)


STEPS: tuple[Step, ...] = (
    Step(BestPathReason.LOCAL_ORIGIN, prefer_local_origin, _local_origin_key),
    Step(BestPathReason.LOCAL_PREF, prefer_local_pref, _local_pref_key),
    Step(BestPathReason.AS_PATH, prefer_as_path, _as_path_key),
    Step(BestPathReason.ORIGIN, prefer_origin, _origin_key),
    Step(BestPathReason.MED, prefer_med),
    Step(BestPathReason.ASN, prefer_ebgp, _ebgp_key),
    Step(BestPathReason.ROUTER_ID, prefer_router_id, _router_id_key),
    Step(BestPathReason.CLUSTER_LIST, prefer_cluster_list, _cluster_list_key),
    Step(BestPathReason.NEIGHBOR_ADDR, prefer_neighbor_addr, _neighbor_addr_key),
    Step(BestPathReason.PATH_ID, prefer_path_id, _path_id_key),
)

MULTIPATH_STEPS = 6
"""Routes tied through the first six steps (to eBGP over iBGP) are equal-cost multipaths."""


def compare(a: Route, b: Route) -> tuple[Route, BestPathReason]:
    """The better of two routes and the step that decided; (a, UNKNOWN) on a full tie."""
    for step in STEPS:
        c = step.prefer(a, b)
        if c < 0:
            return a, step.reason
        if c > 0:
            return b, step.reason
    return a, BestPathReason.UNKNOWN


@dataclass(frozen=True, slots=True)
class Selection:
    best: Route
    reason: BestPathReason
    multipath: tuple[Route, ...]
    """The best route and every route equal to it through the multipath steps."""


def _eliminate(key: Callable[[Route], Any], candidates: list[Route]) -> list[Route]:
    keys = [key(r) for r in candidates]
    low = min(keys)
    return [r for r, k in zip(candidates, keys, strict=True) if k == low]


def _lowest_med(candidates: list[Route]) -> list[Route]:
    """The MED step in one pass: keep each neighbouring AS's lowest-MED routes (the same
    survivors as comparing every pair with `prefer_med`)."""
    lowest: dict[int | None, int] = {}
    for r in candidates:
        attrs = r.attrs
        first, med = attrs.first_as(), attrs.med or 0
        if med < lowest.get(first, med + 1):
            lowest[first] = med
    return [r for r in candidates if (r.attrs.med or 0) == lowest[r.attrs.first_as()]]


_MED = STEPS.index(next(s for s in STEPS if s.reason is BestPathReason.MED))
"""The steps before MED are total orders on one route's own values: they are eliminated in
one pass over their keys taken together (`_head_key`). MED has no key (`_lowest_med`); every
step after it has one."""


def _head_key(r: Route) -> tuple[int, int, int, int]:
    return (_local_origin_key(r), _local_pref_key(r), _as_path_key(r), _origin_key(r))


def _head_reason(keys: list[tuple[int, int, int, int]], low: tuple[int, int, int, int]) -> int:
    """Index of the last head step that, run alone in order, would eliminate a route."""
    for j in range(_MED - 1, -1, -1):
        if any(k[:j] == low[:j] and k[j] != low[j] for k in keys):
            return j
    raise AssertionError("called only when some route was eliminated")


def select(paths: Sequence[Route]) -> Selection:
    """Run the decision process over all candidates (at least one)."""
    if len(paths) == 1:
        only = paths[0]
        return Selection(only, BestPathReason.ONLY_PATH, (only,))
    reason = BestPathReason.UNKNOWN
    keys = [_head_key(r) for r in paths]
    low = min(keys)
    candidates = [r for r, k in zip(paths, keys, strict=True) if k == low]
    if len(candidates) < len(paths):
        reason = STEPS[_head_reason(keys, low)].reason
    multipath: tuple[Route, ...] | None = None
    for i in range(_MED, len(STEPS)):
        if len(candidates) == 1:
            break
        step = STEPS[i]
        if step.key is None:
            survivors = _lowest_med(candidates)
        else:
            survivors = _eliminate(step.key, candidates)
        if len(survivors) < len(candidates):
            candidates = survivors
            reason = step.reason
        if i + 1 == MULTIPATH_STEPS:
            multipath = tuple(candidates)
    best = candidates[0]
    return Selection(best, reason, multipath if multipath is not None else (best,))


def ranked(paths: Sequence[Route]) -> list[Route]:
    """Candidates in preference order, best first, for display (`explain`)."""
    if not paths:
        return []
    best = select(paths).best
    rest = sorted((p for p in paths if p is not best), key=cmp_to_key(_order))
    return [best, *rest]


def _order(a: Route, b: Route) -> int:
    return -1 if compare(a, b)[0] is a else 1
