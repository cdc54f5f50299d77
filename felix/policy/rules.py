"""Calico's v3 rules and policy selectors in the form felix evaluates and renders. Pure.

This is what libcalico-go's update processors do before Felix sees a policy
(syncersv1/updateprocessors/rules.go, networkpolicyprocessor.go,
globalnetworkpolicyprocessor.go) and how Felix's rule scanner splits ports:

- a rule side's selector is the conjunction of its `serviceAccounts` match, its `selector`
  and its namespace: the `namespaceSelector` (labels prefixed `pcns.`, which the
  `kns.<namespace>` profiles give their endpoints; all() meaning "in some namespace"), or,
  in a namespaced policy, that policy's namespace, as soon as any selector field is used;
  `notSelector` is kept as written;
- a NetworkPolicy applies to `(selector) && projectcalico.org/namespace == '<ns>'`, a
  GlobalNetworkPolicy to its selector and its prefixed namespaceSelector;
  serviceAccountSelector is prefixed `pcsa.` on both;
- ports split into numbers and ranges on one side and named ports on the other (a named
  port is a set of (address, protocol, port) of the endpoints the side's selector matches).
"""

from __future__ import annotations

from dataclasses import dataclass

from calico import selector as sel
from calico.policy import (
    EGRESS,
    INGRESS,
    EntityRule,
    GlobalNetworkPolicy,
    ICMPMatch,
    NetworkPolicy,
    Policy,
    Port,
    Profile,
    Rule,
)
from felix.workload import NAMESPACE_LABEL, SERVICE_ACCOUNT_LABEL

NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."

ALL = sel.parse("all()")


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a rule (source or destination) as felix matches it."""

    selector: sel.Selector | None = None  # None: any address
    not_selector: sel.Selector | None = None
    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()  # numbers and ranges
    named_ports: tuple[str, ...] = ()
    not_ports: tuple[Port, ...] = ()
    not_named_ports: tuple[str, ...] = ()

    @property
    def has_ports(self) -> bool:
        return bool(self.ports or self.named_ports)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule of one policy or profile, in one direction, at `index` in its list."""

    index: int
    action: str
    ip_version: int | None
    protocol: int | None
    not_protocol: int | None
    icmp: ICMPMatch | None
    not_icmp: ICMPMatch | None
    source: Side
    destination: Side
    rule: Rule

    def selectors(self) -> list[sel.Selector]:
        return [
            s
            for s in (
                self.source.selector,
                self.source.not_selector,
                self.destination.selector,
                self.destination.not_selector,
            )
            if s is not None
        ]

    def named_port_sets(self) -> list[tuple[sel.Selector, str, int | None]]:
        """(selector, port name, protocol) of each named port this rule matches on: the
        set of addresses of the endpoints the side's positive selector matches that have
        such a port (Calico's rule scanner; protocol None: any)."""
        out: list[tuple[sel.Selector, str, int | None]] = []
        for side in (self.source, self.destination):
            base = side.selector or ALL
            for name in (*side.named_ports, *side.not_named_ports):
                out.append((base, name, self.protocol))
        return out


@dataclass(frozen=True, slots=True)
class PolicyId:
    """Which policy: its kind ("NetworkPolicy" / "GlobalNetworkPolicy"), namespace, name."""

    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def short_kind(self) -> str:
        return "np" if self.kind == NetworkPolicy.kind else "gnp"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    id: PolicyId
    tier: str
    order: float  # +inf when unset (Calico's default order)
    applies_to: sel.Selector
    ingress: tuple[CompiledRule, ...] | None  # None: the policy does not govern ingress
    egress: tuple[CompiledRule, ...] | None
    source: Policy

    def rules(self, direction: str) -> tuple[CompiledRule, ...] | None:
        return self.ingress if direction == INGRESS else self.egress

    @property
    def sort_key(self) -> tuple[float, str]:
        """Calico's PolKVLess: order, then "name/namespace/kind"."""
        return (self.order, f"{self.id.name}/{self.id.namespace or ''}/{self.id.kind}")


@dataclass(frozen=True, slots=True)
class CompiledProfile:
    name: str
    ingress: tuple[CompiledRule, ...]
    egress: tuple[CompiledRule, ...]

    def rules(self, direction: str) -> tuple[CompiledRule, ...]:
        return self.ingress if direction == INGRESS else self.egress


def _service_accounts(er: EntityRule) -> sel.Selector | None:
    sa = er.service_accounts
    if sa is None:
        return None
    parts: list[sel.Selector] = []
    if sa.selector:
        parts.append(sel.with_label_prefix(sel.parse(sa.selector), SERVICE_ACCOUNT_PREFIX))
    if sa.names:
        names = ", ".join(f"'{n}'" for n in sa.names)
        parts.append(sel.parse(f"{SERVICE_ACCOUNT_LABEL} in {{{names}}}"))
    return sel.combine(*parts) if parts else None


