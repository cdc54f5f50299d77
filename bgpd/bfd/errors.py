"""BFD errors: packets a peer sends that RFC 5880 6.8.6 says to discard (`BfdPacketError`,
one subclass per rule, each with BIRD's wording), and API misuse by the caller
(`LocalBfdError`). A bad packet never costs more than itself: the receiver drops it and
counts the reason."""

from __future__ import annotations


class BfdPacketError(Exception):
    """A control packet to discard. `reason` is short and stable (for counters and logs)."""

    reason = "bad packet"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class TooShort(BfdPacketError):
    reason = "too short"


class BadVersion(BfdPacketError):
    reason = "version mismatch"


class BadLength(BfdPacketError):
    reason = "length mismatch"


class ZeroDetectMult(BfdPacketError):
    reason = "invalid detect mult"


class MultipointSet(BfdPacketError):
    reason = "multipoint bit set"


class PollAndFinal(BfdPacketError):
    """RFC 5880 6.5: a control packet MUST NOT have both the Poll and Final bits set."""

    reason = "poll and final both set"


class ZeroMyDiscriminator(BfdPacketError):
    reason = "invalid my discriminator"


class AuthenticationPresent(BfdPacketError):
    """The A bit is set. pybgpd does not implement BFD authentication (RFC 5880 6.7), and
    6.8.6 says a packet with the A bit set MUST be discarded when none is in use."""

    reason = "authentication not supported"


class LocalBfdError(ValueError):
    """The caller asked for something BFD cannot do (an interval out of range, a session
    for an address that is not unicast, a packet field that does not fit)."""
