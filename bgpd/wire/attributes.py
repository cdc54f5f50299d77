"""Path attributes as one frozen, hashable value (interned by the RIB's AttrCache).

The codec (`bgpd.wire.codec`) decodes an UPDATE's attribute block into a `PathAttributes`
and encodes one back. MP_REACH_NLRI / MP_UNREACH_NLRI are not attributes here: they are
lifted into `Update.mp_reach` / `Update.mp_unreach`, and the family's next hop (NEXT_HOP for
IPv4, the MP_REACH next hop for IPv6) is what the RIB stores in `next_hop`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Attribute type codes (IANA "BGP Path Attributes").
ORIGIN = 1
AS_PATH = 2
NEXT_HOP = 3
MULTI_EXIT_DISC = 4
LOCAL_PREF = 5
ATOMIC_AGGREGATE = 6
AGGREGATOR = 7
COMMUNITIES = 8
ORIGINATOR_ID = 9
CLUSTER_LIST = 10
MP_REACH_NLRI = 14
MP_UNREACH_NLRI = 15
AS4_PATH = 17
AS4_AGGREGATOR = 18
LARGE_COMMUNITIES = 32

# Attribute flag bits.
FLAG_OPTIONAL = 0x80
FLAG_TRANSITIVE = 0x40
FLAG_PARTIAL = 0x20
FLAG_EXTENDED_LENGTH = 0x10

# ORIGIN values.
ORIGIN_IGP = 0
ORIGIN_EGP = 1
ORIGIN_INCOMPLETE = 2

# AS_PATH segment types.
AS_SET = 1
AS_SEQUENCE = 2
AS_CONFED_SEQUENCE = 3
AS_CONFED_SET = 4

AsPathSegment = tuple[int, tuple[int, ...]]
"""(segment type, AS numbers)."""


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """An attribute we do not interpret, kept raw so optional transitive ones pass through."""

    flags: int
    type_code: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """All attributes of one path. Absent attributes are None (or empty tuples).

    `as_path` is the reconstructed 4-octet path (AS4_PATH already merged per RFC 6793).
    `next_hop` holds packed address bytes: 4 (IPv4), 16 (IPv6 global) or 32 (IPv6 global +
    link-local). `originator_id` and `cluster_list` entries are router IDs as ints.
    `aggregator` is (AS, packed IPv4 address).
    """

    origin: int = ORIGIN_IGP
    as_path: tuple[AsPathSegment, ...] = ()
    next_hop: bytes | None = None
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: tuple[int, bytes] | None = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    originator_id: int | None = None
    cluster_list: tuple[int, ...] = ()
    unknown: tuple[UnknownAttribute, ...] = ()

    def replace(self, **changes: Any) -> PathAttributes:
        return dataclasses.replace(self, **changes)

    def as_path_length(self) -> int:
        """Path length for the decision process: an AS_SET counts as one (RFC 4271 9.1.2.2)."""
        n = 0
        for seg_type, asns in self.as_path:
            if seg_type == AS_SEQUENCE:
                n += len(asns)
            elif seg_type == AS_SET:
                n += 1
        return n

    def first_as(self) -> int | None:
        """Leftmost AS of the path (the neighbouring AS), for MED comparison."""
        for seg_type, asns in self.as_path:
            if seg_type == AS_SEQUENCE and asns:
                return asns[0]
            return None
        return None

    def prepend(self, asn: int) -> PathAttributes:
        path = self.as_path
        if path and path[0][0] == AS_SEQUENCE and len(path[0][1]) < 255:
            new = ((AS_SEQUENCE, (asn, *path[0][1])), *path[1:])
        else:
            new = ((AS_SEQUENCE, (asn,)), *path)
        return self.replace(as_path=new)
