"""Calico's peering rules: a Snapshot and a node name in, the sessions that node runs out.

This is confd's work (client.go `updatePeersV1`, bgp_processor.go; reference/calico.md 3 and
4.1) without BIRD in between: the same session names (`Mesh_10_0_0_3`, `Global_...`,
`Node_..._port_N`), the same passive ends, source addresses, TTL security, next-hop and
route-reflector settings that confd would render into bird.cfg / bird6.cfg. Pure.

Sessions come from three places:

* the node-to-node mesh (BGPConfiguration default.nodeToNodeMeshEnabled, on by default):
  every other node with an address of the family, except route reflectors (nodes with
  routeReflectorClusterID), which also leave the mesh themselves; one-directional, the end
  whose address string sorts higher waits (`passive`);
* BGPPeers: global ones (no node / nodeSelector) on every node, node-specific ones on the
  nodes they select; the remote side is peerIP or the nodes peerSelector matches;
* automatic reverse peerings: the nodes a BGPPeer points at get a peering back (unless
  reversePeering is Manual), so one selector BGPPeer sets up both ends;
* local workloads: the WorkloadEndpoints of this node a BGPPeer's localWorkloadSelector
  picks (calico/localpeers.py, felix's rule) get a passive `Local_Workload_<ip>` session
  per address, presenting BGPConfiguration localWorkloadPeeringIPV4/IPV6 as our address.

Every session runs ADD-PATH both ways, as Calico's bgp_template says (`add paths on`).
"""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from bgpd.plan.errors import PlanError
from bgpd.plan.kernel_rules import KernelRule, felix_programs_ipip, kernel_rules
from bgpd.plan.originate import (
    CommunityRule,
    Origination,
    StaticRoute,
    affine_blocks,
    blackholes,
    community_rules,
    originations,
    pool_specs,
)
from bgpd.plan.support import unsupported_notes
from bgpd.policy import bgpfilter
from bgpd.policy.calico import (
    IPV4,
    IPV6,
    AffineBlock,
    ExportPolicy,
    PoolSpec,
    family_of,
    tunnel_ifaces,
)
from calico import selector
from calico.localpeers import local_peers
from calico.model import (
    BFD_DEFAULT_INTERVAL,
    BFD_DEFAULT_MULTIPLIER,
    DEFAULT_LISTEN_PORT,
    NO_BFD,
    SOURCE_ADDRESS_NODE_IP,
    BfdSettings,
    BGPFilter,
    BGPPeer,
    SecretKeyRef,
)
from calico.snapshot import Snapshot

# Peer types, in `calicoctl node status` words.
MESH = "node-to-node mesh"
GLOBAL = "global"
NODE_SPECIFIC = "node specific"
# Not a calicoctl type (calicoctl node status leaves Local_Workload_* out).
LOCAL_WORKLOAD = "local workload"

_NAME_PREFIX = {
    MESH: "Mesh",
    GLOBAL: "Global",
    NODE_SPECIFIC: "Node",
    LOCAL_WORKLOAD: "Local_Workload",
}

# What Calico's bgp_template leaves at BIRD's defaults.
DEFAULT_HOLD_TIME = 240
DEFAULT_CONNECT_RETRY_TIME = 5
DEFAULT_RESTART_TIME = 120
# BIRD's `multihop;` without a number.
DEFAULT_MULTIHOP_TTL = 64
DEFAULT_LOG_SEVERITY = "Info"


