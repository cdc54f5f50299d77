"""The operator's control commands: `protocols` (BIRD's `show protocols [all]`), `reset` and
`refresh` of one neighbor, and `reload`. Handlers, no sockets: `handlers.COMMANDS` lists these
beside the query commands, and the daemon implements `OpsView`. Their records,
`ProtocolDetail` and `ReloadResult`, are in `bgpd.status.records`.

`reload` answers only once the reload is done, with what it did, as BIRD's `configure` does:
a refused reload is an error response carrying the reason (a file that does not parse, a
session whose password cannot be read), so `bgpctl reload` and `systemctl reload` fail.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from bgpd.control.errors import RequestError
from bgpd.status.records import RELOAD_REFUSED, ProtocolDetail, ReloadResult


class OpsView(Protocol):
    """What the operator's commands ask of the daemon; all but `reload` answer at once."""

    def protocols(self) -> list[ProtocolDetail]: ...

    def reset_peer(self, name: str) -> str:
        """Close the session with a Cease (Administrative Reset) and let it start again; a
        one-line account of what was done. KeyError for an unknown peer."""
        ...

    def refresh_peer(self, name: str) -> list[str]:
        """Send ROUTE-REFRESH for each negotiated family; the families asked. KeyError for
        an unknown peer, ValueError (with the reason) when the session cannot be refreshed."""
        ...

    def reload(self) -> Awaitable[ReloadResult]:
        """Read the datastore again and apply what changed (as SIGHUP does); what it did."""
        ...


def _peer_field(request: Mapping[str, Any]) -> str:
    peer = request.get("peer")
    if not isinstance(peer, str) or not peer:
        raise RequestError("peer must be a peer name or address")
    return peer


def protocols(request: Mapping[str, Any], view: OpsView) -> object:
    """All sessions, or the one named by "name" (its protocol name or its address)."""
    name = request.get("name")
    found = view.protocols()
    if name is None:
        return found
    if not isinstance(name, str) or not name:
        raise RequestError("name must be a protocol name or address")
    chosen = [p for p in found if name in (p.peer.name, p.peer.address)]
    if not chosen:
        raise RequestError(f"no such protocol {name!r}")
    return chosen


def reset(request: Mapping[str, Any], view: OpsView) -> object:
    peer = _peer_field(request)
    try:
        return view.reset_peer(peer)
    except KeyError:
        raise RequestError(f"no such peer {peer!r}") from None


def refresh(request: Mapping[str, Any], view: OpsView) -> object:
    peer = _peer_field(request)
    try:
        return view.refresh_peer(peer)
    except KeyError:
        raise RequestError(f"no such peer {peer!r}") from None
    except ValueError as exc:
        raise RequestError(f"{peer}: {exc}") from None


def reload(request: Mapping[str, Any], view: OpsView) -> object:
    """An awaitable: the server answers once the reload is done (handlers.complete)."""
    return _reloaded(view.reload())


async def _reloaded(pending: Awaitable[ReloadResult]) -> ReloadResult:
    result = await pending
    if result.outcome == RELOAD_REFUSED:
        raise RequestError(f"reload refused, keeping the running configuration: {result.error}")
    return result
