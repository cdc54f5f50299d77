"""Which workloads on a node peer with it over BGP (BGPPeer.localWorkloadSelector), as
felix's ActiveBGPPeerCalculator decides it. Pure; read by both daemons: bgpd makes the
sessions (`Local_Workload_<ip>`, passive), felix puts the node's local workload peering
addresses (BGPConfiguration localWorkloadPeeringIPV4/IPV6) on the selected workloads'
host-side interfaces so that they can reach it.

* A BGPPeer applies on this node when its `node` is this node or, without `node`, its
  nodeSelector matches this node's labels (no nodeSelector either: every node).
* Its localWorkloadSelector is matched against each local WorkloadEndpoint's labels
  (Calico also inherits labels from the endpoint's profiles; pybgpd models no Profiles, so
  only the endpoint's own labels count: the CNI plugin writes the namespace and
  orchestrator labels there).
* An endpoint several BGPPeers select peers under the first of them by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from calico import selector
from calico.model import BGPPeer, WorkloadEndpoint
from calico.snapshot import Snapshot

__all__ = ["LocalPeer", "local_peers", "selects_node"]


@dataclass(frozen=True, slots=True)
class LocalPeer:
    """A workload endpoint of this node and the BGPPeer it peers under."""

    endpoint: WorkloadEndpoint
    bgp_peer: BGPPeer


def selects_node(peer: BGPPeer, node: str, labels: Mapping[str, str]) -> bool:
    """Whether `peer` applies on `node` (with Node labels `labels`); an empty nodeSelector
    selects every node."""
    if peer.node is not None:
        return peer.node == node
    return selector.parse(peer.node_selector or "").matches(labels)


def local_peers(snapshot: Snapshot, node: str) -> tuple[LocalPeer, ...]:
    """The node's workload endpoints that a localWorkloadSelector BGPPeer selects, each with
    that peer, in endpoint order (namespace, then name)."""
    me = snapshot.nodes.get(node)
    labels: Mapping[str, str] = me.labels if me is not None else {}
    peers = [
        snapshot.bgp_peers[name]
        for name in sorted(snapshot.bgp_peers)
        if snapshot.bgp_peers[name].local_workload_selector
    ]
    active = [
        (p, selector.parse(p.local_workload_selector or ""))
        for p in peers
        if selects_node(p, node, labels)
    ]
    if not active:
        return ()
    out: list[LocalPeer] = []
    for endpoint in snapshot.workloads_of(node):
        for peer, sel in active:
            if sel.matches(endpoint.labels):
                out.append(LocalPeer(endpoint, peer))
                break
    return tuple(out)
