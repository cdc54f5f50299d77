"""The datastore room: Calico's resources as typed values, and where they are read from.

`model` turns stored v3 objects into frozen resources with Calico's defaults; `snapshot`
holds a consistent set of them; `file` reads a YAML file of them; `selector` evaluates
Calico label selectors. Everything here except the file read itself is pure.
"""

from bgpd.datastore.errors import DatastoreError, ResourceError
from bgpd.datastore.file import load_file, load_text
from bgpd.datastore.model import (
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    parse_resource,
)
from bgpd.datastore.snapshot import Snapshot

__all__ = [
    "BGPConfiguration",
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
