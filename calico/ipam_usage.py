"""What `calicoctl ipam show` reports, computed from IPAM records; pure.

* `utilization`: libcalico-go's GetUtilization. Every pool (in name order) with the blocks
  that overlap it (in key order; a block counts under the first pool it overlaps), then the
  blocks no pool covers, grouped as "orphaned allocation blocks". A block's addresses in
  use are its capacity less its free list, as Calico counts them. Calico puts orphans
  under 0.0.0.0/0, so it never lists an orphaned IPv6 block; here they are listed too.
* `borrowed`: calicoctl's getBorrowedIPs: addresses whose `node` attribute is not the
  block's affinity host (or that sit in a block with no affinity).
* `address_info`: GetAssignmentAttributes for `show --ip`.
"""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from calico.ipam import Attribute, Block
from calico.ipam_view import IpamView
from calico.model import IPPool

ORPHANED = "orphaned allocation blocks"


@dataclass(frozen=True, slots=True)
class BlockUsage:
    cidr: str
    capacity: int
    in_use: int

    @property
    def free(self) -> int:
        return self.capacity - self.in_use


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """A pool and its blocks; `cidr` None for the orphaned-blocks group."""

    name: str
    cidr: str | None
    blocks: tuple[BlockUsage, ...]

    @property
    def capacity(self) -> int:
        if self.cidr is None:
            return sum(b.capacity for b in self.blocks)
        return ipaddress.ip_network(self.cidr).num_addresses

    @property
    def in_use(self) -> int:
        return sum(b.in_use for b in self.blocks)

    @property
    def free(self) -> int:
        return self.capacity - self.in_use


def _overlaps(a: str, b: str) -> bool:
    x, y = ipaddress.ip_network(a), ipaddress.ip_network(b)
    return x.version == y.version and x.overlaps(y)


def utilization(pools: Sequence[IPPool], blocks: Iterable[Block]) -> list[PoolUsage]:
    ordered = sorted(pools, key=lambda p: p.name)
    grouped: dict[str | None, list[BlockUsage]] = {p.name: [] for p in ordered}
    grouped[None] = []
    for block in blocks:
        usage = BlockUsage(block.cidr, len(block.allocations), len(block.allocations) - block.free)
        owner = next((p.name for p in ordered if _overlaps(block.cidr, p.cidr)), None)
        grouped[owner].append(usage)
    out = [PoolUsage(p.name, p.cidr, tuple(grouped[p.name])) for p in ordered]
    out.append(PoolUsage(ORPHANED, None, tuple(grouped[None])))
    return out


def affinity_host(affinity: str | None) -> str:
    """calicoctl's block owner: "host:node1" -> "node1" (the part after the one colon)."""
    if affinity is None:
        return ""
    parts = affinity.split(":")
    return parts[1] if len(parts) == 2 else parts[0]


@dataclass(frozen=True, slots=True)
class BorrowedIP:
    address: str
    borrowing_node: str
    block: str
    block_owner: str
    type: str
    allocated_to: str


def borrowed(blocks: Iterable[Block]) -> tuple[list[BorrowedIP], int]:
    """Borrowed addresses, and how many allocations have no `node` attribute (and so
    cannot be classified, as calicoctl notes)."""
    found: list[BorrowedIP] = []
    unclassified = 0
    for block in blocks:
        owner = affinity_host(block.affinity)
        for ordinal, index in enumerate(block.allocations):
            if index is None:
                continue
            attrs = dict(block.attributes[index].secondary or {})
            node = attrs.get("node")
            if node is None:
                unclassified += 1
                continue
            if node == owner:
                continue
            namespace = attrs.get("namespace", "")
            kind, to = attrs.get("type", ""), ""
            if "vmi-name" in attrs:
                kind, to = "vmi", f"{namespace}/{attrs['vmi-name']}"
            elif "pod" in attrs:
                kind, to = "pod", f"{namespace}/{attrs['pod']}"
            found.append(BorrowedIP(block.address(ordinal), node, block.cidr, owner, kind, to))
    return found, unclassified


_NO_ATTRS: Mapping[str, str] = types.MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """An assigned address: its handle and its owner attributes."""

    ip: str
    block: str
    handle_id: str | None
    active: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRS)
    alternate: Mapping[str, str] = field(default_factory=lambda: _NO_ATTRS)


def _alternate(attribute: Attribute) -> Mapping[str, str]:
    raw = attribute.extra.get("alternateOwnerAttrs")
    if not isinstance(raw, Mapping):
        return _NO_ATTRS
    return types.MappingProxyType({str(k): str(v) for k, v in raw.items()})


def block_of(view: IpamView, ip: str) -> Block | None:
    for current in view.blocks.values():
        if current.value.ordinal(ip) is not None:
            return current.value
    return None


def address_info(view: IpamView, ip: str) -> AddressInfo | None:
    """None when no block holds `ip` assigned (calicoctl: "<ip> is not assigned")."""
    block = block_of(view, ip)
    if block is None:
        return None
    ordinal = block.ordinal(ip)
    assert ordinal is not None
    index = block.allocations[ordinal]
    if index is None:
        return None
    attribute = block.attributes[index]
    return AddressInfo(
        ip=str(ipaddress.ip_address(ip)),
        block=block.cidr,
        handle_id=attribute.handle_id,
        active=types.MappingProxyType(dict(attribute.secondary or {})),
        alternate=_alternate(attribute),
    )
