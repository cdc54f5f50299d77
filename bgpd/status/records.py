"""The status and route records bgpd reports: plain values, no I/O.

The daemon builds them from its own state when asked (through `bgpd.control.api.DaemonView`),
the control server writes them as JSON with `bgpd.status.codec.to_json`, and bgpctl reads the
JSON back into the same records with `codec.from_json` before formatting, so the text tables
are made from exactly what a unit test can construct by hand. The node status document
(`nodestatus.py`) and the metrics are made from them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgpd.status.codec import INLINE

# RFC 4271 section 8.2.2 state names, as BIRD prints them.
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")

# Calico's peer types (calicoctl maps BIRD's Mesh_/Global_/Node_ name prefixes to these),
# and the sessions with this node's own workloads (Local_Workload_*), which calicoctl node
# status, CalicoNodeStatus and calico-node's readiness leave out.
PEER_TYPES = ("node-to-node mesh", "global", "node specific", "local workload")
CALICO_PEER_TYPES = PEER_TYPES[:3]

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


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One path to a prefix in the Loc-RIB view: the best one or a candidate.

    `from_peer` is the peer's name, "local" for a route this node originates, or "kernel" for
    one learned from the kernel (Felix's workload routes). `reason` is the
    BestPathReason name of the decision step that ranked this path (None when uncontested).
    `in_fib` is None where the FIB is not consulted (e.g. a path that is not best).
    `stale` marks a path kept for a peer in graceful restart (RFC 4724) until it is
    re-announced or swept; `interface` is the outgoing interface of a kernel-learned route.
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
    stale: bool = False
    interface: str | None = None

    def __post_init__(self) -> None:
        _check(self.family, FAMILIES, "family")


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The daemon's identity and every configured peer. `started` is wall-clock epoch seconds."""

    router_id: str
    asn: int
    node: str
    version: str
    started: float
    peers: list[PeerStatus]


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


@dataclass(frozen=True, slots=True)
class PeerExport:
    """Whether the explained prefix is advertised to one configured peer, and why (not)."""

    peer: str
    exported: bool
    reason: str


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


@dataclass(frozen=True, slots=True)
class ProtocolDetail:
    """One session as `show protocols all` shows it: its `PeerStatus` and what BIRD adds.

    `hold_time` / `keepalive_time` are the negotiated values while Established (None
    otherwise); `configured_hold_time` is what we offer in OPEN. `families` are the negotiated
    address families. Counters are messages since the daemon made the session. In JSON the
    peer's keys sit beside these (INLINE): one flat object per session.

    The session's export settings: `next_hop` ("self", "keep" or "auto"), `allow_local_as`
    (BIRD's `allow local as`), `add_path` what we offer ("rx/tx" or "off") and
    `add_path_rx` / `add_path_tx` the families it was negotiated for (receive / send),
    `filters` the BGPFilters named, `communities` the prefixAdvertisement rules its exports
    get ("192.168.0.0/16: 100:6532").
    """

    peer: PeerStatus = field(metadata=INLINE)
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
    next_hop: str = "auto"
    allow_local_as: int = 0
    add_path: str = "off"
    add_path_rx: list[str] = field(default_factory=list)
    add_path_tx: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    communities: list[str] = field(default_factory=list)


def bird_error(info: str) -> str:
    """The last error with its BIRD class; a message without one is a socket error."""
    info = info.strip()
    if not info or info.startswith(ERROR_CLASSES):
        return info
    return "Socket: " + info


RELOAD_APPLIED = "applied"
RELOAD_UNCHANGED = "unchanged"
RELOAD_REFUSED = "refused"
RELOAD_OUTCOMES = (RELOAD_APPLIED, RELOAD_UNCHANGED, RELOAD_REFUSED)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one reload did (BIRD's `configure` answer). "applied": the new plan runs, with
    the sessions named in `added`, `removed` and `changed` (restarted) and any routing
    change; "unchanged": the datastore says what already runs; "refused": the new state could
    not be read or planned, `error` says why, and the running plan stays."""

    outcome: str
    error: str | None = None
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self.outcome, RELOAD_OUTCOMES, "reload outcome")
