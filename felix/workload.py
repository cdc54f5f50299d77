"""WorkloadEndpoints (reference/calico.md 2.9): their names, keys and stored JSON, and the
host-side interface name of a workload. Pure; shared by the CNI plugin (which writes them)
and the felix daemon (which routes to them)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico import keys

API_VERSION = "projectcalico.org/v3"
KIND = "WorkloadEndpoint"
PREFIX = keys.kind_prefix(KIND)
INTERFACE_PREFIX = "cali"  # FELIX_INTERFACEPREFIX
NAMESPACE_LABEL = "projectcalico.org/namespace"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"


def host_veth_name(container_id: str, namespace: str | None = None, pod: str | None = None) -> str:
    """Calico's host-side veth name: for a Kubernetes pod "cali" + the first 11 hex digits
    of sha1("<namespace>.<pod>") (k8sconversion.VethNameForWorkload); otherwise "cali" +
    the first 11 characters of the container ID (the CNI plugin's DoNetworking)."""
    if namespace and pod:
        digest = hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()
        return INTERFACE_PREFIX + digest[:11]
    return INTERFACE_PREFIX + container_id[:11]


def _segment(text: str) -> str:
    return text.replace("-", "--")


def endpoint_name(node: str, orchestrator: str, workload: str, endpoint: str) -> str:
    """The WEP name: segments joined by "-", each "-" in a segment doubled."""
    return "-".join(_segment(s) for s in (node, orchestrator, workload, endpoint))


def go_time_string(now: float) -> str:
    """Go's time.Now().UTC().String(), as Calico stamps IPAM attributes (to the microsecond,
    which is what a float of epoch seconds holds; Go drops trailing zeros)."""
    micros = round(now * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    frac = f".{fraction:06d}".rstrip("0").rstrip(".")
    return f"{stamp}{frac} +0000 UTC"


def rfc3339(now: float) -> str:
    return datetime.datetime.fromtimestamp(int(now), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class EndpointPort:
    """A named port of the workload (spec.ports), which rules can name instead of a number."""

    name: str
    protocol: str  # "TCP", "UDP" or "SCTP"
    port: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.protocol, "port": self.port}


_PORT_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


def _ports(raw: Any) -> tuple[EndpointPort, ...]:
    out: list[EndpointPort] = []
    for i, p in enumerate(raw or ()):
        if not isinstance(p, Mapping):
            raise ValueError(f"spec.ports[{i}] is not a mapping")
        proto = _PORT_PROTOCOLS.get(str(p.get("protocol") or "TCP").lower())
        if proto is None:
            raise ValueError(f"spec.ports[{i}].protocol must be TCP, UDP or SCTP")
        number = p.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            raise ValueError(f"spec.ports[{i}].port must be 1..65535")
        if p.get("name"):  # Calico's v1 model drops unnamed ports (hostPort-only entries)
            out.append(EndpointPort(str(p["name"]), proto, number))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    name: str
    namespace: str
    node: str
    orchestrator: str
    workload: str
    endpoint: str
    container_id: str
    interface_name: str
    ip_networks: tuple[str, ...]
    mac: str = ""
    pod: str | None = None
    profiles: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    uid: str = ""
    created: str = ""
    ports: tuple[EndpointPort, ...] = ()
    service_account: str = ""

    @property
    def key(self) -> str:
        return keys.resource_key(KIND, self.name, self.namespace)

    def to_json(self) -> bytes:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.uid:
            meta["uid"] = self.uid
        if self.created:
            meta["creationTimestamp"] = self.created
        if self.labels:
            meta["labels"] = dict(sorted(self.labels.items()))
        spec: dict[str, Any] = {"orchestrator": self.orchestrator}
        if self.orchestrator != "k8s":
            spec["workload"] = self.workload
        spec["node"] = self.node
        spec["containerID"] = self.container_id
        if self.pod:
            spec["pod"] = self.pod
        spec["endpoint"] = self.endpoint
        if self.service_account:
            spec["serviceAccountName"] = self.service_account
        spec["ipNetworks"] = list(self.ip_networks)
        if self.profiles:
            spec["profiles"] = list(self.profiles)
        spec["interfaceName"] = self.interface_name
        if self.mac:
            spec["mac"] = self.mac
        if self.ports:
            spec["ports"] = [p.to_json() for p in self.ports]
        doc = {"kind": KIND, "apiVersion": API_VERSION, "metadata": meta, "spec": spec}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> WorkloadEndpoint:
        """Raises ValueError for a value that is not a readable WorkloadEndpoint."""
        doc = json.loads(data)
        if not isinstance(doc, Mapping) or doc.get("kind") != KIND:
            raise ValueError("not a WorkloadEndpoint")
        meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            raise ValueError("metadata and spec must be objects")
        networks = tuple(
            str(ipaddress.ip_network(n, strict=False)) for n in spec.get("ipNetworks") or ()
        )
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("metadata.name is required")
        return cls(
            name=name,
            namespace=str(meta.get("namespace") or "default"),
            node=str(spec.get("node") or ""),
            orchestrator=str(spec.get("orchestrator") or ""),
            workload=str(spec.get("workload") or spec.get("pod") or ""),
            endpoint=str(spec.get("endpoint") or ""),
            container_id=str(spec.get("containerID") or ""),
            interface_name=str(spec.get("interfaceName") or ""),
            ip_networks=networks,
            mac=str(spec.get("mac") or ""),
            pod=spec.get("pod"),
            profiles=tuple(str(p) for p in spec.get("profiles") or ()),
            labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
            uid=str(meta.get("uid") or ""),
            created=str(meta.get("creationTimestamp") or ""),
            ports=_ports(spec.get("ports")),
            service_account=str(spec.get("serviceAccountName") or ""),
        )


def new_endpoint(
    *,
    node: str,
    container_id: str,
    endpoint: str,
    interface_name: str,
    ip_networks: Sequence[str],
    mac: str,
    network: str,
    k8s_namespace: str | None = None,
    k8s_pod: str | None = None,
    uid: str = "",
    now: float = 0.0,
    labels: Mapping[str, str] | None = None,
    service_account: str = "default",
) -> WorkloadEndpoint:
    """The WEP the CNI plugin writes for one container interface, named as Calico names it
    (k8s: <node>-k8s-<pod>-<endpoint>; otherwise <node>-cni-<containerID>-<endpoint>).

    `labels` are the workload's own labels; Calico's own keys are set over them: the
    namespace, the orchestrator and (for a pod) the service account. A non-Kubernetes
    workload's namespace comes from its `projectcalico.org/namespace` label, as in Calico's
    CNI plugin."""
    own = dict(labels or {})
    if k8s_namespace and k8s_pod:
        orchestrator, workload, namespace = "k8s", k8s_pod, k8s_namespace
        profiles: tuple[str, ...] = (f"kns.{namespace}", f"ksa.{namespace}.{service_account}")
        own[SERVICE_ACCOUNT_LABEL] = service_account
    else:
        orchestrator, workload = "cni", container_id
        namespace = own.get(NAMESPACE_LABEL) or "default"
        profiles = (network,)
        service_account = ""
    own[NAMESPACE_LABEL] = namespace
    own[ORCHESTRATOR_LABEL] = orchestrator
    return WorkloadEndpoint(
        name=endpoint_name(node, orchestrator, workload, endpoint),
        namespace=namespace,
        node=node,
        orchestrator=orchestrator,
        workload=workload,
        endpoint=endpoint,
        container_id=container_id,
        interface_name=interface_name,
        ip_networks=tuple(ip_networks),
        mac=mac,
        pod=k8s_pod if orchestrator == "k8s" else None,
        profiles=profiles,
        labels=own,
        uid=uid,
        created=rfc3339(now) if now else "",
        service_account=service_account,
    )
