"""Everything `ipam show` / `check` / `release` read, in one listing of the store (one
revision): the IPAM records (calico/ipam_view.py), the pools, the Nodes and
WorkloadEndpoints that use addresses, and ClusterInformation's report metadata.

`strict`: a record that cannot be read is an error (StateError naming its key), since
`check` and `release` would otherwise take an unreadable WorkloadEndpoint's address for a
leak; `show` passes strict=False and gets the unreadable keys in `skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calico import keys
from calico.errors import DatastoreError, ResourceError
from calico.ipam import ASSIGNMENT_PREFIX, CONFIG_KEY, HANDLE_PREFIX, HOST_PREFIX
from calico.ipam_check import ClusterInfo, WorkloadAddresses, read_workload
from calico.ipam_view import NODES_PREFIX, POOLS_PREFIX, IpamView, build_view
from calico.model import IPPool, Node, parse_resource
from calico.store.kv import KVStore

WORKLOADS_PREFIX = keys.kind_prefix("WorkloadEndpoint")
CLUSTER_INFO_KEY = keys.resource_key("ClusterInformation", "default")
KUBE_CONTROLLERS_KEY = keys.resource_key("KubeControllersConfiguration", "default")

IPAM_PREFIXES = (ASSIGNMENT_PREFIX, HOST_PREFIX, CONFIG_KEY, HANDLE_PREFIX)


class StateError(DatastoreError):
    """A record `check` / `release` cannot do without could not be read."""


@dataclass(frozen=True, slots=True)
class IpamState:
    view: IpamView
    pools: tuple[IPPool, ...]
    nodes: tuple[Node, ...]
    workloads: tuple[WorkloadAddresses, ...]
    cluster: ClusterInfo
    # Whether KubeControllersConfiguration "default" configures the LoadBalancer controller.
    load_balancer_controller: bool
    revision: int
    skipped: tuple[tuple[str, str], ...] = field(default=())


def _cluster_info(value: bytes, revision: int) -> ClusterInfo:
    doc = json.loads(value)
    spec: Mapping[str, Any] = doc.get("spec") or {} if isinstance(doc, Mapping) else {}
    ready = spec.get("datastoreReady")
    return ClusterInfo(
        guid=str(spec.get("clusterGUID") or ""),
        cluster_type=str(spec.get("clusterType") or ""),
        revision=str(revision),
        datastore_locked=ready is False,
    )


def _load_balancer(value: bytes) -> bool:
    doc = json.loads(value)
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    controllers = spec.get("controllers") if isinstance(spec, Mapping) else None
    return isinstance(controllers, Mapping) and controllers.get("loadBalancer") is not None


async def read_view(kv: KVStore) -> IpamView:
    """Blocks, affinities, handles and config only: what a release plans against."""
    listing = await kv.list(*IPAM_PREFIXES)
    return build_view((i.key, i.value, i.mod_revision) for i in listing.items)


async def load(kv: KVStore, *, strict: bool = True) -> IpamState:
    listing = await kv.list(
        *IPAM_PREFIXES,
        POOLS_PREFIX,
        NODES_PREFIX,
        WORKLOADS_PREFIX,
        CLUSTER_INFO_KEY,
        KUBE_CONTROLLERS_KEY,
    )
    skipped: list[tuple[str, str]] = []

    def skip(key: str, error: str) -> None:
        if strict:
            raise StateError(f"cannot read {key}: {error}")
        skipped.append((key, error))

    items = [(i.key, i.value, i.mod_revision) for i in listing.items]
    view = build_view(items, skipped=skip)
    nodes: list[Node] = []
    workloads: list[WorkloadAddresses] = []
    cluster = ClusterInfo()
    load_balancer = False
    for key, value, revision in items:
        try:
            if key.startswith(NODES_PREFIX):
                node = parse_resource(json.loads(value))
                if isinstance(node, Node):
                    nodes.append(node)
            elif key.startswith(WORKLOADS_PREFIX):
                workloads.append(read_workload(value))
            elif key == CLUSTER_INFO_KEY:
                cluster = _cluster_info(value, revision)
            elif key == KUBE_CONTROLLERS_KEY:
                load_balancer = _load_balancer(value)
        except (ResourceError, ValueError, TypeError, AttributeError) as exc:
            skip(key, str(exc))
    return IpamState(
        view=view,
        pools=view.pools,
        nodes=tuple(nodes),
        workloads=tuple(workloads),
        cluster=cluster,
        load_balancer_controller=load_balancer,
        revision=listing.revision,
        skipped=tuple(skipped),
    )
