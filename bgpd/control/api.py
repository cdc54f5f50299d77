"""What the control API speaks: status and route records, and the view the daemon implements.

The records are plain values. The daemon builds them from its own state when asked (through
`DaemonView`), the server turns them into JSON with `to_json()`, and bgpctl turns the JSON back
into the same records with `from_json()` before formatting, so the text tables are made from
exactly what a unit test can construct by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# RFC 4271 section 8.2.2 state names, as BIRD prints them.
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")

# Calico's peer types (calicoctl maps BIRD's Mesh_/Global_/Node_ name prefixes to these).
PEER_TYPES = ("node-to-node mesh", "global", "node specific")

FAMILIES = ("ipv4", "ipv6")

# BIRD's error classes (proto/bgp/bgp.c bgp_err_classes). `PeerStatus.info` starts with one of
# them when the daemon knows the class; a bare message is taken to be a socket error.
ERROR_CLASSES = ("Error: ", "Socket: ", "Received: ", "BGP Error: ", "Automatic shutdown: ")


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One configured BGP session, as the daemon sees it right now.

    `since` is wall-clock epoch seconds of the last `bgp_state` change (None if never). `info` is
    the last error or detail, empty if none, e.g. "Socket: Connection refused",
    "Received: Hold timer expired" or just "Connection refused". `passive` marks a session that
    only listens (the higher-addressed end of a mesh pair); BIRD shows it idling as "Passive".
    """

    name: str
    address: str
    port: int
    type: str
    peer_as: int
    local_as: int
    bgp_state: str
    since: float | None
    info: str
    routes_received: int
    routes_advertised: int
    family: str
    passive: bool = False

    def __post_init__(self) -> None:
        _check(self.type, PEER_TYPES, "peer type")
        _check(self.bgp_state, BGP_STATES, "bgp_state")
        _check(self.family, FAMILIES, "family")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "type": self.type,
            "peer_as": self.peer_as,
            "local_as": self.local_as,
            "bgp_state": self.bgp_state,
            "since": self.since,
            "info": self.info,
            "routes_received": self.routes_received,
            "routes_advertised": self.routes_advertised,
            "family": self.family,
            "passive": self.passive,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PeerStatus:
        since = data["since"]
        return cls(
            name=str(data["name"]),
            address=str(data["address"]),
            port=int(data["port"]),
            type=str(data["type"]),
            peer_as=int(data["peer_as"]),
            local_as=int(data["local_as"]),
            bgp_state=str(data["bgp_state"]),
            since=None if since is None else float(since),
            info=str(data["info"]),
            routes_received=int(data["routes_received"]),
            routes_advertised=int(data["routes_advertised"]),
            family=str(data["family"]),
            passive=bool(data.get("passive", False)),
        )


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One path to a prefix in the Loc-RIB view: the best one or a candidate.

    `from_peer` is the peer's name, "local" for a route this node originates, or "kernel" for
    one learned from the kernel (Felix's workload routes). `reason` is the
    BestPathReason name of the decision step that ranked this path (None when uncontested).
    `in_fib` is None where the FIB is not consulted (e.g. a path that is not best).
    """

    prefix: str
    family: str
    next_hop: str
    best: bool
    from_peer: str
    as_path: str
    origin: str
    local_pref: int | None
    med: int | None
    communities: list[str]
    large_communities: list[str]
    originator_id: str | None
    cluster_list: list[str]
    reason: str | None
    in_fib: bool | None

    def __post_init__(self) -> None:
        _check(self.family, FAMILIES, "family")

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "family": self.family,
            "next_hop": self.next_hop,
            "best": self.best,
            "from_peer": self.from_peer,
            "as_path": self.as_path,
            "origin": self.origin,
            "local_pref": self.local_pref,
            "med": self.med,
            "communities": list(self.communities),
            "large_communities": list(self.large_communities),
            "originator_id": self.originator_id,
            "cluster_list": list(self.cluster_list),
            "reason": self.reason,
            "in_fib": self.in_fib,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RouteEntry:
        local_pref, med, in_fib = data["local_pref"], data["med"], data["in_fib"]
        originator_id, reason = data["originator_id"], data["reason"]
        return cls(
            prefix=str(data["prefix"]),
            family=str(data["family"]),
            next_hop=str(data["next_hop"]),
            best=bool(data["best"]),
            from_peer=str(data["from_peer"]),
            as_path=str(data["as_path"]),
            origin=str(data["origin"]),
            local_pref=None if local_pref is None else int(local_pref),
            med=None if med is None else int(med),
            communities=[str(c) for c in data["communities"]],
            large_communities=[str(c) for c in data["large_communities"]],
            originator_id=None if originator_id is None else str(originator_id),
            cluster_list=[str(c) for c in data["cluster_list"]],
            reason=None if reason is None else str(reason),
            in_fib=None if in_fib is None else bool(in_fib),
        )


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The daemon's identity and every configured peer. `started` is wall-clock epoch seconds."""

    router_id: str
    asn: int
    node: str
    version: str
    started: float
    peers: list[PeerStatus]

    def to_json(self) -> dict[str, Any]:
        return {
            "router_id": self.router_id,
            "asn": self.asn,
            "node": self.node,
            "version": self.version,
            "started": self.started,
            "peers": [p.to_json() for p in self.peers],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DaemonStatus:
        return cls(
            router_id=str(data["router_id"]),
            asn=int(data["asn"]),
            node=str(data["node"]),
            version=str(data["version"]),
            started=float(data["started"]),
            peers=[PeerStatus.from_json(p) for p in data["peers"]],
        )


@dataclass(frozen=True, slots=True)
class ExportedRoute:
    """One prefix as advertised to a peer (its update group's Adj-RIB-Out): the attributes
    on the wire, and the source of the route."""

    prefix: str
    next_hop: str
    as_path: str
    origin: str
    local_pref: int | None
    med: int | None
    communities: list[str]
    large_communities: list[str]
    from_peer: str

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "next_hop": self.next_hop,
            "as_path": self.as_path,
            "origin": self.origin,
            "local_pref": self.local_pref,
            "med": self.med,
            "communities": list(self.communities),
            "large_communities": list(self.large_communities),
            "from_peer": self.from_peer,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportedRoute:
        local_pref, med = data["local_pref"], data["med"]
        return cls(
            prefix=str(data["prefix"]),
            next_hop=str(data["next_hop"]),
            as_path=str(data["as_path"]),
            origin=str(data["origin"]),
            local_pref=None if local_pref is None else int(local_pref),
            med=None if med is None else int(med),
            communities=[str(c) for c in data["communities"]],
            large_communities=[str(c) for c in data["large_communities"]],
            from_peer=str(data["from_peer"]),
        )


@dataclass(frozen=True, slots=True)
class CandidatePath:
    """One path to an explained prefix, accepted or not. `verdict` says why it is (not) the
    best: "best (Local Pref)", "lost to <peer> on MED", "rejected: AS_PATH contains our AS"."""

    from_peer: str
    next_hop: str
    as_path: str
    local_pref: int | None
    best: bool
    accepted: bool
    stale: bool
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return {
            "from_peer": self.from_peer,
            "next_hop": self.next_hop,
            "as_path": self.as_path,
            "local_pref": self.local_pref,
            "best": self.best,
            "accepted": self.accepted,
            "stale": self.stale,
            "verdict": self.verdict,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CandidatePath:
        local_pref = data["local_pref"]
        return cls(
            from_peer=str(data["from_peer"]),
            next_hop=str(data["next_hop"]),
            as_path=str(data["as_path"]),
            local_pref=None if local_pref is None else int(local_pref),
            best=bool(data["best"]),
            accepted=bool(data["accepted"]),
            stale=bool(data["stale"]),
            verdict=str(data["verdict"]),
        )


@dataclass(frozen=True, slots=True)
class PeerExport:
    """Whether the explained prefix is advertised to one configured peer, and why (not)."""

    peer: str
    exported: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"peer": self.peer, "exported": self.exported, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PeerExport:
        return cls(str(data["peer"]), bool(data["exported"]), str(data["reason"]))


@dataclass(frozen=True, slots=True)
class Explanation:
    """`bgpctl explain PREFIX`: the candidates and decision, the FIB and every peer's export."""

    prefix: str
    family: str
    in_loc_rib: bool
    candidates: list[CandidatePath]
    in_fib: bool | None
    fib_reason: str
    exports: list[PeerExport]

    def __post_init__(self) -> None:
        _check(self.family, FAMILIES, "family")

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "family": self.family,
            "in_loc_rib": self.in_loc_rib,
            "candidates": [c.to_json() for c in self.candidates],
            "in_fib": self.in_fib,
            "fib_reason": self.fib_reason,
            "exports": [e.to_json() for e in self.exports],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Explanation:
        in_fib = data["in_fib"]
        return cls(
            prefix=str(data["prefix"]),
            family=str(data["family"]),
            in_loc_rib=bool(data["in_loc_rib"]),
            candidates=[CandidatePath.from_json(c) for c in data["candidates"]],
            in_fib=None if in_fib is None else bool(in_fib),
            fib_reason=str(data["fib_reason"]),
            exports=[PeerExport.from_json(e) for e in data["exports"]],
        )


class DaemonView(Protocol):
    """What the control server asks of the daemon. Both calls run on the event loop, so they
    must answer from in-memory state without awaiting anything."""

    def status(self) -> DaemonStatus: ...

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        """Every path (best and candidates) in the Loc-RIB view, or only those of `prefix`
        (canonical network form, e.g. "10.0.0.0/24" or "fd00::/64"; an exact match)."""
        ...

    def exported(self, peer: str) -> list[ExportedRoute]:
        """What is advertised to `peer` now (its update group's Adj-RIB-Out, less what it
        sent us); raises KeyError for an unknown peer."""
        ...

    def explain(self, prefix: str) -> Explanation:
        """Why `prefix` (canonical form) is or is not in the Loc-RIB, the FIB and each
        peer's Adj-RIB-Out."""
        ...
