"""Reading Calico's policy kinds (NetworkPolicy, GlobalNetworkPolicy, Profile, Tier,
NetworkSet, GlobalNetworkSet) into calico/policy.py's model: rules felix cannot enforce are
refused, never silently dropped."""

from __future__ import annotations

import ipaddress
import math
import re
import types
from collections.abc import Mapping
from typing import Any

from calico import policy as pol
from calico.errors import describe
from calico.policy import (
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    ICMPMatch,
    NetworkPolicy,
    NetworkSet,
    Port,
    Profile,
    Protocol,
    Rule,
    ServiceAccountMatch,
    Tier,
)
from calico.reader import Reader, read_labels

_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TIER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Rule fields felix cannot enforce: refused, never silently dropped.
_UNSUPPORTED_RULE_FIELDS = {
    "http": "HTTP matches need an application-layer proxy, which felix does not run",
}
_UNSUPPORTED_ENTITY_FIELDS = {
    "services": "Kubernetes Service matches are not supported by felix",
}


def _order(r: Reader, spec: Mapping[str, Any]) -> float | None:
    v = spec.get("order")
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise r.error(r.path("order"), f"expected a number, found {describe(v)}")
    if math.isnan(v) or math.isinf(v):
        raise r.error(r.path("order"), f"{v!r} is not a finite number")
    return float(v)


def _protocol(r: Reader, d: Mapping[str, Any], key: str) -> Protocol | None:
    v = d.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v.strip())
    if isinstance(v, bool):
        raise r.error(r.path(key), f"expected a protocol, found {describe(v)}")
    if isinstance(v, int):
        if not 1 <= v <= 255:
            raise r.error(r.path(key), f"{v} is out of range 1..255")
        return Protocol(v)
    if isinstance(v, str):
        for name, number in pol.PROTOCOL_NUMBERS.items():
            if name.lower() == v.lower():
                return Protocol(number, name)
        names = ", ".join(pol.PROTOCOL_NUMBERS)
        raise r.error(r.path(key), f"{v!r} is not a protocol ({names} or a number 1..255)")
    raise r.error(r.path(key), f"expected a protocol, found {describe(v)}")


def _icmp(r: Reader, d: Mapping[str, Any], key: str) -> ICMPMatch | None:
    raw = r.mapping(d, key)
    if not raw:
        return None
    ir = r.sub(key)
    icmp_type = ir.integer(raw, "type", 0, 254)
    code = ir.integer(raw, "code", 0, 255)
    if code is not None and icmp_type is None:
        raise ir.error(ir.path("code"), "needs spec.type as well")
    return ICMPMatch(icmp_type, code)


