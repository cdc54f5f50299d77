"""Typed Calico v3 resources, read from their stored JSON / YAML form with Calico's defaults.

Pure: dicts in, frozen values out. `parse_resource` takes one decoded object (a YAML document
or an etcd value) and returns the typed resource, raising `ResourceError` that names the field
at fault. Unknown fields are ignored, as Calico's own readers do (older and newer versions add
fields). Defaults are the ones clientv3 applies on read (reference/calico.md 2.x), so a raw
etcd value that lacks them reads the same as one written by calicoctl.

Field names follow Calico's (snake_case of the JSON name). Addresses and CIDRs are kept as
canonical strings (`str(ipaddress...)`, masked networks), which is also how Calico compares
them, e.g. for the mesh's passive end.
"""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from calico import policy as pol
from calico.bgpfilter import FILTER_ACCEPT as FILTER_ACCEPT
from calico.bgpfilter import FILTER_ACTIONS as FILTER_ACTIONS
from calico.bgpfilter import FILTER_REJECT as FILTER_REJECT
from calico.bgpfilter import MATCH_EQUAL as MATCH_EQUAL
from calico.bgpfilter import MATCH_IN as MATCH_IN
from calico.bgpfilter import MATCH_NOT_EQUAL as MATCH_NOT_EQUAL
from calico.bgpfilter import MATCH_NOT_IN as MATCH_NOT_IN
from calico.bgpfilter import MATCH_OPERATORS as MATCH_OPERATORS
from calico.bgpfilter import MAX_FILTER_OPERATIONS as MAX_FILTER_OPERATIONS
from calico.bgpfilter import MAX_PRIORITY as MAX_PRIORITY
from calico.bgpfilter import PEER_TYPE_EBGP as PEER_TYPE_EBGP
from calico.bgpfilter import PEER_TYPE_IBGP as PEER_TYPE_IBGP
from calico.bgpfilter import SOURCE_REMOTE_PEERS as SOURCE_REMOTE_PEERS
from calico.bgpfilter import BGPFilter as BGPFilter
from calico.bgpfilter import FilterOperation as FilterOperation
from calico.bgpfilter import FilterRule as FilterRule
from calico.bgpfilter import read_bgp_filter
from calico.errors import ResourceError, describe
from calico.ipam import AFFINITY_CONFIRMED as AFFINITY_CONFIRMED
from calico.ipam import AFFINITY_PENDING as AFFINITY_PENDING
from calico.ipam import AFFINITY_PENDING_DELETION as AFFINITY_PENDING_DELETION
from calico.ipam import Affinity, Block, RecordError
from calico.k8snames import SecretKeyRef as SecretKeyRef
from calico.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from calico.policy_read import (
    read_global_network_policy,
    read_global_network_set,
    read_network_policy,
    read_network_set,
    read_profile,
    read_tier,
)
from calico.reader import NO_LABELS, Reader, address_part, network_part, parse_duration, read_labels
from calico.reader import parse_as_number as parse_as_number

API_VERSION = "projectcalico.org/v3"

DEFAULT_AS_NUMBER = 64512
DEFAULT_LISTEN_PORT = 179
DEFAULT_BLOCK_SIZE_V4 = 26
DEFAULT_BLOCK_SIZE_V6 = 122

# Encapsulation modes of IPPool.ipipMode / vxlanMode.
ENCAP_NEVER = "Never"
ENCAP_ALWAYS = "Always"
ENCAP_CROSS_SUBNET = "CrossSubnet"
_ENCAP_MODES = (ENCAP_NEVER, ENCAP_ALWAYS, ENCAP_CROSS_SUBNET)

# BlockAffinity states (AFFINITY_*) are calico.ipam's, imported above under their own names so
# that readers of BlockAffinity.state (bgpd's planner) may take them from here too.

# BGPConfiguration.logSeverityScreen, as Calico's validation accepts it (any case).
LOG_SEVERITIES = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal", "Panic", "None")

SOURCE_ADDRESS_NODE_IP = "UseNodeIP"
SOURCE_ADDRESS_NONE = "None"

# BFD (RFC 5880) for BGP sessions. Calico has no BFD fields, so pybgpd reads annotations,
# which calicoctl and the CRD validation accept on any resource: on a BGPPeer for its
# sessions, on a Node as that node's default for all its sessions.
BFD_ANNOTATION = "pybgpd.io/bfd"
BFD_INTERVAL_ANNOTATION = "pybgpd.io/bfd-interval"
BFD_MULTIPLIER_ANNOTATION = "pybgpd.io/bfd-multiplier"
BFD_ANNOTATIONS = (BFD_ANNOTATION, BFD_INTERVAL_ANNOTATION, BFD_MULTIPLIER_ANNOTATION)
BFD_DEFAULT_INTERVAL = 0.3
BFD_DEFAULT_MULTIPLIER = 3
# Below 10 ms a Python event loop cannot keep the rate; above a minute BFD detects nothing
# BGP's own hold timer would not.
BFD_MIN_INTERVAL = 0.01
BFD_MAX_INTERVAL = 60.0

