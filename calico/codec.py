"""Stored values <-> typed resources: what each key of Calico's layout holds. Pure.

Reading (`decode`): a v3 resource key holds the whole object as JSON (`kind`, `apiVersion`,
`metadata`, `spec`); the key names it, so kind and name come from the key. IPAM keys hold
Calico's IPAM JSON: an affinity `{"state":..., "deleted":...}` (empty reads as confirmed), a
block `{"cidr", "affinity", "allocations", ...}` with snake_case keys, both read (and written)
by calico.ipam. Unknown fields are ignored and defaults applied by the model.

Writing (`to_calico`, `encode`): the model back to Calico's JSON, camelCase for resources
and snake_case for IPAM, defaults written out as clientv3 does on create, so what we store
reads the same to Calico's own tools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from calico import keys
from calico.errors import ResourceError
from calico.ipam import Affinity
from calico.model import (
    API_VERSION,
    BFD_ANNOTATION,
    BFD_INTERVAL_ANNOTATION,
    BFD_MULTIPLIER_ANNOTATION,
    NO_BFD,
    BfdSettings,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FelixConfiguration,
    FilterOperation,
    FilterRule,
    IPAMBlock,
    IPPool,
    Node,
    Resource,
    WorkloadEndpoint,
    parse_resource,
)
from calico.policy import (
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    ICMPMatch,
    NetworkPolicy,
    NetworkSet,
    Profile,
    Rule,
    Tier,
)

__all__ = ["bfd_annotations", "decode", "dumps", "encode", "key_of", "to_calico", "to_v3"]


def dumps(value: Any) -> bytes:
    """JSON as Go's json.Marshal writes it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(key: str, value: bytes) -> Any:
    try:
        return json.loads(value) if value.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResourceError(f"not JSON: {exc}", source=key) from None


def decode(key: str, value: bytes) -> Resource | None:
    """The resource stored at `key`, or None for a key this model does not read (other
    kinds, handles, config). Raises ResourceError (with the key as source)."""
    rk = keys.parse_resource_key(key)
    if rk is not None:
        obj = _loads(key, value)
        if not isinstance(obj, Mapping):
            raise ResourceError("expected a JSON object", source=key)
        meta = obj.get("metadata")
        meta = dict(meta) if isinstance(meta, Mapping) else {}
        meta["name"] = rk.name
        if rk.namespace is not None:
            meta["namespace"] = rk.namespace
        obj = {**obj, "kind": rk.kind, "apiVersion": API_VERSION, "metadata": meta}
        try:
            return parse_resource(obj)
        except ResourceError as exc:
            raise exc.located(source=key) from None
    ak = keys.parse_affinity_key(key)
    if ak is not None:
        obj = _loads(key, value)
        try:
            affinity = BlockAffinity.from_ipam(ak.node, ak.cidr, obj)
        except ResourceError as exc:
            raise exc.located(source=key) from None
        return affinity if ak.type == "host" else replace(affinity, type=ak.type)
    if keys.parse_block_key(key) is not None:
        obj = _loads(key, value)
        if not isinstance(obj, Mapping):
            raise ResourceError("expected a JSON object", source=key)
        try:
            return IPAMBlock.from_ipam(obj)
        except ResourceError as exc:
            raise exc.located(source=key) from None
    return None


def key_of(resource: Resource) -> str:
    if isinstance(resource, BlockAffinity):
        return keys.affinity_key(resource.node, resource.cidr, resource.type)
    if isinstance(resource, IPAMBlock):
        return keys.block_key(resource.cidr)
    return keys.resource_key(resource.kind, resource.name, getattr(resource, "namespace", None))


def encode(resource: Resource) -> tuple[str, bytes]:
    """The key and the stored value of `resource`."""
    return key_of(resource), dumps(to_calico(resource))


def to_calico(resource: Resource) -> dict[str, Any]:
    """The value Calico stores for `resource` (an IPAM value for affinities and blocks, as
    calico.ipam writes it)."""
    if isinstance(resource, BlockAffinity):
        return Affinity(resource.state, resource.deleted).to_obj()
    if isinstance(resource, IPAMBlock):
        return resource.block.to_obj()
    return to_v3(resource)


def to_v3(resource: Resource) -> dict[str, Any]:
    """The v3 API object (kind, apiVersion, metadata, spec)."""
    meta: dict[str, Any] = {"name": resource.name}
    namespace = getattr(resource, "namespace", None)
    if namespace:
        meta["namespace"] = namespace
    labelled = Node | NetworkSet | GlobalNetworkSet | WorkloadEndpoint
    if isinstance(resource, labelled) and resource.labels:
        meta["labels"] = dict(resource.labels)
    if isinstance(resource, Node | BGPPeer) and resource.bfd != NO_BFD:
        meta["annotations"] = bfd_annotations(resource.bfd)
    spec = _SPECS[type(resource)](resource)
    return {"kind": resource.kind, "apiVersion": API_VERSION, "metadata": meta, "spec": spec}


