"""The RIB facade the daemon drives: peers' Adj-RIBs-In, local routes and the Loc-RIB.

Everything is pure: each call takes decoded messages or routes and returns the list of
`BestChange`s it caused, for the speaker to hand to the Adj-RIB-Out groups and the kernel.

Import goes through the `ImportPolicy` hook (bgpd/policy holds the rules): once per UPDATE it
normalises the attributes and names a loop, and per family and attributes it may give a
prefix check (a peer's BGPFilter import rules). A rejected route (a loop, or a prefix the
check refuses) replaces what the peer sent before for that NLRI (an implicit withdraw) and
stays in the Adj-RIB-In as received but not accepted. A route the check accepts with other
attributes (an import rule's operations) enters the Loc-RIB with those, and the Adj-RIB-In
keeps both. `reimport` runs a changed import policy over a peer's Adj-RIB-In again.

Peer lifecycle: `add_peer` when a session is established (it may replace the info of a peer
whose stale routes are being kept; routes already stored keep the info they came with until
re-announced). `remove_peer` on a session that ends without graceful restart;
`mark_stale` when a graceful-restart peer goes down, then `sweep_stale` on its End-of-RIB or
when the restart or stale timer fires.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bgpd.rib.adj_in import AdjRibIn
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.decision import BestPathReason
from bgpd.rib.route import (
    LOCAL,
    LOCAL_SOURCE_NAMES,
    Identity,
    ImportCheck,
    LocalSource,
    PeerInfo,
    Route,
)
from bgpd.rib.table import BestChange, Destination, LocRib, put
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

ONLY_PATH = BestPathReason.ONLY_PATH


@dataclass(frozen=True, slots=True)
class PeerCounts:
    """Routes a peer sent that we hold (`received`) and those that passed the import checks
    (`accepted`), BIRD's "imported" and "filtered" split."""

    received: int
    accepted: int


class ImportPolicy(Protocol):
    """What the RIB asks before it accepts a peer's routes."""

    def import_attrs(
        self, ident: Identity, peer: PeerInfo, attrs: PathAttributes
    ) -> tuple[PathAttributes, str | None]:
        """The attributes to store for routes from `peer` (before interning) and why they
        are a loop (None: they are not)."""
        ...

    def prefix_filter(
        self, peer: PeerInfo, family: Family, attrs: PathAttributes
    ) -> ImportCheck | None:
        """A per-prefix check for routes from `peer` in `family` with `attrs` (interned, as
        stored); None accepts every one."""
        ...


def valid_prefix(family: Family, prefix: bytes) -> bool:
    """True for a well-formed prefix form (length octet + exactly the significant octets)."""
    if not prefix:
        return False
    plen = prefix[0]
    return plen <= family.max_len and len(prefix) == 1 + (plen + 7) // 8


