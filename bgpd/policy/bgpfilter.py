"""Calico's BGPFilter, as BIRD runs the functions confd renders of it (the golden bird.cfg /
bird6.cfg of every bgpfilter conformance scenario hold them). Pure.

confd writes one BIRD function per filter, direction and family ('bgp_<name>_importFilterV4'),
one statement per rule: `if (<conditions>) then { <operations> accept; }` (or `reject;`),
wrapped in `if (is_same_as)` / `if (!is_same_as)` when the rule has a peerType. A peer's import
filter calls the import functions of its BGPPeer.filters in that order, then the priority line
and `accept`; its export filter sets the route's priority attributes, calls the export
functions, then `calico_export_to_bgp_peers(internal)` and `reject`. A filter that does not
exist, or has no rules for that direction and family, is not called. In BIRD `accept` and
`reject` end the whole filter, even inside a function: so the rules of all a peer's filters form
one list, the first rule whose conditions hold decides, and a route that no rule matches goes on
(import: accepted; export: Calico's own export rules decide, policy/calico.py).

Conditions, all that are set must hold (in the order BIRD evaluates them):
- cidr + matchOperator: `net = C`, `net != C`, `net ~ C` (inside or equal), `net !~ C`; with
  prefixLength, C becomes the prefix set `[ C{min,max} ]` (min at least C's own length, max at
  most the family's). BIRD cannot compare a prefix with a prefix set by `=` / `!=`: that is a
  run-time error, and a filter error rejects the route. So does this (`FilterRule` with
  Equal/NotEqual and prefixLength: every route reaching it is rejected).
- source RemotePeers: the route was learned from a BGP peer.
- interface: the route's outgoing interface matches the glob (`ifname ~ "..."`); BIRD's ifname
  of a route without an interface is "", which only "*" matches. For a route from a BGP peer it
  is the interface towards its next hop.
- peerType: towards (import: from) a peer in our AS (iBGP) or in another (eBGP).
- communities: the route carries the standard or large community.
- asPathPrefix: `bgp_path ~ [= a b * =]`, the path starts with a, b (an AS_SET is one position,
  matched by any of its members).
- priority: `bgp_local_pref = 2147483647 - priority`.
Operations, in order: add a community, prepend AS numbers, set the priority.

Priority (Calico's ...RoutePriority units, lower is preferred) travels as LOCAL_PREF =
PRIORITY_BASE - priority, and BIRD's kernel metric is the priority: the export filter's
prelude sets `bgp_local_pref = 2147483647 - krt_metric` for every route not from BGP (with
krt_metric, unless the route has one, the configured normal priority), and gives a BGP route
`krt_metric = 2147483647 - bgp_local_pref`. So conditions see, on export, the LOCAL_PREF the
route is about to be sent with (even towards an eBGP peer, where it is then left out) and the
AS path after our AS is prepended (BIRD's bgp_update_attrs runs before the export filter); on
import, the attributes as received, with BIRD's default LOCAL_PREF of 100 where there is none.

`FilterChain` compiles one rule list (a peer's filters, one direction, one family, one kind of
peer): for each combination of the conditions that do not depend on the prefix (source,
interface, attributes) it makes a prefix check on NLRI bytes, like policy/calico.py's, that
answers with the index of the deciding rule (-1: none). `FilterChain.reference()` is the same
decision walked rule by rule, for tests and `bgpctl explain`.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bgpd.wire.attributes import AS_SEQUENCE, AS_SET, PathAttributes
from bgpd.wire.family import Family
from calico.model import (
    FILTER_ACCEPT,
    MATCH_EQUAL,
    MATCH_NOT_EQUAL,
    MATCH_NOT_IN,
    PEER_TYPE_EBGP,
    PEER_TYPE_IBGP,
    SOURCE_REMOTE_PEERS,
    BGPFilter,
    FilterOperation,
    FilterRule,
)

IMPORT = "import"
EXPORT = "export"

PRIORITY_BASE = 2147483647
"""LOCAL_PREF = PRIORITY_BASE - priority, and back (Calico's route-priority plumbing)."""

BIRD_DEFAULT_LOCAL_PREF = 100
"""What BIRD gives a BGP route received without LOCAL_PREF (always, from eBGP)."""

MEMO_LIMIT = 1 << 16
"""Answers remembered per prefix check; past it the memo starts again."""

_BITS = {4: 32, 6: 128}


def priority_of(local_pref: int) -> int:
    return PRIORITY_BASE - local_pref


def local_pref_of(priority: int) -> int:
    return PRIORITY_BASE - priority


def _community_value(text: str) -> int | tuple[int, int, int]:
    parts = tuple(int(p) for p in text.split(":"))
    if len(parts) == 2:
        return parts[0] << 16 | parts[1]
    return (parts[0], parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class Operations:
    """An accepting rule's operations, applied in order to the route's attributes."""

    steps: tuple[FilterOperation, ...]

    def apply(self, attrs: PathAttributes) -> PathAttributes:
        communities = attrs.communities
        large = attrs.large_communities
        path = attrs
        local_pref = attrs.local_pref
        for op in self.steps:
            if op.add_community is not None:
                value = _community_value(op.add_community)
                if isinstance(value, int):
                    if value not in communities:  # BIRD's int_set_add: a set, in order
                        communities = (*communities, value)
                elif value not in large:
                    large = (*large, value)
            elif op.prepend_as_path:
                # BIRD prepends one AS at a time, the last first: the path then starts
                # with them in the order given.
                for asn in reversed(op.prepend_as_path):
                    path = path.prepend(asn)
            elif op.set_priority is not None:
                local_pref = local_pref_of(op.set_priority)
        return attrs.replace(
            communities=communities,
            large_communities=large,
            as_path=path.as_path,
            local_pref=local_pref,
        )


@dataclass(frozen=True, slots=True)
class _Prefix:
    """A rule's prefix condition: `inside` (In / Equal) or its negation, on the network
    (version, address, length) with lengths lo..hi (Equal: the network's own, only)."""

    negate: bool
    addr: int
    plen: int
    lo: int
    hi: int
    width: int

    def holds(self, addr: int, plen: int) -> bool:
        shift = self.width - self.plen
        inside = self.lo <= plen <= self.hi and addr >> shift == self.addr >> shift
        return inside is not self.negate


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled rule. `error`: BIRD fails evaluating it (see the module doc)."""

    index: int
    accept: bool
    ops: Operations | None
    prefix: _Prefix | None
    error: bool
    from_bgp: bool  # source RemotePeers
    iface: str | None
    community: int | tuple[int, int, int] | None
    as_path_prefix: tuple[int, ...]
    local_pref: int | None  # priority, as LOCAL_PREF
    name: str  # "<filter>[<n>]" for logs and explain


def _compile_rule(index: int, name: str, rule: FilterRule, version: int) -> _Rule:
    width = _BITS[version]
    prefix = None
    error = False
    if rule.cidr is not None:
        net = ipaddress.ip_network(rule.cidr)
        op = rule.match_operator
        if rule.prefix_length is not None and op in (MATCH_EQUAL, MATCH_NOT_EQUAL):
            error = True
        elif op in (MATCH_EQUAL, MATCH_NOT_EQUAL):
            prefix = _Prefix(
                op == MATCH_NOT_EQUAL, int(net.network_address), net.prefixlen,
                net.prefixlen, net.prefixlen, width,
            )
        else:
            low, high = rule.prefix_length or (None, None)
            lo = max(net.prefixlen, low or 0)
            hi = min(width, width if high is None else high)
            prefix = _Prefix(
                op == MATCH_NOT_IN, int(net.network_address), net.prefixlen, lo, hi, width
            )
    return _Rule(
        index=index,
        accept=rule.action == FILTER_ACCEPT,
        ops=Operations(rule.operations) if rule.operations else None,
        prefix=prefix,
        error=error,
        from_bgp=rule.source == SOURCE_REMOTE_PEERS,
        iface=rule.interface,
        community=_community_value(rule.community) if rule.community is not None else None,
        as_path_prefix=rule.as_path_prefix,
        local_pref=local_pref_of(rule.priority) if rule.priority is not None else None,
        name=name,
    )


def _path_starts_with(attrs: PathAttributes, asns: tuple[int, ...]) -> bool:
    """BIRD's `bgp_path ~ [= a b * =]`."""
    want = iter(asns)
    expect = next(want, None)
    for seg_type, seg in attrs.as_path:
        if expect is None:
            return True
        if seg_type == AS_SET:
            if expect not in seg:
                return False
            expect = next(want, None)
            continue
        if seg_type != AS_SEQUENCE:
            continue  # confederation segments do not count in BIRD's path matching
        for asn in seg:
            if expect is None:
                return True
            if asn != expect:
                return False
            expect = next(want, None)
    return expect is None


def _has_community(attrs: PathAttributes, value: int | tuple[int, int, int]) -> bool:
    if isinstance(value, int):
        return value in attrs.communities
    return value in attrs.large_communities


PrefixDecision = Callable[[bytes], int]
"""The index of the rule that decides for a prefix (NLRI prefix form), or -1: none does."""


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ifname: str) -> bool:
    return fnmatch.fnmatchcase(ifname, pattern)


class FilterChain:
    """The rules of a peer's BGPFilters for one direction and family, towards (from) one kind
    of peer, compiled. `rules` keeps every rule that can apply (the others' peerType rules
    out this kind of peer)."""

    __slots__ = (
        "_ifaces",
        "_programs",
        "attr_rules",
        "direction",
        "family",
        "ibgp",
        "names",
        "needs_attrs",
        "needs_iface",
        "rules",
        "version",
    )

    def __init__(
        self,
        filters: Sequence[BGPFilter],
        direction: str,
        family: Family,
        ibgp: bool,
    ) -> None:
        self.direction = direction
        self.family = family
        self.ibgp = ibgp
        self.version = family.spec.version
        self.names = tuple(f.name for f in filters)
        rules: list[_Rule] = []
        for flt in filters:
            for n, rule in enumerate(flt.rules(direction, self.version)):
                if rule.peer_type == PEER_TYPE_IBGP and not ibgp:
                    continue
                if rule.peer_type == PEER_TYPE_EBGP and ibgp:
                    continue
                rules.append(_compile_rule(len(rules), f"{flt.name}[{n}]", rule, self.version))
        self.rules = tuple(rules)
        self.attr_rules = tuple(
            r
            for r in rules
            if not r.error
            and (r.community is not None or r.as_path_prefix or r.local_pref is not None)
        )
        self.needs_attrs = bool(self.attr_rules)
        self._ifaces = tuple(dict.fromkeys(r.iface for r in rules if r.iface and not r.error))
        self.needs_iface = bool(self._ifaces)
        self._programs: dict[tuple[bool, tuple[bool, ...], tuple[bool, ...]], PrefixDecision] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    # --- deciding ---------------------------------------------------------------------

    def rule(self, index: int) -> _Rule:
        return self.rules[index]

    def iface_truths(self, ifname: str | None) -> tuple[bool, ...]:
        name = ifname or ""
        return tuple(_glob(p, name) for p in self._ifaces)

    def attr_truths(self, view: PathAttributes) -> tuple[bool, ...]:
        """Which attribute-conditioned rules' attribute conditions hold for `view` (the
        attributes as the conditions see them, see the module doc)."""
        lp = view.local_pref if view.local_pref is not None else BIRD_DEFAULT_LOCAL_PREF
        return tuple(
            (r.community is None or _has_community(view, r.community))
            and (not r.as_path_prefix or _path_starts_with(view, r.as_path_prefix))
            and (r.local_pref is None or r.local_pref == lp)
            for r in self.attr_rules
        )

    def decision(
        self, from_bgp: bool, ifaces: tuple[bool, ...] = (), attrs: tuple[bool, ...] = ()
    ) -> PrefixDecision:
        """The prefix check for routes of this kind (learned from BGP or not), through an
        interface with these `iface_truths`, with these `attr_truths`."""
        context = (from_bgp, ifaces, attrs)
        program = self._programs.get(context)
        if program is None:
            active = [r for r in self.rules if self._applies(r, from_bgp, ifaces, attrs)]
            program = self._programs[context] = _compile_prefixes(active, self.version)
        return program

    def _applies(
        self, r: _Rule, from_bgp: bool, ifaces: tuple[bool, ...], attrs: tuple[bool, ...]
    ) -> bool:
        """Whether every condition of `r` but the prefix holds in this context."""
        if r.error:
            return True  # the prefix comparison comes first and fails whatever follows
        if r.from_bgp and not from_bgp:
            return False
        if r.iface and not ifaces[self._ifaces.index(r.iface)]:
            return False
        if r in self.attr_rules:
            return attrs[self.attr_rules.index(r)]
        return True

    def reference(
        self, prefix: bytes, *, from_bgp: bool, ifname: str | None, view: PathAttributes
    ) -> int:
        """The deciding rule's index (-1: none), rule by rule as BIRD runs them."""
        plen = prefix[0]
        addr = int.from_bytes(prefix[1:].ljust(self.family.addr_len, b"\0"), "big")
        name = ifname or ""
        lp = view.local_pref if view.local_pref is not None else BIRD_DEFAULT_LOCAL_PREF
        for r in self.rules:
            if r.error:
                return r.index
            if r.prefix is not None and not r.prefix.holds(addr, plen):
                continue
            if r.from_bgp and not from_bgp:
                continue
            if r.iface and not _glob(r.iface, name):
                continue
            if r.community is not None and not _has_community(view, r.community):
                continue
            if r.as_path_prefix and not _path_starts_with(view, r.as_path_prefix):
                continue
            if r.local_pref is not None and r.local_pref != lp:
                continue
            return r.index
        return -1


def _never(prefix: bytes) -> int:
    return -1


def _constant(index: int) -> PrefixDecision:
    def decide(prefix: bytes) -> int:
        return index

    return decide


def _compile_prefixes(rules: Sequence[_Rule], version: int) -> PrefixDecision:
    """The first of `rules` whose prefix condition holds, on NLRI bytes.

    Rules up to the first without a prefix condition (it always decides) are indexed. Exact
    ones (Equal, NotEqual: a single prefix) by the NLRI bytes of their network: a dict lookup,
    and NotEqual rules tried in order (the first holds unless it is the prefix itself). Range
    ones (In, NotIn): the positive by (network length, leading bits), so a prefix finds those
    it is inside with one lookup per distinct length; the negative tried in order until one
    holds. The range answer is remembered as in policy/calico.py: for a prefix longer than
    every range network, by (length, leading `deepest` bits), one entry for many prefixes
    (exact rules stay out of the key, so /32 Equal rules do not make every /32 its own)."""
    width = _BITS[version]
    alen = width // 8
    fallback = -1
    conditional: list[_Rule] = []
    for r in rules:
        if r.error or r.prefix is None:
            fallback = r.index
            break
        conditional.append(r)
    if not conditional:
        return _never if fallback < 0 else _constant(fallback)
    nothing = fallback if fallback >= 0 else _NONE
    equal: dict[bytes, int] = {}
    not_equal: list[tuple[int, bytes]] = []
    positive: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    negative: list[tuple[int, int, int, int, int, int]] = []
    for r in conditional:
        p = r.prefix
        assert p is not None
        if p.lo == p.hi == p.plen:  # one prefix: Equal (or In with {len,len}), NotEqual
            nlri = bytes([p.plen]) + p.addr.to_bytes(alen, "big")[: (p.plen + 7) // 8]
            if p.negate:
                not_equal.append((r.index, nlri))
            else:
                equal.setdefault(nlri, r.index)
            continue
        shift = width - p.plen
        if p.negate:
            negative.append((r.index, p.plen, shift, p.addr >> shift, p.lo, p.hi))
        else:
            positive.setdefault((p.plen, p.addr >> shift), []).append((r.index, p.lo, p.hi))
    lengths = tuple(sorted({plen for plen, _ in positive}))
    ranged = [n for n, _ in positive] + [t[1] for t in negative]
    deepest = max(ranged, default=0)
    low = tuple((1 << 8 * n) - 1 for n in range(alen + 1))
    up = tuple(width - 8 * n for n in range(alen + 1))
    drop = tuple(8 * n - deepest for n in range(alen + 1))
    memo: dict[int | bytes, int] = {}
    get = memo.get
    from_bytes = int.from_bytes

    def walk(addr: int, plen: int) -> int:
        best = nothing
        for length in lengths:
            if length > plen:
                break
            hits = positive.get((length, addr >> (width - length)))
            if hits is not None:
                for index, lo, hi in hits:
                    if index >= best:
                        break
                    if lo <= plen <= hi:
                        best = index
                        break
        for index, nlen, shift, lead, lo, hi in negative:
            if index >= best:
                break
            if not (lo <= plen <= hi and plen >= nlen and addr >> shift == lead):
                best = index
                break
        return best

    def by_range(prefix: bytes, none: int) -> int:
        """The range rules' answer, remembered (`none` stored for no rule)."""
        n = len(prefix) - 1
        if n > alen:  # not a well-formed prefix: walk it as given
            walked = walk(from_bytes(prefix[1 : alen + 1], "big"), prefix[0])
            return none if walked == _NONE else walked
        plen = prefix[0]
        cut = drop[n]
        key: int | bytes = prefix
        if plen > deepest and cut >= 0:
            key = from_bytes(prefix, "big") >> cut
        found = get(key)
        if found is not None:
            return found
        answer = walk((from_bytes(prefix, "big") & low[n]) << up[n], plen)
        if answer == _NONE:
            answer = none
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[key] = answer
        return answer

    if not (equal or not_equal):
        # The common case, one closure deep (the memo holds -1 for no rule).
        def ranged_only(prefix: bytes) -> int:
            n = len(prefix) - 1
            if n <= alen:
                plen = prefix[0]
                cut = drop[n]
                answer = get(from_bytes(prefix, "big") >> cut if plen > deepest and cut >= 0
                             else prefix)
                if answer is not None:
                    return answer
            return by_range(prefix, -1)

        return ranged_only
    equal_get = equal.get

    def decide(prefix: bytes) -> int:
        n = len(prefix) - 1
        best = None
        if n <= alen:
            plen = prefix[0]
            cut = drop[n]
            best = get(from_bytes(prefix, "big") >> cut if plen > deepest and cut >= 0
                       else prefix)
        if best is None:
            best = by_range(prefix, _NONE)
        hit = equal_get(prefix)
        if hit is not None and hit < best:
            best = hit
        for index, nlri in not_equal:
            if index >= best:
                break
            if nlri != prefix:
                best = index
                break
        return best if best != _NONE else -1

    return decide


_NONE = 1 << 30
"""No rule: larger than any rule index."""


# --- what the planner reports ---------------------------------------------------------------


def notes(flt: BGPFilter) -> list[str]:
    """What a filter does that a user may not expect, or bgpd cannot do as BIRD would, one
    line each (the planner logs them)."""
    out: list[str] = []
    lists = {IMPORT: ("importV4", "importV6"), EXPORT: ("exportV4", "exportV6")}
    for direction, keys in lists.items():
        for key, version in zip(keys, (4, 6), strict=True):
            for n, rule in enumerate(flt.rules(direction, version)):
                where = f"BGPFilter {flt.name!r} {key}[{n}]"
                if rule.prefix_length is not None and rule.match_operator in (
                    MATCH_EQUAL,
                    MATCH_NOT_EQUAL,
                ):
                    out.append(
                        f"{where}: matchOperator {rule.match_operator} with prefixLength is an "
                        "error in BIRD at run time, which rejects every route reaching this "
                        "rule; bgpd does the same"
                    )
                if rule.interface:
                    out.append(
                        f"{where}: interface {rule.interface!r}: for a route from a BGP peer "
                        "BIRD matches the interface towards its next hop; bgpd is not told "
                        "that interface and matches none (\"\", which only '*' matches)"
                    )
    return out


__all__ = [
    "BIRD_DEFAULT_LOCAL_PREF",
    "EXPORT",
    "IMPORT",
    "PRIORITY_BASE",
    "FilterChain",
    "Operations",
    "PrefixDecision",
    "local_pref_of",
    "notes",
    "priority_of",
]
