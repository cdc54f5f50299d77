"""What `felix policy show` and `felix policy explain` print, as plain data and text. Pure:
the index, the rule counters read from the kernel and the endpoint statuses come in.

Counters: an endpoint's own chain counts its packets; the chain it goes to, shared by the
endpoints alike (same tiers, policies and profiles), counts per policy the packets it sent
to that policy and the end-of-tier drops; a policy's chain counts per rule the packets the
rule matched (for every endpoint the policy selects: the chain is shared, as Calico's
are).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from calico.policy import EGRESS, INGRESS, EntityRule, Port, Rule
from felix.dataplane.nft_compile import Ruleset, endpoint_chain, policy_chain, profile_chain
from felix.policy.endpoints import Endpoint
from felix.policy.evaluate import Decision, Explanation
from felix.policy.index import PolicyIndex

Counters = Mapping[tuple[str, str], tuple[int, int]]  # (chain, comment) -> (packets, bytes)


def sum_counters(
    items: Iterable[tuple[str, str, int, int]],
) -> dict[tuple[str, str], tuple[int, int]]:
    """(chain, comment, packets, bytes) rows summed per (chain, comment): one Calico rule
    may be several nft rules (per IP version, per port alternative)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for chain, comment, packets, nbytes in items:
        p, b = out.get((chain, comment), (0, 0))
        out[(chain, comment)] = (p + packets, b + nbytes)
    return out


def _ports(ports: tuple[Port, ...]) -> str:
    return ",".join(str(p) for p in ports)


def _entity(e: EntityRule) -> str:
    parts = []
    if e.namespace_selector:
        parts.append(f"namespace {e.namespace_selector}")
    if e.selector:
        parts.append(e.selector)
    if e.not_selector:
        parts.append(f"not {e.not_selector}")
    if e.service_accounts is not None:
        sa = e.service_accounts
        parts.append("serviceaccount " + (", ".join(sa.names) or sa.selector))
    if e.nets:
        parts.append(",".join(e.nets))
    if e.not_nets:
        parts.append("not " + ",".join(e.not_nets))
    if e.ports:
        parts.append(f"ports {_ports(e.ports)}")
    if e.not_ports:
        parts.append(f"not ports {_ports(e.not_ports)}")
    return " ".join(parts)


def describe_rule(rule: Rule) -> str:
    """A rule in one line: "Allow TCP from role == 'frontend' to ports 6379"."""
    words = [rule.action]
    if rule.ip_version:
        words.append(f"IPv{rule.ip_version}")
    if rule.protocol:
        words.append(str(rule.protocol))
    if rule.not_protocol:
        words.append(f"not {rule.not_protocol}")
    for label, icmp in (("type", rule.icmp), ("not type", rule.not_icmp)):
        if icmp is not None and icmp.type is not None:
            code = f"/{icmp.code}" if icmp.code is not None else ""
            words.append(f"{label} {icmp.type}{code}")
    src, dst = _entity(rule.source), _entity(rule.destination)
    if src:
        words.append(f"from {src}")
    if dst:
        words.append(f"to {dst}")
    return " ".join(words)


def _group(ruleset: Ruleset, chain: str) -> tuple[str, int]:
    """The shared chain an endpoint chain goes to, and how many endpoint chains do."""
    rules = ruleset.chains.get(chain)
    if rules is None or not rules.rules:
        return "", 0
    target = rules.rules[0].split("goto ", 1)[-1].split()[0]
    sharing = sum(1 for c in ruleset.chains.values() if c.rules and f"goto {target} " in c.rules[0])
    return target, sharing


