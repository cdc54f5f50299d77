"""What of the Calico model bgpd does not apply, said out loud (DESIGN: a setting with no
place where it takes effect is reported as not supported, never silently dropped).

`NOT_SUPPORTED` names every model field (`Kind.field`, `Kind.field.subfield` for nested
settings) that pybgpd reads but applies nowhere, with the note an operator sees: `bgpd plan`
lists it and the daemon logs it as a warning at start and at every reload, whenever the
field holds anything but its default in a resource that concerns this node (the
BGPConfigurations `default` and `node.<this node>`, this Node, the BGPPeers that give this
node sessions, every IPPool, this node's WorkloadEndpoints). Every other field takes effect
somewhere; tests/unit/test_model_support.py holds, per field, the test that shows it, and
fails when a field is in neither list. Kinds only felix reads (FELIX_KINDS) are felix's to
account for.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from calico.model import KINDS, BfdSettings, NodeBGP, Resource
from calico.snapshot import Snapshot

_NO_K8S = (
    "bgpd has no Kubernetes source, so there are no Services to advertise (Calico's route "
    "generator reads them from the Kubernetes API; in its etcd mode it advertises none either)"
)

NOT_SUPPORTED: Mapping[str, str] = types.MappingProxyType(
    {
        "BGPConfiguration.service_cluster_ips": f"serviceClusterIPs not advertised: {_NO_K8S}",
        "BGPConfiguration.service_external_ips": f"serviceExternalIPs not advertised: {_NO_K8S}",
        "BGPConfiguration.service_load_balancer_ips": (
            f"serviceLoadBalancerIPs not advertised: {_NO_K8S}"
        ),
        "BGPConfiguration.ipv4_normal_route_priority": (
            "ipv4NormalRoutePriority applied to what is advertised (LOCAL_PREF 2147483647 - "
            "priority) only: routes are installed in the kernel without Calico's priority "
            "metric (krt_metric)"
        ),
        "BGPConfiguration.ipv6_normal_route_priority": (
            "ipv6NormalRoutePriority applied to what is advertised (LOCAL_PREF 2147483647 - "
            "priority) only: routes are installed in the kernel without Calico's priority "
            "metric (krt_metric)"
        ),
        "Node.addresses": (
            "spec.addresses not used: bgpd takes the node's addresses from spec.bgp"
        ),
        "IPPool.namespace_selector": (
            "namespaceSelector not applied: felix-cni's IPAM picks pools by node only"
        ),
    }
)

# Nested settings whose fields count one by one.
_NESTED = (NodeBGP, BfdSettings)

# Kinds only felix reads (its policy and dataplane settings): bgpd never plans from them, and
# felix says itself what it does not apply (FelixConfiguration.unsupported, logged as
# felix.config_unsupported).
FELIX_KINDS = frozenset(
    {
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "Profile",
        "Tier",
        "NetworkSet",
        "GlobalNetworkSet",
        "FelixConfiguration",
    }
)


def model_fields() -> list[str]:
    """Every field of every resource kind the model reads but felix's alone, as
    `Kind.field[.subfield]`."""
    out: list[str] = []
    for kind, cls in KINDS.items():
        if kind not in FELIX_KINDS:
            out.extend(_fields(kind, cls))
    return out


def _fields(prefix: str, cls: type) -> Iterator[str]:
    nested = {c.__name__: c for c in _NESTED}
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}"
        inner = nested.get(_type_name(f.type))
        if inner is not None:
            yield from _fields(path, inner)
        else:
            yield path


def _type_name(annotation: object) -> str:
    """`NodeBGP | None` -> "NodeBGP" (annotations are strings under __future__)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text.replace(" | None", "").strip()


def _default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(name)


def set_fields(resource: object, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(field path below the kind, value) of each field of `resource` holding something
    other than its default."""
    for f in dataclasses.fields(resource):  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            continue  # required fields (name, cidr): always set, never a default
        value = getattr(resource, f.name)
        path = f"{prefix}{f.name}"
        if isinstance(value, _NESTED):
            yield from set_fields(value, f"{path}.")
        elif value != _default(type(resource), f.name):
            yield path, value


def unsupported_notes(
    snapshot: Snapshot, node: str, bgp_peers: Iterable[str] = ()
) -> list[str]:
    """A note per unsupported field set in a resource that concerns `node`; `bgp_peers` are
    the BGPPeers that give it sessions."""
    resources: list[Resource] = []
    for name in ("default", f"node.{node}"):
        config = snapshot.bgp_configurations.get(name)
        if config is not None:
            resources.append(config)
    me = snapshot.nodes.get(node)
    if me is not None:
        resources.append(me)
    peers = snapshot.bgp_peers
    resources.extend(peers[n] for n in sorted(set(bgp_peers)) if n in peers)
    resources.extend(snapshot.ip_pools[n] for n in sorted(snapshot.ip_pools))
    resources.extend(snapshot.workloads_of(node))
    notes: list[str] = []
    for resource in resources:
        for path, _value in set_fields(resource):
            note = NOT_SUPPORTED.get(f"{resource.kind}.{path}")
            if note is not None:
                notes.append(f"{resource.kind} {resource.name!r}: {note}")
    return notes
