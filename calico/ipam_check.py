"""`calicoctl ipam check`, computed from IPAM records and what uses addresses; pure.

calicoctl's IPAMChecker (calicoctl/commands/ipam/check.go) cross-references every
allocation in the blocks with the addresses Nodes (tunnel addresses) and WorkloadEndpoints
(ipNetworks) use, and every handle with the blocks that refer to it. Its findings, each
counted as a problem:

* allocated but not in use (leaked addresses);
* in use but in no active pool, or in an active pool with no allocation;
* handles no block refers to (leaked handles); handles blocks refer to that do not exist.

Added here (calicoctl does not look): block affinities with no block (a claim that never
completed, or whose block was deleted), counted as problems; and borrowed addresses,
reported but not a problem (borrowing is how Calico works without strict affinity).
Calicoctl counts only a node's IPv4 tunnel addresses as in use; the IPv6 VXLAN and
WireGuard ones count here too, since felix allocates them from the same IPAM.

`report_json` is calicoctl's `-o FILE` report, which `release --from-report` reads back
(`merge_reports`), releasing only what every report saw leaked.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.ipam import Block
from calico.ipam_release import WINDOWS_RESERVED_HANDLE, ReleaseIP
from calico.ipam_usage import affinity_host
from calico.ipam_view import IpamView
from calico.model import IPPool, Node


@dataclass(frozen=True, slots=True)
class WorkloadAddresses:
    """What check needs of a WorkloadEndpoint: its name and the IPs of its ipNetworks."""

    namespace: str
    name: str
    ips: tuple[str, ...]

    @property
    def friendly(self) -> str:
        return f"Workload({self.namespace}/{self.name})"


def read_workload(value: bytes | str) -> WorkloadAddresses:
    """A stored v3 WorkloadEndpoint -> its addresses; ValueError when it is not one."""
    doc = json.loads(value)
    if not isinstance(doc, Mapping) or doc.get("kind") != "WorkloadEndpoint":
        raise ValueError("not a WorkloadEndpoint")
    meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        raise ValueError("metadata and spec must be objects")
    ips = tuple(normalise_ip(str(n)) for n in spec.get("ipNetworks") or ())
    return WorkloadAddresses(str(meta.get("namespace") or "default"), str(meta.get("name")), ips)


def normalise_ip(text: str) -> str:
    """Calico's ParseCIDROrIP, address part: "10.0.0.1/32" and "10.0.0.1" -> "10.0.0.1"."""
    return str(ipaddress.ip_interface(text.strip()).ip)


def node_addresses(node: Node) -> list[str]:
    """A Node's tunnel addresses (IPIP, VXLAN and WireGuard, both families)."""
    found = [
        node.ipv4_vxlan_tunnel_addr,
        node.wireguard_ipv4_address,
        node.bgp.ipv4_ipip_tunnel_addr if node.bgp else None,
        node.ipv6_vxlan_tunnel_addr,
        node.wireguard_ipv6_address,
    ]
    return [normalise_ip(a) for a in found if a]


def format_attrs(
    handle_id: str | None, active: Mapping[str, str], alternate: Mapping[str, Any]
) -> str:
    """calicoctl's formatAttrs: "Main:<handle> Extra:k=v,k=v[ Alternate:k=v]"."""

    def kvs(m: Mapping[str, Any]) -> str:
        return ",".join(f"{k}={m[k]}" for k in sorted(m))

    text = f"Main:{handle_id or '<none>'} Extra:{kvs(active)}"
    return f"{text} Alternate:{kvs(alternate)}" if alternate else text


@dataclass(slots=True)
class Allocation:
    """One allocated address (calicoctl's Allocation), cross-referenced."""

    ip: str
    block: str
    ordinal: int
    handle: str
    sequence_number: int
    attrs: str
    pod: str = ""
    namespace: str = ""
    node: str = ""
    type: str = ""
    creation_timestamp: str = ""
    in_use: bool = False
    borrowed: bool = False
    owners: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ip": self.ip}
        if self.handle:
            out["handle"] = self.handle
        out["sequenceNumber"] = self.sequence_number
        for key, value in (
            ("pod", self.pod),
            ("namespace", self.namespace),
            ("node", self.node),
            ("type", self.type),
            ("creationTimestamp", self.creation_timestamp),
        ):
            if value:
                out[key] = value
        out["inUse"] = self.in_use
        if self.borrowed:
            out["borrowed"] = True
        out["owners"] = list(self.owners) if self.owners else None
        return out


