"""`bfd_sessions`: BIRD's `show bfd sessions` over the control socket. A record list, no
sockets: `handlers.COMMANDS` lists it, and the daemon implements `BfdView` once it runs
BFD (`BfdManager.sessions()` gives exactly these records).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Protocol

from bgpd.bfd.status import BfdSessionStatus
from bgpd.control.errors import RequestError

NOT_RUNNING = "There is no BFD protocol running"
"""BIRD's answer (nest/proto.c) when no `protocol bfd` is configured."""


class BfdView(Protocol):
    def bfd_sessions(self) -> list[BfdSessionStatus] | None:
        """Every BFD session; None when this daemon runs no BFD at all."""
        ...


def bfd_sessions(request: Mapping[str, Any], view: object) -> object:
    """Every session, or the one with "address"."""
    # A daemon that does not implement the view runs no BFD; say so in BIRD's words.
    getter = getattr(view, "bfd_sessions", None)
    records: list[BfdSessionStatus] | None = getter() if callable(getter) else None
    if records is None:
        raise RequestError(NOT_RUNNING)
    address = request.get("address")
    if address is None:
        return records
    if not isinstance(address, str):
        raise RequestError("address must be an IP address")
    try:
        wanted = ipaddress.ip_address(address.strip())
    except ValueError:
        raise RequestError(f"invalid address {address!r}") from None
    chosen = [r for r in records if ipaddress.ip_address(r.address) == wanted]
    if not chosen:
        raise RequestError(f"no BFD session with {wanted}")
    return chosen
