"""`bgpd plan`: a PeeringPlan as plain data (JSON) and as text for operators. Pure.

What a change to the resources will do, without starting anything: the sessions (in Calico's
names and types, each with its next-hop mode, allow-local-as, ADD-PATH, BGPFilters and the
communities its exports get), what is originated and blackholed, which pools' routes are
exported or rejected, the static routes, and how learned routes are programmed into the
kernel, per pool. Everything shown is in force; what is not is a note.
"""

from __future__ import annotations

from typing import Any

from bgpd.plan.peering import PeeringPlan, PeerSpec
from bgpd.policy.communities import CommunityRule


def next_hop_mode(spec: PeerSpec) -> str:
    """`self`, `keep` (keepOriginalNextHop / nextHopMode Keep) or `auto` (BIRD's default:
    ours for what we originate, unchanged when reflecting)."""
    if spec.next_hop_self:
        return "self"
    if spec.keep_original_next_hop:
        return "keep"
    return "auto"


def add_path_mode(spec: PeerSpec) -> str:
    """What the session offers in its ADD-PATH capability (RFC 7911)."""
    return "rx/tx" if spec.add_path else "off"


def community_text(rule: CommunityRule) -> str:
    """"192.168.0.0/16: 100:6532 5663:12 100:555:107"."""
    values = [f"{a}:{b}" for a, b in rule.standard] + [f"{a}:{b}:{c}" for a, b, c in rule.large]
    return f"{rule.cidr}: {' '.join(values)}"


def session_communities(spec: PeerSpec, rules: tuple[CommunityRule, ...]) -> list[str]:
    """The prefixAdvertisement rules of the session's family (each applies to every
    session: confd's apply_communities() is in every export filter)."""
    return [community_text(r) for r in rules if r.family == spec.family]


def session_dict(spec: PeerSpec, communities: tuple[CommunityRule, ...] = ()) -> dict[str, Any]:
    return {
        "name": spec.name,
        "address": spec.peer_address,
        "port": spec.peer_port,
        "as": spec.peer_as,
        "local_as": spec.local_as,
        "type": spec.type,
        "family": spec.family,
        "passive": spec.passive,
        "rr_client": spec.rr_client,
        "rr_cluster_id": spec.rr_cluster_id,
        "ttl_security": spec.ttl_security,
        "multihop": spec.multihop,
        "source_address": spec.source_address,
        "next_hop": next_hop_mode(spec),
        "allow_local_as": spec.allow_local_as,
        "add_path": add_path_mode(spec),
        "filters": list(spec.filters),
        "communities": session_communities(spec, communities),
        "restart_time": spec.max_restart_time,
        "keepalive_time": spec.keepalive_time,
        "hold_time": spec.hold_time,
        "password_set": spec.password is not None,
        "peer_node": spec.peer_node,
        "bgp_peer": spec.bgp_peer,
        "bfd": None
        if spec.bfd is None
        else {"interval": spec.bfd.interval, "multiplier": spec.bfd.multiplier},
    }


def export_rules(plan: PeeringPlan) -> list[dict[str, Any]]:
    """calico_export_to_bgp_peers in order: disabled pools first, then this node's confirmed
    blocks (the aggregate out, anything more specific held back), then the other pools."""
    rules: list[dict[str, Any]] = []
    for pool in plan.pools:
        if pool.disable_bgp_export:
            rules.append(
                {"cidr": pool.cidr, "family": pool.family, "action": "reject",
                 "reason": f"pool {pool.name}: disableBGPExport"}
            )
    for block in plan.blocks:
        if block.confirmed:
            rules.append(
                {"cidr": block.cidr, "family": block.family, "action": "aggregate",
                 "reason": "affine block: the aggregate is advertised, more specifics are not"}
            )
    for pool in plan.pools:
        if not pool.disable_bgp_export:
            rules.append(
                {"cidr": pool.cidr, "family": pool.family, "action": "accept",
                 "reason": f"pool {pool.name}"}
            )
    return rules