def endpoint_report(
    index: PolicyIndex,
    ep: Endpoint,
    counters: Counters,
    ruleset: Ruleset,
    status: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "endpoint": ep.name,
        "namespace": ep.namespace,
        "node": ep.node,
        "interface": ep.interface,
        "addresses": list(ep.addresses),
        "status": status,
        "labels": dict(sorted(index.labels.get(ep.key, {}).items())),
        "profiles": list(ep.profiles),
    }
    for direction in (INGRESS, EGRESS):
        own = endpoint_chain(ep.interface, direction)
        chain, sharing = _group(ruleset, own)
        tiers = []
        for tier in index.policies_for(ep.key, direction):
            policies = []
            for p in tier.policies:
                pchain = policy_chain(p, direction)
                evaluated = counters.get((chain, f"{p.id.kind} {p.id}"), (0, 0))[0]
                rules = [
                    {
                        "index": r.index,
                        "rule": describe_rule(r.rule),
                        "packets": counters.get((pchain, f"rule {r.index}"), (0, 0))[0],
                        "bytes": counters.get((pchain, f"rule {r.index}"), (0, 0))[1],
                    }
                    for r in p.rules(direction) or ()
                ]
                policies.append(
                    {
                        "kind": p.id.kind,
                        "name": str(p.id),
                        "order": None if p.order == float("inf") else p.order,
                        "packets": evaluated,
                        "rules": rules,
                    }
                )
            tiers.append(
                {
                    "tier": tier.name,
                    "default_action": tier.default_action,
                    "end_of_tier_drops": counters.get((chain, f"end of tier {tier.name}"), (0, 0))[
                        0
                    ],
                    "policies": policies,
                }
            )
        profiles = []
        for name in ep.profiles:
            pchain = profile_chain(name, direction)
            rules = [
                {
                    "index": r.index,
                    "rule": describe_rule(r.rule),
                    "packets": counters.get((pchain, f"rule {r.index}"), (0, 0))[0],
                }
                for r in index.profile(name).rules(direction)
            ]
            profiles.append({"name": name, "missing": name not in index.profiles, "rules": rules})
        out[direction.lower()] = {
            "packets": counters.get((own, "endpoint"), (0, 0))[0],
            "chain": chain,
            "endpoints_sharing_chain": sharing,
            "tiers": tiers,
            "profiles": profiles,
            "dropped_no_profile": counters.get((chain, "no profile accepted"), (0, 0))[0],
        }
    return out


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"{report['namespace']}/{report['endpoint']}  {report['interface']}  "
        f"{','.join(report['addresses'])}  status {report['status'] or '?'}",
        "  labels: " + ", ".join(f"{k}={v}" for k, v in report["labels"].items()),
    ]
    for direction in ("ingress", "egress"):
        d = report[direction]
        shared = d["endpoints_sharing_chain"]
        note = f", its chain {d['chain']} shared by {shared} endpoints" if shared > 1 else ""
        lines.append(f"  {direction}: packets {d['packets']}{note}")
        if not d["tiers"]:
            lines.append("    no policy selects it")
        for tier in d["tiers"]:
            lines.append(f"    tier {tier['tier']} (end of tier: {tier['default_action']})")
            for p in tier["policies"]:
                order = "" if p["order"] is None else f" order {p['order']:g}"
                lines.append(f"      {p['kind']} {p['name']}{order}  packets {p['packets']}")
                for r in p["rules"]:
                    lines.append(
                        f"        rule {r['index']}: {r['rule']}  "
                        f"packets {r['packets']} bytes {r['bytes']}"
                    )
            if tier["default_action"] != "Pass":
                lines.append(f"      end of tier drop  packets {tier['end_of_tier_drops']}")
        for prof in d["profiles"]:
            missing = "  (missing: deny all)" if prof["missing"] else ""
            lines.append(f"    profile {prof['name']}{missing}")
            for r in prof["rules"]:
                lines.append(f"      rule {r['index']}: {r['rule']}  packets {r['packets']}")
        lines.append(f"    no profile accepted: drop  packets {d['dropped_no_profile']}")
    return "\n".join(lines) + "\n"


def _decision(d: Decision) -> str:
    rule = f" rule {d.rule}" if d.rule is not None else ""
    verdict = "allowed" if d.verdict == "Allow" else "denied"
    text = f"  {d.direction.lower()} of {d.endpoint}: {verdict} by {d.by}{rule}"
    for t in d.trail:
        text += f"\n      ({t})"
    for entry in d.logged:
        text += f"\n      (logged by {entry})"
    return text


def format_explanation(e: Explanation) -> str:
    lines = [f"{e.packet.describe()}: {'ALLOWED' if e.allowed else 'DENIED'}"]
    lines.extend(_decision(d) for d in e.decisions)
    lines.extend(f"  note: {n}" for n in e.notes)
    return "\n".join(lines) + "\n"


def explanation_json(e: Explanation) -> dict[str, Any]:
    return {
        "packet": e.packet.describe(),
        "allowed": e.allowed,
        "decisions": [
            {
                "direction": d.direction,
                "endpoint": d.endpoint,
                "verdict": d.verdict,
                "by": d.by,
                "rule": d.rule,
                "logged": list(d.logged),
                "trail": list(d.trail),
            }
            for d in e.decisions
        ],
        "notes": list(e.notes),
    }
