"""Adj-RIB-In: every route one peer announced, before and after the import checks.

Routes are keyed per family by the NLRI item as received: the prefix form, preceded by the
4-octet path identifier when ADD-PATH is negotiated inbound. That is exactly the
(prefix, path id) key, in the bytes the decoder already made, with no tuple per route.
Routes that failed an import check (an AS_PATH or RFC 4456 loop, an import filter) stay here,
counted as received but not accepted, and never reach the Loc-RIB. Routes are kept with the
attributes they arrived with (normalised), so a changed import policy can be run over them
again; when the import policy accepted a route with other attributes (a BGPFilter's
operations), those are kept beside it in `changed`, and the Loc-RIB holds the route with them.
"""

from __future__ import annotations

from collections.abc import Iterator

from bgpd.rib.route import PeerInfo, Route
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family


class AdjRibIn:
    __slots__ = ("_changed", "_rejected", "_routes", "peer")

    def __init__(self, peer: PeerInfo) -> None:
        self.peer = peer
        self._routes: dict[Family, dict[bytes, Route]] = {f: {} for f in Family}
        self._rejected: dict[Family, set[bytes]] = {f: set() for f in Family}
        self._changed: dict[Family, dict[bytes, PathAttributes]] = {f: {} for f in Family}

    def tables(self, family: Family) -> tuple[dict[bytes, Route], set[bytes]]:
        """The family's key -> route dict and its set of rejected keys, for bulk work."""
        return self._routes[family], self._rejected[family]

    def changed(self, family: Family) -> dict[bytes, PathAttributes]:
        """Key -> the attributes the import policy accepted the route with, where they are
        not the ones it arrived with (interned; the owner holds a reference for each)."""
        return self._changed[family]

    def accepted_route(self, family: Family, key: bytes) -> Route | None:
        """The route as the Loc-RIB holds it (None when absent or rejected)."""
        route = self._routes[family].get(key)
        if route is None or key in self._rejected[family]:
            return None
        attrs = self._changed[family].get(key)
        if attrs is None:
            return route
        return Route(route.prefix, route.family, attrs, route.source, route.path_id, route.stale)

    def get(self, family: Family, key: bytes) -> Route | None:
        return self._routes[family].get(key)

    def is_accepted(self, family: Family, key: bytes) -> bool:
        return key in self._routes[family] and key not in self._rejected[family]

    def put(
        self, family: Family, key: bytes, route: Route, accepted: bool
    ) -> tuple[Route | None, bool]:
        """Store `route` under `key`; returns the route it replaced (or None) and whether
        that one had been accepted."""
        table = self._routes[family]
        old = table.get(key)
        table[key] = route
        rejected = self._rejected[family]
        old_accepted = old is not None and key not in rejected
        if accepted:
            rejected.discard(key)
        else:
            rejected.add(key)
        return old, old_accepted

    def pop(self, family: Family, key: bytes) -> tuple[Route | None, bool]:
        """Remove `key`; returns (the route or None, whether it had been accepted)."""
        route = self._routes[family].pop(key, None)
        if route is None:
            return None, False
        rejected = self._rejected[family]
        if key in rejected:
            rejected.discard(key)
            return route, False
        return route, True

    def items(self, family: Family) -> Iterator[tuple[bytes, Route]]:
        return iter(self._routes[family].items())

    def routes(self, family: Family) -> Iterator[Route]:
        return iter(self._routes[family].values())

    def received(self, family: Family | None = None) -> int:
        if family is not None:
            return len(self._routes[family])
        return sum(len(t) for t in self._routes.values())

    def accepted(self, family: Family | None = None) -> int:
        families = list(Family) if family is None else [family]
        return sum(len(self._routes[f]) - len(self._rejected[f]) for f in families)

    def mark_stale(self, family: Family) -> list[tuple[bytes, Route, bool]]:
        """Flag every route of a family stale (RFC 4724 4.2); returns the keys and new stale
        routes with whether each is accepted (so the caller can swap them into the Loc-RIB)."""
        table = self._routes[family]
        rejected = self._rejected[family]
        out: list[tuple[bytes, Route, bool]] = []
        for key, r in table.items():
            if not r.stale:
                stale = Route(r.prefix, r.family, r.attrs, r.source, r.path_id, True)
                table[key] = stale
                out.append((key, stale, key not in rejected))
        return out

    def pop_stale(self, family: Family) -> list[tuple[bytes, Route, bool]]:
        """Remove the routes of a family still stale; returns each with its key and whether
        it had been accepted."""
        table = self._routes[family]
        rejected = self._rejected[family]
        keys = [k for k, r in table.items() if r.stale]
        out: list[tuple[bytes, Route, bool]] = []
        for key in keys:
            route = table.pop(key)
            if key in rejected:
                rejected.discard(key)
                out.append((key, route, False))
            else:
                out.append((key, route, True))
        return out

    def clear(self, family: Family) -> list[tuple[Route, bool]]:
        """Empty one family; returns each route with whether it had been accepted (the
        caller releases `changed(family)` first)."""
        rejected = self._rejected[family]
        out = [(r, k not in rejected) for k, r in self._routes[family].items()]
        self._routes[family] = {}
        self._rejected[family] = set()
        self._changed[family] = {}
        return out
