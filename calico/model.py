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
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from calico import policy as pol
from calico import selector
from calico.errors import ResourceError, describe
from calico.ipam import AFFINITY_CONFIRMED as AFFINITY_CONFIRMED
from calico.ipam import AFFINITY_PENDING as AFFINITY_PENDING
from calico.ipam import AFFINITY_PENDING_DELETION as AFFINITY_PENDING_DELETION
from calico.ipam import Affinity, Block, RecordError
from calico.k8snames import secret_key_problem, secret_name_problem
from calico.policy import (
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    ICMPMatch,
    NetworkPolicy,
    NetworkSet,
    Port,
    Profile,
    Protocol,
    Rule,
    ServiceAccountMatch,
    Tier,
)

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

_EMPTY: Mapping[str, str] = types.MappingProxyType({})

_R = TypeVar("_R")


def _no_labels() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A Kubernetes secret reference (passwords are only ever given this way). `name` and
    `key` follow Kubernetes' rules (calico.k8snames), checked when the resource is read."""

    name: str
    key: str


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
        return _address_part(self.bgp.ipv4_address if self.bgp else None)

    @property
    def ipv6(self) -> str | None:
        return _address_part(self.bgp.ipv6_address if self.bgp else None)

    @property
    def ipv4_network(self) -> str | None:
        """network_v4: the subnet of spec.bgp.ipv4Address ("10.0.0.0/24")."""
        return _network_part(self.bgp.ipv4_address if self.bgp else None)

    @property
    def ipv6_network(self) -> str | None:
        return _network_part(self.bgp.ipv6_address if self.bgp else None)

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
        r = _Reader(cls.kind, name, "")
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
        return cls(name, _ipam_record(_Reader(cls.kind, name, ""), Block.from_obj, value))

    @property
    def cidr(self) -> str:
        return self.block.cidr

    @property
    def host(self) -> str | None:
        """The node of a "host:<node>" affinity."""
        return self.block.host


# BGPFilter (reference/calico.md 4.4, Calico's api/pkg/apis/projectcalico/v3/bgpfilter.go).
FILTER_ACCEPT = "Accept"
FILTER_REJECT = "Reject"
FILTER_ACTIONS = (FILTER_ACCEPT, FILTER_REJECT)
MATCH_EQUAL = "Equal"
MATCH_NOT_EQUAL = "NotEqual"
MATCH_IN = "In"
MATCH_NOT_IN = "NotIn"
MATCH_OPERATORS = (MATCH_EQUAL, MATCH_NOT_EQUAL, MATCH_IN, MATCH_NOT_IN)
SOURCE_REMOTE_PEERS = "RemotePeers"
PEER_TYPE_EBGP = "eBGP"
PEER_TYPE_IBGP = "iBGP"
MAX_FILTER_OPERATIONS = 10
MAX_PRIORITY = 2147483646


@dataclass(frozen=True, slots=True)
class FilterOperation:
    """One route change of a BGPFilter rule: exactly one of the three is set.
    `add_community` is "a:b" (standard) or "a:b:c" (large); `prepend_as_path` the AS numbers
    the path starts with afterwards, in that order; `set_priority` the route's priority
    (Calico's ...RoutePriority units: lower is preferred)."""

    add_community: str | None = None
    prepend_as_path: tuple[int, ...] = ()
    set_priority: int | None = None


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One rule of a BGPFilter's rule list (BGPFilterRuleV4 / V6). Every condition that is set
    must hold for the rule to apply; `action` then ends the filter, after `operations`.

    `cidr` is the masked network, with `match_operator`; `prefix_length` narrows an In /
    NotIn match to lengths (min, max), None for the CIDR's own length or the family's
    maximum. `source` RemotePeers: only routes learned from BGP peers. `interface`: a glob
    (`*`) on the route's outgoing interface. `peer_type`: only towards (or from) eBGP or
    iBGP peers. `community`: the route carries this standard ("a:b") or large ("a:b:c")
    community. `as_path_prefix`: the AS path starts with these AS numbers. `priority`: the
    route has this priority."""

    action: str
    cidr: str | None = None
    match_operator: str | None = None
    prefix_length: tuple[int | None, int | None] | None = None
    source: str | None = None
    interface: str | None = None
    peer_type: str | None = None
    community: str | None = None
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[FilterOperation, ...] = ()


@dataclass(frozen=True, slots=True)
class BGPFilter:
    """Ordered import and export rule lists per IP family, applied to the BGP peers whose
    BGPPeer.filters name this filter."""

    kind: ClassVar[str] = "BGPFilter"

    name: str
    export_v4: tuple[FilterRule, ...] = ()
    import_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()

    def rules(self, direction: str, version: int) -> tuple[FilterRule, ...]:
        """The rule list for `direction` ("import" / "export") and IP version 4 or 6."""
        if direction == "import":
            return self.import_v4 if version == 4 else self.import_v6
        if direction == "export":
            return self.export_v4 if version == 4 else self.export_v6
        raise ValueError(f"direction {direction!r} is neither 'import' nor 'export'")


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
    r = _Reader(kind, name, "spec")
    if not isinstance(spec, Mapping):
        raise r.error("spec", f"expected a mapping, found {describe(spec)}")
    return reader(r, name, meta, spec)


def parse_as_number(value: Any) -> int:
    """An AS number as Calico accepts it: a JSON number, "64512", or asdot "1.10"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an AS number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not an AS number (write asdot in quotes: '1.10')")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        asn = int(value.strip())
    elif isinstance(value, str) and re.fullmatch(r"[0-9]+\.[0-9]+", value.strip()):
        high, low = (int(p) for p in value.strip().split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"{value!r} is not an AS number")
        asn = high << 16 | low
    else:
        raise ValueError(f"{value!r} is not an AS number")
    if not 0 <= asn <= 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not an AS number (0..4294967295)")
    return asn


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """A Go duration string ("120s", "1m30s", "1.5h") in seconds."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration such as '120s'")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(f"{text!r} is not a duration such as '120s'")
    return sign * total


def _whole_seconds(seconds: float) -> int:
    """Go's math.Round (half away from zero), as confd turns durations into BIRD seconds."""
    return int(math.copysign(math.floor(abs(seconds) + 0.5), seconds))


