"""BFD control packets (RFC 5880 4.1): `decode_control(data)` and `encode_control(packet)`.

The mandatory section only. pybgpd does not implement authentication: a packet with the
A bit set is rejected (`AuthenticationPresent`), as 6.8.6 requires when none is in use,
and we never set it. Decoding applies the packet-level discard rules of 6.8.6 (version,
lengths, detect multiplier, Multipoint, My Discriminator, Poll with Final); the rules that
need a session (Your Discriminator, the state of a zero-discriminator packet) belong to
the session table. Intervals are in microseconds, as on the wire.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
    |                       My Discriminator                        |
    |                      Your Discriminator                       |
    |                    Desired Min TX Interval                    |
    |                   Required Min RX Interval                    |
    |                 Required Min Echo RX Interval                 |
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from bgpd.bfd.errors import (
    AuthenticationPresent,
    BadLength,
    BadVersion,
    LocalBfdError,
    MultipointSet,
    PollAndFinal,
    TooShort,
    ZeroDetectMult,
    ZeroMyDiscriminator,
)

VERSION = 1
LENGTH = 24
"""The mandatory section; the only length we send."""

_FORMAT = struct.Struct("!BBBBIIIII")

FLAG_POLL = 0x20
FLAG_FINAL = 0x10
FLAG_CPI = 0x08  # Control Plane Independent
FLAG_AUTH = 0x04
FLAG_DEMAND = 0x02
FLAG_MULTIPOINT = 0x01

U32 = 0xFFFFFFFF


class State(enum.IntEnum):
    """bfd.SessionState (RFC 5880 4.1, 6.2); `str()` is how BIRD prints it."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    def __str__(self) -> str:
        return _STATE_NAMES[self]


_STATE_NAMES = {
    State.ADMIN_DOWN: "AdminDown",
    State.DOWN: "Down",
    State.INIT: "Init",
    State.UP: "Up",
}


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 4.1): why the session last left Up. Values 9-31 are
    reserved; packets carrying them keep the raw number."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8

    def __str__(self) -> str:
        return _DIAG_TEXT[self]


_DIAG_TEXT = {
    Diag.NONE: "No diagnostic",
    Diag.CONTROL_DETECTION_TIME_EXPIRED: "Control detection time expired",
    Diag.ECHO_FUNCTION_FAILED: "Echo function failed",
    Diag.NEIGHBOR_SIGNALED_DOWN: "Neighbor signaled session down",
    Diag.FORWARDING_PLANE_RESET: "Forwarding plane reset",
    Diag.PATH_DOWN: "Path down",
    Diag.CONCATENATED_PATH_DOWN: "Concatenated path down",
    Diag.ADMINISTRATIVELY_DOWN: "Administratively down",
    Diag.REVERSE_CONCATENATED_PATH_DOWN: "Reverse concatenated path down",
}


def describe_diag(code: int) -> str:
    """The RFC's name for a diagnostic code, "Reserved (N)" for the rest."""
    try:
        return str(Diag(code))
    except ValueError:
        return f"Reserved ({code})"


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """One control packet, mandatory section. Intervals in microseconds."""

    state: State
    detect_mult: int
    my_discriminator: int
    your_discriminator: int = 0
    desired_min_tx: int = 0
    required_min_rx: int = 0
    required_min_echo_rx: int = 0
    diag: int = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False


def encode_control(packet: ControlPacket) -> bytes:
    """The 24-octet packet. Raises LocalBfdError for a field that cannot be sent."""
    p = packet
    if not 0 <= p.diag <= 31:
        raise LocalBfdError(f"diag {p.diag} does not fit in 5 bits")
    if not 1 <= p.detect_mult <= 255:
        raise LocalBfdError(f"detect multiplier {p.detect_mult} is not 1..255")
    if not 1 <= p.my_discriminator <= U32:
        raise LocalBfdError(f"my discriminator {p.my_discriminator} is not 1..2^32-1")
    for name in ("your_discriminator", "desired_min_tx", "required_min_rx", "required_min_echo_rx"):
        value = getattr(p, name)
        if not 0 <= value <= U32:
            raise LocalBfdError(f"{name} {value} does not fit in 32 bits")
    if p.poll and p.final:
        raise LocalBfdError("a control packet must not carry both Poll and Final (RFC 5880 6.5)")
    flags = (
        (FLAG_POLL if p.poll else 0)
        | (FLAG_FINAL if p.final else 0)
        | (FLAG_CPI if p.control_plane_independent else 0)
        | (FLAG_DEMAND if p.demand else 0)
    )
    return _FORMAT.pack(
        VERSION << 5 | p.diag,
        int(p.state) << 6 | flags,
        p.detect_mult,
        LENGTH,
        p.my_discriminator,
        p.your_discriminator,
        p.desired_min_tx,
        p.required_min_rx,
        p.required_min_echo_rx,
    )


def decode_control(data: bytes | bytearray | memoryview) -> ControlPacket:
    """One UDP payload -> its packet; raises a BfdPacketError subclass naming the 6.8.6
    rule it breaks. Octets past the Length field are ignored."""
    if len(data) < LENGTH:
        raise TooShort(f"{len(data)} octets")
    vdiag, sflags, mult, length, mine, yours, tx, rx, echo = _FORMAT.unpack_from(data)
    version = vdiag >> 5
    if version != VERSION:
        raise BadVersion(str(version))
    if sflags & FLAG_AUTH:
        raise AuthenticationPresent()
    if length < LENGTH or length > len(data):
        raise BadLength(f"length field {length}, {len(data)} octets received")
    if mult == 0:
        raise ZeroDetectMult()
    if sflags & FLAG_MULTIPOINT:
        raise MultipointSet()
    if sflags & FLAG_POLL and sflags & FLAG_FINAL:
        raise PollAndFinal()
    if mine == 0:
        raise ZeroMyDiscriminator()
    return ControlPacket(
        state=State(sflags >> 6),
        detect_mult=mult,
        my_discriminator=mine,
        your_discriminator=yours,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        diag=vdiag & 0x1F,
        poll=bool(sflags & FLAG_POLL),
        final=bool(sflags & FLAG_FINAL),
        control_plane_independent=bool(sflags & FLAG_CPI),
        demand=bool(sflags & FLAG_DEMAND),
    )
