"""BGP messages and OPEN capabilities as frozen values (events are values, as in h11)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from bgpd.wire.attributes import PathAttributes
from bgpd.wire.errors import WireError
from bgpd.wire.family import Family

# Message type codes (RFC 4271 4.1, RFC 2918).
MSG_OPEN = 1
MSG_UPDATE = 2
MSG_NOTIFICATION = 3
MSG_KEEPALIVE = 4
MSG_ROUTE_REFRESH = 5

HEADER_LEN = 19
MARKER = b"\xff" * 16
AS_TRANS = 23456

# Capability codes (IANA "Capability Codes").
CAP_MULTIPROTOCOL = 1
CAP_ROUTE_REFRESH = 2
CAP_EXTENDED_MESSAGE = 6
CAP_GRACEFUL_RESTART = 64
CAP_FOUR_OCTET_AS = 65
CAP_ADD_PATH = 69
CAP_ENHANCED_ROUTE_REFRESH = 70

# ADD-PATH send/receive field (RFC 7911 4).
ADD_PATH_RECEIVE = 1
ADD_PATH_SEND = 2
ADD_PATH_BOTH = 3


# --- capabilities -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Multiprotocol:
    family: Family


@dataclass(frozen=True, slots=True)
class RouteRefreshCap:
    pass


@dataclass(frozen=True, slots=True)
class EnhancedRouteRefreshCap:
    pass


@dataclass(frozen=True, slots=True)
class ExtendedMessageCap:
    pass


@dataclass(frozen=True, slots=True)
class FourOctetAs:
    asn: int


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    """RFC 4724 3. `families` pairs each family with its forwarding-state-preserved bit."""

    restart_time: int
    restarting: bool = False  # the R bit
    notification: bool = False  # the N bit (RFC 8538)
    families: tuple[tuple[Family, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class AddPath:
    """RFC 7911 4: (family, ADD_PATH_RECEIVE | ADD_PATH_SEND | ADD_PATH_BOTH) per family."""

    families: tuple[tuple[Family, int], ...]


@dataclass(frozen=True, slots=True)
class UnknownCapability:
    code: int
    value: bytes


Capability = (
    Multiprotocol
    | RouteRefreshCap
    | EnhancedRouteRefreshCap
    | ExtendedMessageCap
    | FourOctetAs
    | GracefulRestart
    | AddPath
    | UnknownCapability
)


# --- messages -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """OPEN. `my_as` is the 2-octet field on the wire (AS_TRANS for a 4-octet AS);
    `asn` gives the real AS. `bgp_id` is the router ID as an int."""

    my_as: int
    hold_time: int
    bgp_id: int
    capabilities: tuple[Capability, ...] = ()
    version: int = 4

    @property
    def asn(self) -> int:
        for cap in self.capabilities:
            if isinstance(cap, FourOctetAs):
                return cap.asn
        return self.my_as

    def find(self, kind: type) -> list[Capability]:
        return [c for c in self.capabilities if isinstance(c, kind)]


@dataclass(frozen=True, slots=True)
class MpReach:
    """MP_REACH_NLRI (RFC 4760 3). `next_hop` is 16 or 32 octets for IPv6, 4 for IPv4."""

    family: Family
    next_hop: bytes
    nlri: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MpUnreach:
    family: Family
    withdrawn: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Update:
    """UPDATE. `withdrawn` and `nlri` are IPv4 unicast NLRI items (see bgpd.wire.family);
    other families travel in `mp_reach` / `mp_unreach`. `attributes` is None when the
    message carries no path attributes.

    `error` is the worst non-fatal problem the decoder found (RFC 7606 attribute-discard or
    treat-as-withdraw); on treat-as-withdraw the decoder has already moved every announced
    item into `withdrawn` / `mp_unreach` and set `attributes` to None. Fatal problems raise
    instead.
    """

    withdrawn: tuple[bytes, ...] = ()
    attributes: PathAttributes | None = None
    nlri: tuple[bytes, ...] = ()
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    error: WireError | None = None

    @property
    def end_of_rib(self) -> Family | None:
        """The family this UPDATE marks End-of-RIB for (RFC 4724 2), or None."""
        if self.withdrawn or self.nlri or self.mp_reach is not None:
            return None
        if self.mp_unreach is None:
            return Family.IPV4_UNICAST if self.attributes is None else None
        if not self.mp_unreach.withdrawn and self.attributes in (None, PathAttributes()):
            return self.mp_unreach.family
        return None

    @property
    def size(self) -> int:
        """NLRI items it announces and withdraws, all families."""
        n = len(self.withdrawn) + len(self.nlri)
        if self.mp_reach is not None:
            n += len(self.mp_reach.nlri)
        if self.mp_unreach is not None:
            n += len(self.mp_unreach.withdrawn)
        return n


def split_update(update: Update, size: int) -> Iterator[Update]:
    """`update` as UPDATEs of at most `size` NLRI items that, applied in order, do what it does:
    withdrawals first, then announcements with the same attributes. None of them reads as an
    End-of-RIB; the decoder's `error` stays with the first."""
    if update.size <= size:
        yield update
        return
    error = update.error
    for i in range(0, len(update.withdrawn), size):
        yield Update(withdrawn=update.withdrawn[i : i + size], error=error)
        error = None
    unreach = update.mp_unreach
    if unreach is not None:
        for i in range(0, len(unreach.withdrawn), size):
            gone = MpUnreach(unreach.family, unreach.withdrawn[i : i + size])
            yield Update(mp_unreach=gone, error=error)
            error = None
    attrs = update.attributes
    for i in range(0, len(update.nlri), size):
        yield Update(attributes=attrs, nlri=update.nlri[i : i + size], error=error)
        error = None
    reach = update.mp_reach
    if reach is not None:
        for i in range(0, len(reach.nlri), size):
            new = MpReach(reach.family, reach.next_hop, reach.nlri[i : i + size])
            yield Update(attributes=attrs, mp_reach=new, error=error)
            error = None


@dataclass(frozen=True, slots=True)
class Keepalive:
    pass


@dataclass(frozen=True, slots=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """ROUTE-REFRESH (RFC 2918); `subtype` 1/2 are BoRR/EoRR (RFC 7313)."""

    family: Family
    subtype: int = 0


Message = Open | Update | Keepalive | Notification | RouteRefresh
