"""A Calico cluster's resources for multi-node labs: nodes with labels, route-reflector
cluster IDs and one block each, BGPPeers, one pool; and helpers to watch every node's FIB."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .bgpd_node import Bgpd

ASN = 64512
POOL = "192.168.0.0/16"
RR_LABEL = "route-reflector"
# Calico's documented route-reflector peerings (calico docs: "Configure BGP peering").
PEER_WITH_RR = {"nodeSelector": f"!has({RR_LABEL})", "peerSelector": f"has({RR_LABEL})"}
RR_MESH = {"nodeSelector": f"has({RR_LABEL})", "peerSelector": f"has({RR_LABEL})"}


@dataclass(frozen=True, slots=True)
class NodeDef:
    ip: str
    block: str | None = None
    cluster_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def reflector(ip: str, cluster_id: str = "224.0.0.1", block: str | None = None) -> NodeDef:
    return NodeDef(ip, block, cluster_id, {RR_LABEL: "true"})


def cluster_docs(
    nodes: Mapping[str, NodeDef],
    *,
    mesh: bool,
    peers: Mapping[str, Mapping[str, Any]] | None = None,
    prefix_len: int = 24,
) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": mesh},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pool"},
            "spec": {"cidr": POOL},
        },
    ]
    for name, n in nodes.items():
        bgp: dict[str, Any] = {"ipv4Address": f"{n.ip}/{prefix_len}"}
        if n.cluster_id:
            bgp["routeReflectorClusterID"] = n.cluster_id
        meta: dict[str, Any] = {"name": name}
        if n.labels:
            meta["labels"] = dict(n.labels)
        docs.append(
            {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": meta,
             "spec": {"bgp": bgp}}
        )
        if n.block:
            docs.append(
                {"apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
                 "metadata": {"name": f"{name}-block"},
                 "spec": {"node": name, "cidr": n.block, "state": "confirmed"}}
            )
    for name, spec in (peers or {}).items():
        docs.append(
            {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
             "metadata": {"name": name}, "spec": dict(spec)}
        )
    return docs


def rewrite(bgpds: Iterable[Bgpd], docs: list[dict[str, Any]]) -> None:
    """Replace every node's resource file (write, then rename, as config managers do)."""
    text = yaml.safe_dump_all(docs, sort_keys=False)
    for b in bgpds:
        tmp = b.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, b.config)


def paths(bgpd: Bgpd, prefix: str) -> list[dict[str, Any]]:
    return [r for r in bgpd.routes() if r["prefix"] == prefix]


def missing_blocks(bgpds: Mapping[str, Bgpd], blocks: Mapping[str, str]) -> dict[str, set[str]]:
    """Per node, the other nodes' blocks not in its FIB."""
    out: dict[str, set[str]] = {}
    for name, b in bgpds.items():
        want = {blk for owner, blk in blocks.items() if owner != name}
        lost = want - b.kernel_prefixes(4)
        if lost:
            out[name] = lost
    return out
