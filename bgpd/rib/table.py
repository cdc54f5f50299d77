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

    @classmethod
    def of(cls, route: Route) -> Destination:
        """The destination of a prefix whose only path is `route`, decided."""
        dest = cls(route.family, route.prefix)
        dest.paths.append(route)
        dest.best, dest.reason, dest.multipath = route, _ONLY_PATH, _one_path(route)
        return dest

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


Entry = Route | Destination
"""What a Loc-RIB table holds per prefix: its only path, or its destination."""


def _one_path(route: Route) -> tuple[bytes, ...]:
    """The multipath set of a prefix whose only path is `route`."""
    nh = route.attrs.next_hop
    return () if nh is None else (nh,)


def put(table: dict[bytes, Entry], route: Route, cur: Entry) -> BestChange | None:
    """Store `route` in a family's table where `cur` stands for its prefix: a route (the
    only path) or a destination. A second path makes the destination."""
    if not isinstance(cur, Route):
        return cur.update(route)
    if cur.path_id != route.path_id or cur.source.name != route.source.name:
        dest = table[route.prefix] = Destination.of(cur)
        return dest.update(route)
    table[route.prefix] = route
    old_multipath, multipath = _one_path(cur), _one_path(route)
    multipath_changed = multipath != old_multipath
    if _same_path(cur, route) and not multipath_changed:
        return None
    return BestChange(
        route.family, route.prefix, cur, route, _ONLY_PATH, multipath_changed, multipath
    )


class LocRib:
    """All destinations, one dict per family keyed by prefix form.

    A prefix with a single path holds that `Route` itself, not a `Destination` (a reflector's
    common case, each client announcing its own prefixes: 216 bytes less per prefix, the
    destination with its list and multipath tuple). A destination is made when a second path
    arrives and replaced by its route when one is left; `get` and `destinations` show a
    single route as a destination all the same (a fresh one: reading it changes nothing).
    """

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[Family, dict[bytes, Entry]] = {f: {} for f in Family}

    def update(self, route: Route) -> BestChange | None:
        table = self._tables[route.family]
        cur = table.get(route.prefix)
        if cur is None:
            table[route.prefix] = route
            multipath = _one_path(route)
            return BestChange(
                route.family, route.prefix, None, route, _ONLY_PATH, bool(multipath), multipath
            )
        return put(table, route, cur)

    def withdraw(
        self, family: Family, prefix: bytes, source_name: str, path_id: int = 0
    ) -> BestChange | None:
        table = self._tables[family]
        cur = table.get(prefix)
        if cur is None:
            return None
        if isinstance(cur, Route):
            if cur.path_id != path_id or cur.source.name != source_name:
                return None
            del table[prefix]
            return BestChange(family, prefix, cur, None, None, bool(_one_path(cur)), ())
        change = cur.withdraw(source_name, path_id)
        if len(cur.paths) == 1:
            table[prefix] = cur.paths[0]
        elif not cur.paths:
            del table[prefix]
        return change

    def swap(self, route: Route) -> bool:
        table = self._tables[route.family]
        cur = table.get(route.prefix)
        if cur is None:
            return False
        if isinstance(cur, Route):
            if cur.path_id != route.path_id or cur.source.name != route.source.name:
                return False
            table[route.prefix] = route
            return True
        return cur.swap(route)

    def get(self, family: Family, prefix: bytes) -> Destination | None:
        cur = self._tables[family].get(prefix)
        return Destination.of(cur) if isinstance(cur, Route) else cur

    def table(self, family: Family) -> dict[bytes, Entry]:
        """The family's prefix -> route (its only path) or destination dict, for bulk work
        with `put` (no empty destination, nor one of a single path, may be left in it)."""
        return self._tables[family]

    def best(self, family: Family, prefix: bytes) -> Route | None:
        cur = self._tables[family].get(prefix)
        return cur if cur is None or isinstance(cur, Route) else cur.best

    def paths_of(self, family: Family, prefix: bytes) -> list[Route]:
        """Every path of the prefix, in arrival order (empty when there is none); do not
        change the list."""
        dest = self._tables[family].get(prefix)
        if dest is None:
            return _NO_PATHS
        return [dest] if isinstance(dest, Route) else dest.paths

    def iter_best(self, family: Family) -> Iterator[Route]:
        """Best routes of a family. Do not change the table while iterating."""
        for cur in self._tables[family].values():
            if isinstance(cur, Route):
                yield cur
            elif cur.best is not None:
                yield cur.best

    def destinations(self, family: Family) -> Iterator[Destination]:
        for cur in self._tables[family].values():
            yield Destination.of(cur) if isinstance(cur, Route) else cur

    def prefixes(self, family: Family) -> Iterator[bytes]:
        return iter(self._tables[family])

    def size(self, family: Family | None = None) -> int:
        if family is not None:
            return len(self._tables[family])
        return sum(len(t) for t in self._tables.values())

    def __len__(self) -> int:
        return self.size()
