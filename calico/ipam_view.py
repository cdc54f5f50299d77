"""The IPAM records of a store at one revision, as one value: `IpamView` (pools, the IPAM
config, every block and affinity, the handles asked for, each with its key's revision),
and `build_view`, which reads it from listed keys. Pure: the store lists the keys, this reads
them. A record that cannot be read costs that record only (DESIGN principle 7): it is
reported through `skipped` and left out.

Shared by felix's allocator and bgpctl's `ipam` commands, which plan their writes against a
view and guard each write with the revision it was read at (calico/ipam_release.py,
calico/ipam_txn.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from calico import keys
from calico.errors import ResourceError
from calico.ipam import (
    CONFIG_KEY,
    Affinity,
    Block,
    Handle,
    IpamConfig,
    RecordError,
    parse_affinity_key,
    parse_block_key,
    parse_handle_key,
)
from calico.model import IPPool, Node, parse_resource

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    """A record and the mod revision of its key when it was read."""

    value: T
    revision: int


@dataclass(frozen=True, slots=True)
class IpamView:
    """The store as the planner sees it, at one revision. Blocks and affinities are keyed by
    block CIDR (and host); `handles` need only hold the handles the operation touches."""

    pools: tuple[IPPool, ...] = ()
    node_labels: Mapping[str, str] = field(default_factory=dict)
    config: IpamConfig = field(default_factory=IpamConfig)
    blocks: Mapping[str, Versioned[Block]] = field(default_factory=dict)
    affinities: Mapping[tuple[str, str], Versioned[Affinity]] = field(default_factory=dict)
    handles: Mapping[str, Versioned[Handle]] = field(default_factory=dict)


POOLS_PREFIX = keys.kind_prefix("IPPool")
NODES_PREFIX = keys.kind_prefix("Node")

StoredItem = tuple[str, bytes, int]  # key, value, mod revision


def build_view(
    items: Iterable[StoredItem],
    *,
    host: str | None = None,
    handles: Collection[str] | None = None,
    skipped: Callable[[str, str], None] | None = None,
    block_cache: MutableMapping[str, Versioned[Block]] | None = None,
) -> IpamView:
    """The view of `items`: pools, `host`'s Node labels, the IPAM config, blocks,
    affinities, and the handles named in `handles` (all of them when None).

    `block_cache` (block key -> block at a revision) spares re-reading blocks that did not
    change since the last view; it is left holding exactly this view's blocks."""
    seen_blocks: dict[str, Versioned[Block]] = {}
    pools: list[IPPool] = []
    labels: dict[str, str] = {}
    config = IpamConfig()
    blocks: dict[str, Versioned[Block]] = {}
    affinities: dict[tuple[str, str], Versioned[Affinity]] = {}
    found: dict[str, Versioned[Handle]] = {}
    for key, value, rev in items:
        try:
            if key == CONFIG_KEY:
                config = IpamConfig.from_json(value)
            elif (cidr := parse_block_key(key)) is not None:
                hit = block_cache.get(key) if block_cache is not None else None
                block = hit if hit is not None and hit.revision == rev else None
                if block is None:
                    block = Versioned(Block.from_json(value), rev)
                seen_blocks[key] = blocks[cidr] = block
            elif (aff := parse_affinity_key(key)) is not None:
                affinities[aff] = Versioned(Affinity.from_json(value), rev)
            elif (handle := parse_handle_key(key)) is not None:
                if handles is None or handle in handles:
                    found[handle] = Versioned(Handle.from_json(value), rev)
            elif key.startswith(POOLS_PREFIX):
                pool = parse_resource(json.loads(value))
                if isinstance(pool, IPPool):
                    pools.append(pool)
            elif host is not None and key == NODES_PREFIX + host:
                node = parse_resource(json.loads(value))
                if isinstance(node, Node):
                    labels = dict(node.labels)
        except (RecordError, ResourceError, ValueError) as exc:
            if skipped is not None:
                skipped(key, str(exc))
    if block_cache is not None:
        block_cache.clear()
        block_cache.update(seen_blocks)
    return IpamView(
        pools=tuple(pools),
        node_labels=labels,
        config=config,
        blocks=blocks,
        affinities=affinities,
        handles=found,
    )
