"""OPEN capabilities (RFC 5492) to and from their code/length/value wire form.

A capability we know but whose value does not fit its code is a malformed optional
parameter (OPEN Message Error, subcode 0, RFC 4271 6.2). Codes we do not know are kept as
`UnknownCapability` so the session can report them; so are known codes naming an AFI/SAFI
we do not speak (a Multiprotocol capability for VPNv4, say), since `Family` cannot hold them.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgpd.wire.errors import EncodeError, OpenMessageError
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    CAP_ADD_PATH,
    CAP_ENHANCED_ROUTE_REFRESH,
    CAP_EXTENDED_MESSAGE,
    CAP_FOUR_OCTET_AS,
    CAP_GRACEFUL_RESTART,
    CAP_MULTIPROTOCOL,
    CAP_ROUTE_REFRESH,
    AddPath,
    Capability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefreshCap,
    UnknownCapability,
)

_GR_RESTARTING = 0x8  # R bit, in the high nibble of the first octet
_GR_NOTIFICATION = 0x4  # N bit (RFC 8538)
_GR_FORWARDING = 0x80  # F bit, per family


def _family(value: bytes, at: int) -> Family | None:
    """The (2-octet AFI, 1-octet SAFI) pair at `at`."""
    return Family.lookup(int.from_bytes(value[at : at + 2], "big"), value[at + 2])


def _family_bytes(family: Family) -> bytes:
    return family.afi.to_bytes(2, "big") + bytes([family.safi])


def _malformed(code: int, value: bytes) -> OpenMessageError:
    return OpenMessageError(
        f"malformed capability {code} (length {len(value)})",
        bytes([code, len(value)]) + value,
    )


def decode_capability(code: int, value: bytes) -> Capability:
    """One capability from its code and value octets."""
    n = len(value)
    if code == CAP_MULTIPROTOCOL:
        if n != 4:
            raise _malformed(code, value)
        family = Family.lookup(int.from_bytes(value[0:2], "big"), value[3])
        return Multiprotocol(family) if family is not None else UnknownCapability(code, value)
    if code == CAP_ROUTE_REFRESH:
        if n:
            raise _malformed(code, value)
        return RouteRefreshCap()
    if code == CAP_ENHANCED_ROUTE_REFRESH:
        if n:
            raise _malformed(code, value)
        return EnhancedRouteRefreshCap()
    if code == CAP_EXTENDED_MESSAGE:
        if n:
            raise _malformed(code, value)
        return ExtendedMessageCap()
    if code == CAP_FOUR_OCTET_AS:
        if n != 4:
            raise _malformed(code, value)
        return FourOctetAs(int.from_bytes(value, "big"))
    if code == CAP_GRACEFUL_RESTART:
        if n < 2 or (n - 2) % 4:
            raise _malformed(code, value)
        head = int.from_bytes(value[0:2], "big")
        gr_families: list[tuple[Family, bool]] = []
        for at in range(2, n, 4):
            family = _family(value, at)
            if family is not None:
                gr_families.append((family, bool(value[at + 3] & _GR_FORWARDING)))
        return GracefulRestart(
            restart_time=head & 0x0FFF,
            restarting=bool((head >> 12) & _GR_RESTARTING),
            notification=bool((head >> 12) & _GR_NOTIFICATION),
            families=tuple(gr_families),
        )
    if code == CAP_ADD_PATH:
        if n % 4:
            raise _malformed(code, value)
        ap_families: list[tuple[Family, int]] = []
        for at in range(0, n, 4):
            family = _family(value, at)
            mode = value[at + 3]
            # Unknown families and send/receive values outside 1..3 are ignored (RFC 7911 4).
            if family is not None and 1 <= mode <= 3:
                ap_families.append((family, mode))
        return AddPath(tuple(ap_families))
    return UnknownCapability(code, value)


def encode_capability(cap: Capability) -> bytes:
    """Code, length and value of one capability."""
    if isinstance(cap, Multiprotocol):
        code, value = (
            CAP_MULTIPROTOCOL,
            cap.family.afi.to_bytes(2, "big") + bytes([0, cap.family.safi]),
        )
    elif isinstance(cap, RouteRefreshCap):
        code, value = CAP_ROUTE_REFRESH, b""
    elif isinstance(cap, EnhancedRouteRefreshCap):
        code, value = CAP_ENHANCED_ROUTE_REFRESH, b""
    elif isinstance(cap, ExtendedMessageCap):
        code, value = CAP_EXTENDED_MESSAGE, b""
    elif isinstance(cap, FourOctetAs):
        code, value = CAP_FOUR_OCTET_AS, cap.asn.to_bytes(4, "big")
    elif isinstance(cap, GracefulRestart):
        bits = (_GR_RESTARTING if cap.restarting else 0) | (
            _GR_NOTIFICATION if cap.notification else 0
        )
        head = (bits << 12) | (cap.restart_time & 0x0FFF)
        value = head.to_bytes(2, "big") + b"".join(
            _family_bytes(f) + bytes([_GR_FORWARDING if fwd else 0]) for f, fwd in cap.families
        )
        code = CAP_GRACEFUL_RESTART
    elif isinstance(cap, AddPath):
        code = CAP_ADD_PATH
        value = b"".join(_family_bytes(f) + bytes([mode]) for f, mode in cap.families)
    else:
        code, value = cap.code, cap.value
    if len(value) > 255:
        raise EncodeError(f"capability {code} value too long ({len(value)} octets)")
    return bytes([code, len(value)]) + value


def decode_capabilities(value: bytes) -> list[Capability]:
    """All capabilities in one Capabilities optional parameter (RFC 5492 4)."""
    caps: list[Capability] = []
    pos, end = 0, len(value)
    while pos < end:
        if pos + 2 > end:
            raise OpenMessageError("truncated capability header", value[pos:])
        code, length = value[pos], value[pos + 1]
        stop = pos + 2 + length
        if stop > end:
            raise OpenMessageError(f"capability {code} overruns its parameter", value[pos:])
        caps.append(decode_capability(code, value[pos + 2 : stop]))
        pos = stop
    return caps


def encode_capabilities(caps: Iterable[Capability]) -> list[bytes]:
    """Each capability as code/length/value, in the given order."""
    return [encode_capability(c) for c in caps]