@dataclass(frozen=True, slots=True)
class HandleInfo:
    """A handle as the report records it: its id and its key's revision then."""

    id: str
    revision: str

    def to_json(self) -> dict[str, Any]:
        return {"ID": self.id, "UID": None, "Revision": self.revision}


@dataclass(slots=True)
class CheckResult:
    blocks: list[tuple[str, str, list[Allocation]]] = field(default_factory=list)
    active_pools: list[str] = field(default_factory=list)
    node_ips: int = 0
    workload_ips: int = 0
    # IP -> friendly names of what uses it ("Node(n1)", "Workload(ns/name)").
    in_use: dict[str, list[str]] = field(default_factory=dict)
    # Every handle record, and those that appear in blocks.
    handles: dict[str, HandleInfo] = field(default_factory=dict)
    used_handles: set[str] = field(default_factory=set)
    allocations: dict[str, list[Allocation]] = field(default_factory=dict)
    by_node: dict[str, list[Allocation]] = field(default_factory=dict)
    leaked_ips: list[str] = field(default_factory=list)
    not_in_pools: list[str] = field(default_factory=list)
    not_allocated: list[str] = field(default_factory=list)
    leaked_handles: list[HandleInfo] = field(default_factory=list)
    missing_handles: list[str] = field(default_factory=list)
    affinities_without_blocks: list[tuple[str, str, str]] = field(default_factory=list)
    borrowed: list[Allocation] = field(default_factory=list)

    @property
    def good_handles(self) -> int:
        return len(self.handles) - len(self.leaked_handles)

    @property
    def problems(self) -> int:
        return (
            len(self.leaked_ips)
            + len(self.not_in_pools)
            + len(self.not_allocated)
            + len(self.leaked_handles)
            + len(self.affinities_without_blocks)
        )

    def top_nodes(self) -> list[tuple[str, int]]:
        """Nodes by allocations, most first (ties by name)."""
        counts = [(n, len(a)) for n, a in self.by_node.items()]
        return sorted(counts, key=lambda nc: (-nc[1], nc[0]))


def ip_order(ip: str) -> tuple[int, int]:
    """Sort key: IPv4 before IPv6, then by numeric value."""
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def _allocation(block: Block, ordinal: int, index: int) -> Allocation:
    attribute = block.attributes[index]
    active = dict(attribute.secondary or {})
    alternate = attribute.extra.get("alternateOwnerAttrs")
    owner = affinity_host(block.affinity) if (block.affinity or "").startswith("host:") else ""
    node = active.get("node") or owner
    return Allocation(
        ip=block.address(ordinal),
        block=block.cidr,
        ordinal=ordinal,
        handle=attribute.handle_id or "",
        sequence_number=block.seq_for_allocation.get(str(ordinal), 0),
        attrs=format_attrs(
            attribute.handle_id, active, alternate if isinstance(alternate, Mapping) else {}
        ),
        pod=active.get("pod", ""),
        namespace=active.get("namespace", ""),
        node=node,
        type=active.get("type", ""),
        creation_timestamp=active.get("timestamp", ""),
        borrowed=node != owner,
    )


def check(
    view: IpamView,
    pools: Sequence[IPPool],
    nodes: Iterable[Node],
    workloads: Iterable[WorkloadAddresses],
    handle_revisions: Mapping[str, int] | None = None,
) -> CheckResult:
    """Cross-reference `view` (every block, affinity and handle) with what uses addresses.
    `handle_revisions` (handle id -> mod revision) defaults to the view's."""
    r = CheckResult()
    for current in view.blocks.values():
        block = current.value
        listed: list[Allocation] = []
        for ordinal, index in enumerate(block.allocations):
            if index is None:
                continue
            alloc = _allocation(block, ordinal, index)
            listed.append(alloc)
            r.allocations.setdefault(alloc.ip, []).append(alloc)
            r.by_node.setdefault(alloc.node, []).append(alloc)
            handle = block.attributes[index].handle_id
            if handle == WINDOWS_RESERVED_HANDLE:
                _record_use(r, alloc.ip, "Reserved for Windows")
                alloc.handle = ""
            elif handle:
                r.used_handles.add(handle)
            if alloc.borrowed:
                r.borrowed.append(alloc)
        r.blocks.append((block.cidr, block.affinity or "<none>", listed))
    r.active_pools = [p.cidr for p in sorted(pools, key=lambda p: p.name) if not p.disabled]
    for node in nodes:
        for ip in node_addresses(node):
            _record_use(r, ip, f"Node({node.name})")
            r.node_ips += 1
    for wep in workloads:
        for ip in wep.ips:
            _record_use(r, ip, wep.friendly)
            r.workload_ips += 1
    revisions = handle_revisions or {h: v.revision for h, v in view.handles.items()}
    r.handles = {h: HandleInfo(h, str(revisions.get(h, 0))) for h in sorted(view.handles)}

    r.leaked_ips = sorted((ip for ip in r.allocations if ip not in r.in_use), key=ip_order)
    active = [ipaddress.ip_network(c) for c in r.active_pools]
    for ip in sorted(r.in_use, key=ip_order):
        if ip in r.allocations:
            continue
        addr = ipaddress.ip_address(ip)
        if any(addr.version == net.version and addr in net for net in active):
            r.not_allocated.append(ip)
        else:
            r.not_in_pools.append(ip)
    r.leaked_handles = [info for h, info in r.handles.items() if h not in r.used_handles]
    r.missing_handles = sorted(h for h in r.used_handles if h not in r.handles)
    for (host, cidr), aff in sorted(view.affinities.items()):
        if cidr not in view.blocks:
            r.affinities_without_blocks.append((host, cidr, aff.value.state))
    return r


