"""The Loc-RIB: one `Destination` per prefix per family, each holding its candidate paths.

A destination recomputes its best path when a candidate comes or goes and returns the
difference as a `BestChange` (GoBGP's `Calculate()`); nothing here notifies anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bgpd.rib.decision import BestPathReason, ranked, select
from bgpd.rib.route import Route
from bgpd.wire.family import Family


@dataclass(frozen=True, slots=True)
class BestChange:
    """The best path for `prefix` moved from `old` to `new` (either may be None), or only its
    multipath set changed (then `old` and `new` carry the same path). `reason` is the step
    that chose `new`. `multipath` is the next hops of the new multipath set, sorted.
    `paths_only`: neither changed, another of the prefix's paths did (what matters to those
    who advertise every path, ADD-PATH send; the FIB and best-path groups skip it)."""

    family: Family
    prefix: bytes
    old: Route | None
    new: Route | None
    reason: BestPathReason | None
    multipath_changed: bool
    multipath: tuple[bytes, ...] = ()
    paths_only: bool = False

    # One per changed prefix: slot setters instead of the generated frozen __init__.
    def __init__(
        self,
        family: Family,
        prefix: bytes,
        old: Route | None,
        new: Route | None,
        reason: BestPathReason | None,
        multipath_changed: bool,
        multipath: tuple[bytes, ...] = (),
        paths_only: bool = False,
    ) -> None:
        _SET_FAMILY(self, family)
        _SET_PREFIX(self, prefix)
        _SET_OLD(self, old)
        _SET_NEW(self, new)
        _SET_REASON(self, reason)
        _SET_MP_CHANGED(self, multipath_changed)
        _SET_MULTIPATH(self, multipath)
        _SET_PATHS_ONLY(self, paths_only)


(
    _SET_FAMILY,
    _SET_PREFIX,
    _SET_OLD,
    _SET_NEW,
    _SET_REASON,
    _SET_MP_CHANGED,
    _SET_MULTIPATH,
    _SET_PATHS_ONLY,
) = (
    BestChange.__dict__[name].__set__
    for name in (
        "family",
        "prefix",
        "old",
        "new",
        "reason",
        "multipath_changed",
        "multipath",
        "paths_only",
    )
)
_ONLY_PATH = BestPathReason.ONLY_PATH
_NO_PATHS: list[Route] = []


def _same_path(a: Route | None, b: Route | None) -> bool:
    """Equal for everyone downstream: same source, path id and attribute object. The stale
    flag is bookkeeping for the RIB and does not count."""
    if a is None or b is None:
        return a is b
    return a.attrs is b.attrs and a.path_id == b.path_id and a.source.name == b.source.name


class Destination:
    """Candidate paths for one prefix, keyed by (source name, path id), and the best of them."""

    __slots__ = ("best", "family", "multipath", "paths", "prefix", "reason")

    def __init__(self, family: Family, prefix: bytes) -> None:
        self.family = family
        self.prefix = prefix
        self.paths: list[Route] = []
        self.best: Route | None = None
        self.reason: BestPathReason | None = None
        self.multipath: tuple[bytes, ...] = ()

    def _index(self, source_name: str, path_id: int) -> int:
        for i, r in enumerate(self.paths):
            if r.path_id == path_id and r.source.name == source_name:
                return i
        return -1

    def update(self, route: Route) -> BestChange | None:
        """Add `route`, replacing the path from the same source with the same path id."""
        if not self.paths:  # a new prefix: the reflector's common case, decided at once
            self.paths.append(route)
            nh = route.attrs.next_hop
            multipath = () if nh is None else (nh,)
            self.best, self.reason, self.multipath = route, _ONLY_PATH, multipath
            return BestChange(
                self.family, self.prefix, None, route, _ONLY_PATH, bool(multipath), multipath
            )
        i = self._index(route.source.name, route.path_id)
        if i < 0:
            self.paths.append(route)
            return self._recompute()
        same = _same_path(self.paths[i], route)
        self.paths[i] = route
        # The same path again (a repeat, a stale one refreshed) is no change of the path set.
        return self._recompute(paths_changed=not same)

    def withdraw(self, source_name: str, path_id: int = 0) -> BestChange | None:
        i = self._index(source_name, path_id)
        if i < 0:
            return None
        del self.paths[i]
        return self._recompute()

    def swap(self, route: Route) -> bool:
        """Put `route` in place of the path it stands for without re-running the decision:
        for changes the decision ignores (the stale flag). False if no such path is here."""
        i = self._index(route.source.name, route.path_id)
        if i < 0:
            return False
        if self.best is self.paths[i]:
            self.best = route
        self.paths[i] = route
        return True

    def get(self, source_name: str, path_id: int = 0) -> Route | None:
        i = self._index(source_name, path_id)
        return None if i < 0 else self.paths[i]

    def ranked(self) -> list[Route]:
        return ranked(self.paths)

    def _recompute(self, paths_changed: bool = True) -> BestChange | None:
        old = self.best
        old_multipath = self.multipath
        if not self.paths:
            new: Route | None = None
            reason: BestPathReason | None = None
            multipath: tuple[bytes, ...] = ()
        elif len(self.paths) == 1:  # the common case, without the decision machinery
            new, reason = self.paths[0], BestPathReason.ONLY_PATH
            nh = new.attrs.next_hop
            multipath = () if nh is None else (nh,)
        else:
            sel = select(self.paths)
            new, reason = sel.best, sel.reason
            multipath = tuple(
                sorted({nh for r in sel.multipath if (nh := r.attrs.next_hop) is not None})
            )
        self.best, self.reason, self.multipath = new, reason, multipath
        multipath_changed = multipath != old_multipath
        if _same_path(old, new) and not multipath_changed:
            if not paths_changed:
                return None
            # Another path came, went or changed: the best stands.
            return BestChange(
                self.family, self.prefix, old, new, reason, False, multipath, paths_only=True
            )
        return BestChange(self.family, self.prefix, old, new, reason, multipath_changed, multipath)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"Destination({self.family}, {self.prefix.hex()}, {len(self.paths)} paths)"


class LocRib:
    """All destinations, one dict per family keyed by prefix form."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[Family, dict[bytes, Destination]] = {f: {} for f in Family}

    def update(self, route: Route) -> BestChange | None:
        table = self._tables[route.family]
        dest = table.get(route.prefix)
        if dest is None:
            dest = table[route.prefix] = Destination(route.family, route.prefix)
        return dest.update(route)

    def withdraw(
        self, family: Family, prefix: bytes, source_name: str, path_id: int = 0
    ) -> BestChange | None:
        table = self._tables[family]
        dest = table.get(prefix)
        if dest is None:
            return None
        change = dest.withdraw(source_name, path_id)
        if not dest.paths:
            del table[prefix]
        return change

    def swap(self, route: Route) -> bool:
        dest = self._tables[route.family].get(route.prefix)
        return dest is not None and dest.swap(route)

    def get(self, family: Family, prefix: bytes) -> Destination | None:
        return self._tables[family].get(prefix)

    def table(self, family: Family) -> dict[bytes, Destination]:
        """The family's prefix -> destination dict, for bulk work (empty destinations must
        not be left in it)."""
        return self._tables[family]

    def best(self, family: Family, prefix: bytes) -> Route | None:
        dest = self._tables[family].get(prefix)
        return None if dest is None else dest.best

    def paths_of(self, family: Family, prefix: bytes) -> list[Route]:
        """Every path of the prefix, in arrival order (empty when there is none); do not
        change the list."""
        dest = self._tables[family].get(prefix)
        return _NO_PATHS if dest is None else dest.paths

    def iter_best(self, family: Family) -> Iterator[Route]:
        """Best routes of a family. Do not change the table while iterating."""
        for dest in self._tables[family].values():
            if dest.best is not None:
                yield dest.best

    def destinations(self, family: Family) -> Iterator[Destination]:
        return iter(self._tables[family].values())

    def size(self, family: Family | None = None) -> int:
        if family is not None:
            return len(self._tables[family])
        return sum(len(t) for t in self._tables.values())

    def __len__(self) -> int:
        return self.size()
