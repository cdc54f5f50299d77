"""Errors a peer can cause on the wire, each carrying its NOTIFICATION code and subcode and
its RFC 7606 handling (GoBGP's MessageError / ErrorHandling)."""

from __future__ import annotations

import enum


class Handling(enum.IntEnum):
    """RFC 7606 actions, weakest first, so `max()` picks the one to apply."""

    NONE = 0
    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    SESSION_RESET = 3


# NOTIFICATION error codes (RFC 4271 4.5).
MESSAGE_HEADER_ERROR = 1
OPEN_MESSAGE_ERROR = 2
UPDATE_MESSAGE_ERROR = 3
HOLD_TIMER_EXPIRED = 4
FSM_ERROR = 5
CEASE = 6
ROUTE_REFRESH_MESSAGE_ERROR = 7


class WireError(Exception):
    """A fault in bytes a peer sent. Subclasses fix `code` and `subcode`."""

    code: int = 0
    subcode: int = 0

    def __init__(
        self,
        message: str,
        data: bytes = b"",
        handling: Handling = Handling.SESSION_RESET,
    ) -> None:
        super().__init__(message)
        self.data = data
        self.handling = handling


class EncodeError(ValueError):
    """Local misuse: a value that cannot be put on the wire within the negotiated limits
    (an attribute block too large for one message, an AS number out of range). Not a peer
    fault; callers decide (e.g. withdraw the route from that peer instead, RFC 8654 5)."""


class IgnoredMessage(WireError):
    """A well-formed message the RFCs say to drop silently: a ROUTE-REFRESH for an AFI/SAFI
    we do not know (RFC 2918 4) or with an unknown subtype (RFC 7313 5). Handling NONE:
    the session sends no NOTIFICATION and carries on."""

    def __init__(self, message: str, data: bytes = b"", handling: Handling = Handling.NONE):
        super().__init__(message, data, handling)


# --- Message Header Error (1) -------------------------------------------------------------


class ConnectionNotSynchronized(WireError):
    code, subcode = MESSAGE_HEADER_ERROR, 1


class BadMessageLength(WireError):
    """Data: the erroneous 2-octet Length field (RFC 4271 6.1)."""

    code, subcode = MESSAGE_HEADER_ERROR, 2


class BadMessageType(WireError):
    """Data: the erroneous Type octet."""

    code, subcode = MESSAGE_HEADER_ERROR, 3


# --- OPEN Message Error (2) ---------------------------------------------------------------


class OpenMessageError(WireError):
    """Unspecific (subcode 0): a recognised optional parameter that is malformed (RFC 4271
    6.2), e.g. a capability whose length does not fit its code."""

    code, subcode = OPEN_MESSAGE_ERROR, 0


class UnsupportedVersion(WireError):
    """Data: the largest version we support, as 2 octets."""

    code, subcode = OPEN_MESSAGE_ERROR, 1


class BadPeerAS(WireError):
    code, subcode = OPEN_MESSAGE_ERROR, 2


class BadBgpId(WireError):
    code, subcode = OPEN_MESSAGE_ERROR, 3


class UnsupportedOptionalParameter(WireError):
    code, subcode = OPEN_MESSAGE_ERROR, 4


class UnacceptableHoldTime(WireError):
    code, subcode = OPEN_MESSAGE_ERROR, 6


class UnsupportedCapability(WireError):
    """Data: the capabilities we require and the peer lacks (RFC 5492 5)."""

    code, subcode = OPEN_MESSAGE_ERROR, 7


# --- UPDATE Message Error (3) -------------------------------------------------------------


class MalformedAttributeList(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 1


class UnrecognizedWellKnownAttribute(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 2


class MissingWellKnownAttribute(WireError):
    """Data: the type code of the missing attribute."""

    code, subcode = UPDATE_MESSAGE_ERROR, 3


class AttributeFlagsError(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 4


class AttributeLengthError(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 5


class InvalidOriginAttribute(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 6


class InvalidNextHopAttribute(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 8


class OptionalAttributeError(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 9


class InvalidNetworkField(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 10


class MalformedAsPath(WireError):
    code, subcode = UPDATE_MESSAGE_ERROR, 11


# --- ROUTE-REFRESH Message Error (7, RFC 7313) --------------------------------------------


class InvalidMessageLength(WireError):
    """Data: the whole malformed ROUTE-REFRESH message."""

    code, subcode = ROUTE_REFRESH_MESSAGE_ERROR, 1
