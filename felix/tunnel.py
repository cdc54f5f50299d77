"""The node's tunnel addresses (Calico's tunnel-ip-allocator), pure parts. Per tunnel kind:
when some enabled IPv4 pool of that encapsulation (ipipMode, or vxlanMode, Always or
CrossSubnet) selects this node and allows the Tunnel use, the node holds one address from
such a pool under the handle `<kind>-tunnel-addr-<node>`, recorded in its Node
(spec.bgp.ipv4IPIPTunnelAddr, spec.ipv4VXLANTunnelAddr); otherwise it holds none.

Also the VTEP MAC of a node's VXLAN device: the Node's vxlanTunnelMACAddr, or the one
Calico's Felix derives from the node name when that is unset, so every node computes the
same MAC for every other without it being stored.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico.model import ENCAP_NEVER, IPPool, Node
from common.netlink.link import parse_mac
from felix.ipam.allocator import USE_TUNNEL, select_pools


@dataclass(frozen=True, slots=True)
class TunnelKind:
    name: str  # in the handle: "ipip-tunnel-addr-<node>"
    attr_type: str  # the IPAM attribute "type"
    node_path: tuple[str, ...]  # where the Node records the address

    def handle(self, node: str) -> str:
        return f"{self.name}-tunnel-addr-{node}"

    def attrs(self, node: str) -> dict[str, str]:
        return {"node": node, "type": self.attr_type}

    def pools(self, pools: Sequence[IPPool], node_labels: Mapping[str, str]) -> list[IPPool]:
        """The pools this node's tunnel address of this kind may come from."""
        return [
            p
            for p in select_pools(pools, node_labels, 4, USE_TUNNEL)
            if (p.ipip_mode if self is IPIP else p.vxlan_mode) != ENCAP_NEVER
        ]

    def address_of(self, node: Node) -> str | None:
        if self is IPIP:
            return node.bgp.ipv4_ipip_tunnel_addr if node.bgp else None
        return node.ipv4_vxlan_tunnel_addr


IPIP = TunnelKind("ipip", "ipipTunnelAddress", ("spec", "bgp", "ipv4IPIPTunnelAddr"))
VXLAN = TunnelKind("vxlan", "vxlanTunnelAddress", ("spec", "ipv4VXLANTunnelAddr"))
KINDS = (IPIP, VXLAN)


def tunnel_handle(node: str) -> str:
    return IPIP.handle(node)


def tunnel_attrs(node: str) -> dict[str, str]:
    return IPIP.attrs(node)


def ipip_pools(pools: Sequence[IPPool], node_labels: Mapping[str, str]) -> list[IPPool]:
    return IPIP.pools(pools, node_labels)


def keeps(address: str, pools: Sequence[IPPool]) -> bool:
    """Whether a held tunnel address is still good: inside one of the pools."""
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(p.cidr) for p in pools)


def with_tunnel_address(
    node_json: bytes, address: str | None, kind: TunnelKind = IPIP
) -> bytes | None:
    """The Node value with the tunnel address of `kind` set to `address` (removed when
    None); None when nothing changes."""
    doc: dict[str, Any] = json.loads(node_json)
    *parents, leaf = kind.node_path
    holder: dict[str, Any] = doc
    for part in parents:
        child = holder.get(part)
        if not isinstance(child, dict):
            child = {}
        holder[part] = child
        holder = child
    if holder.get(leaf) == address or (address is None and leaf not in holder):
        return None
    if address is None:
        holder.pop(leaf, None)
    else:
        holder[leaf] = address
    return json.dumps(doc, separators=(",", ":")).encode()


def vtep_mac(node: Node) -> bytes:
    """The MAC of `node`'s vxlan.calico: its vxlanTunnelMACAddr, else "f" (0x66, a locally
    administered unicast octet) and the first five octets of sha1(node name), as Felix's
    VXLAN resolver computes it."""
    if node.vxlan_tunnel_mac_addr:
        return parse_mac(node.vxlan_tunnel_mac_addr)
    return b"f" + hashlib.sha1(node.name.encode()).digest()[:5]
