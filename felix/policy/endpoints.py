"""What policy sees of an endpoint: its addresses, named ports, profiles and the labels its
selectors match. Pure.

Labels as Felix computes them (updateprocessors/workloadendpointprocessor.go and
labelindex's inheritance): the endpoint's own labels, without any `pcns.` / `pcsa.` ones (a
workload must not pretend to be in another namespace), with the namespace, orchestrator and
service-account labels Calico sets; then, for keys still missing, the `labelsToApply` of
its profiles, first profile first. Network sets take part in selectors too (addresses
only): a NetworkSet inherits from its namespace's `kns.` profile like a workload.
"""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from calico.policy import GlobalNetworkSet, NetworkSet
from felix.policy.rules import NAMESPACE_PREFIX, SERVICE_ACCOUNT_PREFIX
from felix.workload import (
    NAMESPACE_LABEL,
    ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL,
    EndpointPort,
    WorkloadEndpoint,
)

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


def _no_labels() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A workload endpoint (`workload` True) or a network set, as selectors see it."""

    key: str  # "wep/<namespace>/<name>", "ns/<namespace>/<name>", "gns/<name>"
    name: str
    namespace: str | None
    own_labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    profiles: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()  # masked networks ("10.0.0.5/32")
    ports: tuple[EndpointPort, ...] = ()
    workload: bool = False
    node: str = ""
    interface: str = ""
    orchestrator: str = ""
    workload_id: str = ""  # Calico's v1 workload ID: "<namespace>/<workload>"
    endpoint_id: str = ""

    def labels(self, profile_labels: Mapping[str, Mapping[str, str]]) -> Mapping[str, str]:
        """The labels selectors match: own first, then each profile's, first wins."""
        if not self.profiles:
            return self.own_labels
        out = dict(self.own_labels)
        for name in self.profiles:
            for k, v in profile_labels.get(name, _EMPTY).items():
                out.setdefault(k, v)
        return out

    @property
    def addresses(self) -> tuple[str, ...]:
        """The endpoint's addresses (the address of each of its networks)."""
        return tuple(str(ipaddress.ip_network(n).network_address) for n in self.nets)


def wep_key(namespace: str, name: str) -> str:
    return f"wep/{namespace}/{name}"


def from_workload(wep: WorkloadEndpoint) -> Endpoint:
    labels = {
        k: v
        for k, v in wep.labels.items()
        if not k.startswith((NAMESPACE_PREFIX, SERVICE_ACCOUNT_PREFIX))
    }
    labels[NAMESPACE_LABEL] = wep.namespace
    if wep.orchestrator:
        labels[ORCHESTRATOR_LABEL] = wep.orchestrator
    if wep.service_account:
        labels[SERVICE_ACCOUNT_LABEL] = wep.service_account
    # The v1 workload ID: the name's third segment (the pod, or the container ID) in its
    # namespace; segments are joined by "-" with their own "-" doubled.
    return Endpoint(
        key=wep_key(wep.namespace, wep.name),
        name=wep.name,
        namespace=wep.namespace,
        own_labels=types.MappingProxyType(labels),
        profiles=wep.profiles,
        nets=tuple(str(ipaddress.ip_network(n, strict=False)) for n in wep.ip_networks),
        ports=wep.ports,
        workload=True,
        node=wep.node,
        interface=wep.interface_name,
        orchestrator=wep.orchestrator,
        workload_id=f"{wep.namespace}/{wep.workload}",
        endpoint_id=wep.endpoint,
    )


def from_network_set(ns: NetworkSet | GlobalNetworkSet) -> Endpoint:
    if isinstance(ns, NetworkSet):
        labels = {**ns.labels, NAMESPACE_LABEL: ns.namespace}
        return Endpoint(
            key=f"ns/{ns.namespace}/{ns.name}",
            name=ns.name,
            namespace=ns.namespace,
            own_labels=types.MappingProxyType(labels),
            profiles=(f"kns.{ns.namespace}",),
            nets=ns.nets,
        )
    return Endpoint(
        key=f"gns/{ns.name}", name=ns.name, namespace=None, own_labels=ns.labels, nets=ns.nets
    )
