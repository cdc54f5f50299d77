"""The policy model of one node, kept current one resource at a time. Pure.

It holds every policy, profile, tier, workload endpoint (of every node: rules select peers
anywhere) and network set, and keeps, incrementally, what the dataplane needs:

- the members of every selector some rule or policy uses (Felix's IP sets): a label change
  re-evaluates the changed endpoint against each selector, a new policy evaluates its new
  selectors against each endpoint, never everything against everything;
- the members of every named-port set (selector, port name, protocol);
- for each endpoint of this node and direction, the tiers with the policies that select it
  in Calico's order (tiers by order then name, policies by order then name), and its
  profiles.

Lookups that the compiler and `explain` make are cached and the caches dropped by the
updates that can change them.
"""

from __future__ import annotations

import ipaddress
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from calico import selector as sel
from calico.model import FelixConfiguration, IPPool
from calico.policy import (
    DENY,
    EGRESS,
    INGRESS,
    WELL_KNOWN_TIER_ORDERS,
    GlobalNetworkSet,
    NetworkSet,
    Policy,
    Profile,
    Tier,
)
from felix.policy.endpoints import Endpoint, from_network_set
from felix.policy.rules import (
    CompiledPolicy,
    CompiledProfile,
    CompiledRule,
    PolicyId,
    compile_policy,
    compile_profile,
    missing_profile,
    workload_policy,
)

NamedPortKey = tuple[str, str, int | None]  # (canonical selector, port name, protocol)

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


def canonical(s: sel.Selector) -> str:
    """One text per selector tree, so equal selectors share one set."""
    return s.key


