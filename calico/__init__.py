"""Calico's data, shared by bgpd and felix (and importing neither).

`model` turns stored v3 objects into frozen resources with Calico's defaults; `snapshot` holds
a consistent set of them; `file` reads a YAML file of them; `selector` evaluates Calico label
selectors; `keys` and `codec` are Calico's etcd layout; `ipam` is Calico's IPAM records
(blocks, affinities, handles, config) byte for byte. `store/` holds the key-value stores
(etcd, embedded SQLite) behind one interface; `source`, `watch` and `filewatch` turn a store
or a file into a stream of snapshots. Everything outside `store/`, `watch` and `filewatch` is
pure.
"""

from calico.errors import DatastoreError, ResourceError
from calico.file import load_file, load_text
from calico.model import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    parse_resource,
)
from calico.snapshot import Snapshot

__all__ = [
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "BlockAffinity",
    "DatastoreError",
    "IPAMBlock",
    "IPPool",
    "Node",
    "Resource",
    "ResourceError",
    "Snapshot",
    "load_file",
    "load_text",
    "parse_resource",
]