@dataclass(frozen=True, slots=True)
class BfdSpec:
    """BFD for one session (single hop, RFC 5880/5881): `interval` seconds both ways,
    detection after `multiplier` missed intervals."""

    interval: float = BFD_DEFAULT_INTERVAL
    multiplier: int = BFD_DEFAULT_MULTIPLIER

    @property
    def detection_time(self) -> float:
        return self.interval * self.multiplier


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One BGP session this node should run: what confd writes as `protocol bgp <name>`."""

    name: str
    peer_address: str
    peer_port: int
    peer_as: int
    # The AS this node speaks on this session (BGPPeer.localASNumber, else the node's).
    local_as: int
    type: str
    family: str
    passive: bool = False
    # The address to bind and connect from; None lets the kernel choose.
    source_address: str | None = None
    # GTSM (RFC 5082): send with TTL 255 and accept only TTL >= 256 - multihop.
    ttl_security: bool = False
    # Hops to the peer (BIRD's `multihop N`); without TTL security, the TTL we send.
    multihop: int = DEFAULT_MULTIHOP_TTL
    keepalive_time: int | None = None
    hold_time: int = DEFAULT_HOLD_TIME
    connect_retry_time: int = DEFAULT_CONNECT_RETRY_TIME
    # Graceful restart (RFC 4724): the restart time we advertise and keep a peer's routes for.
    max_restart_time: int = DEFAULT_RESTART_TIME
    password: SecretKeyRef | None = None
    next_hop_self: bool = False
    keep_original_next_hop: bool = False
    rr_client: bool = False
    # Set with rr_client: the cluster ID this node reflects as.
    rr_cluster_id: str | None = None
    # BIRD's `allow local as N` (BGPPeer.numAllowedLocalASNumbers): routes from the peer
    # may carry our AS up to N times; 0: never.
    allow_local_as: int = 0
    # RFC 7911 ADD-PATH, receive and send (Calico's bgp_template: `add paths on`).
    add_path: bool = True
    reachable_by: str | None = None
    filters: tuple[str, ...] = ()
    # The peer is a Calico node (by its address); `peer_node` names it when known.
    calico_node: bool = False
    peer_node: str | None = None
    # The BGPPeer resource this session comes from; None for the mesh.
    bgp_peer: str | None = None
    # BFD for this session (pybgpd.io/bfd* annotations of the BGPPeer, else of this Node);
    # None: off. A change of it alone re-times BFD and never restarts BGP (plan.diff).
    bfd: BfdSpec | None = None

    @property
    def ebgp(self) -> bool:
        return self.peer_as != self.local_as


@dataclass(frozen=True, slots=True)
class PeeringPlan:
    """Everything the speaker needs from the datastore for one node, as one value."""

    node: str
    router_id: str
    local_as: int
    listen_port: int
    node_ipv4: str | None
    node_ipv6: str | None
    node_ipv4_network: str | None = None
    node_ipv6_network: str | None = None
    # Addresses to listen on (bindMode NodeIP); empty: all addresses.
    listen_addresses: tuple[str, ...] = ()
    # Set when this node is a route reflector.
    rr_cluster_id: str | None = None
    mesh_enabled: bool = True
    sessions: tuple[PeerSpec, ...] = ()
    originate: tuple[Origination, ...] = ()
    blackholes: tuple[str, ...] = ()
    # This node's blocks (for the aggregation rule of the export policy).
    blocks: tuple[AffineBlock, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    static_routes: tuple[StaticRoute, ...] = ()
    communities: tuple[CommunityRule, ...] = ()
    # Kernel programming of learned routes, per pool (calico_kernel_programming).
    kernel: tuple[KernelRule, ...] = ()
    # The BGPFilters the sessions name and that exist, by name (a session's `filters` keeps
    # every name it was given; confd leaves out calls to missing ones, and so does the policy).
    filters: tuple[BGPFilter, ...] = ()
    # BGPConfiguration default's ipv4/ipv6NormalRoutePriority: the priority of a route that
    # has none of its own, which goes out as LOCAL_PREF 2147483647 - priority.
    normal_priority_v4: int = 1024
    normal_priority_v6: int = 1024
    # Felix programs the IPIP pools' routes (programClusterRoutes neither Enabled nor
    # EnabledIPIPOnly): then routes through tunl0 are Felix's, not sent to internal peers.
    felix_ipip: bool = True
    # BGPConfiguration ignoredInterfaces (globs): routes through them are neither learned
    # from the kernel nor advertised.
    ignored_interfaces: tuple[str, ...] = ()
    # BGPConfiguration logSeverityScreen in force (node.<name>'s, else default's).
    log_severity: str = DEFAULT_LOG_SEVERITY
    # Things the planner skipped or could not use, one line each, for the log.
    notes: tuple[str, ...] = field(default=(), compare=False)

    def session(self, name: str) -> PeerSpec | None:
        for s in self.sessions:
            if s.name == name:
                return s
        return None

    def calico_export(self) -> ExportPolicy:
        """Calico's export rules for this node (calico_export_to_bgp_peers)."""
        return ExportPolicy(
            self.blocks,
            self.pools,
            tunnel_ifaces(self.felix_ipip),
            ignored_interfaces=self.ignored_interfaces,
        )