def _address_part(cidr_or_ip: str | None) -> str | None:
    if not cidr_or_ip:
        return None
    return str(ipaddress.ip_interface(cidr_or_ip).ip)


def _network_part(cidr_or_ip: str | None) -> str | None:
    if not cidr_or_ip:
        return None
    return str(ipaddress.ip_interface(cidr_or_ip).network)


class _Reader:
    """Typed field access that turns every problem into a ResourceError naming the field."""

    __slots__ = ("kind", "name", "prefix")

    def __init__(self, kind: str, name: str, prefix: str) -> None:
        self.kind = kind
        self.name = name
        self.prefix = prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, path: str, reason: str) -> ResourceError:
        return ResourceError(reason, field=path, kind=self.kind, name=self.name)

    def sub(self, key: str) -> _Reader:
        return _Reader(self.kind, self.name, self.path(key))

    def _get(self, d: Mapping[str, Any], key: str) -> Any:
        return d.get(key)

    def string(self, d: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return default
        if not isinstance(v, str):
            raise self.error(self.path(key), f"expected a string, found {describe(v)}")
        return v

    def choice(self, d: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
        v = self.string(d, key)
        if v is None:
            return default
        if v not in options:
            allowed = ", ".join(repr(o) for o in options)
            raise self.error(self.path(key), f"{v!r} is not one of {allowed}")
        return v

    def flag(self, d: Mapping[str, Any], key: str, default: bool = False) -> bool:
        v = self._get(d, key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.error(self.path(key), f"expected true or false, found {describe(v)}")
        return v

    def integer(
        self, d: Mapping[str, Any], key: str, lo: int, hi: int, default: int | None = None
    ) -> int | None:
        v = self._get(d, key)
        if v is None:
            return default
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(self.path(key), f"expected an integer, found {describe(v)}")
        if not lo <= v <= hi:
            raise self.error(self.path(key), f"{v} is out of range {lo}..{hi}")
        return v

    def asn(self, d: Mapping[str, Any], key: str) -> int | None:
        v = self._get(d, key)
        if v is None:
            return None
        try:
            return parse_as_number(v)
        except ValueError as e:
            raise self.error(self.path(key), str(e)) from None

    def seconds(self, d: Mapping[str, Any], key: str) -> int | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise self.error(
                self.path(key), f"expected a duration such as '120s', found {describe(v)}"
            )
        try:
            seconds = parse_duration(v)
        except ValueError as e:
            raise self.error(self.path(key), str(e)) from None
        if seconds < 0:
            raise self.error(self.path(key), f"{v!r} is negative")
        return _whole_seconds(seconds)

    def mapping(self, d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        v = self._get(d, key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise self.error(self.path(key), f"expected a mapping, found {describe(v)}")
        return v

    def items(self, d: Mapping[str, Any], key: str) -> list[Any]:
        v = self._get(d, key)
        if v is None:
            return []
        if not isinstance(v, list | tuple):
            raise self.error(self.path(key), f"expected a list, found {describe(v)}")
        return list(v)

    def strings(self, d: Mapping[str, Any], key: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, v in enumerate(self.items(d, key)):
            if not isinstance(v, str):
                raise self.error(
                    f"{self.path(key)}[{i}]", f"expected a string, found {describe(v)}"
                )
            out.append(v)
        return tuple(out)

    def cidr_value(self, v: Any, path: str, version: int | None = None) -> str:
        """A CIDR, masked to its network (Calico stores the masked form)."""
        kind = {None: "a CIDR", 4: "an IPv4 CIDR", 6: "an IPv6 CIDR"}[version]
        if not isinstance(v, str) or "/" not in v:
            raise self.error(path, f"{describe(v)} is not {kind}")
        try:
            net = ipaddress.ip_network(v.strip(), strict=False)
        except ValueError:
            raise self.error(path, f"{v!r} is not {kind}") from None
        if version is not None and net.version != version:
            raise self.error(path, f"{v!r} is not {kind}")
        return str(net)

    def cidr(self, d: Mapping[str, Any], key: str, version: int | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        return self.cidr_value(v, self.path(key), version)

    def cidrs(self, d: Mapping[str, Any], key: str, item: str) -> tuple[str, ...]:
        """[{<item>: cidr}, ...] as in serviceClusterIPs."""
        out: list[str] = []
        for i, entry in enumerate(self.items(d, key)):
            r = self.sub(f"{key}[{i}]")
            if not isinstance(entry, Mapping):
                raise r.error(r.prefix, f"expected a mapping, found {describe(entry)}")
            c = r.cidr(entry, item)
            if c is not None:  # Calico skips empty entries
                out.append(c)
        return tuple(out)

    def ip(self, d: Mapping[str, Any], key: str, version: int | None = None) -> str | None:
        v = self._get(d, key)
        if v is None or v == "":
            return None
        kind = {None: "an IP address", 4: "an IPv4 address", 6: "an IPv6 address"}[version]
        if not isinstance(v, str):
            raise self.error(self.path(key), f"{describe(v)} is not {kind}")
        try:
            ip = ipaddress.ip_address(v.strip())
        except ValueError:
            raise self.error(self.path(key), f"{v!r} is not {kind}") from None
        if version is not None and ip.version != version:
            raise self.error(self.path(key), f"{v!r} is not {kind}")
        return str(ip)

    def interface(self, d: Mapping[str, Any], key: str, version: int) -> str | None:
        """An address with optional prefix length ("10.0.0.2/24" or "10.0.0.2"), as Calico's
        ParseCIDROrIP; kept with its prefix length, address canonical."""
        v = self._get(d, key)
        if v is None or v == "":
            return None
        kind = "an IPv4" if version == 4 else "an IPv6"
        if not isinstance(v, str):
            raise self.error(self.path(key), f"{describe(v)} is not {kind} address or CIDR")
        try:
            iface = ipaddress.ip_interface(v.strip())
        except ValueError:
            raise self.error(self.path(key), f"{v!r} is not {kind} address or CIDR") from None
        if iface.version != version:
            raise self.error(self.path(key), f"{v!r} is not {kind} address or CIDR")
        return f"{iface.ip}/{iface.network.prefixlen}"

    def selector(self, d: Mapping[str, Any], key: str) -> str | None:
        text = self.string(d, key)
        if text is None:
            return None
        try:
            selector.parse(text)
        except selector.SelectorError as e:
            raise self.error(self.path(key), f"{text!r} is not a valid selector: {e}") from None
        return text

    def secret(self, d: Mapping[str, Any], key: str) -> SecretKeyRef | None:
        outer = self.mapping(d, key)
        if not outer:
            return None
        r = self.sub(key)
        ref = r.mapping(outer, "secretKeyRef")
        if not ref:
            raise r.error(r.path("secretKeyRef"), "required (passwords are secret references)")
        rr = r.sub("secretKeyRef")
        name = rr.string(ref, "name")
        secret_key = rr.string(ref, "key")
        if name is None:
            raise rr.error(rr.path("name"), "required")
        if secret_key is None:
            raise rr.error(rr.path("key"), "required")
        # Read as the file NAME/KEY under the secrets directory: only names Kubernetes
        # allows, so a reference cannot point outside it ("../", "/").
        if (problem := secret_name_problem(name)) is not None:
            raise rr.error(rr.path("name"), problem)
        if (problem := secret_key_problem(secret_key)) is not None:
            raise rr.error(rr.path("key"), problem)
        return SecretKeyRef(name, secret_key)


def _labels(r: _Reader, meta: Mapping[str, Any]) -> Mapping[str, str]:
    raw = meta.get("labels")
    if raw is None:
        return _EMPTY
    if not isinstance(raw, Mapping):
        raise r.error("metadata.labels", f"expected a mapping, found {describe(raw)}")
    out: dict[str, str] = {}
    for k, v in raw.items():
        # YAML reads `label: yes` / `label: true` as a boolean; Calico labels are strings.
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        elif isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise r.error(f"metadata.labels.{k}", f"expected a string, found {describe(v)}")
        out[str(k)] = v
    return types.MappingProxyType(out)


def _bfd(r: _Reader, meta: Mapping[str, Any]) -> BfdSettings:
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


def _severity(r: _Reader, spec: Mapping[str, Any]) -> str | None:
    text = r.string(spec, "logSeverityScreen")
    if text is None:
        return None
    for known in LOG_SEVERITIES:
        if text.lower() == known.lower():
            return known
    allowed = ", ".join(LOG_SEVERITIES)
    raise r.error(r.path("logSeverityScreen"), f"{text!r} is not one of {allowed}")


def _read_bgp_configuration(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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


def _read_node(r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Node:
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
        labels=_labels(r, meta),
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
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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


def _ipam_record(r: _Reader, read: Callable[[Any], _R], value: Any) -> _R:
    """`value` read by calico.ipam (the one reader of IPAM forms); its error as this
    resource's ResourceError, naming the field."""
    try:
        return read(value)
    except RecordError as exc:
        raise r.error(r.path(exc.field) if exc.field else r.prefix, exc.reason) from None


def _read_block_affinity(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> IPAMBlock:
    return IPAMBlock(name, _ipam_record(r, Block.from_obj, spec))


# --- policy kinds (calico/policy.py) -------------------------------------------------------

_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TIER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Rule fields felix cannot enforce: refused, never silently dropped.
_UNSUPPORTED_RULE_FIELDS = {
    "http": "HTTP matches need an application-layer proxy, which felix does not run",
}
_UNSUPPORTED_ENTITY_FIELDS = {
    "services": "Kubernetes Service matches are not supported by felix",
}


def _order(r: _Reader, spec: Mapping[str, Any]) -> float | None:
    v = spec.get("order")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise r.error(r.path("order"), f"expected a number, found {describe(v)}")
    if math.isnan(v) or math.isinf(v):
        raise r.error(r.path("order"), f"{v!r} is not a finite number")
    return float(v)


def _protocol(r: _Reader, d: Mapping[str, Any], key: str) -> Protocol | None:
    v = d.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool):
        raise r.error(r.path(key), f"expected a protocol, found {describe(v)}")
    if isinstance(v, int):
        if not 1 <= v <= 255:
            raise r.error(r.path(key), f"{v} is out of range 1..255")
        return Protocol(v)
    if isinstance(v, str):
        for name, number in pol.PROTOCOL_NUMBERS.items():
            if name.lower() == v.lower():
                return Protocol(number, name)
        names = ", ".join(pol.PROTOCOL_NUMBERS)
        raise r.error(r.path(key), f"{v!r} is not a protocol ({names} or a number 1..255)")
    raise r.error(r.path(key), f"expected a protocol, found {describe(v)}")


def _icmp(r: _Reader, d: Mapping[str, Any], key: str) -> ICMPMatch | None:
    raw = r.mapping(d, key)
    if not raw:
        return None
    ir = r.sub(key)
    icmp_type = ir.integer(raw, "type", 0, 254)
    code = ir.integer(raw, "code", 0, 255)
    if code is not None and icmp_type is None:
        raise ir.error(ir.path("code"), "needs spec.type as well")
    return ICMPMatch(icmp_type, code)


def _rule_port(r: _Reader, path: str, v: Any) -> Port:
    if isinstance(v, bool):
        raise r.error(path, f"expected a port, found {describe(v)}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, int):
        if not 0 <= v <= 65535:
            raise r.error(path, f"{v} is out of range 0..65535")
        return Port(v, v)
    if not isinstance(v, str) or not v.strip():
        raise r.error(path, f"expected a port, found {describe(v)}")
    text = v.strip()
    if re.fullmatch(r"[0-9]+", text):
        return _rule_port(r, path, int(text))
    m = re.fullmatch(r"([0-9]+):([0-9]+)", text)
    if m:
        first, last = int(m.group(1)), int(m.group(2))
        if not 0 <= first <= last <= 65535:
            raise r.error(path, f"{text!r} is not a port range first:last within 0..65535")
        return Port(first, last)
    if len(text) > 15 or not _PORT_NAME.match(text) or not re.search("[a-z]", text):
        raise r.error(
            path,
            f"{text!r} is not a port, a range 'first:last' or a port name "
            "(up to 15 lowercase letters, digits and '-')",
        )
    return Port(name=text)


def _ports(r: _Reader, d: Mapping[str, Any], key: str) -> tuple[Port, ...]:
    return tuple(
        _rule_port(r, f"{r.path(key)}[{i}]", v) for i, v in enumerate(r.items(d, key))
    )


def _nets(r: _Reader, d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """CIDRs or bare addresses (Calico's ParseCIDROrIP), kept as masked networks."""
    out: list[str] = []
    for i, v in enumerate(r.items(d, key)):
        path = f"{r.path(key)}[{i}]"
        if not isinstance(v, str):
            raise r.error(path, f"{describe(v)} is not a CIDR")
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise r.error(path, f"{v!r} is not a CIDR") from None
    return tuple(out)


def _entity(r: _Reader, d: Mapping[str, Any], key: str) -> EntityRule:
    raw = r.mapping(d, key)
    er = r.sub(key)
    for name, why in _UNSUPPORTED_ENTITY_FIELDS.items():
        if raw.get(name):
            raise er.error(er.path(name), f"not supported: {why}")
    ns_selector = er.selector(raw, "namespaceSelector") or ""
    if "global(" in ns_selector and ns_selector.strip() != "global()":
        raise er.error(
            er.path("namespaceSelector"), "global() must be the whole namespaceSelector"
        )
    accounts: ServiceAccountMatch | None = None
    sa = er.mapping(raw, "serviceAccounts")
    if sa:
        sr = er.sub("serviceAccounts")
        accounts = ServiceAccountMatch(sr.strings(sa, "names"), sr.selector(sa, "selector") or "")
    return EntityRule(
        nets=_nets(er, raw, "nets"),
        not_nets=_nets(er, raw, "notNets"),
        selector=er.selector(raw, "selector") or "",
        not_selector=er.selector(raw, "notSelector") or "",
        namespace_selector=ns_selector,
        ports=_ports(er, raw, "ports"),
        not_ports=_ports(er, raw, "notPorts"),
        service_accounts=accounts,
    )


def _check_rule(r: _Reader, rule: Rule) -> None:
    """Calico's validateRule and the CEL rules beside it (libcalico-go validator/v3)."""
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        for key, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
            if not ports:
                continue
            if rule.protocol is None:
                if not all(p.is_named for p in ports):
                    raise r.error(
                        r.path(f"{side}.{key}"),
                        "numeric ports need spec.protocol TCP, UDP or SCTP",
                    )
            elif not rule.protocol.supports_ports:
                raise r.error(
                    r.path(f"{side}.{key}"),
                    f"protocol {rule.protocol} has no ports (use TCP, UDP or SCTP)",
                )
    for key, icmp in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if icmp is None:
            continue
        if rule.protocol is None or rule.protocol.number not in (1, 58):
            raise r.error(r.path(key), "needs spec.protocol ICMP or ICMPv6")
    if rule.protocol is not None and rule.ip_version is not None:
        if rule.protocol.number == 1 and rule.ip_version == 6:
            raise r.error(r.path("protocol"), "ICMP is IPv4's; IPv6 rules use ICMPv6")
        if rule.protocol.number == 58 and rule.ip_version == 4:
            raise r.error(r.path("protocol"), "ICMPv6 is IPv6's; IPv4 rules use ICMP")
    seen: set[int] = set()
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        for key, nets in (("nets", entity.nets), ("notNets", entity.not_nets)):
            versions = {ipaddress.ip_network(n).version for n in nets}
            path = r.path(f"{side}.{key}")
            if rule.ip_version is not None and versions - {rule.ip_version}:
                raise r.error(
                    path, f"has CIDRs of another IP version than ipVersion {rule.ip_version}"
                )
            if len(versions | seen) > 1:
                raise r.error(path, "the rule would mix IPv4 and IPv6 CIDRs")
            seen |= versions
            if key == "notNets" and any(ipaddress.ip_network(n).prefixlen == 0 for n in nets):
                raise r.error(path, "a catch-all CIDR in notNets matches no traffic")


def _rules(r: _Reader, spec: Mapping[str, Any], key: str) -> tuple[Rule, ...]:
    out: list[Rule] = []
    for i, raw in enumerate(r.items(spec, key)):
        rr = r.sub(f"{key}[{i}]")
        if not isinstance(raw, Mapping):
            raise rr.error(rr.prefix, f"expected a mapping, found {describe(raw)}")
        for name, why in _UNSUPPORTED_RULE_FIELDS.items():
            if raw.get(name):
                raise rr.error(rr.path(name), f"not supported: {why}")
        action = rr.string(raw, "action")
        if action is None:
            raise rr.error(rr.path("action"), "required")
        if action not in pol.ACTIONS:
            allowed = ", ".join(repr(a) for a in pol.ACTIONS)
            raise rr.error(rr.path("action"), f"{action!r} is not one of {allowed}")
        ip_version = rr.integer(raw, "ipVersion", 4, 6)
        if ip_version == 5:
            raise rr.error(rr.path("ipVersion"), "must be 4 or 6")
        meta = rr.mapping(raw, "metadata")
        annotations = {
            str(k): str(v) for k, v in rr.sub("metadata").mapping(meta, "annotations").items()
        }
        rule = Rule(
            action=action,
            ip_version=ip_version,
            protocol=_protocol(rr, raw, "protocol"),
            not_protocol=_protocol(rr, raw, "notProtocol"),
            icmp=_icmp(rr, raw, "icmp"),
            not_icmp=_icmp(rr, raw, "notICMP"),
            source=_entity(rr, raw, "source"),
            destination=_entity(rr, raw, "destination"),
            annotations=types.MappingProxyType(annotations),
        )
        _check_rule(rr, rule)
        out.append(rule)
    return tuple(out)


def _policy_types(
    r: _Reader, spec: Mapping[str, Any], ingress: tuple[Rule, ...], egress: tuple[Rule, ...]
) -> tuple[str, ...]:
    given = r.strings(spec, "types")
    for i, t in enumerate(given):
        if t not in (pol.INGRESS, pol.EGRESS):
            raise r.error(f"{r.path('types')}[{i}]", f"{t!r} is not 'Ingress' or 'Egress'")
    if len(set(given)) != len(given):
        raise r.error(r.path("types"), "lists a type twice")
    if given:
        return given
    # Calico's defaulting on write (api/pkg/defaults/networkpolicy.go).
    if not egress:
        return (pol.INGRESS,)
    if not ingress:
        return (pol.EGRESS,)
    return (pol.INGRESS, pol.EGRESS)


def _tier_name(r: _Reader, spec: Mapping[str, Any]) -> str:
    tier = r.string(spec, "tier", pol.DEFAULT_TIER) or pol.DEFAULT_TIER
    if len(tier) > 63 or not _TIER_NAME.match(tier):
        raise r.error(r.path("tier"), f"{tier!r} is not a tier name (lowercase, digits, '-')")
    return tier


def _read_network_policy(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> NetworkPolicy:
    ingress, egress = _rules(r, spec, "ingress"), _rules(r, spec, "egress")
    return NetworkPolicy(
        name=name,
        namespace=_namespace(r, meta),
        tier=_tier_name(r, spec),
        order=_order(r, spec),
        selector=r.selector(spec, "selector") or "",
        service_account_selector=r.selector(spec, "serviceAccountSelector") or "",
        types=_policy_types(r, spec, ingress, egress),
        ingress=ingress,
        egress=egress,
    )


def _read_global_network_policy(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> GlobalNetworkPolicy:
    ingress, egress = _rules(r, spec, "ingress"), _rules(r, spec, "egress")
    do_not_track, pre_dnat = r.flag(spec, "doNotTrack"), r.flag(spec, "preDNAT")
    apply_on_forward = r.flag(spec, "applyOnForward")
    if do_not_track and pre_dnat:
        raise r.error(r.path("preDNAT"), "cannot be set together with spec.doNotTrack")
    if (do_not_track or pre_dnat) and not apply_on_forward:
        which = "doNotTrack" if do_not_track else "preDNAT"
        raise r.error(r.path("applyOnForward"), f"must be true when spec.{which} is")
    if pre_dnat and egress:
        raise r.error(r.path("egress"), "a preDNAT policy has no egress rules")
    return GlobalNetworkPolicy(
        name=name,
        tier=_tier_name(r, spec),
        order=_order(r, spec),
        selector=r.selector(spec, "selector") or "",
        namespace_selector=r.selector(spec, "namespaceSelector") or "",
        service_account_selector=r.selector(spec, "serviceAccountSelector") or "",
        types=_policy_types(r, spec, ingress, egress),
        ingress=ingress,
        egress=egress,
        do_not_track=do_not_track,
        pre_dnat=pre_dnat,
        apply_on_forward=apply_on_forward,
    )


def _string_map(r: _Reader, d: Mapping[str, Any], key: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for k, v in r.mapping(d, key).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        elif isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise r.error(f"{r.path(key)}.{k}", f"expected a string, found {describe(v)}")
        out[str(k)] = v
    return types.MappingProxyType(out)


def _read_profile(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> Profile:
    return Profile(
        name=name,
        ingress=_rules(r, spec, "ingress"),
        egress=_rules(r, spec, "egress"),
        labels_to_apply=_string_map(r, spec, "labelsToApply"),
    )


def _read_tier(r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Tier:
    if len(name) > 63 or not _TIER_NAME.match(name):
        raise r.error("metadata.name", f"{name!r} is not a tier name (lowercase, digits, '-')")
    order = _order(r, spec)
    if order is None:
        order = pol.WELL_KNOWN_TIER_ORDERS.get(name)
    return Tier(
        name=name,
        order=order,
        default_action=r.choice(spec, "defaultAction", (pol.DENY, pol.PASS), pol.DENY),
    )


def _namespace(r: _Reader, meta: Mapping[str, Any]) -> str:
    ns = meta.get("namespace")
    if ns is None or ns == "":
        return "default"
    if not isinstance(ns, str) or "/" in ns:
        raise r.error("metadata.namespace", f"{describe(ns)} is not a namespace name")
    return ns


def _read_network_set(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> NetworkSet:
    return NetworkSet(
        name=name,
        namespace=_namespace(r, meta),
        labels=_labels(r, meta),
        nets=_nets(r, spec, "nets"),
    )


def _read_global_network_set(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> GlobalNetworkSet:
    return GlobalNetworkSet(name=name, labels=_labels(r, meta), nets=_nets(r, spec, "nets"))


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
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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


_FILTER_INTERFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}")
_STANDARD_COMMUNITY = re.compile(r"(\d+):(\d+)")
_LARGE_COMMUNITY = re.compile(r"(\d+):(\d+):(\d+)")


def _community(r: _Reader, path: str, value: Any) -> str:
    """A BGP community value "a:b" (16-bit parts) or "a:b:c" (32-bit parts), as written."""
    if not isinstance(value, str):
        raise r.error(path, f"expected a community 'a:b' or 'a:b:c', found {describe(value)}")
    if m := _STANDARD_COMMUNITY.fullmatch(value):
        if all(int(p) <= 0xFFFF for p in m.groups()):
            return value
        raise r.error(path, f"{value!r}: a standard community has 16-bit parts (0..65535)")
    if m := _LARGE_COMMUNITY.fullmatch(value):
        if all(int(p) <= 0xFFFFFFFF for p in m.groups()):
            return value
        raise r.error(path, f"{value!r}: a large community has 32-bit parts (0..4294967295)")
    raise r.error(path, f"{value!r} is not a community 'a:b' or 'a:b:c'")


def _as_numbers(r: _Reader, d: Mapping[str, Any], key: str) -> tuple[int, ...]:
    out: list[int] = []
    for i, v in enumerate(r.items(d, key)):
        try:
            out.append(parse_as_number(v))
        except ValueError as e:
            raise r.error(f"{r.path(key)}[{i}]", str(e)) from None
    return tuple(out)


def _filter_operation(r: _Reader, op: Any) -> FilterOperation:
    if not isinstance(op, Mapping):
        raise r.error(r.prefix, f"expected a mapping, found {describe(op)}")
    given = [k for k in ("addCommunity", "prependASPath", "setPriority") if op.get(k) is not None]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise r.error(
            r.prefix,
            f"exactly one of addCommunity, prependASPath, setPriority must be set, found {found}",
        )
    what = given[0]
    sub = r.sub(what)
    body = r.mapping(op, what)
    if what == "addCommunity":
        if body.get("value") is None:
            raise sub.error(sub.path("value"), "required")
        return FilterOperation(add_community=_community(sub, sub.path("value"), body["value"]))
    if what == "prependASPath":
        prefix = _as_numbers(sub, body, "prefix")
        if not 1 <= len(prefix) <= 10:
            raise sub.error(sub.path("prefix"), f"needs 1 to 10 AS numbers, found {len(prefix)}")
        return FilterOperation(prepend_as_path=prefix)
    value = sub.integer(body, "value", 1, MAX_PRIORITY)
    if value is None:
        raise sub.error(sub.path("value"), "required")
    return FilterOperation(set_priority=value)


def _filter_rule(r: _Reader, rule: Any, version: int) -> FilterRule:
    if not isinstance(rule, Mapping):
        raise r.error(r.prefix, f"expected a mapping, found {describe(rule)}")
    action = r.string(rule, "action")
    if action is None:
        raise r.error(r.path("action"), "required")
    if action not in FILTER_ACTIONS:
        raise r.error(r.path("action"), f"{action!r} is not one of 'Accept', 'Reject'")
    cidr: str | None = None
    raw_cidr = rule.get("cidr")
    if raw_cidr is not None and raw_cidr != "":
        if isinstance(raw_cidr, str) and "/" not in raw_cidr:
            raw_cidr = f"{raw_cidr}/{32 if version == 4 else 128}"  # an address: a full mask
        cidr = r.cidr_value(raw_cidr, r.path("cidr"), version)
        try:
            ipaddress.ip_network(str(raw_cidr).strip())
        except ValueError:  # BIRD refuses a prefix with host bits, as Calico's netv4/netv6
            raise r.error(r.path("cidr"), f"{raw_cidr!r} has host bits set (use {cidr})") from None
    operator = r.choice(rule, "matchOperator", MATCH_OPERATORS, "") or None
    if (cidr is None) != (operator is None):
        raise r.error(
            r.path("cidr" if cidr is None else "matchOperator"),
            "cidr and matchOperator must both be set or both be empty",
        )
    prefix_length: tuple[int | None, int | None] | None = None
    raw_length = rule.get("prefixLength")
    if raw_length is not None:
        lr = r.sub("prefixLength")
        if not isinstance(raw_length, Mapping):
            raise lr.error(lr.prefix, f"expected a mapping, found {describe(raw_length)}")
        if cidr is None:
            raise lr.error(lr.prefix, "cidr is required when prefixLength is set")
        top = 32 if version == 4 else 128
        low = lr.integer(raw_length, "min", 0, top)
        high = lr.integer(raw_length, "max", 0, top)
        plen = ipaddress.ip_network(cidr).prefixlen
        lo_eff, hi_eff = max(plen, low or 0), min(top, top if high is None else high)
        if lo_eff > hi_eff:
            raise lr.error(
                lr.prefix,
                f"no prefix length fits {cidr} between {lo_eff} and {hi_eff} "
                "(BIRD refuses such a range)",
            )
        prefix_length = (low, high)
    source = r.choice(rule, "source", (SOURCE_REMOTE_PEERS,), "") or None
    interface = r.string(rule, "interface")
    if interface is not None and interface != "*" and not _FILTER_INTERFACE.fullmatch(interface):
        raise r.error(
            r.path("interface"),
            f"{interface!r} is not an interface name or glob (1-15 of a-z A-Z 0-9 _ . - *)",
        )
    peer_type = r.choice(rule, "peerType", (PEER_TYPE_EBGP, PEER_TYPE_IBGP), "") or None
    community: str | None = None
    raw_communities = rule.get("communities")
    if raw_communities is not None:
        cr = r.sub("communities")
        if not isinstance(raw_communities, Mapping):
            raise cr.error(cr.prefix, f"expected a mapping, found {describe(raw_communities)}")
        values = cr.items(raw_communities, "values")
        if len(values) != 1:
            raise cr.error(cr.path("values"), f"needs exactly one value, found {len(values)}")
        community = _community(cr, f"{cr.path('values')}[0]", values[0])
    operations = tuple(
        _filter_operation(r.sub(f"operations[{i}]"), op)
        for i, op in enumerate(r.items(rule, "operations"))
    )
    if len(operations) > MAX_FILTER_OPERATIONS:
        raise r.error(
            r.path("operations"),
            f"at most {MAX_FILTER_OPERATIONS} operations, found {len(operations)}",
        )
    if operations and action != FILTER_ACCEPT:
        raise r.error(r.path("operations"), "operations may only be used with action Accept")
    return FilterRule(
        action=action,
        cidr=cidr,
        match_operator=operator,
        prefix_length=prefix_length,
        source=source,
        interface=interface,
        peer_type=peer_type,
        community=community,
        as_path_prefix=_as_numbers(r, rule, "asPathPrefix"),
        priority=r.integer(rule, "priority", 1, MAX_PRIORITY),
        operations=operations,
    )


def _read_bgp_filter(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> BGPFilter:
    lists: dict[str, tuple[FilterRule, ...]] = {}
    for key, version in (("exportV4", 4), ("importV4", 4), ("exportV6", 6), ("importV6", 6)):
        lists[key] = tuple(
            _filter_rule(r.sub(f"{key}[{i}]"), rule, version)
            for i, rule in enumerate(r.items(spec, key))
        )
    return BGPFilter(
        name=name,
        export_v4=lists["exportV4"],
        import_v4=lists["importV4"],
        export_v6=lists["exportV6"],
        import_v6=lists["importV6"],
    )


def _read_workload_endpoint(
    r: _Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
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
        labels=_labels(r, meta),
        ip_networks=networks,
    )


_ResourceReader = Callable[[_Reader, str, Mapping[str, Any], Mapping[str, Any]], Resource]

_READERS: Mapping[str, _ResourceReader] = types.MappingProxyType(
    {
        BGPConfiguration.kind: _read_bgp_configuration,
        Node.kind: _read_node,
        BGPPeer.kind: _read_bgp_peer,
        IPPool.kind: _read_ip_pool,
        BlockAffinity.kind: _read_block_affinity,
        IPAMBlock.kind: _read_ipam_block,
        NetworkPolicy.kind: _read_network_policy,
        GlobalNetworkPolicy.kind: _read_global_network_policy,
        Profile.kind: _read_profile,
        Tier.kind: _read_tier,
        NetworkSet.kind: _read_network_set,
        GlobalNetworkSet.kind: _read_global_network_set,
        FelixConfiguration.kind: _read_felix_configuration,
        BGPFilter.kind: _read_bgp_filter,
        WorkloadEndpoint.kind: _read_workload_endpoint,
    }
)
