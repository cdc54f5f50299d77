"""Calico's data, shared by bgpd and felix (and importing neither).

`model` turns stored v3 objects into frozen resources with Calico's defaults; `snapshot` holds
a consistent set of them; `file` reads a YAML file of them; `selector` evaluates Calico label
selectors; `keys` and `codec` are Calico's etcd layout; `ipam` is Calico's IPAM records
(blocks, affinities, handles, config) byte for byte. `store/` holds the key-value stores
(etcd, embedded SQLite) behind one interface; `source`, `watch` and `filewatch` turn a store
or a file into a stream of snapshots. Everything outside `store/`, `watch` and `filewatch` is
pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Imported on first use (PEP 562): `import calico.errors` (every command line's datastore
# options) must not load the YAML parser and the whole resource model.
_LAZY = {
    "DatastoreError": "calico.errors",
    "ResourceError": "calico.errors",
    "load_file": "calico.file",
    "load_text": "calico.file",
    "BGPConfiguration": "calico.model",
    "BGPFilter": "calico.model",
    "BGPPeer": "calico.model",
    "BlockAffinity": "calico.model",
    "IPAMBlock": "calico.model",
    "IPPool": "calico.model",
    "Node": "calico.model",
    "Resource": "calico.model",
    "parse_resource": "calico.model",
    "Snapshot": "calico.snapshot",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'calico' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
