"""BGPConfiguration prefixAdvertisements: communities added to what this node advertises,
as confd's `apply_communities()` does in every BGP export filter (reference/calico.md 4.1):

    if ( net ~ 192.168.0.0/16 ) then {
        bgp_large_community.add((100, 555, 107));
        bgp_community.add((100, 6532));
    }

Every rule whose CIDR holds the route's prefix adds its standard (RFC 1997) and large
(RFC 8092) communities, to every peer, whatever the route's source: a block aggregate, a
borrowed /32 learned from the kernel, a route reflected from another peer. Values already
on the route are not added twice.

The Adj-RIB-Out asks which rules hold a prefix once per prefix (`CommunityRules.variant_of`,
a bit per rule, 0 for none, compiled per family with a memo on the prefix bytes), and adds
the communities once per distinct (attributes, source, rules) with `apply`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family

MEMO_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class CommunityRule:
    """Communities added to routes inside `cidr` (one prefixAdvertisement)."""

    cidr: str
    family: str
    standard: tuple[tuple[int, int], ...]
    large: tuple[tuple[int, int, int], ...]

    @property
    def standard_values(self) -> tuple[int, ...]:
        """The standard communities as 32-bit values (high 16 bits: the first part)."""
        return tuple(a << 16 | b for a, b in self.standard)


VariantOf = Callable[[bytes], int]
"""The rules holding a prefix (NLRI prefix form), as a bit per rule."""


def _no_rules(prefix: bytes) -> int:
    return 0


class CommunityRules:
    """The prefixAdvertisements in force on this node, compiled."""

    __slots__ = ("_checks", "rules")

    def __init__(self, rules: tuple[CommunityRule, ...]) -> None:
        self.rules = rules
        self._checks = {
            Family.IPV4_UNICAST: self._compile(4),
            Family.IPV6_UNICAST: self._compile(6),
        }

    def __bool__(self) -> bool:
        return bool(self.rules)

    def variant_of(self, family: Family) -> VariantOf:
        return self._checks[family]

    def matching(self, prefix: str) -> list[CommunityRule]:
        """The rules that hold `prefix` ("192.168.1.0/26"), in order (for explain)."""
        net = ipaddress.ip_network(prefix, strict=False)
        out = []
        for rule in self.rules:
            outer = ipaddress.ip_network(rule.cidr)
            if outer.version == net.version and net.subnet_of(outer):  # type: ignore[arg-type]
                out.append(rule)
        return out

    def apply(self, attrs: PathAttributes, variant: int) -> PathAttributes:
        """`attrs` with the communities of the rules in `variant` added."""
        standard = list(attrs.communities)
        large = list(attrs.large_communities)
        have_s, have_l = set(standard), set(large)
        for i, rule in enumerate(self.rules):
            if not variant >> i & 1:
                continue
            for value in rule.standard_values:
                if value not in have_s:
                    have_s.add(value)
                    standard.append(value)
            for triple in rule.large:
                if triple not in have_l:
                    have_l.add(triple)
                    large.append(triple)
        if len(standard) == len(attrs.communities) and len(large) == len(
            attrs.large_communities
        ):
            return attrs
        return attrs.replace(communities=tuple(standard), large_communities=tuple(large))

    def _compile(self, version: int) -> VariantOf:
        width = 32 if version == 4 else 128
        nets: list[tuple[int, int, int]] = []  # (bit, prefix length, network as int)
        for i, rule in enumerate(self.rules):
            net = ipaddress.ip_network(rule.cidr)
            if net.version == version:
                nets.append((1 << i, net.prefixlen, int(net.network_address)))
        if not nets:
            return _no_rules
        alen = width // 8
        memo: dict[bytes, int] = {}
        get = memo.get
        from_bytes = int.from_bytes

        def variant(prefix: bytes) -> int:
            answer = get(prefix)
            if answer is not None:
                return answer
            plen = prefix[0]
            addr = from_bytes(prefix[1:].ljust(alen, b"\0")[:alen], "big")
            answer = 0
            for bit, length, network in nets:
                if plen >= length and (addr ^ network) >> (width - length) == 0:
                    answer |= bit
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[prefix] = answer
            return answer

        return variant
