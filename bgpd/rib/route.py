"""The RIB's records: where a route came from, the route itself, and a change of best route.

Every record is a frozen, slotted value. A route's attributes are the interned instance from
the RIB's `AttrCache`, so routes that share attributes share one object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the speaker is, as the loop checks and reflection need it: our AS, BGP Identifier
    and RFC 4456 cluster ID (the router ID unless configured), as ints."""

    local_as: int
    router_id: int
    cluster_id: int


PrefixCheck = Callable[[bytes], bool]
"""Whether a prefix (NLRI prefix form) passes a policy's prefix rules."""

ImportCheck = Callable[[bytes], "bool | PathAttributes"]
"""The import decision on a prefix (NLRI prefix form) of one UPDATE: True to accept the route
with the UPDATE's attributes, False to reject it, or the attributes to accept it with instead
(an import rule's operations)."""


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A BGP neighbour as the RIB needs it.

    `address` is the packed peer address (4 or 16 octets), compared as bytes in the last
    decision step. `router_id` is the BGP Identifier from its OPEN, as an int. `local_as` is
    the AS we present on this session (Calico's `localASNumber` may differ from the node's).
    `ibgp` is derived: the session is internal when both ends are in one AS. `rr_client`
    marks the neighbour as our route-reflector client (RFC 4456). `allow_local_as` is how
    many times our AS may appear in the AS_PATH of a route it sends (BIRD's `allow local as`)
    before the route counts as a loop.
    """

    name: str
    address: bytes
    asn: int
    router_id: int
    local_as: int
    rr_client: bool = False
    allow_local_as: int = 0
    ibgp: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ibgp", self.asn == self.local_as)


@dataclass(frozen=True, slots=True)
class LocalSource:
    """The source of routes this node originates rather than learns from a peer.

    Use the module constants: `LOCAL` for the node's own announcements (IPAM block
    aggregates), `KERNEL` for routes learned from the kernel table. Every local source beats
    every peer in the decision process; between them the higher `preference` wins (BIRD ranks
    static routes above kernel-learned ones the same way).
    """

    name: str
    preference: int


LOCAL = LocalSource("<local>", 200)
KERNEL = LocalSource("<kernel>", 10)
LOCAL_SOURCE_NAMES = frozenset({LOCAL.name, KERNEL.name})

Source = PeerInfo | LocalSource


@dataclass(frozen=True, slots=True)
class Route:
    """One path to a prefix.

    `prefix` is the NLRI prefix form (bgpd.wire.family), without any ADD-PATH identifier;
    `path_id` holds the identifier the peer sent (0 without ADD-PATH). `stale` marks a route
    kept for a restarting peer (RFC 4724) until it is re-announced or swept.
    """

    prefix: bytes
    family: Family
    attrs: PathAttributes
    source: Source
    path_id: int = 0
    stale: bool = False

    # One Route per announced prefix: the generated frozen __init__ (object.__setattr__ per
    # field) was a fifth of a reflector's import time; the slot setters cost a third of it.
    def __init__(
        self,
        prefix: bytes,
        family: Family,
        attrs: PathAttributes,
        source: Source,
        path_id: int = 0,
        stale: bool = False,
    ) -> None:
        _SET_PREFIX(self, prefix)
        _SET_FAMILY(self, family)
        _SET_ATTRS(self, attrs)
        _SET_SOURCE(self, source)
        _SET_PATH_ID(self, path_id)
        _SET_STALE(self, stale)

    @property
    def is_local(self) -> bool:
        return isinstance(self.source, LocalSource)


_SET_PREFIX, _SET_FAMILY, _SET_ATTRS, _SET_SOURCE, _SET_PATH_ID, _SET_STALE = (
    Route.__dict__[name].__set__
    for name in ("prefix", "family", "attrs", "source", "path_id", "stale")
)


Path = Route
"""GoBGP calls it a path; the same record."""