def side_selector(er: EntityRule, namespace: str | None) -> sel.Selector | None:
    """Calico's GetEntityRuleSelector: the positive selector of a rule side."""
    ns_sel: sel.Selector | None = None
    if er.namespace_selector:
        ns_sel = sel.with_label_prefix(
            sel.parse(er.namespace_selector),
            NAMESPACE_PREFIX,
            all_means_has=NAMESPACE_LABEL,
            global_means_not_has=NAMESPACE_LABEL,
        )
    elif namespace:
        ns_sel = sel.equals(NAMESPACE_LABEL, namespace)
    parts = [
        s
        for s in (_service_accounts(er), sel.parse(er.selector) if er.selector else None)
        if s is not None
    ]
    chosen = sel.combine(*parts) if parts else None
    if ns_sel is not None and (chosen is not None or er.not_selector or er.namespace_selector):
        chosen = sel.combine(ns_sel, chosen) if chosen is not None else ns_sel
    return chosen


def _side(er: EntityRule, namespace: str | None) -> Side:
    return Side(
        selector=side_selector(er, namespace),
        not_selector=sel.parse(er.not_selector) if er.not_selector else None,
        nets=er.nets,
        not_nets=er.not_nets,
        ports=tuple(p for p in er.ports if not p.is_named),
        named_ports=tuple(p.name for p in er.ports if p.is_named),
        not_ports=tuple(p for p in er.not_ports if not p.is_named),
        not_named_ports=tuple(p.name for p in er.not_ports if p.is_named),
    )


def compile_rule(rule: Rule, index: int, namespace: str | None) -> CompiledRule:
    return CompiledRule(
        index=index,
        action=rule.action,
        ip_version=rule.ip_version,
        protocol=rule.protocol.number if rule.protocol else None,
        not_protocol=rule.not_protocol.number if rule.not_protocol else None,
        icmp=rule.icmp,
        not_icmp=rule.not_icmp,
        source=_side(rule.source, namespace),
        destination=_side(rule.destination, namespace),
        rule=rule,
    )


def _rules(rules: tuple[Rule, ...], namespace: str | None) -> tuple[CompiledRule, ...]:
    return tuple(compile_rule(r, i, namespace) for i, r in enumerate(rules))


def applies_to(policy: Policy) -> sel.Selector:
    """The endpoints a policy selects (the v1 model's policy selector)."""
    base = sel.parse(policy.selector) if policy.selector else ALL
    if isinstance(policy, NetworkPolicy):
        chosen = sel.combine(base, sel.equals(NAMESPACE_LABEL, policy.namespace))
    else:
        chosen = base
        if policy.namespace_selector:
            prefixed = sel.with_label_prefix(sel.parse(policy.namespace_selector), NAMESPACE_PREFIX)
            chosen = sel.with_label_prefix(
                sel.combine(chosen, prefixed), "", all_means_has=NAMESPACE_LABEL
            )
    if policy.service_account_selector:
        prefixed = sel.with_label_prefix(
            sel.parse(policy.service_account_selector), SERVICE_ACCOUNT_PREFIX
        )
        chosen = sel.combine(chosen, prefixed)
        if isinstance(policy, GlobalNetworkPolicy):
            chosen = sel.with_label_prefix(chosen, "", all_means_has=SERVICE_ACCOUNT_LABEL)
    return chosen


def policy_id(policy: Policy) -> PolicyId:
    return PolicyId(policy.kind, policy.name, policy.namespace)


def compile_policy(policy: Policy) -> CompiledPolicy:
    namespace = policy.namespace
    return CompiledPolicy(
        id=policy_id(policy),
        tier=policy.tier,
        order=policy.order if policy.order is not None else float("inf"),
        applies_to=applies_to(policy),
        ingress=_rules(policy.ingress, namespace) if INGRESS in policy.types else None,
        egress=_rules(policy.egress, namespace) if EGRESS in policy.types else None,
        source=policy,
    )


def compile_profile(profile: Profile) -> CompiledProfile:
    return CompiledProfile(
        profile.name, _rules(profile.ingress, None), _rules(profile.egress, None)
    )


def missing_profile(name: str) -> CompiledProfile:
    """What Felix programs for a profile an endpoint names but the datastore lacks (or
    that failed validation): deny everything (calc's DummyDropRules)."""
    deny = Rule(action="Deny")
    return CompiledProfile(name, (compile_rule(deny, 0, None),), (compile_rule(deny, 0, None),))


def workload_policy(policy: Policy) -> bool:
    """Whether Calico renders this policy for workload endpoints at all: doNotTrack and
    preDNAT policies are for host endpoints only."""
    host_only = isinstance(policy, GlobalNetworkPolicy) and (policy.do_not_track or policy.pre_dnat)
    return not host_only