def plan_dict(plan: PeeringPlan) -> dict[str, Any]:
    return {
        "node": plan.node,
        "router_id": plan.router_id,
        "as": plan.local_as,
        "listen_port": plan.listen_port,
        "listen_addresses": list(plan.listen_addresses),
        "rr_cluster_id": plan.rr_cluster_id,
        "mesh": plan.mesh_enabled,
        "sessions": [session_dict(s, plan.communities) for s in plan.sessions],
        "blackholes": list(plan.blackholes),
        "advertised": [o.prefix for o in plan.originate],
        "export": export_rules(plan),
        "kernel": [
            {"cidr": r.cidr, "family": r.family, "action": r.action, "tunnel": r.tunnel,
             "direct_within": r.direct_within, "reason": r.reason}
            for r in plan.kernel
        ],
        "static_routes": [{"prefix": r.prefix, "via": r.via} for r in plan.static_routes],
        "communities": [
            {"cidr": r.cidr, "family": r.family,
             "standard": [f"{a}:{b}" for a, b in r.standard],
             "large": [f"{a}:{b}:{c}" for a, b, c in r.large]}
            for r in plan.communities
        ],
        "ignored_interfaces": list(plan.ignored_interfaces),
        "log_severity": plan.log_severity,
        "notes": list(plan.notes),
    }


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _flags(spec: PeerSpec, communities: tuple[CommunityRule, ...] = ()) -> str:
    flags: list[str] = []
    if spec.passive:
        flags.append("passive")
    if spec.rr_client:
        flags.append(f"rr-client(cluster {spec.rr_cluster_id})")
    if spec.ttl_security:
        flags.append(f"ttl-security({spec.multihop})")
    if spec.source_address:
        flags.append(f"source {spec.source_address}")
    flags.append(f"next-hop-{next_hop_mode(spec)}")
    if spec.allow_local_as:
        flags.append(f"allow-local-as({spec.allow_local_as})")
    flags.append(f"add-path({add_path_mode(spec)})")
    if spec.filters:
        flags.append(f"filters({' '.join(spec.filters)})")
    texts = session_communities(spec, communities)
    if texts:
        flags.append(f"communities({'; '.join(texts)})")
    if spec.max_restart_time != 120:
        flags.append(f"restart {spec.max_restart_time}s")
    if spec.keepalive_time is not None:
        flags.append(f"keepalive {spec.keepalive_time}s")
    if spec.password is not None:
        flags.append("password")
    if spec.bfd is not None:
        flags.append(f"bfd({spec.bfd.interval * 1000:g}ms x{spec.bfd.multiplier})")
    return ",".join(flags) or "-"


def plan_text(plan: PeeringPlan) -> str:
    lines = [
        f"node {plan.node}: router id {plan.router_id}, AS {plan.local_as}, "
        f"listen port {plan.listen_port}"
        + (f" on {', '.join(plan.listen_addresses)}" if plan.listen_addresses else "")
        + f", log severity {plan.log_severity}",
    ]
    if plan.rr_cluster_id:
        lines.append(f"route reflector, cluster id {plan.rr_cluster_id} (not in the mesh)")
    else:
        lines.append(f"node-to-node mesh: {'on' if plan.mesh_enabled else 'off'}")
    lines.append("")
    lines.append(f"Sessions ({len(plan.sessions)}):")
    if plan.sessions:
        head = [["NAME", "ADDRESS", "PORT", "AS", "LOCAL AS", "TYPE", "OPTIONS"]]
        lines += _table(head + [
            [s.name, s.peer_address, str(s.peer_port), str(s.peer_as), str(s.local_as),
             s.type, _flags(s, plan.communities)]
            for s in plan.sessions
        ])
    lines.append("")
    lines.append(f"Advertised ({len(plan.originate)}):")
    lines += [
        f"  {o.prefix}" + (f"  (pool {o.pool.name})" if o.pool else "  (no pool)")
        for o in plan.originate
    ]
    lines.append(f"Blackholes ({len(plan.blackholes)}):")
    lines += [f"  {b}" for b in plan.blackholes]
    if plan.static_routes:
        lines.append(f"Static routes ({len(plan.static_routes)}, into the kernel):")
        lines += [f"  {r.prefix} via {r.via}" for r in plan.static_routes]
    if plan.communities:
        lines.append("Communities added on export (prefixAdvertisements, every session):")
        lines += [f"  {community_text(r)}" for r in plan.communities]
    if plan.ignored_interfaces:
        lines.append(
            "Ignored interfaces (routes through them neither learned nor advertised): "
            + ", ".join(plan.ignored_interfaces)
        )
    lines.append("Export:")
    rules = export_rules(plan)
    lines += _table([[r["cidr"], r["action"], r["reason"]] for r in rules]) if rules else []
    lines.append("  anything else: reject")
    lines.append("Kernel programming:")
    rows: list[list[str]] = []
    for r in plan.kernel:
        if not r.programmed:
            what = "left to Felix"
        elif r.tunnel and r.direct_within:
            what = f"via {r.tunnel} onlink unless the next hop is in {r.direct_within}"
        elif r.tunnel:
            what = f"via {r.tunnel} onlink"
        else:
            what = "via the next hop"
        rows.append([r.cidr, what, f"({r.reason})"])
    lines += _table(rows) if rows else []
    lines.append("  outside every pool: via the next hop")
    if plan.notes:
        lines.append("Notes:")
        lines += [f"  {n}" for n in plan.notes]
    return "\n".join(lines) + "\n"


__all__ = [
    "add_path_mode",
    "community_text",
    "export_rules",
    "next_hop_mode",
    "plan_dict",
    "plan_text",
    "session_communities",
    "session_dict",
]
