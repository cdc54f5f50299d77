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
