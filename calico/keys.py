"""Calico's etcd v3 key layout (reference/calico.md section 1), both ways. Pure.

    /calico/resources/v3/projectcalico.org/<plural>/<name>              v3 resources
    /calico/resources/v3/projectcalico.org/<plural>/<namespace>/<name>  namespaced kinds
    /calico/ipam/v2/assignment/ipv4/block/192.168.221.64-26              IPAM blocks
    /calico/ipam/v2/host/<node>/ipv4/block/192.168.221.64-26             block affinities
    /calico/ipam/v2/handle/<id>                                          IPAM handles
    /calico/ipam/v2/config                                               IPAM config

A CIDR in a key is the masked network with its first "/" made "-" (IPv6 keeps its colons);
decoding turns the first "-" back into "/".
"""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

RESOURCES = "/calico/resources/v3/projectcalico.org/"
IPAM = "/calico/ipam/v2/"
IPAM_CONFIG = "/calico/ipam/v2/config"
HANDLES = "/calico/ipam/v2/handle/"
BLOCKS = "/calico/ipam/v2/assignment/"

# Kind -> plural, as libcalico-go registers them (lowercased).
PLURALS: Mapping[str, str] = types.MappingProxyType(
    {
        "BGPConfiguration": "bgpconfigurations",
        "BGPFilter": "bgpfilters",
        "BGPPeer": "bgppeers",
        "BlockAffinity": "blockaffinities",
        "CalicoNodeStatus": "caliconodestatuses",
        "ClusterInformation": "clusterinformations",
        "FelixConfiguration": "felixconfigurations",
        "GlobalNetworkPolicy": "globalnetworkpolicies",
        "GlobalNetworkSet": "globalnetworksets",
        "HostEndpoint": "hostendpoints",
        "IPAMConfiguration": "ipamconfigurations",
        "IPPool": "ippools",
        "IPReservation": "ipreservations",
        "KubeControllersConfiguration": "kubecontrollersconfigurations",
        "NetworkPolicy": "networkpolicies",
        "NetworkSet": "networksets",
        "Node": "nodes",
        "Profile": "profiles",
        "StagedGlobalNetworkPolicy": "stagedglobalnetworkpolicies",
        "StagedKubernetesNetworkPolicy": "stagedkubernetesnetworkpolicies",
        "StagedNetworkPolicy": "stagednetworkpolicies",
        "Tier": "tiers",
        "WorkloadEndpoint": "workloadendpoints",
    }
)
KINDS_BY_PLURAL: Mapping[str, str] = types.MappingProxyType({p: k for k, p in PLURALS.items()})
NAMESPACED = frozenset(
    {
        "NetworkPolicy",
        "NetworkSet",
        "StagedKubernetesNetworkPolicy",
        "StagedNetworkPolicy",
        "WorkloadEndpoint",
    }
)

_AFFINITY = re.compile(r"^/calico/ipam/v2/(host|virtual)/([^/]+)/ipv([46])/block/([^/]+)$")
_BLOCK = re.compile(r"^/calico/ipam/v2/assignment/ipv([46])/block/([^/]+)$")


@dataclass(frozen=True, slots=True)
class ResourceKey:
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class AffinityKey:
    type: str  # "host" or "virtual"
    node: str
    cidr: str


def cidr_to_key(cidr: str) -> str:
    """"192.168.221.70/26" -> "192.168.221.64-26" (masked, as Calico writes it)."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net).replace("/", "-", 1)


def key_to_cidr(text: str) -> str:
    """"192.168.221.64-26" -> "192.168.221.64/26"; raises ValueError if it is no CIDR."""
    cidr = text.replace("-", "/", 1)
    return str(ipaddress.ip_network(cidr, strict=False))


def _ipv(cidr: str) -> str:
    return f"ipv{ipaddress.ip_network(cidr, strict=False).version}"


def resource_key(kind: str, name: str, namespace: str | None = None) -> str:
    plural = PLURALS.get(kind)
    if plural is None:
        raise ValueError(f"unknown kind {kind!r}")
    if "/" in name or not name:
        raise ValueError(f"{name!r} is not a resource name")
    if kind in NAMESPACED:
        return f"{RESOURCES}{plural}/{namespace or 'default'}/{name}"
    return f"{RESOURCES}{plural}/{name}"


def kind_prefix(kind: str) -> str:
    return f"{RESOURCES}{PLURALS[kind]}/"


def parse_resource_key(key: str) -> ResourceKey | None:
    if not key.startswith(RESOURCES):
        return None
    parts = key[len(RESOURCES) :].split("/")
    kind = KINDS_BY_PLURAL.get(parts[0])
    if kind is None:
        return None
    if kind in NAMESPACED and len(parts) == 3 and all(parts[1:]):
        return ResourceKey(kind, parts[2], parts[1])
    if kind not in NAMESPACED and len(parts) == 2 and parts[1]:
        return ResourceKey(kind, parts[1])
    return None


def block_key(cidr: str) -> str:
    return f"{BLOCKS}{_ipv(cidr)}/block/{cidr_to_key(cidr)}"


def parse_block_key(key: str) -> str | None:
    """The block CIDR of an IPAM block key, or None."""
    m = _BLOCK.match(key)
    if m is None:
        return None
    try:
        return key_to_cidr(m.group(2))
    except ValueError:
        return None


def affinity_key(node: str, cidr: str, type: str = "host") -> str:
    return f"{IPAM}{type}/{node}/{_ipv(cidr)}/block/{cidr_to_key(cidr)}"


def affinity_prefix(node: str | None = None, type: str = "host") -> str:
    """Every affinity of `node` (or of every node)."""
    return f"{IPAM}{type}/{node}/" if node else f"{IPAM}{type}/"


def parse_affinity_key(key: str) -> AffinityKey | None:
    m = _AFFINITY.match(key)
    if m is None:
        return None
    try:
        return AffinityKey(m.group(1), m.group(2), key_to_cidr(m.group(4)))
    except ValueError:
        return None


def handle_key(handle_id: str) -> str:
    return f"{HANDLES}{handle_id}"