def hash_router_id(node: str) -> str:
    """CALICO_ROUTER_ID=hash: the first four bytes of sha256(nodename), with 32 taken off a
    first octet above 223 so the ID is never a multicast or reserved address."""
    # hashlib loads OpenSSL's libcrypto (3.6 MB resident) for this one setting.
    import hashlib

    octets = list(hashlib.sha256(node.encode()).digest()[:4])
    if octets[0] > 223:
        octets[0] -= 32
    return ".".join(str(o) for o in octets)


def router_id_for(node: str, node_ipv4: str | None, env: Mapping[str, str]) -> str:
    configured = env.get("CALICO_ROUTER_ID", "").strip()
    if configured == "hash":
        return hash_router_id(node)
    if configured:
        try:
            return str(ipaddress.IPv4Address(configured))
        except ValueError:
            raise PlanError(
                f"CALICO_ROUTER_ID {configured!r} is neither an IPv4 address nor 'hash'"
            ) from None
    if node_ipv4 is None:
        raise PlanError(f"node {node!r} has no IPv4 address for a router ID; set CALICO_ROUTER_ID")
    return node_ipv4


@dataclass(frozen=True, slots=True)
class _NodeFacts:
    """What confd's v1 keys say about one node (/calico/bgp/v1/host/<node>/...)."""

    name: str
    labels: Mapping[str, str]
    ipv4: str | None
    ipv6: str | None
    asn: int
    rr_cluster_id: str | None
    # listenPort from `node.<name>`, else from `default`; None: not set (179).
    port: int | None

    def address(self, family: str) -> str | None:
        return self.ipv4 if family == IPV4 else self.ipv6


@dataclass(frozen=True, slots=True)
class _Peering:
    """A computed v1 peering (confd's bgpPeer JSON) before it is rendered for this node."""

    ip: str
    port: int | None
    asn: int
    rr_cluster_id: str | None
    calico_node: bool
    peer_node: str | None
    source: BGPPeer


def _norm_port(port: int | None) -> int | None:
    """179 and unset are the same peering (the v1 key only carries a non-default port)."""
    return None if port in (None, 0, DEFAULT_LISTEN_PORT) else port


def _session_name(kind: str, ip: str, port: int | None) -> str:
    base = f"{_NAME_PREFIX[kind]}_{ip.replace('.', '_').replace(':', '_')}"
    return f"{base}_port_{port}" if port else base