def bfd_annotations(bfd: BfdSettings) -> dict[str, str]:
    """The pybgpd.io/bfd* annotations that read back as `bfd`."""
    out: dict[str, str] = {}
    if bfd.enabled is not None:
        out[BFD_ANNOTATION] = "true" if bfd.enabled else "false"
    if bfd.interval is not None:
        out[BFD_INTERVAL_ANNOTATION] = f"{round(bfd.interval * 1000, 3):g}ms"
    if bfd.multiplier is not None:
        out[BFD_MULTIPLIER_ANNOTATION] = str(bfd.multiplier)
    return out


def _secret(ref: Any) -> dict[str, Any]:
    return {"secretKeyRef": {"name": ref.name, "key": ref.key}}


def _bgp_configuration(c: Any) -> dict[str, Any]:
    assert isinstance(c, BGPConfiguration)
    spec: dict[str, Any] = {
        "nodeToNodeMeshEnabled": c.node_to_node_mesh_enabled,
        "asNumber": c.as_number,
    }
    if c.log_severity_screen is not None:
        spec["logSeverityScreen"] = c.log_severity_screen
    if c.listen_port is not None:
        spec["listenPort"] = c.listen_port
    if c.node_mesh_password is not None:
        spec["nodeMeshPassword"] = _secret(c.node_mesh_password)
    if c.node_mesh_max_restart_time is not None:
        spec["nodeMeshMaxRestartTime"] = f"{c.node_mesh_max_restart_time}s"
    if c.bind_mode != "None":
        spec["bindMode"] = c.bind_mode
    if c.ignored_interfaces:
        spec["ignoredInterfaces"] = list(c.ignored_interfaces)
    for field, cidrs in (
        ("serviceClusterIPs", c.service_cluster_ips),
        ("serviceExternalIPs", c.service_external_ips),
        ("serviceLoadBalancerIPs", c.service_load_balancer_ips),
    ):
        if cidrs:
            spec[field] = [{"cidr": x} for x in cidrs]
    if c.communities:
        spec["communities"] = [{"name": x.name, "value": x.value} for x in c.communities]
    if c.prefix_advertisements:
        spec["prefixAdvertisements"] = [
            {"cidr": a.cidr, "communities": list(a.communities)} for a in c.prefix_advertisements
        ]
    if c.program_cluster_routes is not None:
        spec["programClusterRoutes"] = c.program_cluster_routes
    if c.ipv4_normal_route_priority != 1024:
        spec["ipv4NormalRoutePriority"] = c.ipv4_normal_route_priority
    if c.ipv6_normal_route_priority != 1024:
        spec["ipv6NormalRoutePriority"] = c.ipv6_normal_route_priority
    if c.local_workload_peering_ipv4 is not None:
        spec["localWorkloadPeeringIPV4"] = c.local_workload_peering_ipv4
    if c.local_workload_peering_ipv6 is not None:
        spec["localWorkloadPeeringIPV6"] = c.local_workload_peering_ipv6
    return spec


def _node(n: Any) -> dict[str, Any]:
    assert isinstance(n, Node)
    spec: dict[str, Any] = {}
    if n.bgp is not None:
        bgp: dict[str, Any] = {}
        for field, value in (
            ("asNumber", n.bgp.as_number),
            ("ipv4Address", n.bgp.ipv4_address),
            ("ipv6Address", n.bgp.ipv6_address),
            ("ipv4IPIPTunnelAddr", n.bgp.ipv4_ipip_tunnel_addr),
            ("routeReflectorClusterID", n.bgp.route_reflector_cluster_id),
        ):
            if value is not None:
                bgp[field] = value
        spec["bgp"] = bgp
    for field, value in (
        ("ipv4VXLANTunnelAddr", n.ipv4_vxlan_tunnel_addr),
        ("vxlanTunnelMACAddr", n.vxlan_tunnel_mac_addr),
        ("ipv6VXLANTunnelAddr", n.ipv6_vxlan_tunnel_addr),
    ):
        if value is not None:
            spec[field] = value
    wireguard = {
        k: v
        for k, v in (
            ("interfaceIPv4Address", n.wireguard_ipv4_address),
            ("interfaceIPv6Address", n.wireguard_ipv6_address),
        )
        if v is not None
    }
    if wireguard:
        spec["wireguard"] = wireguard
    if n.addresses:
        spec["addresses"] = [
            {"address": a.address, **({"type": a.type} if a.type else {})} for a in n.addresses
        ]
    return spec