@dataclass(frozen=True, slots=True)
class TierPolicies:
    """The policies of one tier that select an endpoint in one direction, in order."""

    name: str
    default_action: str
    policies: tuple[CompiledPolicy, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    """The FelixConfiguration felix applies (`default`, overridden by `node.<name>`)."""

    endpoint_to_host_action: str = "Drop"
    deny_action: str = "Drop"
    log_prefix: str = "calico-packet"
    nat_outgoing_address: str | None = None


class PolicyIndex:
    def __init__(self, node: str) -> None:
        self.node = node
        self.policies: dict[PolicyId, CompiledPolicy] = {}
        self.profiles: dict[str, CompiledProfile] = {}
        self.profile_labels: dict[str, Mapping[str, str]] = {}
        self.tiers: dict[str, Tier] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.labels: dict[str, Mapping[str, str]] = {}
        self.pools: dict[str, IPPool] = {}
        self.felix_configs: dict[str, FelixConfiguration] = {}
        self._selectors: dict[str, sel.Selector] = {}
        self._refs: dict[str, int] = {}
        self.members: dict[str, set[str]] = {}
        self._np_refs: dict[NamedPortKey, int] = {}
        self.np_members: dict[NamedPortKey, set[str]] = {}
        self._by_profile: dict[str, set[str]] = {}
        self._local: dict[str, Endpoint] = {}  # by interface name
        self._tier_order: list[TierPolicies] | None = None
        self._for_endpoint: dict[str, dict[str, tuple[TierPolicies, ...]]] = {}
        self._ep_sels: dict[str, set[str]] = {}  # endpoint -> the selectors it matches
        self._by_label: dict[tuple[str, str], set[str]] = {}  # required label -> selectors
        self._unindexed: set[str] = set()  # selectors that require no one label
        self._np_by_selector: dict[str, set[NamedPortKey]] = {}
        # Bumped (from one counter) whenever a set's elements may have changed, so a
        # compiler can keep the elements of the sets that did not.
        self.generation: dict[str | NamedPortKey, int] = {}
        self._gen = 0
        self.profile_epoch = 0  # bumped by every profile change

    # --- selectors ------------------------------------------------------------------------

    def _ref(self, s: sel.Selector) -> None:
        key = canonical(s)
        count = self._refs.get(key, 0)
        self._refs[key] = count + 1
        if count:
            return
        self._selectors[key] = s
        self._bump(key)
        members = {k for k, labels in self.labels.items() if s.matches(labels)}
        self.members[key] = members
        for k in members:
            self._ep_sels[k].add(key)
        req = sel.required_label(s)
        if req is None:
            self._unindexed.add(key)
        else:
            self._by_label.setdefault(req, set()).add(key)

    def _unref(self, s: sel.Selector) -> None:
        key = canonical(s)
        count = self._refs[key] - 1
        if count:
            self._refs[key] = count
            return
        for k in self.members[key]:
            self._ep_sels[k].discard(key)
        del self._refs[key], self._selectors[key], self.members[key], self.generation[key]
        req = sel.required_label(s)
        if req is None:
            self._unindexed.discard(key)
        else:
            self._by_label[req].discard(key)

    def _np_ref(self, npk: NamedPortKey, s: sel.Selector) -> None:
        self._ref(s)
        count = self._np_refs.get(npk, 0)
        self._np_refs[npk] = count + 1
        if not count:
            self._bump(npk)
            self.np_members[npk] = {
                k for k in self.members[npk[0]] if self._has_port(self.endpoints[k], npk)
            }
            self._np_by_selector.setdefault(npk[0], set()).add(npk)

    def _np_unref(self, npk: NamedPortKey, s: sel.Selector) -> None:
        count = self._np_refs[npk] - 1
        if count:
            self._np_refs[npk] = count
        else:
            del self._np_refs[npk], self.np_members[npk], self.generation[npk]
            self._np_by_selector[npk[0]].discard(npk)
        self._unref(s)

    def _bump(self, key: str | NamedPortKey) -> None:
        self._gen += 1
        self.generation[key] = self._gen

    @staticmethod
    def _has_port(ep: Endpoint, npk: NamedPortKey) -> bool:
        return bool(named_port_numbers(ep, npk[1], npk[2]))

    def _selectors_of(self, p: CompiledPolicy | CompiledProfile) -> list[sel.Selector]:
        out: list[sel.Selector] = [p.applies_to] if isinstance(p, CompiledPolicy) else []
        for rules in (p.ingress, p.egress):
            for rule in rules or ():
                out.extend(rule.selectors())
        return out

    def _named_ports_of(
        self, p: CompiledPolicy | CompiledProfile
    ) -> list[tuple[NamedPortKey, sel.Selector]]:
        out = []
        for rules in (p.ingress, p.egress):
            for rule in rules or ():
                for s, name, proto in rule.named_port_sets():
                    out.append(((canonical(s), name, proto), s))
        return out

    def _register(self, p: CompiledPolicy | CompiledProfile) -> None:
        for s in self._selectors_of(p):
            self._ref(s)
        for npk, s in self._named_ports_of(p):
            self._np_ref(npk, s)

    def _unregister(self, p: CompiledPolicy | CompiledProfile) -> None:
        for npk, s in self._named_ports_of(p):
            self._np_unref(npk, s)
        for s in self._selectors_of(p):
            self._unref(s)

    def selector(self, key: str) -> sel.Selector:
        return self._selectors[key]

    # --- endpoints ------------------------------------------------------------------------

    def _relabel(self, key: str, touched: bool = True) -> None:
        """Re-evaluate one endpoint against the selectors after its labels (or ports) may
        have changed. Only candidates are evaluated: selectors that require a label the
        endpoint has with the value it has (most are `k == 'v' && ...`), the selectors
        that require none, and the ones it matched before."""
        ep = self.endpoints.get(key)
        old = self._ep_sels.pop(key, set())
        new: set[str] = set()
        if ep is None:
            self.labels.pop(key, None)
        else:
            labels = ep.labels(self.profile_labels)
            self.labels[key] = labels
            candidates = set(self._unindexed)
            by_label = self._by_label
            for item in labels.items():
                found = by_label.get(item)
                if found:
                    candidates |= found
            selectors = self._selectors
            new = {skey for skey in candidates if selectors[skey].matches(labels)}
            self._ep_sels[key] = new
        for skey in old - new:
            self.members[skey].discard(key)
            self._bump(skey)
        for skey in new - old:
            self.members[skey].add(key)
            self._bump(skey)
        for skey in old | new:
            if touched:  # the endpoint's addresses or ports changed
                self._bump(skey)
            for npk in self._np_by_selector.get(skey, ()):
                members = self.np_members[npk]
                had = key in members
                if skey in new and ep is not None and self._has_port(ep, npk):
                    members.add(key)
                else:
                    members.discard(key)
                if touched or had != (key in members):
                    self._bump(npk)
        self._for_endpoint.pop(key, None)

    def set_endpoint(self, ep: Endpoint) -> bool:
        """Add or replace an endpoint; whether anything policy sees changed."""
        old = self.endpoints.get(ep.key)
        if old == ep:
            return False
        touched = old is None or old.nets != ep.nets or old.ports != ep.ports
        if old is not None:
            for name in old.profiles:
                self._by_profile.get(name, set()).discard(ep.key)
            if old.workload and self._local.get(old.interface) is old:
                del self._local[old.interface]
        self.endpoints[ep.key] = ep
        for name in ep.profiles:
            self._by_profile.setdefault(name, set()).add(ep.key)
        if ep.workload and ep.node == self.node and ep.interface:
            current = self._local.get(ep.interface)
            # Two endpoints on one interface (a stale WEP beside its replacement): the
            # lexically last name wins, as for routes.
            if current is None or current.key <= ep.key:
                self._local[ep.interface] = ep
        self._relabel(ep.key, touched)
        return True

    def remove_endpoint(self, key: str) -> bool:
        old = self.endpoints.pop(key, None)
        if old is None:
            return False
        for name in old.profiles:
            self._by_profile.get(name, set()).discard(key)
        if old.workload and self._local.get(old.interface) is old:
            del self._local[old.interface]
            for other in self.endpoints.values():
                if other.workload and other.node == self.node and other.interface == old.interface:
                    self.set_endpoint(other)
        self._relabel(key)
        return True

    def set_network_set(self, ns: NetworkSet | GlobalNetworkSet) -> bool:
        return self.set_endpoint(from_network_set(ns))

    def local_endpoints(self) -> list[Endpoint]:
        """This node's workload endpoints, by interface name."""
        return [self._local[i] for i in sorted(self._local)]

    def endpoint_by_interface(self, ifname: str) -> Endpoint | None:
        return self._local.get(ifname)

    # --- policies, profiles, tiers --------------------------------------------------------

    def _policies_changed(self) -> None:
        self._tier_order = None
        self._for_endpoint.clear()

    def set_policy(self, policy: Policy) -> bool:
        compiled = compile_policy(policy)
        old = self.policies.get(compiled.id)
        if old is not None and old.source == policy:
            return False
        if not workload_policy(policy):
            return self.remove_policy(compiled.id)
        if old is not None:
            self._unregister(old)
        self.policies[compiled.id] = compiled
        self._register(compiled)
        self._policies_changed()
        return True

    def remove_policy(self, pid: PolicyId) -> bool:
        old = self.policies.pop(pid, None)
        if old is None:
            return False
        self._unregister(old)
        self._policies_changed()
        return True

    def set_profile(self, profile: Profile) -> bool:
        compiled = compile_profile(profile)
        old = self.profiles.get(profile.name)
        labels = profile.labels_to_apply
        if old is not None and old == compiled and self.profile_labels.get(profile.name) == labels:
            return False
        self.profile_epoch += 1
        if old is not None:
            self._unregister(old)
        self.profiles[profile.name] = compiled
        self._register(compiled)
        if self.profile_labels.get(profile.name) != labels:
            self.profile_labels[profile.name] = labels
            for key in sorted(self._by_profile.get(profile.name, ())):
                self._relabel(key, touched=False)
        return True

    def remove_profile(self, name: str) -> bool:
        old = self.profiles.pop(name, None)
        if old is None:
            return False
        self.profile_epoch += 1
        self._unregister(old)
        if self.profile_labels.pop(name, None):
            for key in sorted(self._by_profile.get(name, ())):
                self._relabel(key, touched=False)
        return True

    def profile(self, name: str) -> CompiledProfile:
        """The profile by name, or Felix's deny-all stand-in for one that is missing."""
        return self.profiles.get(name) or missing_profile(name)

    def set_tier(self, tier: Tier) -> bool:
        if self.tiers.get(tier.name) == tier:
            return False
        self.tiers[tier.name] = tier
        self._policies_changed()
        return True

    def remove_tier(self, name: str) -> bool:
        if self.tiers.pop(name, None) is None:
            return False
        self._policies_changed()
        return True

    def ordered_tiers(self) -> list[TierPolicies]:
        """Every tier that has policies, in Calico's order (TierLess: tiers with a Tier
        resource (or a well-known one) first, by order (unset last) then name), each
        with its policies by order then name."""
        if self._tier_order is None:
            by_tier: dict[str, list[CompiledPolicy]] = {}
            for p in self.policies.values():
                by_tier.setdefault(p.tier, []).append(p)

            def tier_key(name: str) -> tuple[bool, bool, float, str]:
                tier = self.tiers.get(name)
                order = tier.order if tier is not None else WELL_KNOWN_TIER_ORDERS.get(name)
                valid = tier is not None or name in WELL_KNOWN_TIER_ORDERS
                return (not valid, order is None, order or 0.0, name)

            self._tier_order = [
                TierPolicies(
                    name,
                    self.tiers[name].default_action if name in self.tiers else DENY,
                    tuple(sorted(by_tier[name], key=lambda p: p.sort_key)),
                )
                for name in sorted(by_tier, key=tier_key)
            ]
        return self._tier_order

    def policies_for(self, key: str, direction: str) -> tuple[TierPolicies, ...]:
        """The tiers (with their policies) that apply to endpoint `key` in `direction`."""
        cache = self._for_endpoint.setdefault(key, {})
        cached = cache.get(direction)
        if cached is not None:
            return cached
        out: list[TierPolicies] = []
        for tier in self.ordered_tiers():
            chosen = tuple(
                p
                for p in tier.policies
                if p.rules(direction) is not None and key in self.members[canonical(p.applies_to)]
            )
            if chosen:
                out.append(TierPolicies(tier.name, tier.default_action, chosen))
        result = tuple(out)
        cache[direction] = result
        return result

    # --- pools and configuration ----------------------------------------------------------

    def set_pool(self, pool: IPPool) -> bool:
        if self.pools.get(pool.name) == pool:
            return False
        self.pools[pool.name] = pool
        return True

    def remove_pool(self, name: str) -> bool:
        return self.pools.pop(name, None) is not None

    def set_felix_configuration(self, config: FelixConfiguration) -> bool:
        if self.felix_configs.get(config.name) == config:
            return False
        self.felix_configs[config.name] = config
        return True

    def remove_felix_configuration(self, name: str) -> bool:
        return self.felix_configs.pop(name, None) is not None

    def settings(self) -> Settings:
        merged: dict[str, str | None] = {}
        for name in ("default", f"node.{self.node}"):
            c = self.felix_configs.get(name)
            if c is None:
                continue
            for field, value in (
                ("endpoint_to_host_action", c.default_endpoint_to_host_action),
                ("deny_action", c.iptables_filter_deny_action),
                ("log_prefix", c.log_prefix),
                ("nat_outgoing_address", c.nat_outgoing_address),
            ):
                if value is not None:
                    merged[field] = value
        return Settings(**merged)  # type: ignore[arg-type]

    def ip_versions(self) -> tuple[int, ...]:
        """IPv4 always; IPv6 when some pool or endpoint has IPv6 addresses."""
        v6 = any(p.version == 6 for p in self.pools.values()) or any(
            ":" in n for ep in self.endpoints.values() for n in ep.nets
        )
        return (4, 6) if v6 else (4,)

    # --- reading sets ---------------------------------------------------------------------

    def set_networks(self, skey: str, version: int) -> list[str]:
        """The networks of a selector set's members, of one IP version, without any that
        another member's network already covers (nft refuses overlapping intervals)."""
        nets = {
            ipaddress.ip_network(n)
            for k in self.members[skey]
            for n in self.endpoints[k].nets
            if (":" in n) == (version == 6)
        }
        return [str(n) for n in _without_covered(nets)]

    def named_port_elements(self, npk: NamedPortKey, version: int) -> list[tuple[str, int, int]]:
        """(network, protocol number, port) of every member of a named-port set."""
        out: set[tuple[str, int, int]] = set()
        for k in self.np_members[npk]:
            ep = self.endpoints[k]
            for proto, port in named_port_numbers(ep, npk[1], npk[2]):
                for n in ep.nets:
                    if (":" in n) == (version == 6):
                        out.add((n, proto, port))
        return sorted(out)

    def selector_keys(self) -> list[str]:
        return sorted(self._selectors)

    def named_port_keys(self) -> list[NamedPortKey]:
        return sorted(self._np_refs, key=lambda k: (k[0], k[1], k[2] or 0))


_PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def named_port_numbers(ep: Endpoint, name: str, protocol: int | None) -> list[tuple[int, int]]:
    """(protocol, port) of the endpoint's ports called `name` (of `protocol`, or any)."""
    return [
        (_PROTOCOLS[p.protocol], p.port)
        for p in ep.ports
        if p.name == name and (protocol is None or _PROTOCOLS[p.protocol] == protocol)
    ]


def _without_covered(
    nets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for n in sorted(nets, key=lambda n: (n.network_address, n.prefixlen)):
        if out and n.subnet_of(out[-1]):  # type: ignore[arg-type]
            continue
        out.append(n)
    return out


__all__ = [
    "EGRESS",
    "INGRESS",
    "CompiledRule",
    "PolicyIndex",
    "Settings",
    "TierPolicies",
    "canonical",
    "named_port_numbers",
]