class _Planner:
    def __init__(self, snapshot: Snapshot, node: str) -> None:
        self.snapshot = snapshot
        self.node = node
        self.notes: list[str] = []
        default = snapshot.default_config
        self.default = default
        self.global_as = default.as_number
        self.facts: dict[str, _NodeFacts] = {}
        for name in sorted(snapshot.nodes):
            n = snapshot.nodes[name]
            node_cfg = snapshot.node_config(name)
            port = (node_cfg.listen_port if node_cfg else None) or default.listen_port
            self.facts[name] = _NodeFacts(
                name=name,
                labels=n.labels,
                ipv4=n.ipv4,
                ipv6=n.ipv6,
                asn=n.as_number or self.global_as,
                rr_cluster_id=n.rr_cluster_id,
                port=port,
            )
        self.me = self.facts[node]
        self.node_bfd = snapshot.nodes[node].bfd
        self.by_ip = {ip: f for f in self.facts.values() for ip in (f.ipv4, f.ipv6) if ip}

    def matching(self, text: str) -> list[str]:
        sel = selector.parse(text)
        return [n for n, f in self.facts.items() if sel.matches(f.labels)]

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def bfd(self, name: str, bp: BGPPeer | None, multihop: bool = False) -> BfdSpec | None:
        """A session's BFD: the BGPPeer's annotations over this node's over the defaults."""
        peer = bp.bfd if bp is not None else NO_BFD
        node: BfdSettings = self.node_bfd
        enabled = peer.enabled if peer.enabled is not None else bool(node.enabled)
        if not enabled:
            if bp is not None and (peer.interval is not None or peer.multiplier is not None):
                self.note(
                    f"BGPPeer {bp.name!r}: BFD interval/multiplier set but BFD is off for "
                    f"{name} (set pybgpd.io/bfd: \"true\" on the BGPPeer or the Node)"
                )
            return None
        if multihop:
            self.note(
                f"{name}: BFD not started: pybgpd runs single-hop BFD only (RFC 5881) and "
                "ttlSecurity says the peer is more than one hop away"
            )
            return None
        return BfdSpec(
            interval=peer.interval or node.interval or BFD_DEFAULT_INTERVAL,
            multiplier=peer.multiplier or node.multiplier or BFD_DEFAULT_MULTIPLIER,
        )

    # --- mesh ------------------------------------------------------------------------

    def mesh(self) -> list[PeerSpec]:
        if not self.default.node_to_node_mesh_enabled:
            return []
        if self.me.rr_cluster_id:
            # A route reflector leaves the mesh; BGPPeers connect it.
            return []
        out: list[PeerSpec] = []
        for family in (IPV4, IPV6):
            own = self.me.address(family)
            if own is None:
                continue
            for f in self.facts.values():
                ip = f.address(family)
                if ip is None or ip == own or f.rr_cluster_id:
                    continue
                name = _session_name(MESH, ip, None)
                out.append(
                    PeerSpec(
                        name=name,
                        peer_address=ip,
                        peer_port=f.port or DEFAULT_LISTEN_PORT,
                        peer_as=f.asn,
                        local_as=self.me.asn,
                        type=MESH,
                        family=family,
                        # One-directional: the end whose address string is higher waits.
                        passive=ip > own,
                        source_address=own,
                        max_restart_time=self.default.node_mesh_max_restart_time
                        if self.default.node_mesh_max_restart_time is not None
                        else DEFAULT_RESTART_TIME,
                        password=self.default.node_mesh_password,
                        calico_node=True,
                        peer_node=f.name,
                        bfd=self.bfd(name, None),
                    )
                )
        return out

    # --- BGPPeers --------------------------------------------------------------------

    def nodes_with(self, ip: str | None, asn: int | None, port: int | None) -> list[str]:
        """Calico nodes at `ip` in AS `asn` (the cluster AS when None) listening on `port`
        (any port when None): the nodes a peerIP BGPPeer points at."""
        if ip is None:
            return []
        want_as = asn or self.global_as
        return [
            f.name
            for f in self.facts.values()
            if ip in (f.ipv4, f.ipv6)
            and f.asn == want_as
            and (port is None or (f.port or DEFAULT_LISTEN_PORT) == port)
        ]

    def node_as_peers(self, name: str, v4: bool, v6: bool, bp: BGPPeer) -> list[_Peering]:
        f = self.facts.get(name)
        if f is None:
            return []
        out = []
        for family, wanted in ((IPV4, v4), (IPV6, v6)):
            ip = f.address(family)
            if wanted and ip is not None:
                # Calico marks only peerIP peerings as calico_node (it decides `passive`).
                out.append(
                    _Peering(ip, _norm_port(f.port), f.asn, f.rr_cluster_id, False, name, bp)
                )
        return out

    def explicit(self) -> list[tuple[str, _Peering]]:
        """confd's updatePeersV1, keeping what concerns this node: all global peerings (a
        node-specific one to the same address and port yields to them) and this node's own."""
        peerings: dict[tuple[str, str, int | None], _Peering] = {}

        def emit(kind: str, p: _Peering) -> None:
            key = (kind, p.ip, p.port)
            if key in peerings:
                return  # the first one for a key wins; explicit peerings come before reverse
            if kind == NODE_SPECIFIC and (GLOBAL, p.ip, p.port) in peerings:
                return
            peerings[key] = p

        peers = [self.snapshot.bgp_peers[n] for n in sorted(self.snapshot.bgp_peers)]
        # localWorkloadSelector peers are this node's workloads (local_workloads()).
        peers = [bp for bp in peers if not bp.local_workload_selector]

        for global_pass in (True, False):
            for bp in peers:
                if bp.is_global != global_pass:
                    continue
                if not global_pass:
                    local = self.matching(bp.node_selector) if bp.node_selector else [bp.node]
                    if self.node not in local:
                        continue
                for p in self.remotes(bp):
                    emit(GLOBAL if global_pass else NODE_SPECIFIC, p)

        for bp in peers:
            if bp.reverse_peering == "Manual":
                continue
            if bp.peer_selector:
                targets = self.matching(bp.peer_selector)
                v4 = v6 = True
            else:
                targets = self.nodes_with(bp.peer_ip, bp.as_number, bp.peer_port)
                v4 = family_of(bp.peer_ip or "") == IPV4
                v6 = not v4
            if self.node not in targets:
                continue
            if bp.node_selector:
                back_to = self.matching(bp.node_selector)
            elif bp.node:
                back_to = [bp.node]
            else:
                back_to = list(self.facts)
            for name in back_to:
                for p in self.node_as_peers(name, v4, v6, bp):
                    emit(NODE_SPECIFIC, p)

        return [(kind, p) for (kind, _, _), p in peerings.items()]

    def remotes(self, bp: BGPPeer) -> list[_Peering]:
        if bp.peer_selector:
            out: list[_Peering] = []
            for name in self.matching(bp.peer_selector):
                out.extend(self.node_as_peers(name, True, True, bp))
            return out
        assert bp.peer_ip is not None  # the model requires peerIP without peerSelector
        port = bp.peer_port
        owners = self.nodes_with(bp.peer_ip, bp.as_number, None)
        if port is None and owners:
            port = self.facts[owners[0]].port
        asn = bp.as_number
        if asn is None:
            if not owners:
                self.note(
                    f"BGPPeer {bp.name!r}: no asNumber, and {bp.peer_ip} is no Calico node "
                    f"in the cluster's AS {self.global_as}"
                )
                return []
            asn = self.facts[owners[0]].asn
        owner = self.by_ip.get(bp.peer_ip)
        return [
            _Peering(
                bp.peer_ip,
                _norm_port(port),
                asn,
                None,
                owner is not None,
                owner.name if owner else None,
                bp,
            )
        ]

    def render(self, kind: str, p: _Peering) -> PeerSpec | None:
        """confd's buildPeerFromData: one peering as this node's session."""
        family = family_of(p.ip)
        own = self.me.address(family)
        if own is None:
            self.note(f"no {family} address on this node: skipping peering with {p.ip}")
            return None
        if p.ip == own:
            return None
        bp = p.source
        local_as = bp.local_as_number or self.me.asn
        next_hop_self = bp.next_hop_mode == "Self"
        keep = bp.next_hop_mode == "Keep" or (
            bp.next_hop_mode != "Self" and bp.keep_original_next_hop and p.asn != local_as
        )
        rr_client = bool(
            self.me.rr_cluster_id and p.asn == local_as and p.rr_cluster_id != self.me.rr_cluster_id
        )
        name = _session_name(kind, p.ip, p.port)
        return PeerSpec(
            name=name,
            peer_address=p.ip,
            peer_port=p.port or DEFAULT_LISTEN_PORT,
            peer_as=p.asn,
            local_as=local_as,
            type=kind,
            family=family,
            passive=kind == GLOBAL and p.calico_node and p.ip > own,
            source_address=own if bp.source_address == SOURCE_ADDRESS_NODE_IP else None,
            ttl_security=bp.ttl_security is not None,
            multihop=bp.ttl_security or DEFAULT_MULTIHOP_TTL,
            keepalive_time=bp.keepalive_time,
            max_restart_time=bp.max_restart_time
            if bp.max_restart_time is not None
            else DEFAULT_RESTART_TIME,
            password=bp.password,
            next_hop_self=next_hop_self,
            keep_original_next_hop=keep,
            rr_client=rr_client,
            rr_cluster_id=self.me.rr_cluster_id if rr_client else None,
            allow_local_as=bp.num_allowed_local_as_numbers or 0,
            reachable_by=bp.reachable_by,
            filters=bp.filters,
            calico_node=p.calico_node or p.peer_node is not None,
            peer_node=p.peer_node,
            bgp_peer=bp.name,
            bfd=self.bfd(name, bp, multihop=(bp.ttl_security or 1) > 1),
        )

    # --- local workloads -------------------------------------------------------------

    def local_workloads(self) -> list[PeerSpec]:
        """confd's Local_Workload_<ip> protocols: per selected endpoint address, passive,
        multihop without TTL security, with the BGPPeer's AS numbers and settings."""
        out: list[PeerSpec] = []
        config = self.default
        peering = {
            IPV4: config.local_workload_peering_ipv4,
            IPV6: config.local_workload_peering_ipv6,
        }
        for lp in local_peers(self.snapshot, self.node):
            bp, wep = lp.bgp_peer, lp.endpoint
            if bp.as_number is None:
                self.note(
                    f"BGPPeer {bp.name!r}: localWorkloadSelector needs asNumber (the "
                    "workloads' AS); no sessions"
                )
                continue
            for family, version in ((IPV4, 4), (IPV6, 6)):
                for ip in wep.addresses(version):
                    if self.me.address(family) is None:
                        self.note(
                            f"no {family} address on this node: skipping local workload "
                            f"{wep.qualified_name} at {ip}"
                        )
                        continue
                    out.append(self.local_session(bp, ip, family, peering[family]))
                    address = peering[family]
                    if address is not None:
                        # Calico's felix puts the address on the workload's interface.
                        self.note(
                            f"localWorkloadPeeringIPV{version} {address}: pybgpd's felix "
                            "does not put it on workloads' host-side interfaces yet; add it "
                            f"to each selected workload's (ip addr add {address}/"
                            f"{32 if version == 4 else 128} dev cali...)"
                        )
        return out

    def local_session(
        self, bp: BGPPeer, ip: str, family: str, own: str | None
    ) -> PeerSpec:
        local_as = bp.local_as_number or self.me.asn
        name = _session_name(LOCAL_WORKLOAD, ip, None)
        ibgp = bp.as_number == local_as
        rr_client = bool(self.me.rr_cluster_id and ibgp)
        return PeerSpec(
            name=name,
            peer_address=ip,
            peer_port=DEFAULT_LISTEN_PORT,
            peer_as=bp.as_number or local_as,
            local_as=local_as,
            type=LOCAL_WORKLOAD,
            family=family,
            # The workload connects to our local workload peering address.
            passive=True,
            source_address=own,
            keepalive_time=bp.keepalive_time,
            max_restart_time=bp.max_restart_time
            if bp.max_restart_time is not None
            else DEFAULT_RESTART_TIME,
            password=bp.password,
            next_hop_self=bp.next_hop_mode == "Self",
            keep_original_next_hop=bp.next_hop_mode == "Keep"
            or (bp.next_hop_mode != "Self" and bp.keep_original_next_hop and not ibgp),
            rr_client=rr_client,
            rr_cluster_id=self.me.rr_cluster_id if rr_client else None,
            allow_local_as=bp.num_allowed_local_as_numbers or 0,
            reachable_by=bp.reachable_by,
            filters=bp.filters,
            bgp_peer=bp.name,
            bfd=self.bfd(name, bp),
        )

    def sessions(self) -> tuple[PeerSpec, ...]:
        specs = self.mesh()
        for kind, p in self.explicit():
            spec = self.render(kind, p)
            if spec is not None:
                specs.append(spec)
        specs.extend(self.local_workloads())
        specs.sort(key=lambda s: s.name)
        # Two sessions to one address and port cannot both come up; BIRD would take the
        # first protocol (by name) for an incoming connection, so keep that one.
        kept: dict[tuple[str, int], PeerSpec] = {}
        for s in specs:
            first = kept.setdefault((s.peer_address, s.peer_port), s)
            if first is not s:
                self.note(f"{s.name}: same peer as {first.name}; not started")
        return tuple(kept.values())


