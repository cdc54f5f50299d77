"""An immutable view of the datastore at one moment: resources by kind and name.

The planner reads a Snapshot and nothing else; datastores build one (from a file, or from
watch events applied one by one with `with_resource` / `without`), so a plan is a pure
function of a value that can be kept, compared and replayed in tests.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from calico.model import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FelixConfiguration,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
    resource_id,
)

__all__ = ["Snapshot"]

_R = TypeVar("_R", bound=Resource)

_NO_RESOURCES: Mapping[str, Mapping[str, Resource]] = types.MappingProxyType({})


def _no_resources() -> Mapping[str, Mapping[str, Resource]]:
    return _NO_RESOURCES


def _freeze(by_kind: Mapping[str, Mapping[str, Resource]]) -> Mapping[str, Mapping[str, Resource]]:
    return types.MappingProxyType(
        {k: types.MappingProxyType(dict(v)) for k, v in by_kind.items() if v}
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources keyed by kind, then metadata.name ("namespace/name" for namespaced kinds:
    `calico.model.resource_id`). Build with `of()`; never mutated."""

    by_kind: Mapping[str, Mapping[str, Resource]] = field(default_factory=_no_resources, hash=False)
    # Where the data came from and its version (a file path, an etcd revision): for logs.
    source: str = ""
    revision: int = 0

    @classmethod
    def of(cls, resources: Iterable[Resource], *, source: str = "", revision: int = 0) -> Snapshot:
        """A snapshot of these resources; a later resource replaces an earlier one of the
        same kind and name (the file reader rejects such duplicates before this)."""
        by_kind: dict[str, dict[str, Resource]] = {}
        for r in resources:
            by_kind.setdefault(r.kind, {})[resource_id(r)] = r
        return cls(_freeze(by_kind), source, revision)

    # --- reading -----------------------------------------------------------------------

    def _table(self, cls: type[_R]) -> Mapping[str, _R]:
        table = self.by_kind.get(cls.kind, {})
        return table  # type: ignore[return-value]  # keyed by cls.kind, so all are cls

    @property
    def bgp_configurations(self) -> Mapping[str, BGPConfiguration]:
        return self._table(BGPConfiguration)

    @property
    def felix_configurations(self) -> Mapping[str, FelixConfiguration]:
        return self._table(FelixConfiguration)

    @property
    def nodes(self) -> Mapping[str, Node]:
        return self._table(Node)

    @property
    def bgp_peers(self) -> Mapping[str, BGPPeer]:
        return self._table(BGPPeer)

    @property
    def bgp_filters(self) -> Mapping[str, BGPFilter]:
        return self._table(BGPFilter)

    @property
    def ip_pools(self) -> Mapping[str, IPPool]:
        return self._table(IPPool)

    @property
    def block_affinities(self) -> Mapping[str, BlockAffinity]:
        return self._table(BlockAffinity)

    @property
    def ipam_blocks(self) -> Mapping[str, IPAMBlock]:
        return self._table(IPAMBlock)

    @property
    def workload_endpoints(self) -> Mapping[str, WorkloadEndpoint]:
        """By "<namespace>/<name>" (WorkloadEndpoint.qualified_name)."""
        return self._table(WorkloadEndpoint)

    def workloads_of(self, node: str) -> tuple[WorkloadEndpoint, ...]:
        """The node's WorkloadEndpoints, by namespace and name."""
        table = self.workload_endpoints
        return tuple(table[k] for k in sorted(table) if table[k].node == node)

    def get(self, kind: str, name: str) -> Resource | None:
        return self.by_kind.get(kind, {}).get(name)

    def __iter__(self) -> Iterator[Resource]:
        """All resources, by kind then name (a stable order)."""
        for kind in sorted(self.by_kind):
            table = self.by_kind[kind]
            for name in sorted(table):
                yield table[name]

    def __len__(self) -> int:
        return sum(len(t) for t in self.by_kind.values())

    @property
    def default_config(self) -> BGPConfiguration:
        """BGPConfiguration `default`, or Calico's defaults when there is none."""
        return self.bgp_configurations.get("default") or BGPConfiguration("default")

    def node_config(self, node: str) -> BGPConfiguration | None:
        """The per-node BGPConfiguration `node.<node>`, if any."""
        return self.bgp_configurations.get(f"node.{node}")

    def affinities_of(self, node: str) -> tuple[BlockAffinity, ...]:
        """The node's host block affinities (deleted ones left out), sorted by CIDR."""
        found = [
            a
            for a in self.block_affinities.values()
            if a.node == node and a.type == "host" and not a.deleted
        ]
        return tuple(sorted(found, key=lambda a: (a.version, a.cidr)))

    # --- deriving ----------------------------------------------------------------------

    def with_resource(self, resource: Resource) -> Snapshot:
        """A snapshot with `resource` added or replacing the one of its kind and name."""
        return self.with_resources((resource,))

    def with_resources(self, resources: Iterable[Resource]) -> Snapshot:
        by_kind = {k: dict(v) for k, v in self.by_kind.items()}
        for r in resources:
            by_kind.setdefault(r.kind, {})[resource_id(r)] = r
        return Snapshot(_freeze(by_kind), self.source, self.revision)

    def without(self, kind: str, name: str) -> Snapshot:
        """A snapshot without that resource (the same snapshot if it was not there); a
        namespaced one is named "<namespace>/<name>"."""
        if name not in self.by_kind.get(kind, {}):
            return self
        by_kind = {k: dict(v) for k, v in self.by_kind.items()}
        del by_kind[kind][name]
        return Snapshot(_freeze(by_kind), self.source, self.revision)

    def at(self, revision: int) -> Snapshot:
        """The same resources labelled with another revision."""
        return Snapshot(self.by_kind, self.source, revision)
