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
        spec["ipNetworks"] = list(self.ip_networks)
        if self.profiles:
            spec["profiles"] = list(self.profiles)
        spec["interfaceName"] = self.interface_name
        if self.mac:
            spec["mac"] = self.mac
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
) -> WorkloadEndpoint:
    """The WEP the CNI plugin writes for one container interface, named as Calico names it
    (k8s: <node>-k8s-<pod>-<endpoint>; otherwise <node>-cni-<containerID>-<endpoint>)."""
    if k8s_namespace and k8s_pod:
        orchestrator, workload, namespace = "k8s", k8s_pod, k8s_namespace
        profiles: tuple[str, ...] = (f"kns.{namespace}", f"ksa.{namespace}.default")
    else:
        orchestrator, workload, namespace = "cni", container_id, "default"
        profiles = (network,)
    labels = {
        "projectcalico.org/namespace": namespace,
        "projectcalico.org/orchestrator": orchestrator,
    }
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
        labels=labels,
        uid=uid,
        created=rfc3339(now) if now else "",
    )
