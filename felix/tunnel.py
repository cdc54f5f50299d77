"""The node's IPIP tunnel address (Calico's tunnel-ip-allocator), pure parts: when some
enabled IPv4 pool with ipipMode Always or CrossSubnet selects this node and allows the
Tunnel use, the node holds one address from such a pool under the handle
`ipip-tunnel-addr-<node>`, recorded in Node.spec.bgp.ipv4IPIPTunnelAddr; otherwise it holds
none."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from calico.model import ENCAP_NEVER, IPPool
from felix.ipam.allocator import USE_TUNNEL, select_pools


def tunnel_handle(node: str) -> str:
    return f"ipip-tunnel-addr-{node}"


def tunnel_attrs(node: str) -> dict[str, str]:
    return {"node": node, "type": "ipipTunnelAddress"}


def ipip_pools(pools: Sequence[IPPool], node_labels: Mapping[str, str]) -> list[IPPool]:
    return [
        p for p in select_pools(pools, node_labels, 4, USE_TUNNEL) if p.ipip_mode != ENCAP_NEVER
    ]


def keeps(address: str, pools: Sequence[IPPool]) -> bool:
    """Whether a held tunnel address is still good: inside one of the IPIP pools."""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(p.cidr) for p in pools)


def with_tunnel_address(node_json: bytes, address: str | None) -> bytes | None:
    """The Node value with spec.bgp.ipv4IPIPTunnelAddr set to `address` (removed when
    None); None when nothing changes."""
    doc: dict[str, Any] = json.loads(node_json)
    spec = doc.setdefault("spec", {})
    bgp = spec.get("bgp") or {}
    if bgp.get("ipv4IPIPTunnelAddr") == address or (
        address is None and "ipv4IPIPTunnelAddr" not in bgp
    ):
        return None
    if address is None:
        bgp.pop("ipv4IPIPTunnelAddr", None)
    else:
        bgp["ipv4IPIPTunnelAddr"] = address
    spec["bgp"] = bgp
    return json.dumps(doc, separators=(",", ":")).encode()
