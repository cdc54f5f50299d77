"""The operator's control commands: `protocols` (BIRD's `show protocols [all]`), `reset` and
`refresh` of one neighbor, and `reload`. Records and handlers, no sockets: `handlers.COMMANDS`
lists these beside the query commands, and the daemon implements `OpsView`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bgpd.control.api import PeerStatus
from bgpd.control.errors import RequestError


@dataclass(frozen=True, slots=True)
class ProtocolDetail:
    """One session as `show protocols all` shows it: its `PeerStatus` and what BIRD adds.

    `hold_time` / `keepalive_time` are the negotiated values while Established (None
    otherwise); `configured_hold_time` is what we offer in OPEN. `families` are the negotiated
    address families. Counters are messages since the daemon made the session.
    """

    peer: PeerStatus
    neighbor_id: str | None
    hold_time: int | None
    keepalive_time: int | None
    configured_hold_time: int
    families: list[str]
    route_refresh: bool
    source_address: str | None
    messages_received: int
    messages_sent: int
    updates_received: int
    updates_sent: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.peer.to_json(),
            "neighbor_id": self.neighbor_id,
            "hold_time": self.hold_time,
            "keepalive_time": self.keepalive_time,
            "configured_hold_time": self.configured_hold_time,
            "families": list(self.families),
            "route_refresh": self.route_refresh,
            "source_address": self.source_address,
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "updates_received": self.updates_received,
            "updates_sent": self.updates_sent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProtocolDetail:
        hold, keepalive = data["hold_time"], data["keepalive_time"]
        neighbor_id, source = data["neighbor_id"], data["source_address"]
        return cls(
            peer=PeerStatus.from_json(data),
            neighbor_id=None if neighbor_id is None else str(neighbor_id),
            hold_time=None if hold is None else int(hold),
            keepalive_time=None if keepalive is None else int(keepalive),
            configured_hold_time=int(data["configured_hold_time"]),
            families=[str(f) for f in data["families"]],
            route_refresh=bool(data["route_refresh"]),
            source_address=None if source is None else str(source),
            messages_received=int(data["messages_received"]),
            messages_sent=int(data["messages_sent"]),
            updates_received=int(data["updates_received"]),
            updates_sent=int(data["updates_sent"]),
        )


class OpsView(Protocol):
    """What the operator's commands ask of the daemon; all answer without awaiting."""

    def protocols(self) -> list[ProtocolDetail]: ...

    def reset_peer(self, name: str) -> str:
        """Close the session with a Cease (Administrative Reset) and let it start again; a
        one-line account of what was done. KeyError for an unknown peer."""
        ...

    def refresh_peer(self, name: str) -> list[str]:
        """Send ROUTE-REFRESH for each negotiated family; the families asked. KeyError for
        an unknown peer, ValueError (with the reason) when the session cannot be refreshed."""
        ...

    def request_reload(self) -> None:
        """Read the datastore again and apply what changed (as SIGHUP does)."""
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
    view.request_reload()
    return "reload requested"
