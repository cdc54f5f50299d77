"""A node's BGP status as stored in the datastore, in the shape of Calico's CalicoNodeStatus
(`status.agent.birdV4`, `status.bgp.peersV4`, ...), at
`/calico/resources/v3/projectcalico.org/caliconodestatuses/<node>` under a lease, so a dead
node's entry expires. Each peer also carries what calicoctl's table shows (`info`) and our
route counts (`routesReceived`, `routesAdvertised`); Calico's readers ignore the extra
fields. Pure: DaemonStatus in, JSON out, and back.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bgpd.status.records import DaemonStatus, PeerStatus
from calico import keys
from calico.model import API_VERSION

__all__ = ["NodeStatus", "node_status_key", "parse", "to_document"]

KIND = "CalicoNodeStatus"
# Calico's BGPPeerType names for our peer types.
_PEER_TYPES = {
    "node-to-node mesh": "NodeMesh",
    "global": "GlobalPeer",
    "node specific": "NodePeer",
}
_OUR_TYPES = {v: k for k, v in _PEER_TYPES.items()}


def node_status_key(node: str) -> str:
    return keys.resource_key(KIND, node)


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    ).timestamp()


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's report as read back: its DaemonStatus and when it was written."""

    node: str
    last_updated: float | None
    status: DaemonStatus


def to_document(status: DaemonStatus, *, now: float, period: int) -> dict[str, Any]:
    by_family: dict[str, list[dict[str, Any]]] = {"ipv4": [], "ipv6": []}
    for p in status.peers:
        if p.type not in _PEER_TYPES:
            continue  # Local_Workload_ sessions: not in Calico's status either
        by_family[p.family].append(
            {
                "peerIP": p.address,
                "type": _PEER_TYPES[p.type],
                "state": p.bgp_state,
                "since": _rfc3339(p.since) or "",
                "name": p.name,
                "port": p.port,
                "asNumber": p.peer_as,
                "localASNumber": p.local_as,
                "info": p.info,
                "passive": p.passive,
                "routesReceived": p.routes_received,
                "routesAdvertised": p.routes_advertised,
            }
        )
    bgp: dict[str, Any] = {}
    for fam, suffix in (("ipv4", "V4"), ("ipv6", "V6")):
        peers = by_family[fam]
        up = sum(1 for p in peers if p["state"] == "Established")
        bgp[f"numberEstablished{suffix}"] = up
        bgp[f"numberNotEstablished{suffix}"] = len(peers) - up
        bgp[f"peers{suffix}"] = peers
    agent = {
        "state": "Ready",
        "version": status.version,
        "routerID": status.router_id,
        "asNumber": status.asn,
        "lastBootTime": _rfc3339(status.started),
    }
    return {
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metadata": {"name": status.node},
        "spec": {"node": status.node, "classes": ["Agent", "BGP"], "updatePeriodSeconds": period},
        "status": {
            "lastUpdated": _rfc3339(now),
            "agent": {"birdV4": agent, "birdV6": agent},
            "bgp": bgp,
        },
    }


def parse(doc: Mapping[str, Any]) -> NodeStatus:
    """A stored document back into records; raises KeyError/ValueError/TypeError if it
    is not one of ours."""
    st = doc["status"]
    agent = st["agent"]["birdV4"]
    node = str(doc["spec"]["node"])
    peers: list[PeerStatus] = []
    for suffix, family in (("V4", "ipv4"), ("V6", "ipv6")):
        for p in st["bgp"].get(f"peers{suffix}") or []:
            peers.append(
                PeerStatus(
                    name=str(p.get("name") or p["peerIP"]),
                    address=str(p["peerIP"]),
                    port=int(p.get("port") or 179),
                    type=_OUR_TYPES.get(str(p["type"]), "global"),
                    peer_as=int(p.get("asNumber") or 0),
                    local_as=int(p.get("localASNumber") or agent.get("asNumber") or 0),
                    bgp_state=str(p["state"]),
                    since=_epoch(p.get("since")),
                    info=str(p.get("info") or ""),
                    routes_received=int(p.get("routesReceived") or 0),
                    routes_advertised=int(p.get("routesAdvertised") or 0),
                    family=family,
                    passive=bool(p.get("passive", False)),
                )
            )
    status = DaemonStatus(
        router_id=str(agent.get("routerID") or ""),
        asn=int(agent.get("asNumber") or 0),
        node=node,
        version=str(agent.get("version") or ""),
        started=_epoch(agent.get("lastBootTime")) or 0.0,
        peers=peers,
    )
    return NodeStatus(node, _epoch(st.get("lastUpdated")), status)