def _peer_ip(p: BGPPeer) -> str:
    assert p.peer_ip is not None
    if p.peer_port is None:
        return p.peer_ip
    return f"[{p.peer_ip}]:{p.peer_port}" if ":" in p.peer_ip else f"{p.peer_ip}:{p.peer_port}"


def _bgp_peer(p: Any) -> dict[str, Any]:
    assert isinstance(p, BGPPeer)
    spec: dict[str, Any] = {}
    for field, value in (
        ("node", p.node),
        ("nodeSelector", p.node_selector),
        ("peerIP", _peer_ip(p) if p.peer_ip else None),
        ("asNumber", p.as_number),
        ("localASNumber", p.local_as_number),
        ("peerSelector", p.peer_selector),
        ("keepOriginalNextHop", p.keep_original_next_hop or None),
        ("nextHopMode", p.next_hop_mode),
        ("password", _secret(p.password) if p.password else None),
        ("sourceAddress", p.source_address),
        ("maxRestartTime", f"{p.max_restart_time}s" if p.max_restart_time is not None else None),
        ("keepaliveTime", f"{p.keepalive_time}s" if p.keepalive_time is not None else None),
        ("numAllowedLocalASNumbers", p.num_allowed_local_as_numbers),
        ("ttlSecurity", p.ttl_security),
        ("reachableBy", p.reachable_by),
        ("filters", list(p.filters) or None),
        ("localWorkloadSelector", p.local_workload_selector),
        ("reversePeering", None if p.reverse_peering == "Auto" else p.reverse_peering),
    ):
        if value is not None:
            spec[field] = value
    return spec


def _filter_operation(op: FilterOperation) -> dict[str, Any]:
    if op.add_community is not None:
        return {"addCommunity": {"value": op.add_community}}
    if op.prepend_as_path:
        return {"prependASPath": {"prefix": list(op.prepend_as_path)}}
    return {"setPriority": {"value": op.set_priority}}