class Rib:
    """The routing information base of one BGP speaker.

    `cluster_id` is the RFC 4456 cluster ID used when reflecting and in the CLUSTER_LIST loop
    check; as the RFC says, it defaults to the router ID. `imports` decides what a peer's
    routes are stored as and whether they are accepted.
    """

    def __init__(
        self,
        local_as: int,
        router_id: int,
        cluster_id: int | None = None,
        *,
        imports: ImportPolicy,
    ) -> None:
        self.identity = Identity(
            local_as, router_id, router_id if cluster_id is None else cluster_id
        )
        self.imports = imports
        self.attr_cache = AttrCache()
        self.loc = LocRib()
        self._adj_in: dict[str, AdjRibIn] = {}
        self._local: dict[LocalSource, dict[Family, dict[bytes, Route]]] = {}

    @property
    def local_as(self) -> int:
        return self.identity.local_as

    @property
    def router_id(self) -> int:
        return self.identity.router_id

    @property
    def cluster_id(self) -> int:
        return self.identity.cluster_id

    def set_identity(self, local_as: int, router_id: int, cluster_id: int | None = None) -> None:
        """A new AS, router ID or cluster ID (reconfiguration): later imports see it."""
        self.identity = Identity(
            local_as, router_id, router_id if cluster_id is None else cluster_id
        )

    # --- peers ------------------------------------------------------------------------

    def add_peer(self, peer: PeerInfo) -> None:
        if peer.name in LOCAL_SOURCE_NAMES:
            raise ValueError(f"peer name {peer.name!r} is reserved for local routes")
        adj = self._adj_in.get(peer.name)
        if adj is None:
            self._adj_in[peer.name] = AdjRibIn(peer)
        else:
            adj.peer = peer

    def remove_peer(self, name: str) -> list[BestChange]:
        """Forget a peer and withdraw every route it sent."""
        adj = self._adj_in.pop(name)
        changes: list[BestChange] = []
        for family in Family:
            for attrs in adj.changed(family).values():
                self.attr_cache.release(attrs)
            for route, accepted in adj.clear(family):
                self.attr_cache.release(route.attrs)
                if accepted:
                    ch = self.loc.withdraw(family, route.prefix, name, route.path_id)
                    if ch is not None:
                        changes.append(ch)
        return changes

    def has_peer(self, name: str) -> bool:
        return name in self._adj_in

    def peer(self, name: str) -> PeerInfo:
        return self._adj_in[name].peer

    def peers(self) -> list[PeerInfo]:
        return [adj.peer for adj in self._adj_in.values()]

    def adj_rib_in(self, name: str) -> AdjRibIn:
        return self._adj_in[name]

    # --- import -----------------------------------------------------------------------

    def apply_update(self, peer: str, update: Update, opts: CodecOptions) -> list[BestChange]:
        """Apply one decoded UPDATE from `peer`; returns the best-path changes."""
        adj = self._adj_in[peer]
        info = adj.peer
        changes: list[BestChange] = []
        v4 = Family.IPV4_UNICAST
        add_path = opts.add_path_receive
        if update.withdrawn:
            self._withdraw(adj, v4, update.withdrawn, changes)
        if update.mp_unreach is not None and update.mp_unreach.withdrawn:
            fam = update.mp_unreach.family
            self._withdraw(adj, fam, update.mp_unreach.withdrawn, changes)
        attrs = update.attributes
        if attrs is not None and (update.nlri or update.mp_reach is not None):
            attrs, loop = self.imports.import_attrs(self.identity, info, attrs)
            looped = loop is not None
            if update.nlri:
                canon = self.attr_cache.intern(attrs)
                check = None if looped else self.imports.prefix_filter(info, v4, canon)
                self._announce(
                    adj, v4, update.nlri, canon, v4 in add_path, looped, check, changes
                )
            mp = update.mp_reach
            if mp is not None and mp.nlri:
                canon = self.attr_cache.intern(attrs.replace(next_hop=mp.next_hop))
                fam = mp.family
                check = None if looped else self.imports.prefix_filter(info, fam, canon)
                self._announce(
                    adj, fam, mp.nlri, canon, fam in add_path, looped, check, changes
                )
            self.attr_cache.collect()
        return changes

    def _announce(
        self,
        adj: AdjRibIn,
        family: Family,
        items: Sequence[bytes],
        canon: PathAttributes,
        add_path: bool,
        looped: bool,
        check: ImportCheck | None,
        changes: list[BestChange],
    ) -> None:
        info = adj.peer
        name = info.name
        loc = self.loc
        cache = self.attr_cache
        routes, rejected = adj.tables(family)
        changed = adj.changed(family)
        dests = loc.table(family)
        # Take every reference up front so releasing an old route's equal attributes can
        # never drop the entry in between; hand back the ones not used at the end.
        cache.ref(canon, len(items))
        unused = 0
        for item in items:
            old = routes.get(item)
            if old is not None and old.attrs is canon and old.source is info and not old.stale:
                unused += 1  # a repeat of what we hold
                continue
            if add_path:
                prefix, path_id = item[4:], int.from_bytes(item[:4], "big")
            else:
                prefix, path_id = item, 0
            route = Route(prefix, family, canon, info, path_id)
            routes[item] = route
            old_accepted = False
            if old is not None:
                old_accepted = item not in rejected
                cache.release(old.attrs)
            verdict = False if looped else (True if check is None else check(prefix))
            before = changed.pop(item, None) if changed else None
            if verdict is False:
                rejected.add(item)
                ch = loc.withdraw(family, prefix, name, path_id) if old_accepted else None
            else:
                if rejected:
                    rejected.discard(item)
                if verdict is not True:
                    attrs = cache.intern(verdict)
                    if attrs is not canon:
                        cache.ref(attrs)
                        changed[item] = attrs
                        route = Route(prefix, family, attrs, info, path_id)
                cur = dests.get(prefix)
                if cur is None:  # a new prefix: its only path, decided at once
                    dests[prefix] = route
                    nh = route.attrs.next_hop
                    if nh is None:
                        ch = BestChange(family, prefix, None, route, ONLY_PATH, False, ())
                    else:
                        ch = BestChange(family, prefix, None, route, ONLY_PATH, True, (nh,))
                else:
                    ch = put(dests, route, cur)
            if before is not None:
                cache.release(before)
            if ch is not None:
                changes.append(ch)
        if unused:
            cache.release(canon, unused)

    def _withdraw(
        self,
        adj: AdjRibIn,
        family: Family,
        items: Sequence[bytes],
        changes: list[BestChange],
    ) -> None:
        # Items are Adj-RIB-In keys as they stand, path id included under ADD-PATH.
        name = adj.peer.name
        changed = adj.changed(family)
        for item in items:
            old, accepted = adj.pop(family, item)
            if old is None:
                continue
            self.attr_cache.release(old.attrs)
            if changed:
                before = changed.pop(item, None)
                if before is not None:
                    self.attr_cache.release(before)
            if accepted:
                ch = self.loc.withdraw(family, old.prefix, name, old.path_id)
                if ch is not None:
                    changes.append(ch)

    def reimport(self, peer: str) -> list[BestChange]:
        """Run the import policy (`imports`, as it is now) again over every route `peer` sent,
        kept in its Adj-RIB-In: what it now rejects leaves the Loc-RIB, what it now accepts,
        or accepts with other attributes, enters it. Nothing is asked of the peer (no
        ROUTE-REFRESH, no reset); returns the best-path changes."""
        adj = self._adj_in[peer]
        info = adj.peer
        loc = self.loc
        cache = self.attr_cache
        changes: list[BestChange] = []
        for family in Family:
            routes, rejected = adj.tables(family)
            if not routes:
                continue
            changed = adj.changed(family)
            # One decision per distinct attributes, as per UPDATE on import.
            checks: dict[int, tuple[bool, ImportCheck | None]] = {}
            for item, route in routes.items():
                attrs = route.attrs
                hit = checks.get(id(attrs))
                if hit is None:
                    _, loop = self.imports.import_attrs(self.identity, info, attrs)
                    looped = loop is not None
                    check = None if looped else self.imports.prefix_filter(info, family, attrs)
                    hit = checks[id(attrs)] = (looped, check)
                looped, check = hit
                verdict = False if looped else (True if check is None else check(route.prefix))
                was_accepted = item not in rejected
                before = changed.get(item)
                ch: BestChange | None = None
                if verdict is False:
                    if not was_accepted:
                        continue
                    rejected.add(item)
                    if before is not None:
                        del changed[item]
                        cache.release(before)
                    ch = loc.withdraw(family, route.prefix, info.name, route.path_id)
                else:
                    new = attrs if verdict is True else cache.intern(verdict)
                    if was_accepted and (attrs if before is None else before) is new:
                        continue
                    rejected.discard(item)
                    loc_route = route
                    if new is not attrs:
                        cache.ref(new)
                        changed[item] = new
                        loc_route = Route(
                            route.prefix, family, new, info, route.path_id, route.stale
                        )
                    elif before is not None:
                        del changed[item]
                    if before is not None:
                        cache.release(before)
                    ch = loc.update(loc_route)
                if ch is not None:
                    changes.append(ch)
        cache.collect()
        return changes

    # --- local routes -----------------------------------------------------------------

    def originate(
        self,
        family: Family,
        prefix: bytes,
        attrs: PathAttributes,
        source: LocalSource = LOCAL,
    ) -> list[BestChange]:
        """Announce a route of our own (an IPAM block aggregate; with `source=KERNEL`, a
        route learned from the kernel). Replaces an earlier one for the same prefix."""
        if not valid_prefix(family, prefix):
            raise ValueError(f"not a {family} prefix form: {prefix.hex()}")
        canon = self.attr_cache.intern(attrs)
        self.attr_cache.ref(canon)
        table = self._local.setdefault(source, {}).setdefault(family, {})
        old = table.get(prefix)
        route = Route(prefix, family, canon, source)
        table[prefix] = route
        if old is not None:
            self.attr_cache.release(old.attrs)
        ch = self.loc.update(route)
        return [] if ch is None else [ch]

    def withdraw_local(
        self, family: Family, prefix: bytes, source: LocalSource = LOCAL
    ) -> list[BestChange]:
        table = self._local.get(source, {}).get(family, {})
        old = table.pop(prefix, None)
        if old is None:
            return []
        self.attr_cache.release(old.attrs)
        ch = self.loc.withdraw(family, prefix, source.name)
        return [] if ch is None else [ch]

    def local_routes(self, family: Family, source: LocalSource = LOCAL) -> list[Route]:
        return list(self._local.get(source, {}).get(family, {}).values())

    # --- graceful restart (helper mode) -----------------------------------------------

    def mark_stale(self, peer: str, families: Iterable[Family] | None = None) -> int:
        """Keep a restarting peer's routes, flagged stale (RFC 4724 4.2); returns how many
        were marked. Best paths do not change, so there is nothing to return."""
        adj = self._adj_in[peer]
        marked = 0
        for family in Family if families is None else families:
            changed = adj.changed(family)
            for key, route, accepted in adj.mark_stale(family):
                if accepted:
                    attrs = changed.get(key) if changed else None
                    if attrs is not None:  # the Loc-RIB holds it with the policy's attributes
                        route = Route(
                            route.prefix, family, attrs, route.source, route.path_id, True
                        )
                    self.loc.swap(route)
                marked += 1
        return marked

    def sweep_stale(self, peer: str, family: Family | None = None) -> list[BestChange]:
        """Withdraw the peer's routes still stale (at End-of-RIB or when a timer fires)."""
        adj = self._adj_in[peer]
        changes: list[BestChange] = []
        for fam in Family if family is None else (family,):
            changed = adj.changed(fam)
            for key, route, accepted in adj.pop_stale(fam):
                self.attr_cache.release(route.attrs)
                if changed:
                    before = changed.pop(key, None)
                    if before is not None:
                        self.attr_cache.release(before)
                if accepted:
                    ch = self.loc.withdraw(fam, route.prefix, peer, route.path_id)
                    if ch is not None:
                        changes.append(ch)
        return changes

    # --- queries ----------------------------------------------------------------------

    def best(self, family: Family, prefix: bytes) -> Route | None:
        return self.loc.best(family, prefix)

    def iter_best(self, family: Family) -> Iterator[Route]:
        return self.loc.iter_best(family)

    def destination(self, family: Family, prefix: bytes) -> Destination | None:
        return self.loc.get(family, prefix)

    def paths(self, family: Family, prefix: bytes) -> list[Route]:
        """Every candidate for the prefix, best first (for `explain`)."""
        dest = self.loc.get(family, prefix)
        return [] if dest is None else dest.ranked()

    def multipath(self, family: Family, prefix: bytes) -> tuple[bytes, ...]:
        dest = self.loc.get(family, prefix)
        return () if dest is None else dest.multipath

    def counts(self, peer: str, family: Family | None = None) -> PeerCounts:
        adj = self._adj_in[peer]
        return PeerCounts(adj.received(family), adj.accepted(family))

    def loc_rib_size(self, family: Family | None = None) -> int:
        return self.loc.size(family)