def _rule_port(r: Reader, path: str, v: Any) -> Port:
    if isinstance(v, bool):
        raise r.error(path, f"expected a port, found {describe(v)}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, int):
        if not 0 <= v <= 65535:
            raise r.error(path, f"{v} is out of range 0..65535")
        return Port(v, v)
    if not isinstance(v, str) or not v.strip():
        raise r.error(path, f"expected a port, found {describe(v)}")
    text = v.strip()
    if re.fullmatch(r"[0-9]+", text):
        return _rule_port(r, path, int(text))
    m = re.fullmatch(r"([0-9]+):([0-9]+)", text)
    if m:
        first, last = int(m.group(1)), int(m.group(2))
        if not 0 <= first <= last <= 65535:
            raise r.error(path, f"{text!r} is not a port range first:last within 0..65535")
        return Port(first, last)
    if len(text) > 15 or not _PORT_NAME.match(text) or not re.search("[a-z]", text):
        raise r.error(
            path,
            f"{text!r} is not a port, a range 'first:last' or a port name "
            "(up to 15 lowercase letters, digits and '-')",
        )
    return Port(name=text)


def _ports(r: Reader, d: Mapping[str, Any], key: str) -> tuple[Port, ...]:
    return tuple(
        _rule_port(r, f"{r.path(key)}[{i}]", v) for i, v in enumerate(r.items(d, key))
    )


def _nets(r: Reader, d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """CIDRs or bare addresses (Calico's ParseCIDROrIP), kept as masked networks."""
    out: list[str] = []
    for i, v in enumerate(r.items(d, key)):
        path = f"{r.path(key)}[{i}]"
        if not isinstance(v, str):
            raise r.error(path, f"{describe(v)} is not a CIDR")
        try:
            out.append(str(ipaddress.ip_network(v.strip(), strict=False)))
        except ValueError:
            raise r.error(path, f"{v!r} is not a CIDR") from None
    return tuple(out)


def _entity(r: Reader, d: Mapping[str, Any], key: str) -> EntityRule:
    raw = r.mapping(d, key)
    er = r.sub(key)
    for name, why in _UNSUPPORTED_ENTITY_FIELDS.items():
        if raw.get(name):
            raise er.error(er.path(name), f"not supported: {why}")
    ns_selector = er.selector(raw, "namespaceSelector") or ""
    if "global(" in ns_selector and ns_selector.strip() != "global()":
        raise er.error(
            er.path("namespaceSelector"), "global() must be the whole namespaceSelector"
        )
    accounts: ServiceAccountMatch | None = None
    sa = er.mapping(raw, "serviceAccounts")
    if sa:
        sr = er.sub("serviceAccounts")
        accounts = ServiceAccountMatch(sr.strings(sa, "names"), sr.selector(sa, "selector") or "")
    return EntityRule(
        nets=_nets(er, raw, "nets"),
        not_nets=_nets(er, raw, "notNets"),
        selector=er.selector(raw, "selector") or "",
        not_selector=er.selector(raw, "notSelector") or "",
        namespace_selector=ns_selector,
        ports=_ports(er, raw, "ports"),
        not_ports=_ports(er, raw, "notPorts"),
        service_accounts=accounts,
    )


def _check_rule(r: Reader, rule: Rule) -> None:
    """Calico's validateRule and the CEL rules beside it (libcalico-go validator/v3)."""
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        for key, ports in (("ports", entity.ports), ("notPorts", entity.not_ports)):
            if not ports:
                continue
            if rule.protocol is None:
                if not all(p.is_named for p in ports):
                    raise r.error(
                        r.path(f"{side}.{key}"),
                        "numeric ports need spec.protocol TCP, UDP or SCTP",
                    )
            elif not rule.protocol.supports_ports:
                raise r.error(
                    r.path(f"{side}.{key}"),
                    f"protocol {rule.protocol} has no ports (use TCP, UDP or SCTP)",
                )
    for key, icmp in (("icmp", rule.icmp), ("notICMP", rule.not_icmp)):
        if icmp is None:
            continue
        if rule.protocol is None or rule.protocol.number not in (1, 58):
            raise r.error(r.path(key), "needs spec.protocol ICMP or ICMPv6")
    if rule.protocol is not None and rule.ip_version is not None:
        if rule.protocol.number == 1 and rule.ip_version == 6:
            raise r.error(r.path("protocol"), "ICMP is IPv4's; IPv6 rules use ICMPv6")
        if rule.protocol.number == 58 and rule.ip_version == 4:
            raise r.error(r.path("protocol"), "ICMPv6 is IPv6's; IPv4 rules use ICMP")
    seen: set[int] = set()
    for side, entity in (("source", rule.source), ("destination", rule.destination)):
        for key, nets in (("nets", entity.nets), ("notNets", entity.not_nets)):
            versions = {ipaddress.ip_network(n).version for n in nets}
            path = r.path(f"{side}.{key}")
            if rule.ip_version is not None and versions - {rule.ip_version}:
                raise r.error(
                    path, f"has CIDRs of another IP version than ipVersion {rule.ip_version}"
                )
            if len(versions | seen) > 1:
                raise r.error(path, "the rule would mix IPv4 and IPv6 CIDRs")
            seen |= versions
            if key == "notNets" and any(ipaddress.ip_network(n).prefixlen == 0 for n in nets):
                raise r.error(path, "a catch-all CIDR in notNets matches no traffic")


def _rules(r: Reader, spec: Mapping[str, Any], key: str) -> tuple[Rule, ...]:
    out: list[Rule] = []
    for i, raw in enumerate(r.items(spec, key)):
        rr = r.sub(f"{key}[{i}]")
        if not isinstance(raw, Mapping):
            raise rr.error(rr.prefix, f"expected a mapping, found {describe(raw)}")
        for name, why in _UNSUPPORTED_RULE_FIELDS.items():
            if raw.get(name):
                raise rr.error(rr.path(name), f"not supported: {why}")
        action = rr.string(raw, "action")
        if action is None:
            raise rr.error(rr.path("action"), "required")
        if action not in pol.ACTIONS:
            allowed = ", ".join(repr(a) for a in pol.ACTIONS)
            raise rr.error(rr.path("action"), f"{action!r} is not one of {allowed}")
        ip_version = rr.integer(raw, "ipVersion", 4, 6)
        if ip_version == 5:
            raise rr.error(rr.path("ipVersion"), "must be 4 or 6")
        meta = rr.mapping(raw, "metadata")
        annotations = {
            str(k): str(v) for k, v in rr.sub("metadata").mapping(meta, "annotations").items()
        }
        rule = Rule(
            action=action,
            ip_version=ip_version,
            protocol=_protocol(rr, raw, "protocol"),
            not_protocol=_protocol(rr, raw, "notProtocol"),
            icmp=_icmp(rr, raw, "icmp"),
            not_icmp=_icmp(rr, raw, "notICMP"),
            source=_entity(rr, raw, "source"),
            destination=_entity(rr, raw, "destination"),
            annotations=types.MappingProxyType(annotations),
        )
        _check_rule(rr, rule)
        out.append(rule)
    return tuple(out)


def _policy_types(
    r: Reader, spec: Mapping[str, Any], ingress: tuple[Rule, ...], egress: tuple[Rule, ...]
) -> tuple[str, ...]:
    given = r.strings(spec, "types")
    for i, t in enumerate(given):
        if t not in (pol.INGRESS, pol.EGRESS):
            raise r.error(f"{r.path('types')}[{i}]", f"{t!r} is not 'Ingress' or 'Egress'")
    if len(set(given)) != len(given):
        raise r.error(r.path("types"), "lists a type twice")
    if given:
        return given
    # Calico's defaulting on write (api/pkg/defaults/networkpolicy.go).
    if not egress:
        return (pol.INGRESS,)
    if not ingress:
        return (pol.EGRESS,)
    return (pol.INGRESS, pol.EGRESS)


def _tier_name(r: Reader, spec: Mapping[str, Any]) -> str:
    tier = r.string(spec, "tier", pol.DEFAULT_TIER) or pol.DEFAULT_TIER
    if len(tier) > 63 or not _TIER_NAME.match(tier):
        raise r.error(r.path("tier"), f"{tier!r} is not a tier name (lowercase, digits, '-')")
    return tier


def read_network_policy(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> NetworkPolicy:
    ingress, egress = _rules(r, spec, "ingress"), _rules(r, spec, "egress")
    return NetworkPolicy(
        name=name,
        namespace=_namespace(r, meta),
        tier=_tier_name(r, spec),
        order=_order(r, spec),
        selector=r.selector(spec, "selector") or "",
        service_account_selector=r.selector(spec, "serviceAccountSelector") or "",
        types=_policy_types(r, spec, ingress, egress),
        ingress=ingress,
        egress=egress,
    )


def read_global_network_policy(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> GlobalNetworkPolicy:
    ingress, egress = _rules(r, spec, "ingress"), _rules(r, spec, "egress")
    do_not_track, pre_dnat = r.flag(spec, "doNotTrack"), r.flag(spec, "preDNAT")
    apply_on_forward = r.flag(spec, "applyOnForward")
    if do_not_track and pre_dnat:
        raise r.error(r.path("preDNAT"), "cannot be set together with spec.doNotTrack")
    if (do_not_track or pre_dnat) and not apply_on_forward:
        which = "doNotTrack" if do_not_track else "preDNAT"
        raise r.error(r.path("applyOnForward"), f"must be true when spec.{which} is")
    if pre_dnat and egress:
        raise r.error(r.path("egress"), "a preDNAT policy has no egress rules")
    return GlobalNetworkPolicy(
        name=name,
        tier=_tier_name(r, spec),
        order=_order(r, spec),
        selector=r.selector(spec, "selector") or "",
        namespace_selector=r.selector(spec, "namespaceSelector") or "",
        service_account_selector=r.selector(spec, "serviceAccountSelector") or "",
        types=_policy_types(r, spec, ingress, egress),
        ingress=ingress,
        egress=egress,
        do_not_track=do_not_track,
        pre_dnat=pre_dnat,
        apply_on_forward=apply_on_forward,
    )


def _string_map(r: Reader, d: Mapping[str, Any], key: str) -> Mapping[str, str]:
    out: dict[str, str] = {}
    for k, v in r.mapping(d, key).items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        elif isinstance(v, int | float):
            v = str(v)
        if not isinstance(v, str):
            raise r.error(f"{r.path(key)}.{k}", f"expected a string, found {describe(v)}")
        out[str(k)] = v
    return types.MappingProxyType(out)


def read_profile(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> Profile:
    return Profile(
        name=name,
        ingress=_rules(r, spec, "ingress"),
        egress=_rules(r, spec, "egress"),
        labels_to_apply=_string_map(r, spec, "labelsToApply"),
    )


def read_tier(r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]) -> Tier:
    if len(name) > 63 or not _TIER_NAME.match(name):
        raise r.error("metadata.name", f"{name!r} is not a tier name (lowercase, digits, '-')")
    order = _order(r, spec)
    if order is None:
        order = pol.WELL_KNOWN_TIER_ORDERS.get(name)
    return Tier(
        name=name,
        order=order,
        default_action=r.choice(spec, "defaultAction", (pol.DENY, pol.PASS), pol.DENY),
    )


def _namespace(r: Reader, meta: Mapping[str, Any]) -> str:
    ns = meta.get("namespace")
    if ns is None or ns == "":
        return "default"
    if not isinstance(ns, str) or "/" in ns:
        raise r.error("metadata.namespace", f"{describe(ns)} is not a namespace name")
    return ns


def read_network_set(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> NetworkSet:
    return NetworkSet(
        name=name,
        namespace=_namespace(r, meta),
        labels=read_labels(r, meta),
        nets=_nets(r, spec, "nets"),
    )


def read_global_network_set(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> GlobalNetworkSet:
    return GlobalNetworkSet(name=name, labels=read_labels(r, meta), nets=_nets(r, spec, "nets"))