_NO_ENV: Mapping[str, str] = types.MappingProxyType({})


def compute(snapshot: Snapshot, node: str, env: Mapping[str, str] = _NO_ENV) -> PeeringPlan:
    """The plan for `node`. `env` stands for the daemon's environment (CALICO_ROUTER_ID).
    Raises PlanError when the node has no Node resource or no router ID can be found."""
    me = snapshot.nodes.get(node)
    if me is None:
        raise PlanError(f"no Node resource named {node!r}")
    planner = _Planner(snapshot, node)
    router_id = router_id_for(node, me.ipv4, env)
    default = snapshot.default_config
    node_cfg = snapshot.node_config(node)
    listen_port = (
        (node_cfg.listen_port if node_cfg else None) or default.listen_port or DEFAULT_LISTEN_PORT
    )
    listen_addresses: tuple[str, ...] = ()
    if default.bind_mode == "NodeIP":
        listen_addresses = tuple(a for a in (me.ipv4, me.ipv6) if a)
    sessions = planner.sessions()
    pools = pool_specs(snapshot)
    blocks = affine_blocks(snapshot, node)
    static_routes = tuple(
        StaticRoute(f"{s.peer_address}/{32 if s.family == IPV4 else 128}", s.reachable_by)
        for s in sessions
        if s.reachable_by
    )
    filters = _filters(snapshot, sessions, planner)
    severity = (
        (node_cfg.log_severity_screen if node_cfg else None)
        or default.log_severity_screen
        or DEFAULT_LOG_SEVERITY
    )
    notes = [
        *planner.notes,
        *unsupported_notes(snapshot, node, (s.bgp_peer for s in sessions if s.bgp_peer)),
    ]
    return PeeringPlan(
        node=node,
        router_id=router_id,
        local_as=me.as_number or default.as_number,
        listen_port=listen_port,
        node_ipv4=me.ipv4,
        node_ipv6=me.ipv6,
        node_ipv4_network=me.ipv4_network,
        node_ipv6_network=me.ipv6_network,
        listen_addresses=listen_addresses,
        rr_cluster_id=me.rr_cluster_id,
        mesh_enabled=default.node_to_node_mesh_enabled and not me.rr_cluster_id,
        sessions=sessions,
        originate=originations(blocks, pools),
        blackholes=blackholes(blocks),
        blocks=blocks,
        pools=pools,
        static_routes=static_routes,
        communities=community_rules(snapshot, node),
        kernel=kernel_rules(pools, default.program_cluster_routes, me.ipv4_network),
        filters=filters,
        normal_priority_v4=default.ipv4_normal_route_priority,
        normal_priority_v6=default.ipv6_normal_route_priority,
        felix_ipip=felix_programs_ipip(default.program_cluster_routes),
        ignored_interfaces=default.ignored_interfaces,
        log_severity=severity,
        notes=tuple(dict.fromkeys(notes)),
    )


def _filters(
    snapshot: Snapshot, sessions: tuple[PeerSpec, ...], planner: _Planner
) -> tuple[BGPFilter, ...]:
    """The BGPFilters the sessions name, in name order; a missing one is a note (confd then
    calls only the filters that exist, so the session runs without its rules)."""
    found: dict[str, BGPFilter] = {}
    for s in sessions:
        for name in s.filters:
            flt = snapshot.bgp_filters.get(name)
            if flt is None:
                who = f"BGPPeer {s.bgp_peer!r}" if s.bgp_peer else s.name
                planner.note(
                    f"{who}: BGPFilter {name!r} does not exist; as with confd, none of its "
                    "rules apply until it does"
                )
                continue
            found[name] = flt
    for flt in found.values():
        for text in bgpfilter.notes(flt):
            planner.note(text)
    return tuple(found[n] for n in sorted(found))