def _filter_rule(rule: FilterRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.cidr is not None:
        out["cidr"] = rule.cidr
        out["matchOperator"] = rule.match_operator
    if rule.prefix_length is not None:
        low, high = rule.prefix_length
        out["prefixLength"] = {
            k: v for k, v in (("min", low), ("max", high)) if v is not None
        }
    for field, value in (
        ("source", rule.source),
        ("interface", rule.interface),
        ("peerType", rule.peer_type),
        ("priority", rule.priority),
    ):
        if value is not None:
            out[field] = value
    if rule.community is not None:
        out["communities"] = {"values": [rule.community]}
    if rule.as_path_prefix:
        out["asPathPrefix"] = list(rule.as_path_prefix)
    out["action"] = rule.action
    if rule.operations:
        out["operations"] = [_filter_operation(op) for op in rule.operations]
    return out


def _bgp_filter(f: Any) -> dict[str, Any]:
    assert isinstance(f, BGPFilter)
    spec: dict[str, Any] = {}
    for field, rules in (
        ("exportV4", f.export_v4),
        ("importV4", f.import_v4),
        ("exportV6", f.export_v6),
        ("importV6", f.import_v6),
    ):
        if rules:
            spec[field] = [_filter_rule(r) for r in rules]
    return spec


def _ip_pool(p: Any) -> dict[str, Any]:
    assert isinstance(p, IPPool)
    spec: dict[str, Any] = {
        "cidr": p.cidr,
        "vxlanMode": p.vxlan_mode,
        "ipipMode": p.ipip_mode,
        "natOutgoing": p.nat_outgoing,
        "blockSize": p.block_size,
        "nodeSelector": p.node_selector,
        "allowedUses": list(p.allowed_uses),
        "assignmentMode": p.assignment_mode,
    }
    if p.disabled:
        spec["disabled"] = True
    if p.disable_bgp_export:
        spec["disableBGPExport"] = True
    if p.namespace_selector:
        spec["namespaceSelector"] = p.namespace_selector
    return spec


def _block_affinity(a: Any) -> dict[str, Any]:
    assert isinstance(a, BlockAffinity)
    return {
        "state": a.state,
        "node": a.node,
        "cidr": a.cidr,
        "type": a.type,
        "deleted": "true" if a.deleted else "false",
    }


def _ipam_block(b: Any) -> dict[str, Any]:
    assert isinstance(b, IPAMBlock)
    return b.block.to_obj()


def _icmp(m: ICMPMatch) -> dict[str, Any]:
    return {k: v for k, v in (("type", m.type), ("code", m.code)) if v is not None}


def _entity(e: EntityRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in (
        ("nets", list(e.nets)),
        ("notNets", list(e.not_nets)),
        ("selector", e.selector),
        ("notSelector", e.not_selector),
        ("namespaceSelector", e.namespace_selector),
        ("ports", [p.to_json() for p in e.ports]),
        ("notPorts", [p.to_json() for p in e.not_ports]),
    ):
        if value:
            out[field] = value
    if e.service_accounts is not None:
        sa: dict[str, Any] = {}
        if e.service_accounts.names:
            sa["names"] = list(e.service_accounts.names)
        if e.service_accounts.selector:
            sa["selector"] = e.service_accounts.selector
        out["serviceAccounts"] = sa
    return out


def _rule(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"action": r.action}
    if r.ip_version is not None:
        out["ipVersion"] = r.ip_version
    for field, proto in (("protocol", r.protocol), ("notProtocol", r.not_protocol)):
        if proto is not None:
            out[field] = proto.name or proto.number
    if r.icmp is not None:
        out["icmp"] = _icmp(r.icmp)
    if r.not_icmp is not None:
        out["notICMP"] = _icmp(r.not_icmp)
    out["source"] = _entity(r.source)
    out["destination"] = _entity(r.destination)
    if r.annotations:
        out["metadata"] = {"annotations": dict(r.annotations)}
    return out


def _policy(p: Any) -> dict[str, Any]:
    assert isinstance(p, NetworkPolicy | GlobalNetworkPolicy)
    spec: dict[str, Any] = {"tier": p.tier}
    if p.order is not None:
        spec["order"] = int(p.order) if p.order.is_integer() else p.order
    spec["selector"] = p.selector
    if isinstance(p, GlobalNetworkPolicy) and p.namespace_selector:
        spec["namespaceSelector"] = p.namespace_selector
    if p.service_account_selector:
        spec["serviceAccountSelector"] = p.service_account_selector
    spec["types"] = list(p.types)
    if p.ingress:
        spec["ingress"] = [_rule(r) for r in p.ingress]
    if p.egress:
        spec["egress"] = [_rule(r) for r in p.egress]
    if isinstance(p, GlobalNetworkPolicy):
        for field, flag in (
            ("doNotTrack", p.do_not_track),
            ("preDNAT", p.pre_dnat),
            ("applyOnForward", p.apply_on_forward),
        ):
            if flag:
                spec[field] = True
    return spec


def _profile(p: Any) -> dict[str, Any]:
    assert isinstance(p, Profile)
    spec: dict[str, Any] = {}
    if p.ingress:
        spec["ingress"] = [_rule(r) for r in p.ingress]
    if p.egress:
        spec["egress"] = [_rule(r) for r in p.egress]
    if p.labels_to_apply:
        spec["labelsToApply"] = dict(p.labels_to_apply)
    return spec


def _tier(t: Any) -> dict[str, Any]:
    assert isinstance(t, Tier)
    spec: dict[str, Any] = {}
    if t.order is not None:
        spec["order"] = int(t.order) if t.order.is_integer() else t.order
    spec["defaultAction"] = t.default_action
    return spec


def _network_set(n: Any) -> dict[str, Any]:
    assert isinstance(n, NetworkSet | GlobalNetworkSet)
    return {"nets": list(n.nets)} if n.nets else {}


def _felix_configuration(c: Any) -> dict[str, Any]:
    assert isinstance(c, FelixConfiguration)
    return {
        field: value
        for field, value in (
            ("programClusterRoutes", c.program_cluster_routes),
            ("vxlanVNI", c.vxlan_vni),
            ("vxlanPort", c.vxlan_port),
            ("defaultEndpointToHostAction", c.default_endpoint_to_host_action),
            ("iptablesFilterDenyAction", c.iptables_filter_deny_action),
            ("logPrefix", c.log_prefix),
            ("natOutgoingAddress", c.nat_outgoing_address),
        )
        if value is not None
    }


def _workload_endpoint(w: Any) -> dict[str, Any]:
    assert isinstance(w, WorkloadEndpoint)
    return {"node": w.node, "ipNetworks": list(w.ip_networks)}


_SPECS: Mapping[type, Any] = {
    NetworkPolicy: _policy,
    GlobalNetworkPolicy: _policy,
    Profile: _profile,
    Tier: _tier,
    NetworkSet: _network_set,
    GlobalNetworkSet: _network_set,
    FelixConfiguration: _felix_configuration,
    BGPConfiguration: _bgp_configuration,
    Node: _node,
    BGPPeer: _bgp_peer,
    IPPool: _ip_pool,
    BlockAffinity: _block_affinity,
    IPAMBlock: _ipam_block,
    BGPFilter: _bgp_filter,
    WorkloadEndpoint: _workload_endpoint,
}
