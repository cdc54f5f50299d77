"""Adj-RIB-Out by update group: encode once, send the same bytes to every member.

Peers whose outbound policy is the same (`GroupKey`: iBGP or eBGP, route-reflector client or
not, the AS and next hop we present, the negotiated codec options and families, and the
names of the export policies applied to them) form one `UpdateGroup`. The speaker stages
every `BestChange` into every group; within a tick the last change per prefix wins.
`flush()` then turns the staged changes into UPDATE bytes once per group: prefixes bucketed
by their interned export attributes (BIRD's `bgp_bucket`), one `pack_announcements` per
bucket and one `pack_withdrawals`, joined into one bytes object for all members.

The group keeps its Adj-RIB-Out (prefix -> exported attributes and source peer), so a
prefix is withdrawn only if it was advertised and a change that exports the same attributes
from the same source sends nothing.

Split horizon per member (a route is never advertised back to the peer it came from): FRR's
update groups apply "do not send back route to sender" only when a subgroup has a single
peer and otherwise let the sender drop its own route by its loop checks (AS_PATH for eBGP,
ORIGINATOR_ID for reflected routes). Here the announcement goes to all members too (so the
shared bytes stay shared) and the source member then gets a member-specific withdrawal of
that prefix (`GroupFlush.extra`), which makes the result exact even for a peer that accepts
its own AS. Each change has one source, so the corrections cost O(changes) in all, not
O(members). With a single member, its own routes are simply left out. The invariant: a
member has been sent exactly the group's Adj-RIB-Out minus the entries it is the source of.

Export policy lives in bgpd/policy: each group holds an `OutboundPolicy` made for its key by
the `OutboundPolicies` given to the `AdjRibOut`. Per prefix, `allows(route)` says whether the
route may go to the group at all (Calico's export rules, BGPFilter rules), as a token naming
how (the filter rule that accepted it, the communities its prefix gets); per distinct
(attributes, source, token) in a family, `export(route, cache, token)` applies the protocol's
rules (split horizon, reflection) and the token's changes and returns the attributes to send,
or None. What is rejected is never advertised, and withdrawn if it was. When the policies
change, `AdjRibOut.set_policies()` restages every best route of the groups whose policy
changed, so the next flush sends exactly the difference; `regroup()` moves a live member to
another group (a new list of filters) with the withdrawals it needs.

ADD-PATH (RFC 7911): for a family whose members negotiated ADD-PATH send, the group
advertises every path of a prefix that its policy lets out, not only the best, each under a
path identifier of its own (`PathIds`: one per path source, the peer and the path id it sent,
as BIRD numbers route sources), and withdraws each path by its identifier. Staged changes
then only mark the prefix; the flush reads the prefix's current paths from the Loc-RIB
(`PathSource`), so a change to a path that is not the best (which the Loc-RIB reports as a
`BestChange` with `paths_only`) reaches these groups too. The table is then keyed by item
(path identifier + prefix) instead of prefix, and everything else — buckets, split horizon,
catch-up — works on items unchanged.

A peer joining a group catches up from bytes the group has already encoded, shared with
every peer joining around the same time (FRR's update subgroups catch up, then merge into
their group): the group keeps a catch-up log, a snapshot of its Adj-RIB-Out encoded once
followed by every write-out since, each as the very bytes its members were sent. A joining
member first reads that log with a cursor of its own (`catch_up()`, a generator the shell
sends slice by slice, yielding to the event loop between them); write-outs meanwhile are
appended to the log and reach it through the cursor, never directly, so it always applies
them in order. When the cursor reaches the end it gets End-of-RIB per family and becomes a
live member: later write-outs go to it with the others (`GroupFlush` is for `live`). The log
is rebuilt from the table when it has grown past the table it started from (or past
`MAX_LOG_ENTRIES` write-outs), so catching up costs at most about twice the table, and never
an encode per member.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bgpd.rib.attrcache import AttrCache
from bgpd.rib.route import PeerInfo, Route, Source
from bgpd.rib.table import BestChange, Destination
from bgpd.wire import encode_end_of_rib, pack_announcements, pack_withdrawals
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family
from bgpd.wire.options import CodecOptions

ADD_PATH_ID = (1).to_bytes(4, "big")
"""The first path identifier `PathIds` hands out."""

DUMP_SLICE = 2000
"""Prefixes per slice of an encoded snapshot (a joining member's catch-up)."""

MAX_LOG_ENTRIES = 32
"""Write-outs a catch-up log may hold past its snapshot before a joining member rebuilds it:
a joiner sends every entry, so a long log of small write-outs (a storm of joins, each
announcing a few routes) would cost more sends than a fresh snapshot."""

Chunk = tuple[bytes, int]
"""Pre-encoded UPDATE bytes and the number of BGP messages in them."""

_END_OF_RIB: Mapping[Family, Chunk] = {f: (encode_end_of_rib(f), 1) for f in Family}

_Entry = tuple[PathAttributes, str]
"""An advertised prefix: exported attributes and the name of the route's source."""

_Memo = dict[tuple[int, int, int], tuple[object, object, object, "PathAttributes | None"]]
"""Exports of one family by (attributes, source, token) ids, holding the three alive."""


_Items = bytes | list[bytes]
"""The items (path id + prefix) advertised for a prefix under ADD-PATH send: the item itself
when there is one (the common case: no list per prefix, ~64 bytes a route), else a list."""


def _items(had: _Items | None) -> Sequence[bytes]:
    if had is None:
        return ()
    return (had,) if isinstance(had, bytes) else had


class PathSource(Protocol):
    """Every path of the Loc-RIB, not only the best (bgpd/rib/table.py's LocRib)."""

    def paths_of(self, family: Family, prefix: bytes) -> Sequence[Route]: ...

    def table(self, family: Family) -> Mapping[bytes, Route | Destination]:
        """The family's prefix -> only route or destination table (for a flush's many
        lookups)."""
        ...


class PathIds:
    """The ADD-PATH identifiers we advertise: one per path source (the peer or local source
    and the path id it sent us), handed out in order from 1 and never changed while the
    daemon runs, so every group and every member sees a path under the same identifier."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        self._ids: dict[tuple[str, int], bytes] = {}

    def of(self, route: Route) -> bytes:
        key = (route.source.name, route.path_id)
        pid = self._ids.get(key)
        if pid is None:
            pid = self._ids[key] = (len(self._ids) + 1).to_bytes(4, "big")
        return pid

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """Everything the exported bytes depend on. Peers with equal keys share a group.

    `local_ipv4` / `local_ipv6`: our packed address on the sessions for that family, the next
    hop of routes we originate and of next-hop-self; every family in `families` needs one.
    `policies` names the export policies applied on top of the protocol's rules (empty: the
    node's default export policy only), so peers with different policies never share bytes.
    `next_hop_keep` passes learned routes' next hops on unchanged, eBGP included; routes we
    originate always carry ours. The ADD-PATH send families are in `options`.
    """

    ibgp: bool
    rr_client: bool
    local_as: int
    next_hop_self: bool
    local_ipv4: bytes | None
    local_ipv6: bytes | None
    options: CodecOptions
    families: frozenset[Family]
    policies: tuple[str, ...] = ()
    # BIRD's `next hop keep`: a learned route's next hop is passed on even to eBGP peers
    # (BGPPeer nextHopMode Keep / keepOriginalNextHop).
    next_hop_keep: bool = False

    def __post_init__(self) -> None:
        for family in self.families:
            if self.local_address(family) is None:
                raise ValueError(f"update group for {family} needs our local {family} address")

    @classmethod
    def for_peer(
        cls,
        peer: PeerInfo,
        *,
        options: CodecOptions,
        families: Iterable[Family],
        local_ipv4: bytes | None = None,
        local_ipv6: bytes | None = None,
        next_hop_self: bool = False,
        policies: tuple[str, ...] = (),
        next_hop_keep: bool = False,
    ) -> GroupKey:
        # eBGP is next-hop-self unless told to keep; folding the flag keeps such peers in one
        # group. Self wins over keep (the planner never sets both).
        keep = next_hop_keep and not next_hop_self
        return cls(
            ibgp=peer.ibgp,
            rr_client=peer.rr_client,
            local_as=peer.local_as,
            next_hop_self=next_hop_self or (not peer.ibgp and not keep),
            local_ipv4=local_ipv4,
            local_ipv6=local_ipv6,
            options=options,
            families=frozenset(families),
            policies=policies,
            next_hop_keep=keep,
        )

    def local_address(self, family: Family) -> bytes | None:
        return self.local_ipv4 if family is Family.IPV4_UNICAST else self.local_ipv6


class OutboundPolicy(Protocol):
    """One group's export policy (bgpd/policy makes them)."""

    def allows(self, route: Route) -> object:
        """Whether the route may go to the group at all, asked per prefix: falsy when not,
        else a token (`True`, or a long-lived object compared by identity) that stands for how
        it goes out, e.g. the filter rule that accepted it."""
        ...

    def sends_from(self, source: Source) -> bool:
        """False when no route from `source` may go to the group, whatever the route (RFC
        4456's rule by the kinds of source and group); True when some may."""
        ...

    def export(self, route: Route, cache: AttrCache, token: object) -> PathAttributes | None:
        """The attributes to advertise the route with (interned in `cache`), or None when it
        may not go out. Depends on the route's family, attributes and source and the token
        `allows` gave only: the group asks once per distinct combination."""
        ...


class OutboundPolicies(Protocol):
    """Makes the `OutboundPolicy` of each group."""

    def for_group(self, key: GroupKey, cluster_id: int) -> OutboundPolicy: ...


@dataclass(frozen=True, slots=True)
class GroupFlush:
    """One tick's output of a group: `data` for every member, then `extra` bytes for the few
    members that were the source of a route announced in `data` (split horizon). Write the
    two one after the other rather than joining them, so `data` is never copied per member."""

    data: bytes = b""
    extra: Mapping[str, bytes] = field(default_factory=dict)

    def for_member(self, name: str) -> tuple[bytes, ...]:
        """What to write to member `name`, in order."""
        tail = self.extra.get(name)
        if not self.data:
            return () if tail is None else (tail,)
        return (self.data,) if tail is None else (self.data, tail)

    def __bool__(self) -> bool:
        return bool(self.data or self.extra)


_NOTHING = GroupFlush()

_NO_ATTRS = PathAttributes()
"""Stands for "no run yet" in `UpdateGroup.flush`: never an interned export (it is not in
any group's cache, and identity is what is compared)."""


def _count(data: bytes) -> int:
    """BGP messages in whole pre-encoded messages (walking the length fields)."""
    count = at = 0
    end = len(data)
    while at < end:
        at += int.from_bytes(data[at + 16 : at + 18], "big")
        count += 1
    return count


class CatchUpLog:
    """A snapshot of the group's Adj-RIB-Out as encoded chunks, then each write-out since
    (its shared bytes, with the split-horizon corrections per member)."""

    __slots__ = ("entries", "flushed_items", "flushes", "snapshot_items")

    def __init__(self, snapshot: list[Chunk], items: int) -> None:
        self.entries: list[tuple[Chunk | None, Mapping[str, Chunk]]] = [
            (chunk, {}) for chunk in snapshot
        ]
        self.snapshot_items = items
        self.flushed_items = 0
        self.flushes = 0

    def append(self, out: GroupFlush, items: int) -> None:
        data = (out.data, _count(out.data)) if out.data else None
        extra = {name: (b, _count(b)) for name, b in out.extra.items()}
        self.entries.append((data, extra))
        self.flushed_items += items
        self.flushes += 1

    def stale(self) -> bool:
        """Longer to read than a snapshot made now would be."""
        return self.flushes > MAX_LOG_ENTRIES or self.flushed_items > self.snapshot_items


class UpdateGroup:
    __slots__ = (
        "_by_prefix",
        "_by_source",
        "_log",
        "_out",
        "_paths",
        "_pending",
        "_reading",
        "cache",
        "key",
        "live",
        "members",
        "path_ids",
        "policy",
    )

    def __init__(
        self,
        key: GroupKey,
        *,
        policy: OutboundPolicy,
        paths: PathSource | None = None,
        path_ids: PathIds | None = None,
    ) -> None:
        self.key = key
        self.policy = policy
        # Every member, and those of them caught up (write-outs go to these directly).
        self.members: dict[str, PeerInfo] = {}
        self.live: dict[str, PeerInfo] = {}
        # The log a joining member would start from, and the one each member catching up
        # reads (write-outs are appended to all of them).
        self._log: CatchUpLog | None = None
        self._reading: dict[str, tuple[CatchUpLog, object]] = {}
        self.cache = AttrCache()
        # Per family: item -> entry, where an item is the prefix, or under ADD-PATH send the
        # path identifier and the prefix.
        self._out: dict[Family, dict[bytes, _Entry]] = {f: {} for f in key.families}
        self._by_source: dict[Family, dict[str, int]] = {f: {} for f in key.families}
        self._pending: dict[Family, dict[bytes, Route | None]] = {f: {} for f in key.families}
        # ADD-PATH send families: the items advertised per prefix; where every path comes
        # from (without one, the best path alone is advertised); and the identifiers.
        self._by_prefix: dict[Family, dict[bytes, _Items]] = {
            f: {} for f in key.families if f in key.options.add_path_send
        }
        self._paths = paths
        self.path_ids = path_ids if path_ids is not None else PathIds()

    @property
    def all_paths(self) -> bool:
        """True when some family advertises every path (ADD-PATH send)."""
        return bool(self._by_prefix)

    # --- membership -------------------------------------------------------------------

    def add_member(self, peer: PeerInfo) -> None:
        """A member that must catch up (`catch_up()`) before write-outs reach it."""
        self.members[peer.name] = peer
        self.live.pop(peer.name, None)

    def remove_member(self, name: str) -> None:
        self.members.pop(name, None)
        self.live.pop(name, None)
        self._reading.pop(name, None)
        if not self.members:
            self._log = None

    # --- changes in -------------------------------------------------------------------

    def stage(self, change: BestChange) -> None:
        self.stage_all((change,))

    def stage_all(self, changes: Iterable[BestChange]) -> None:
        # A tick's changes come in runs of one family: look its table up once per run.
        pendings = self._pending
        family: Family | None = None
        pending: dict[bytes, Route | None] | None = None
        for change in changes:
            if change.family is not family:
                family = change.family
                pending = pendings.get(family)
            if pending is not None:
                pending[change.prefix] = change.new

    def restage(self, family: Family, routes: Iterable[Route]) -> None:
        """Re-examine every prefix of `family` on the next flush: `routes` are the current
        best routes; advertised prefixes not among them are withdrawn."""
        pending = self._pending.get(family)
        if pending is None:
            return
        by_prefix = self._by_prefix.get(family)
        for prefix in self._out[family] if by_prefix is None else by_prefix:
            pending.setdefault(prefix, None)
        for route in routes:
            pending[route.prefix] = route

    def pending(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def load(self, routes: Iterable[Route]) -> None:
        """Fill the Adj-RIB-Out from best routes without producing bytes: for a new group,
        before its first member's initial dump. (ADD-PATH send families take every path
        from the path source, when there is one, instead.)"""
        memos: dict[Family, _Memo] = {}
        allows = self.policy.allows
        for route in routes:
            family = route.family
            out = self._out.get(family)
            if out is None:
                continue
            memo = memos.get(family)
            if memo is None:
                memo = memos[family] = {}
            if family in self._by_prefix:
                # Every path of the prefix, not only this best one.
                paths = self._paths.paths_of(family, route.prefix) if self._paths else (route,)
                self._load_paths(family, paths, memo)
                continue
            token = allows(route)
            desired = self._export(route, memo, token) if token else None
            cur = out.get(route.prefix)
            counts = self._by_source[family]
            if desired is None:
                if cur is not None:
                    del out[route.prefix]
                    self._forget(counts, cur)
                continue
            self._remember(out, counts, route.prefix, (desired, route.source.name), cur)
        self.cache.collect()

    def _load_paths(
        self,
        family: Family,
        routes: Iterable[Route],
        memo: _Memo,
    ) -> None:
        out, counts, by_prefix = self._out[family], self._by_source[family], self._by_prefix[family]
        allows = self.policy.allows
        for route in routes:
            token = allows(route)
            if not token:
                continue
            desired = self._export(route, memo, token)
            if desired is None:
                continue
            item = self.path_ids.of(route) + route.prefix
            self._remember(out, counts, item, (desired, route.source.name), out.get(item))
            had = by_prefix.get(route.prefix)
            if had is None:
                by_prefix[route.prefix] = item
            elif isinstance(had, bytes):
                if had != item:
                    by_prefix[route.prefix] = [had, item]
            elif item not in had:
                had.append(item)

    # --- bytes out --------------------------------------------------------------------

    def flush(self) -> GroupFlush:
        """Apply the staged changes to the Adj-RIB-Out and encode them once."""
        members = self.members
        # A single member, caught up: its own routes are simply left out. (Not while it
        # catches up: what it reads must be what any other member would be sent.)
        sole = next(iter(members)) if len(members) == 1 and len(self.live) == 1 else None
        if sole is not None:
            # Bytes made for one member (its own routes left out) are no one else's: a
            # member joining later starts from a fresh snapshot.
            self._log = None
        opts = self.key.options
        allows = self.policy.allows
        export = self._export
        take = self._take
        forget = self._forget
        parts: list[bytes] = []
        corrections: dict[str, dict[Family, list[bytes]]] = {}
        items_out = 0
        for family in Family:
            pending = self._pending.get(family)
            if not pending:
                continue
            # Per family: one route's attributes can go out with either family's next hop.
            memo: _Memo = {}
            items_out += len(pending)
            self._pending[family] = {}
            buckets: dict[int, tuple[PathAttributes, list[bytes]]] = {}
            withdrawn: list[bytes] = []
            fixes: dict[str, list[bytes]] = {}
            if family in self._by_prefix:
                self._flush_paths(
                    family, pending, memo, sole, buckets, withdrawn, fixes
                )
            else:
                out = self._out[family]
                counts = self._by_source[family]
                # Consecutive prefixes mostly come from one UPDATE: same attributes, same
                # source, so the same export and the same bucket as the previous one.
                last_attrs: PathAttributes | None = None
                last_source: object = None
                last_token: object = None
                last_desired: PathAttributes | None = None
                last_bucket: PathAttributes | None = None
                last_items: list[bytes] = []
                # Runs of equal (attributes, source) share one entry tuple, and new entries
                # take their attribute reference and source count once per run: settled
                # before anything is released (a release must not see a count still owed: it
                # could drop the cache entry) and at the end.
                entry: _Entry = (_NO_ATTRS, "")
                run = 0
                for prefix, route in pending.items():
                    desired = None
                    token = allows(route) if route is not None else None
                    if token:
                        assert route is not None
                        attrs = route.attrs
                        source = route.source
                        if attrs is last_attrs and source is last_source and token is last_token:
                            desired = last_desired
                        else:
                            desired = export(route, memo, token)
                            last_attrs, last_source, last_token = attrs, source, token
                            last_desired = desired
                    cur = out.get(prefix)
                    if desired is None or route is None:
                        if cur is not None:
                            if run:
                                take(counts, entry, run)
                                run = 0
                            del out[prefix]
                            forget(counts, cur)
                            withdrawn.append(prefix)
                        continue
                    src = route.source.name
                    if cur is not None and cur[0] is desired and cur[1] == src:
                        continue  # already advertised exactly so
                    if desired is not entry[0] or src != entry[1]:
                        if run:
                            take(counts, entry, run)
                            run = 0
                        entry = (desired, src)
                    out[prefix] = entry
                    if cur is None:
                        run += 1
                    else:
                        take(counts, entry, run + 1)
                        run = 0
                        forget(counts, cur)
                    if src == sole:
                        # The only member is the source: send it nothing, and take back what
                        # it had from us for this prefix.
                        if cur is not None and cur[1] != src:
                            withdrawn.append(prefix)
                        continue
                    if desired is last_bucket:
                        last_items.append(prefix)
                    else:
                        bucket = buckets.get(id(desired))
                        if bucket is None:
                            last_items = [prefix]
                            buckets[id(desired)] = (desired, last_items)
                        else:
                            last_items = bucket[1]
                            last_items.append(prefix)
                        last_bucket = desired
                    if src in members:
                        fix = fixes.get(src)
                        if fix is None:
                            fixes[src] = [prefix]
                        else:
                            fix.append(prefix)
                if run:
                    take(counts, entry, run)
            for name, items in fixes.items():
                corrections.setdefault(name, {})[family] = items
            if members:
                parts.extend(pack_withdrawals(family, withdrawn, opts))
                for attrs, items in buckets.values():
                    parts.extend(pack_announcements(family, attrs, items, opts))
        self.cache.collect()
        if not members or not (parts or corrections):
            return _NOTHING
        extra = {
            name: b"".join(
                b"".join(pack_withdrawals(family, items, opts))
                for family, items in per_family.items()
            )
            for name, per_family in corrections.items()
        }
        result = GroupFlush(b"".join(parts), extra)
        if sole is None:
            logs = {id(log): log for log, _token in self._reading.values()}
            if self._log is not None:
                logs[id(self._log)] = self._log
            for log in logs.values():
                log.append(result, items_out)
            if self._log is not None and self._log.stale():
                # The next joiner would start from a fresh snapshot anyway; those reading
                # this log hold it themselves. Kept, it would grow by every write-out.
                self._log = None
        return result

    def _flush_paths(
        self,
        family: Family,
        pending: dict[bytes, Route | None],
        memo: _Memo,
        sole: str | None,
        buckets: dict[int, tuple[PathAttributes, list[bytes]]],
        withdrawn: list[bytes],
        fixes: dict[str, list[bytes]],
    ) -> None:
        """An ADD-PATH send family's flush: per staged prefix, every path the policy lets
        out is advertised under its own identifier, and each identifier advertised before
        but no longer wanted is withdrawn."""
        out = self._out[family]
        counts = self._by_source[family]
        by_prefix = self._by_prefix[family]
        allows = self.policy.allows
        export = self._export
        take, forget = self._take, self._forget
        ids = self.path_ids
        members = self.members
        source = self._paths
        dests = source.table(family) if source is not None else None
        # Consecutive prefixes mostly come from one UPDATE: one source, the same attributes,
        # the same export and path id as the previous one.
        last_attrs: PathAttributes | None = None
        last_source: object = None
        last_token: object = None
        last_desired: PathAttributes | None = None
        id_source: object = None
        id_number = -1
        last_id = b""

        def add(item: bytes, entry: _Entry) -> None:
            bucket = buckets.get(id(entry[0]))
            if bucket is None:
                buckets[id(entry[0])] = (entry[0], [item])
            else:
                bucket[1].append(item)
            if entry[1] in members:
                fix = fixes.get(entry[1])
                if fix is None:
                    fixes[entry[1]] = [item]
                else:
                    fix.append(item)

        # New entries take their attribute references and source counts once per run of
        # equal entries, settled before anything is released (see flush).
        entry: _Entry = (_NO_ATTRS, "")
        run = 0
        last_bucket: PathAttributes | None = None
        last_items: list[bytes] = []
        # Per source (alive in the Loc-RIB for the flush): may anything of it go out at all.
        sends: dict[int, bool] = {}
        for prefix, best in pending.items():
            routes: Sequence[Route]
            if dests is not None:
                dest = dests.get(prefix)
                routes = () if dest is None else (dest,) if isinstance(dest, Route) else dest.paths
            else:
                routes = () if best is None else (best,)
            had = by_prefix.get(prefix)
            single = True  # at most one path goes out (`route`, `desired`)
            route = None
            desired = None
            if len(routes) == 1:
                route = routes[0]
                token = allows(route)
                if token:
                    attrs = route.attrs
                    src = route.source
                    if attrs is last_attrs and src is last_source and token is last_token:
                        desired = last_desired
                    else:
                        desired = export(route, memo, token)
                        last_attrs, last_source, last_token = attrs, src, token
                        last_desired = desired
            elif not isinstance(had, list):
                # Several paths, but mostly only one goes out (a mesh node's peers may not be
                # sent what other mesh peers passed on): then it is the one-path case too.
                for path in routes:
                    ok = sends.get(id(path.source))
                    if ok is None:
                        ok = sends[id(path.source)] = self.policy.sends_from(path.source)
                    if not ok:
                        continue
                    token = allows(path)
                    if token:
                        exported = export(path, memo, token)
                        if exported is not None:
                            if desired is not None:
                                single = False
                                break
                            route, desired = path, exported
            if single and not isinstance(had, list):
                # At most one path out now, at most one before: the common case, without the
                # dicts.
                if desired is None:
                    if had is not None:
                        if run:
                            take(counts, entry, run)
                            run = 0
                        forget(counts, out.pop(had))
                        withdrawn.append(had)
                        del by_prefix[prefix]
                    continue
                assert route is not None
                src = route.source
                if src is not id_source or route.path_id != id_number:
                    id_source, id_number, last_id = src, route.path_id, ids.of(route)
                item = last_id + prefix
                name = src.name
                cur = None
                if had is not None:
                    if had == item:
                        cur = out[item]
                        if cur[0] is desired and cur[1] == name:
                            continue  # already advertised exactly so
                    else:
                        if run:
                            take(counts, entry, run)
                            run = 0
                        forget(counts, out.pop(had))
                        withdrawn.append(had)
                        by_prefix[prefix] = item
                else:
                    by_prefix[prefix] = item
                if desired is not entry[0] or name != entry[1]:
                    if run:
                        take(counts, entry, run)
                        run = 0
                    entry = (desired, name)
                out[item] = entry
                if cur is None:
                    run += 1
                else:
                    take(counts, entry, run + 1)
                    run = 0
                    forget(counts, cur)
                if name == sole:
                    continue  # the only member is the source: it gets nothing of its own
                if desired is last_bucket:
                    last_items.append(item)
                else:
                    bucket = buckets.get(id(desired))
                    if bucket is None:
                        last_items = [item]
                        buckets[id(desired)] = (desired, last_items)
                    else:
                        last_items = bucket[1]
                        last_items.append(item)
                    last_bucket = desired
                if name in members:
                    fix = fixes.get(name)
                    if fix is None:
                        fixes[name] = [item]
                    else:
                        fix.append(item)
                continue
            if run:
                take(counts, entry, run)
                run = 0
            last_bucket = None
            wanted: dict[bytes, _Entry] = {}
            for route in routes:
                token = allows(route)
                if not token:
                    continue
                exported = export(route, memo, token)
                if exported is not None:
                    wanted[ids.of(route) + prefix] = (exported, route.source.name)
            for item in _items(had):
                if item not in wanted:
                    forget(counts, out.pop(item))
                    withdrawn.append(item)
            for item, entry in wanted.items():
                cur = out.get(item)
                if cur is not None and cur[0] is entry[0] and cur[1] == entry[1]:
                    continue  # already advertised exactly so
                self._remember(out, counts, item, entry, cur)
                if entry[1] != sole:
                    add(item, entry)
            if len(wanted) == 1:
                (by_prefix[prefix],) = wanted
            elif wanted:
                by_prefix[prefix] = list(wanted)
            elif had is not None:
                del by_prefix[prefix]
        if run:
            take(counts, entry, run)

    def catch_up(self, member: str, slice_size: int = DUMP_SLICE) -> Iterator[Chunk]:
        """What member `member` (just added, or asking for the table again) must be sent,
        in order: the catch-up log, then End-of-RIB per family; by then it is live. Read it
        lazily, writing each chunk as it comes: write-outs made meanwhile are part of it."""
        if member not in self.members:
            raise KeyError(member)
        self.live.pop(member, None)
        log = self._log
        if log is None or log.stale():
            log = self._log = self._snapshot(slice_size)
        token = self._reading[member] = (log, object())
        entries = log.entries
        joined = len(entries)
        own = self._own_withdrawals(member)
        i = 0
        while True:
            if i == joined and own is not None:
                # What the table holds from this member itself (split horizon).
                yield own
            if i >= len(entries):
                break
            data, extra = entries[i]
            i += 1
            if data is not None:
                yield data
            tail = extra.get(member)
            if tail is not None:
                yield tail
        if self._reading.get(member) is not token:
            return  # it left meanwhile, or started over
        del self._reading[member]
        self.live[member] = self.members[member]
        for family in Family:
            if family in self._out:
                yield _END_OF_RIB[family]

    def _snapshot(self, slice_size: int) -> CatchUpLog:
        """The Adj-RIB-Out as it stands, encoded once in slices."""
        opts = self.key.options
        chunks: list[Chunk] = []
        items = 0
        for family in Family:
            out = self._out.get(family)
            if not out:
                continue
            keys = list(out)
            items += len(keys)
            for start in range(0, len(keys), slice_size):
                buckets: dict[int, tuple[PathAttributes, list[bytes]]] = {}
                for item in keys[start : start + slice_size]:
                    attrs = out[item][0]
                    bucket = buckets.get(id(attrs))
                    if bucket is None:
                        buckets[id(attrs)] = (attrs, [item])
                    else:
                        bucket[1].append(item)
                messages = [
                    m
                    for attrs, group_items in buckets.values()
                    for m in pack_announcements(family, attrs, group_items, opts)
                ]
                chunks.append((b"".join(messages), len(messages)))
        return CatchUpLog(chunks, items)

    def _own_withdrawals(self, member: str) -> Chunk | None:
        """Withdrawals of what the table holds from `member` itself, or None."""
        opts = self.key.options
        messages: list[bytes] = []
        for family, out in self._out.items():
            if not self._by_source[family].get(member):
                continue
            items = [item for item, entry in out.items() if entry[1] == member]
            messages.extend(pack_withdrawals(family, items, opts))
        return (b"".join(messages), len(messages)) if messages else None

    # --- queries ----------------------------------------------------------------------

    def _prefix(self, family: Family, item: bytes) -> bytes:
        return item[4:] if family in self._by_prefix else item

    def advertised(self, family: Family, member: str | None = None) -> dict[bytes, PathAttributes]:
        """What the group (or one member of it) has been sent: prefix -> attributes (under
        ADD-PATH send, one of the prefix's paths; `entries` gives them all)."""
        out = self._out.get(family, {})
        return {self._prefix(family, p): e[0] for p, e in out.items() if e[1] != member}

    def items_sent(self, family: Family, member: str) -> list[bytes]:
        """The items (prefixes; path id + prefix under ADD-PATH send) `member` was sent."""
        return [i for i, (_, source) in self._out.get(family, {}).items() if source != member]

    def entries(
        self, family: Family, member: str | None = None
    ) -> Iterator[tuple[bytes, PathAttributes, str]]:
        """(prefix, exported attributes, source name) of what `member` has been sent; under
        ADD-PATH send, once per path."""
        for item, (attrs, source) in self._out.get(family, {}).items():
            if source != member:
                yield self._prefix(family, item), attrs, source

    def advertised_entry(self, family: Family, prefix: bytes) -> tuple[PathAttributes, str] | None:
        """What the group holds for `prefix`: (exported attributes, source name); under
        ADD-PATH send, the first of its paths."""
        by_prefix = self._by_prefix.get(family)
        if by_prefix is None:
            return self._out.get(family, {}).get(prefix)
        had = by_prefix.get(prefix)
        if had is None:
            return None
        return self._out[family][had if isinstance(had, bytes) else had[0]]

    def advertised_paths(self, family: Family, prefix: bytes) -> list[tuple[int, _Entry]]:
        """Under ADD-PATH send: (path identifier, entry) of each path of `prefix` sent."""
        by_prefix = self._by_prefix.get(family)
        if by_prefix is None:
            entry = self._out.get(family, {}).get(prefix)
            return [] if entry is None else [(0, entry)]
        out = self._out[family]
        return [(int.from_bytes(i[:4], "big"), out[i]) for i in _items(by_prefix.get(prefix))]

    def advertised_count(self, member: str, family: Family | None = None) -> int:
        families = self.key.families if family is None else {family} & self.key.families
        return sum(len(self._out[f]) - self._by_source[f].get(member, 0) for f in families)

    # --- internals --------------------------------------------------------------------

    def _export(self, route: Route, memo: _Memo, token: object) -> PathAttributes | None:
        # Many routes share attributes, source and token; the memo holds the three keys
        # alive, so their ids stay theirs for its lifetime. One memo serves one family.
        attrs, source = route.attrs, route.source
        mk = (id(attrs), id(source), id(token))
        hit = memo.get(mk)
        if hit is not None:
            return hit[3]
        result = self.policy.export(route, self.cache, token)
        memo[mk] = (attrs, source, token, result)
        return result

    def _remember(
        self,
        out: dict[bytes, _Entry],
        counts: dict[str, int],
        item: bytes,
        entry: _Entry,
        cur: _Entry | None,
    ) -> None:
        """Store `entry` for `item` in a family's table `out` (replacing `cur`); `counts`
        is the same family's per-source tally."""
        self._take(counts, entry, 1)
        out[item] = entry
        if cur is not None:
            self._forget(counts, cur)

    def _take(self, counts: dict[str, int], entry: _Entry, n: int) -> None:
        """`n` more stored uses of `entry`: its attributes' references and its source's tally
        (`_forget` gives one back)."""
        self.cache.ref(entry[0], n)
        counts[entry[1]] = counts.get(entry[1], 0) + n

    def _forget(self, counts: dict[str, int], entry: _Entry) -> None:
        self.cache.release(entry[0])
        n = counts[entry[1]] - 1
        if n:
            counts[entry[1]] = n
        else:
            del counts[entry[1]]

    def __len__(self) -> int:
        return sum(len(t) for t in self._out.values())

    def __repr__(self) -> str:
        return f"UpdateGroup({sorted(self.members)}, {len(self)} prefixes)"


class AdjRibOut:
    """All update groups; peers join when their session is established and leave when it
    ends. A group is made on its first member's join (filled from the Loc-RIB) and dropped
    with its last. `paths` gives every path of the Loc-RIB to the groups that advertise them
    all (ADD-PATH send); without it they advertise the best path only."""

    __slots__ = ("_by_member", "cluster_id", "groups", "path_ids", "paths", "policies")

    def __init__(
        self,
        cluster_id: int,
        policies: OutboundPolicies,
        paths: PathSource | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self.policies = policies
        self.paths = paths
        self.path_ids = PathIds()
        self.groups: dict[GroupKey, UpdateGroup] = {}
        self._by_member: dict[str, UpdateGroup] = {}

    def join(
        self, peer: PeerInfo, key: GroupKey, best: Callable[[Family], Iterable[Route]]
    ) -> UpdateGroup:
        """Put `peer` in the group for `key`; `best(family)` gives the Loc-RIB's best routes
        (`Rib.iter_best`) for a group made now. Then send it `group.initial_dump(name)`."""
        self.leave(peer.name)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = UpdateGroup(
                key,
                policy=self.policies.for_group(key, self.cluster_id),
                paths=self.paths,
                path_ids=self.path_ids,
            )
            for family in Family:
                if family in key.families:
                    group.load(best(family))
        group.add_member(peer)
        self._by_member[peer.name] = group
        return group

    def regroup(
        self, peer: PeerInfo, key: GroupKey, best: Callable[[Family], Iterable[Route]]
    ) -> tuple[UpdateGroup, Iterator[Chunk]]:
        """Move member `peer` to the group for `key` (its export policies changed) on the
        same session: returns the new group and what to send it, lazily, in order: withdrawals
        of what it was sent that the new group does not hold for it, then the new group's
        catch-up (whose announcements replace the rest)."""
        old = self._by_member.get(peer.name)
        sent: dict[Family, list[bytes]] = {}
        if old is not None:
            sent = {f: old.items_sent(f, peer.name) for f in old.key.families}
        group = self.join(peer, key, best)
        return group, self._regrouped(group, peer.name, sent)

    def _regrouped(
        self, group: UpdateGroup, name: str, sent: Mapping[Family, list[bytes]]
    ) -> Iterator[Chunk]:
        # Decided when the catch-up starts, against the table it starts from: nothing can be
        # written out to the group in between. Items (path id + prefix under ADD-PATH send)
        # are the same in both groups: one PathIds serves them all.
        opts = group.key.options
        messages: list[bytes] = []
        for family, items in sent.items():
            held = group._out.get(family, {})
            gone = [i for i in items if i not in held or held[i][1] == name]
            if gone:
                messages.extend(pack_withdrawals(family, gone, opts))
        if messages:
            yield b"".join(messages), len(messages)
        yield from group.catch_up(name)

    def leave(self, name: str) -> None:
        group = self._by_member.pop(name, None)
        if group is None:
            return
        group.remove_member(name)
        if not group.members:
            del self.groups[group.key]

    def group_of(self, name: str) -> UpdateGroup | None:
        return self._by_member.get(name)

    def set_policies(
        self,
        policies: OutboundPolicies,
        best: Callable[[Family], Iterable[Route]],
        changed: Callable[[GroupKey], bool] | None = None,
    ) -> list[UpdateGroup]:
        """New export policies: the groups whose policy `changed` (every group when not
        told) re-examine every prefix on the next flush, so it sends exactly the difference;
        the others keep the policy they have. Returns the groups restaged."""
        self.policies = policies
        restaged: list[UpdateGroup] = []
        for group in self.groups.values():
            if changed is not None and not changed(group.key):
                continue
            group.policy = policies.for_group(group.key, self.cluster_id)
            for family in group.key.families:
                group.restage(family, best(family))
            restaged.append(group)
        return restaged

    def set_cluster_id(self, cluster_id: int) -> None:
        """A new cluster ID: routes exported from now on carry it (what was sent stays)."""
        self.cluster_id = cluster_id
        for group in self.groups.values():
            group.policy = self.policies.for_group(group.key, cluster_id)

    def stage(self, changes: Iterable[BestChange]) -> None:
        # Group by group rather than change by change: each group's staging is independent
        # and the last change per prefix still wins in each. A change to a path that is not
        # the best matters only to the groups that advertise every path.
        batch = changes if isinstance(changes, (list, tuple)) else list(changes)
        best_only: list[BestChange] | None = None
        for group in self.groups.values():
            if group.all_paths:
                group.stage_all(batch)
                continue
            if best_only is None:
                best_only = [c for c in batch if not c.paths_only]
            group.stage_all(best_only)

    def flush(self) -> list[tuple[UpdateGroup, GroupFlush]]:
        """Each group's output for this tick (groups with nothing to send left out)."""
        out: list[tuple[UpdateGroup, GroupFlush]] = []
        for group in self.groups.values():
            result = group.flush()
            if result:
                out.append((group, result))
        return out