# Calico v3 kinds this model does not need; a file or store may hold them and they are skipped.
IGNORED_KINDS = frozenset(
    {
        "CalicoNodeStatus",
        "ClusterInformation",
        "HostEndpoint",
        "IPAMConfiguration",
        "IPAMHandle",
        "IPReservation",
        "KubeControllersConfiguration",
        "StagedGlobalNetworkPolicy",
        "StagedKubernetesNetworkPolicy",
        "StagedNetworkPolicy",
    }
)


_R = TypeVar("_R")


def _no_labels() -> Mapping[str, str]:
    return NO_LABELS




@dataclass(frozen=True, slots=True)
class BfdSettings:
    """The pybgpd.io/bfd* annotations of one BGPPeer or Node; None where not set (the
    planner falls back from the peer to the node, then to the defaults). `interval` is
    both the desired transmit and the required receive interval, in seconds."""

    enabled: bool | None = None
    interval: float | None = None
    multiplier: int | None = None


NO_BFD = BfdSettings()


@dataclass(frozen=True, slots=True)
class Community:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class PrefixAdvertisement:
    cidr: str
    communities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BGPConfiguration:
    """`default` holds the cluster settings; `node.<name>` may override only listen_port,
    log_severity_screen and prefix_advertisements (Calico reads the rest from `default`)."""

    kind: ClassVar[str] = "BGPConfiguration"

    name: str
    as_number: int = DEFAULT_AS_NUMBER
    node_to_node_mesh_enabled: bool = True
    # None: not set in this resource. The effective port is the node's, else default's, else 179.
    listen_port: int | None = None
    # None: not set in this resource (the node's, else default's, else "Info" applies).
    log_severity_screen: str | None = None
    node_mesh_password: SecretKeyRef | None = None
    # Whole seconds (Calico rounds the Go duration).
    node_mesh_max_restart_time: int | None = None
    bind_mode: str = "None"
    ignored_interfaces: tuple[str, ...] = ()
    service_cluster_ips: tuple[str, ...] = ()
    service_external_ips: tuple[str, ...] = ()
    service_load_balancer_ips: tuple[str, ...] = ()
    communities: tuple[Community, ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    program_cluster_routes: str | None = None
    ipv4_normal_route_priority: int = 1024
    ipv6_normal_route_priority: int = 1024
    # The addresses this node presents to its localWorkloadSelector peers (felix puts them
    # on the workloads' host-side interfaces; the workloads peer with them).
    local_workload_peering_ipv4: str | None = None
    local_workload_peering_ipv6: str | None = None

    @property
    def node_name(self) -> str | None:
        """The node a `node.<name>` configuration is for; None for `default`."""
        return self.name[len("node.") :] if self.name.startswith("node.") else None


# FelixConfiguration.programClusterRoutes (and BGPConfiguration's, from BIRD's side).
PROGRAM_CLUSTER_ROUTES = ("Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly")
DEFAULT_VXLAN_VNI = 4096
DEFAULT_VXLAN_PORT = 4789


@dataclass(frozen=True, slots=True)
class FelixConfiguration:
    """What felix reads of Calico's FelixConfiguration: who programs the cluster routes and
    the VXLAN device's VNI and port (felix/dataplane/cluster.py), and the policy settings
    felix applies (felix/policy: the action for traffic from endpoints to the host, the
    deny action, the Log prefix, the natOutgoing source address). `default` holds the
    cluster settings, `node.<name>` overrides what it sets; None means not set here. Any
    other field set is named in `unsupported`, which felix logs as not applied."""

    kind: ClassVar[str] = "FelixConfiguration"

    name: str
    program_cluster_routes: str | None = None
    vxlan_vni: int | None = None
    vxlan_port: int | None = None
    default_endpoint_to_host_action: str | None = None
    iptables_filter_deny_action: str | None = None
    log_prefix: str | None = None
    nat_outgoing_address: str | None = None
    unsupported: tuple[str, ...] = ()

    @property
    def node_name(self) -> str | None:
        """The node a `node.<name>` configuration is for; None for `default`."""
        return self.name[len("node.") :] if self.name.startswith("node.") else None


@dataclass(frozen=True, slots=True)
class NodeAddress:
    address: str
    type: str = ""


@dataclass(frozen=True, slots=True)
class NodeBGP:
    """Node.spec.bgp. Addresses keep their prefix length ("10.0.0.2/24") since it gives the
    node's subnet (network_v4, used for CrossSubnet)."""

    as_number: int | None = None
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    ipv4_ipip_tunnel_addr: str | None = None
    route_reflector_cluster_id: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    kind: ClassVar[str] = "Node"

    name: str
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    bgp: NodeBGP | None = None
    ipv4_vxlan_tunnel_addr: str | None = None
    vxlan_tunnel_mac_addr: str | None = None
    ipv6_vxlan_tunnel_addr: str | None = None
    wireguard_ipv4_address: str | None = None
    wireguard_ipv6_address: str | None = None
    addresses: tuple[NodeAddress, ...] = ()
    bfd: BfdSettings = NO_BFD

    @property
    def ipv4(self) -> str | None:
        """ip_addr_v4: the address part of spec.bgp.ipv4Address."""
        return address_part(self.bgp.ipv4_address if self.bgp else None)

    @property
    def ipv6(self) -> str | None:
        return address_part(self.bgp.ipv6_address if self.bgp else None)

    @property
    def ipv4_network(self) -> str | None:
        """network_v4: the subnet of spec.bgp.ipv4Address ("10.0.0.0/24")."""
        return network_part(self.bgp.ipv4_address if self.bgp else None)

    @property
    def ipv6_network(self) -> str | None:
        return network_part(self.bgp.ipv6_address if self.bgp else None)

    @property
    def as_number(self) -> int | None:
        """The node's own AS, or None to use the cluster's."""
        return self.bgp.as_number if self.bgp else None

    @property
    def rr_cluster_id(self) -> str | None:
        return self.bgp.route_reflector_cluster_id if self.bgp else None


@dataclass(frozen=True, slots=True)
class BGPPeer:
    """One BGPPeer resource. Exactly one of peer_ip / peer_selector / local_workload_selector
    names the remote side; node / node_selector (or neither: global) name the local side."""

    kind: ClassVar[str] = "BGPPeer"

    name: str
    node: str | None = None
    node_selector: str | None = None
    peer_ip: str | None = None
    # The port written in peerIP ("10.0.0.5:1790"); None when not given.
    peer_port: int | None = None
    as_number: int | None = None
    local_as_number: int | None = None
    peer_selector: str | None = None
    keep_original_next_hop: bool = False
    next_hop_mode: str | None = None
    password: SecretKeyRef | None = None
    source_address: str = SOURCE_ADDRESS_NODE_IP
    max_restart_time: int | None = None
    keepalive_time: int | None = None
    num_allowed_local_as_numbers: int | None = None
    ttl_security: int | None = None
    reachable_by: str | None = None
    filters: tuple[str, ...] = ()
    local_workload_selector: str | None = None
    reverse_peering: str = "Auto"
    bfd: BfdSettings = NO_BFD

    @property
    def is_global(self) -> bool:
        return self.node is None and self.node_selector is None


@dataclass(frozen=True, slots=True)
class IPPool:
    kind: ClassVar[str] = "IPPool"

    name: str
    cidr: str
    ipip_mode: str = ENCAP_NEVER
    vxlan_mode: str = ENCAP_NEVER
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    block_size: int = DEFAULT_BLOCK_SIZE_V4
    node_selector: str = "all()"
    namespace_selector: str = ""
    allowed_uses: tuple[str, ...] = ("Workload", "Tunnel")
    assignment_mode: str = "Automatic"

    @property
    def version(self) -> int:
        return 6 if ":" in self.cidr else 4


@dataclass(frozen=True, slots=True)
class BlockAffinity:
    """A node's claim on an IPAM block (v3 BlockAffinity, or the /calico/ipam/v2/host/ key):
    where the key puts it, and the state and deleted flag of its `calico.ipam.Affinity`
    (AFFINITY_CONFIRMED, AFFINITY_PENDING or AFFINITY_PENDING_DELETION, from calico.ipam)."""

    kind: ClassVar[str] = "BlockAffinity"

    name: str
    node: str
    cidr: str
    state: str = AFFINITY_CONFIRMED
    type: str = "host"
    deleted: bool = False

    @property
    def version(self) -> int:
        return 6 if ":" in self.cidr else 4

    @classmethod
    def from_ipam(cls, node: str, cidr: str, value: Any) -> BlockAffinity:
        """From the etcd IPAM form: key /calico/ipam/v2/host/<node>/ipvN/block/<cidr->,
        value {"state": ..., "deleted": ...} decoded (an empty string or {} reads as
        confirmed)."""
        name = affinity_name(node, cidr)
        r = Reader(cls.kind, name, "")
        affinity = _ipam_record(r, Affinity.from_obj, value)
        return cls(name, node, r.cidr_value(cidr, "cidr"), affinity.state, deleted=affinity.deleted)


@dataclass(frozen=True, slots=True)
class IPAMBlock:
    """An IPAM allocation block (/calico/ipam/v2/assignment/ipvN/block/<cidr->) as a v3
    resource: its name and Calico's record of it, read by `calico.ipam.Block` from the etcd
    value and the v3 spec alike (they have the same keys)."""

    kind: ClassVar[str] = "IPAMBlock"

    name: str
    block: Block

    @classmethod
    def from_ipam(cls, value: Any) -> IPAMBlock:
        """From the etcd IPAM value at /calico/ipam/v2/assignment/ipvN/block/<cidr->
        decoded; named like the key's last segment."""
        cidr = value.get("cidr") if isinstance(value, Mapping) else None
        name = cidr.replace("/", "-") if isinstance(cidr, str) else "?"
        return cls(name, _ipam_record(Reader(cls.kind, name, ""), Block.from_obj, value))

    @property
    def cidr(self) -> str:
        return self.block.cidr

    @property
    def host(self) -> str | None:
        """The node of a "host:<node>" affinity."""
        return self.block.host


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    """A workload's endpoint (reference/calico.md 2.9), what bgpd reads of it: the node it
    runs on, its labels (for BGPPeer.localWorkloadSelector) and its addresses (ipNetworks,
    masked: "192.168.1.5/32"). Namespaced: two namespaces may hold the same name, so a
    Snapshot keys it by `qualified_name`, "<namespace>/<name>"."""

    kind: ClassVar[str] = "WorkloadEndpoint"

    name: str
    namespace: str = "default"
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    ip_networks: tuple[str, ...] = ()

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    def addresses(self, version: int) -> tuple[str, ...]:
        """The endpoint's host addresses of IP version 4 or 6 ("192.168.1.5")."""
        return tuple(
            str(ipaddress.ip_network(n).network_address)
            for n in self.ip_networks
            if ipaddress.ip_network(n).version == version
        )


Resource = (
    BGPConfiguration
    | Node
    | BGPPeer
    | IPPool
    | BlockAffinity
    | IPAMBlock
    | NetworkPolicy
    | GlobalNetworkPolicy
    | Profile
    | Tier
    | NetworkSet
    | GlobalNetworkSet
    | FelixConfiguration
    | BGPFilter
    | WorkloadEndpoint
)

KINDS: Mapping[str, type[Resource]] = types.MappingProxyType(
    {
        c.kind: c
        for c in (
            BGPConfiguration,
            Node,
            BGPPeer,
            IPPool,
            BlockAffinity,
            IPAMBlock,
            NetworkPolicy,
            GlobalNetworkPolicy,
            Profile,
            Tier,
            NetworkSet,
            GlobalNetworkSet,
            FelixConfiguration,
            BGPFilter,
            WorkloadEndpoint,
        )
    }
)


def resource_id(resource: Resource) -> str:
    """A resource's name, with its namespace for namespaced kinds ("ns/name"): unique
    within its kind."""
    namespace = getattr(resource, "namespace", None)
    return f"{namespace}/{resource.name}" if namespace else resource.name


def affinity_name(node: str, cidr: str) -> str:
    """Calico's v3 BlockAffinity name for (node, cidr)."""
    return f"{node}-{cidr.replace('.', '-').replace(':', '-').replace('/', '-')}"


# --- reading ------------------------------------------------------------------------------


def parse_resource(obj: Any) -> Resource | None:
    """One decoded v3 object -> its typed resource; None for a Calico kind we don't model
    (IGNORED_KINDS). Raises ResourceError for anything else that is wrong."""
    if not isinstance(obj, Mapping):
        raise ResourceError(f"expected a mapping, found {describe(obj)}")
    kind = obj.get("kind")
    if kind is None or kind == "":
        raise ResourceError("required", field="kind")
    if not isinstance(kind, str):
        raise ResourceError(f"expected a string, found {describe(kind)}", field="kind")
    api_version = obj.get("apiVersion")
    if api_version != API_VERSION:
        found = "missing" if api_version is None else repr(api_version)
        raise ResourceError(
            f"must be {API_VERSION!r}, found {found}", field="apiVersion", kind=kind
        )
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ResourceError("required", field="metadata.name", kind=kind)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ResourceError("required", field="metadata.name", kind=kind)
    if kind in IGNORED_KINDS:
        return None
    reader = _READERS.get(kind)
    if reader is None:
        raise ResourceError("unknown kind", field="kind", kind=kind, name=name)
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    r = Reader(kind, name, "spec")
    if not isinstance(spec, Mapping):
        raise r.error("spec", f"expected a mapping, found {describe(spec)}")
    return reader(r, name, meta, spec)


def _bfd(r: Reader, meta: Mapping[str, Any]) -> BfdSettings:
    """metadata.annotations pybgpd.io/bfd ("true" | "false"), pybgpd.io/bfd-interval (a Go
    duration, "300ms") and pybgpd.io/bfd-multiplier ("3"). Another pybgpd.io/bfd* key is
    a typo that would silently do nothing, so it is an error."""
    raw = meta.get("annotations")
    if raw is None:
        return NO_BFD
    if not isinstance(raw, Mapping):
        raise r.error("metadata.annotations", f"expected a mapping, found {describe(raw)}")
    values: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        if not key.startswith(BFD_ANNOTATION):
            continue
        path = f"metadata.annotations.{key}"
        if key not in BFD_ANNOTATIONS:
            known = ", ".join(BFD_ANNOTATIONS)
            raise r.error(path, f"unknown BFD annotation (known: {known})")
        # YAML reads an unquoted `true` / `3` as a bool / number; annotations are strings.
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            raise r.error(path, f"expected a string, found {describe(value)}")
        values[key] = value.strip()
    if not values:
        return NO_BFD
    enabled: bool | None = None
    if BFD_ANNOTATION in values:
        text = values[BFD_ANNOTATION].lower()
        if text not in ("true", "false"):
            raise r.error(
                f"metadata.annotations.{BFD_ANNOTATION}",
                f"{values[BFD_ANNOTATION]!r} is not \"true\" or \"false\"",
            )
        enabled = text == "true"
    interval: float | None = None
    if BFD_INTERVAL_ANNOTATION in values:
        path = f"metadata.annotations.{BFD_INTERVAL_ANNOTATION}"
        text = values[BFD_INTERVAL_ANNOTATION]
        try:
            interval = parse_duration(text)
        except ValueError as e:
            raise r.error(path, f"{e} (BFD intervals look like '300ms')") from None
        if not BFD_MIN_INTERVAL <= interval <= BFD_MAX_INTERVAL:
            raise r.error(path, f"{text!r} is not between 10ms and 60s")
    multiplier: int | None = None
    if BFD_MULTIPLIER_ANNOTATION in values:
        text = values[BFD_MULTIPLIER_ANNOTATION]
        if not text.isdigit() or not 1 <= int(text) <= 255:
            raise r.error(
                f"metadata.annotations.{BFD_MULTIPLIER_ANNOTATION}",
                f"{text!r} is not a whole number 1..255",
            )
        multiplier = int(text)
    return BfdSettings(enabled, interval, multiplier)


def _severity(r: Reader, spec: Mapping[str, Any]) -> str | None:
    text = r.string(spec, "logSeverityScreen")
    if text is None:
        return None
    for known in LOG_SEVERITIES:
        if text.lower() == known.lower():
            return known
    allowed = ", ".join(LOG_SEVERITIES)
    raise r.error(r.path("logSeverityScreen"), f"{text!r} is not one of {allowed}")


def _read_bgp_configuration(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> BGPConfiguration:
    communities: list[Community] = []
    for i, c in enumerate(r.items(spec, "communities")):
        cr = r.sub(f"communities[{i}]")
        if not isinstance(c, Mapping):
            raise cr.error(cr.prefix, f"expected a mapping, found {describe(c)}")
        cname, value = cr.string(c, "name"), cr.string(c, "value")
        if cname is None or value is None:
            raise cr.error(cr.path("name" if cname is None else "value"), "required")
        if not re.fullmatch(r"\d+:\d+(:\d+)?", value):
            raise cr.error(cr.path("value"), f"{value!r} is not a community 'a:b' or 'a:b:c'")
        communities.append(Community(cname, value))
    adverts: list[PrefixAdvertisement] = []
    for i, a in enumerate(r.items(spec, "prefixAdvertisements")):
        ar = r.sub(f"prefixAdvertisements[{i}]")
        if not isinstance(a, Mapping):
            raise ar.error(ar.prefix, f"expected a mapping, found {describe(a)}")
        cidr = ar.cidr(a, "cidr")
        if cidr is None:
            raise ar.error(ar.path("cidr"), "required")
        adverts.append(PrefixAdvertisement(cidr, ar.strings(a, "communities")))
    return BGPConfiguration(
        name=name,
        as_number=r.asn(spec, "asNumber") or DEFAULT_AS_NUMBER,
        node_to_node_mesh_enabled=r.flag(spec, "nodeToNodeMeshEnabled", True),
        listen_port=r.integer(spec, "listenPort", 0, 65535) or None,
        log_severity_screen=_severity(r, spec),
        node_mesh_password=r.secret(spec, "nodeMeshPassword"),
        node_mesh_max_restart_time=r.seconds(spec, "nodeMeshMaxRestartTime"),
        bind_mode=r.choice(spec, "bindMode", ("None", "NodeIP"), "None"),
        ignored_interfaces=r.strings(spec, "ignoredInterfaces"),
        service_cluster_ips=r.cidrs(spec, "serviceClusterIPs", "cidr"),
        service_external_ips=r.cidrs(spec, "serviceExternalIPs", "cidr"),
        service_load_balancer_ips=r.cidrs(spec, "serviceLoadBalancerIPs", "cidr"),
        communities=tuple(communities),
        prefix_advertisements=tuple(adverts),
        program_cluster_routes=r.string(spec, "programClusterRoutes"),
        ipv4_normal_route_priority=r.integer(spec, "ipv4NormalRoutePriority", 1, 2147483646, 1024)
        or 1024,
        ipv6_normal_route_priority=r.integer(spec, "ipv6NormalRoutePriority", 1, 2147483646, 1024)
        or 1024,
        local_workload_peering_ipv4=r.ip(spec, "localWorkloadPeeringIPV4", 4),
        local_workload_peering_ipv6=r.ip(spec, "localWorkloadPeeringIPV6", 6),
    )


def _read_node(r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Node:
    bgp: NodeBGP | None = None
    raw_bgp = spec.get("bgp")
    if raw_bgp is not None:
        br = r.sub("bgp")
        if not isinstance(raw_bgp, Mapping):
            raise br.error(br.prefix, f"expected a mapping, found {describe(raw_bgp)}")
        bgp = NodeBGP(
            as_number=br.asn(raw_bgp, "asNumber"),
            ipv4_address=br.interface(raw_bgp, "ipv4Address", 4),
            ipv6_address=br.interface(raw_bgp, "ipv6Address", 6),
            ipv4_ipip_tunnel_addr=br.ip(raw_bgp, "ipv4IPIPTunnelAddr", 4),
            route_reflector_cluster_id=br.ip(raw_bgp, "routeReflectorClusterID", 4),
        )
    wg = r.mapping(spec, "wireguard")
    wr = r.sub("wireguard")
    addresses: list[NodeAddress] = []
    for i, a in enumerate(r.items(spec, "addresses")):
        ar = r.sub(f"addresses[{i}]")
        if not isinstance(a, Mapping):
            raise ar.error(ar.prefix, f"expected a mapping, found {describe(a)}")
        addr = ar.string(a, "address")
        if addr is None:
            raise ar.error(ar.path("address"), "required")
        addresses.append(NodeAddress(addr, ar.string(a, "type", "") or ""))
    return Node(
        name=name,
        labels=read_labels(r, meta),
        bgp=bgp,
        ipv4_vxlan_tunnel_addr=r.ip(spec, "ipv4VXLANTunnelAddr", 4),
        vxlan_tunnel_mac_addr=r.string(spec, "vxlanTunnelMACAddr"),
        ipv6_vxlan_tunnel_addr=r.ip(spec, "ipv6VXLANTunnelAddr", 6),
        wireguard_ipv4_address=wr.ip(wg, "interfaceIPv4Address", 4),
        wireguard_ipv6_address=wr.ip(wg, "interfaceIPv6Address", 6),
        addresses=tuple(addresses),
        bfd=_bfd(r, meta),
    )


def split_peer_ip(text: str) -> tuple[str, int | None]:
    """peerIP as Calico reads it (Go net.SplitHostPort, then the whole string as an IP):
    "10.0.0.5" | "10.0.0.5:1790" | "[fd00::5]:1790" | "fd00::5" -> (canonical IP, port).
    Raises ValueError."""
    s = text.strip()
    host, port = s, None
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or not s[end + 1 :].startswith(":"):
            raise ValueError(f"{text!r} is not an IP address")
        host, port_text = s[1:end], s[end + 2 :]
        port = _port(text, port_text)
    elif s.count(":") == 1:
        host, port_text = s.split(":")
        port = _port(text, port_text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    return str(ip), port


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} has no valid port (1..65535)")
    return int(port_text)


def _read_bgp_peer(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> BGPPeer:
    node = r.string(spec, "node")
    node_selector = r.selector(spec, "nodeSelector")
    peer_selector = r.selector(spec, "peerSelector")
    local_workload_selector = r.selector(spec, "localWorkloadSelector")
    raw_ip = r.string(spec, "peerIP")
    peer_ip: str | None = None
    peer_port: int | None = None
    if raw_ip is not None:
        try:
            peer_ip, peer_port = split_peer_ip(raw_ip)
        except ValueError as e:
            raise r.error(r.path("peerIP"), str(e)) from None
    if node is not None and node_selector is not None:
        raise r.error(r.path("nodeSelector"), "cannot be set together with spec.node")
    remotes = [
        k
        for k, v in (
            ("peerIP", peer_ip),
            ("peerSelector", peer_selector),
            ("localWorkloadSelector", local_workload_selector),
        )
        if v
    ]
    if not remotes:
        raise r.error(
            r.path("peerIP"), "one of peerIP, peerSelector, localWorkloadSelector is required"
        )
    if len(remotes) > 1:
        raise r.error(r.path(remotes[1]), f"cannot be set together with spec.{remotes[0]}")
    # Without asNumber a peerIP means "that Calico node, in the cluster's AS".
    as_number = r.asn(spec, "asNumber") or None
    ttl = r.integer(spec, "ttlSecurity", 0, 255)
    return BGPPeer(
        name=name,
        node=node,
        node_selector=node_selector,
        peer_ip=peer_ip,
        peer_port=peer_port,
        as_number=as_number,
        local_as_number=r.asn(spec, "localASNumber") or None,
        peer_selector=peer_selector,
        keep_original_next_hop=r.flag(spec, "keepOriginalNextHop"),
        next_hop_mode=r.choice(spec, "nextHopMode", ("Auto", "Self", "Keep"), "") or None,
        password=r.secret(spec, "password"),
        source_address=r.choice(
            spec,
            "sourceAddress",
            (SOURCE_ADDRESS_NODE_IP, SOURCE_ADDRESS_NONE),
            SOURCE_ADDRESS_NODE_IP,
        ),
        max_restart_time=r.seconds(spec, "maxRestartTime"),
        keepalive_time=r.seconds(spec, "keepaliveTime"),
        num_allowed_local_as_numbers=r.integer(spec, "numAllowedLocalASNumbers", 0, 2147483647),
        ttl_security=ttl or None,
        reachable_by=r.ip(spec, "reachableBy"),
        filters=r.strings(spec, "filters"),
        local_workload_selector=local_workload_selector,
        reverse_peering=r.choice(spec, "reversePeering", ("Auto", "Manual"), "Auto"),
        bfd=_bfd(r, meta),
    )


_DEPRECATED_IPIP_MODES = {
    "always": ENCAP_ALWAYS,
    "cross-subnet": ENCAP_CROSS_SUBNET,
    "": ENCAP_ALWAYS,
}


def _read_ip_pool(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> IPPool:
    cidr = r.cidr(spec, "cidr")
    if cidr is None:
        raise r.error(r.path("cidr"), "required")
    v6 = ":" in cidr
    ipip_mode = r.choice(spec, "ipipMode", _ENCAP_MODES, "")
    if not ipip_mode:
        # Pools written before v3.0 may carry ipip: {enabled, mode}; Calico converts on read.
        old = r.mapping(spec, "ipip")
        enabled = r.sub("ipip").flag(old, "enabled")
        old_mode = r.sub("ipip").string(old, "mode", "") or ""
        if enabled and old_mode not in _DEPRECATED_IPIP_MODES:
            raise r.error(r.path("ipip.mode"), f"{old_mode!r} is not 'always' or 'cross-subnet'")
        ipip_mode = _DEPRECATED_IPIP_MODES[old_mode] if enabled else ENCAP_NEVER
    vxlan_mode = r.choice(spec, "vxlanMode", _ENCAP_MODES, ENCAP_NEVER)
    if ipip_mode != ENCAP_NEVER and vxlan_mode != ENCAP_NEVER:
        raise r.error(r.path("vxlanMode"), "cannot be enabled together with spec.ipipMode")
    if v6 and ipip_mode != ENCAP_NEVER:
        raise r.error(r.path("ipipMode"), "IPIP is not supported on an IPv6 pool")
    lo, hi = (116, 128) if v6 else (20, 32)
    block_size = r.integer(spec, "blockSize", lo, hi)
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE_V6 if v6 else DEFAULT_BLOCK_SIZE_V4
    if block_size < ipaddress.ip_network(cidr).prefixlen:
        raise r.error(r.path("blockSize"), f"{block_size} is shorter than the pool's prefix")
    nat = r.flag(spec, "natOutgoing") or r.flag(spec, "nat-outgoing")
    return IPPool(
        name=name,
        cidr=cidr,
        ipip_mode=ipip_mode,
        vxlan_mode=vxlan_mode,
        nat_outgoing=nat,
        disabled=r.flag(spec, "disabled"),
        disable_bgp_export=r.flag(spec, "disableBGPExport"),
        block_size=block_size,
        node_selector=r.selector(spec, "nodeSelector") or "all()",
        namespace_selector=r.string(spec, "namespaceSelector", "") or "",
        allowed_uses=r.strings(spec, "allowedUses") or ("Workload", "Tunnel"),
        assignment_mode=r.choice(spec, "assignmentMode", ("Automatic", "Manual"), "Automatic"),
    )


def _ipam_record(r: Reader, read: Callable[[Any], _R], value: Any) -> _R:
    """`value` read by calico.ipam (the one reader of IPAM forms); its error as this
    resource's ResourceError, naming the field."""
    try:
        return read(value)
    except RecordError as exc:
        raise r.error(r.path(exc.field) if exc.field else r.prefix, exc.reason) from None


def _read_block_affinity(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> BlockAffinity:
    node = r.string(spec, "node")
    if node is None:
        raise r.error(r.path("node"), "required")
    cidr = r.cidr(spec, "cidr")
    if cidr is None:
        raise r.error(r.path("cidr"), "required")
    affinity = _ipam_record(r, Affinity.from_obj, spec)
    return BlockAffinity(
        name=name,
        node=node,
        cidr=cidr,
        state=affinity.state,
        type=r.choice(spec, "type", ("host", "virtual"), "host"),
        deleted=affinity.deleted,
    )


def _read_ipam_block(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> IPAMBlock:
    return IPAMBlock(name, _ipam_record(r, Block.from_obj, spec))


# What felix reads of a FelixConfiguration (FelixConfiguration's docstring); any other
# field set is listed in `unsupported`.
_FELIX_FIELDS = frozenset(
    {
        "programClusterRoutes",
        "vxlanVNI",
        "vxlanPort",
        "defaultEndpointToHostAction",
        "iptablesFilterDenyAction",
        "logPrefix",
        "natOutgoingAddress",
    }
)


def _read_felix_configuration(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> FelixConfiguration:
    def action(key: str, options: tuple[str, ...]) -> str | None:
        v = r.string(spec, key)
        if v is None:
            return None
        for o in options:  # Calico reads these case-insensitively ("ACCEPT" in manifests)
            if o.lower() == v.lower():
                return o
        allowed = ", ".join(repr(o) for o in options)
        raise r.error(r.path(key), f"{v!r} is not one of {allowed}")

    pcr = r.string(spec, "programClusterRoutes")
    if pcr is not None and pcr not in PROGRAM_CLUSTER_ROUTES:
        allowed = ", ".join(repr(o) for o in PROGRAM_CLUSTER_ROUTES)
        raise r.error(r.path("programClusterRoutes"), f"{pcr!r} is not one of {allowed}")
    return FelixConfiguration(
        name=name,
        program_cluster_routes=pcr,
        vxlan_vni=r.integer(spec, "vxlanVNI", 1, 2**24 - 1),
        vxlan_port=r.integer(spec, "vxlanPort", 1, 65535),
        default_endpoint_to_host_action=action(
            "defaultEndpointToHostAction", pol.ENDPOINT_TO_HOST_ACTIONS
        ),
        iptables_filter_deny_action=action("iptablesFilterDenyAction", pol.DENY_ACTIONS),
        log_prefix=r.string(spec, "logPrefix"),
        nat_outgoing_address=r.ip(spec, "natOutgoingAddress"),
        unsupported=tuple(
            sorted(k for k, v in spec.items() if k not in _FELIX_FIELDS and v is not None)
        ),
    )


def _read_workload_endpoint(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> WorkloadEndpoint:
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise r.error("metadata.namespace", f"expected a string, found {describe(namespace)}")
    networks = tuple(
        r.cidr_value(v, f"{r.path('ipNetworks')}[{i}]")
        for i, v in enumerate(r.items(spec, "ipNetworks"))
    )
    return WorkloadEndpoint(
        name=name,
        namespace=namespace or "default",
        node=r.string(spec, "node", "") or "",
        labels=read_labels(r, meta),
        ip_networks=networks,
    )


_ResourceReader = Callable[[Reader, str, Mapping[str, Any], Mapping[str, Any]], Resource]

_READERS: Mapping[str, _ResourceReader] = types.MappingProxyType(
    {
        BGPConfiguration.kind: _read_bgp_configuration,
        Node.kind: _read_node,
        BGPPeer.kind: _read_bgp_peer,
        IPPool.kind: _read_ip_pool,
        BlockAffinity.kind: _read_block_affinity,
        IPAMBlock.kind: _read_ipam_block,
        NetworkPolicy.kind: read_network_policy,
        GlobalNetworkPolicy.kind: read_global_network_policy,
        Profile.kind: read_profile,
        Tier.kind: read_tier,
        NetworkSet.kind: read_network_set,
        GlobalNetworkSet.kind: read_global_network_set,
        FelixConfiguration.kind: _read_felix_configuration,
        BGPFilter.kind: read_bgp_filter,
        WorkloadEndpoint.kind: _read_workload_endpoint,
    }
)
