"""Datastore keys and values into a PolicyIndex. Pure: the felix daemon feeds it its list
and watch events, `felix policy` commands a one-off listing.

A value that fails validation is logged by the caller (the error names key and field) and
treated as deleted: the policy it would be is not enforced, and that is said loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico import keys
from calico.codec import decode
from calico.errors import ResourceError
from calico.model import FelixConfiguration, IPPool
from calico.policy import (
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Tier,
)
from felix.policy.endpoints import from_network_set, from_workload, wep_key
from felix.policy.index import PolicyIndex
from felix.policy.rules import PolicyId
from felix.workload import WorkloadEndpoint

POLICY_KINDS = frozenset(
    {
        "NetworkPolicy",
        "GlobalNetworkPolicy",
        "Profile",
        "Tier",
        "NetworkSet",
        "GlobalNetworkSet",
        "IPPool",
        "FelixConfiguration",
    }
)
WATCHED_KINDS = POLICY_KINDS | {"WorkloadEndpoint"}


@dataclass(slots=True)
class Outcome:
    """What one key did: whether the policy model changed, the endpoint whose routes may
    need reprogramming, the error that made felix skip the value, a warning."""

    policy_changed: bool = False
    endpoint: WorkloadEndpoint | None = None
    endpoint_removed: bool = False
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


class Feed:
    def __init__(self, index: PolicyIndex) -> None:
        self.index = index
        self.weps: dict[str, WorkloadEndpoint] = {}  # by datastore key

    def put(self, key: str, value: bytes) -> Outcome:
        rk = keys.parse_resource_key(key)
        if rk is None or rk.kind not in WATCHED_KINDS:
            return Outcome()
        index = self.index
        if rk.kind == "WorkloadEndpoint":
            try:
                wep = WorkloadEndpoint.from_json(value)
            except ValueError as exc:
                out = self.delete(key)
                out.error = f"{key}: {exc}"
                return out
            self.weps[key] = wep
            return Outcome(index.set_endpoint(from_workload(wep)), wep)
        try:
            resource = decode(key, value)
        except ResourceError as exc:
            out = self.delete(key)
            out.error = str(exc)
            return out
        out = Outcome()
        if isinstance(resource, NetworkPolicy | GlobalNetworkPolicy):
            out.policy_changed = index.set_policy(resource)
        elif isinstance(resource, Profile):
            out.policy_changed = index.set_profile(resource)
        elif isinstance(resource, Tier):
            out.policy_changed = index.set_tier(resource)
        elif isinstance(resource, NetworkSet | GlobalNetworkSet):
            out.policy_changed = index.set_network_set(resource)
        elif isinstance(resource, IPPool):
            out.policy_changed = index.set_pool(resource)
        elif isinstance(resource, FelixConfiguration):
            if resource.unsupported:
                out.warnings.append(
                    f"FelixConfiguration {resource.name!r}: "
                    f"{', '.join(resource.unsupported)} NOT applied by this felix"
                )
            out.policy_changed = index.set_felix_configuration(resource)
        return out

    def delete(self, key: str) -> Outcome:
        rk = keys.parse_resource_key(key)
        if rk is None:
            return Outcome()
        index = self.index
        out = Outcome()
        if rk.kind == "WorkloadEndpoint":
            out.endpoint_removed = self.weps.pop(key, None) is not None
            out.policy_changed = index.remove_endpoint(wep_key(rk.namespace or "default", rk.name))
        elif rk.kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
            out.policy_changed = index.remove_policy(PolicyId(rk.kind, rk.name, rk.namespace))
        elif rk.kind == "Profile":
            out.policy_changed = index.remove_profile(rk.name)
        elif rk.kind == "Tier":
            out.policy_changed = index.remove_tier(rk.name)
        elif rk.kind == "NetworkSet":
            gone = from_network_set(NetworkSet(rk.name, rk.namespace or "default"))
            out.policy_changed = index.remove_endpoint(gone.key)
        elif rk.kind == "GlobalNetworkSet":
            gone = from_network_set(GlobalNetworkSet(rk.name))
            out.policy_changed = index.remove_endpoint(gone.key)
        elif rk.kind == "IPPool":
            out.policy_changed = index.remove_pool(rk.name)
        elif rk.kind == "FelixConfiguration":
            out.policy_changed = index.remove_felix_configuration(rk.name)
        return out


def index_from_items(node: str, items: list[tuple[str, bytes]]) -> tuple[PolicyIndex, list[str]]:
    """An index of one listing; and the errors of the values it skipped."""
    index = PolicyIndex(node)
    feed = Feed(index)
    errors = [e for key, value in items if (e := feed.put(key, value).error) is not None]
    return index, errors