def _record_use(r: CheckResult, ip: str, owner: str) -> None:
    r.in_use.setdefault(ip, []).append(owner)
    for alloc in r.allocations.get(ip, ()):
        alloc.in_use = True
        alloc.owners.append(owner)


# --- the report (-o FILE) and release --from-report --------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What the report records of ClusterInformation "default" (empty when there is none)."""

    guid: str = ""
    cluster_type: str = ""
    revision: str = ""
    datastore_locked: bool = False


def report_json(result: CheckResult, cluster: ClusterInfo, version: str) -> dict[str, Any]:
    """calicoctl's Report, field for field."""
    out: dict[str, Any] = {
        "version": version,
        "clusterGUID": cluster.guid,
        "datastoreLocked": cluster.datastore_locked,
        "clusterInformationRevision": cluster.revision,
        "clusterType": cluster.cluster_type,
        "allocations": {
            ip: [a.to_json() for a in allocs]
            for ip, allocs in sorted(result.allocations.items(), key=lambda kv: ip_order(kv[0]))
        },
    }
    if result.leaked_handles:
        out["leakedHandles"] = [h.to_json() for h in result.leaked_handles]
    return out


@dataclass(frozen=True, slots=True)
class Report:
    version: str
    cluster_guid: str
    cluster_revision: str
    leaked: tuple[ReleaseIP, ...]
    leaked_handles: tuple[HandleInfo, ...]


def read_report(data: str | bytes, source: str) -> Report:
    """A report file -> what it says; ValueError naming `source` when it is not one."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, Mapping):
            raise ValueError("expected a JSON object")
        leaked: list[ReleaseIP] = []
        for allocs in (doc.get("allocations") or {}).values():
            for a in allocs or ():
                if a.get("inUse"):
                    continue
                seq = a.get("sequenceNumber")
                leaked.append(
                    ReleaseIP(
                        str(a["ip"]), a.get("handle") or None, None if seq is None else int(seq)
                    )
                )
        handles = tuple(
            HandleInfo(str(h["ID"]), str(h.get("Revision", "")))
            for h in doc.get("leakedHandles") or ()
        )
        return Report(
            version=str(doc.get("version", "")),
            cluster_guid=str(doc.get("clusterGUID", "")),
            cluster_revision=str(doc.get("clusterInformationRevision", "")),
            leaked=tuple(leaked),
            leaked_handles=handles,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{source}: not an IPAM check report ({exc})") from None


def merge_reports(reports: Sequence[Report]) -> tuple[list[ReleaseIP], list[HandleInfo]]:
    """calicoctl's mergeReports: the addresses leaked in every report (as the last report
    saw them) and the handles leaked in every report at the same revision."""
    ips: dict[str, ReleaseIP] | None = None
    handles: dict[str, HandleInfo] | None = None
    for report in reports:
        ips = {r.ip: r for r in report.leaked if ips is None or r.ip in ips}
        if handles is None:
            handles = {h.id: h for h in report.leaked_handles}
        else:
            handles = {
                h.id: h
                for h in report.leaked_handles
                if h.id in handles and handles[h.id].revision == h.revision
            }
    return (
        sorted((ips or {}).values(), key=lambda r: ip_order(r.ip)),
        sorted((handles or {}).values(), key=lambda h: h.id),
    )
