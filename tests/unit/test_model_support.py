"""Nothing silent: every field of every resource kind the Calico model reads is either shown
to take effect by a named test, or listed in bgpd/plan/support.py's NOT_SUPPORTED with the
note `bgpd plan` and the daemon's log give when it is set. A field added to the model (or a
kind, BGPFilter say) fails this test until it is one or the other. Kinds only felix reads
(support.FELIX_KINDS: its policy and FelixConfiguration) are felix's to account for."""

from __future__ import annotations

import ast
import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from bgpd.plan import compute
from bgpd.plan.support import NOT_SUPPORTED, model_fields, set_fields, unsupported_notes
from calico import Snapshot
from calico.model import (
    BGPConfiguration,
    BGPPeer,
    IPPool,
    Node,
    NodeAddress,
    NodeBGP,
    WorkloadEndpoint,
)

TESTS = Path(__file__).resolve().parent.parent

# Field -> the test that shows its effect (tests/<dir>/<file>::<function>).
_FILTERS = (
    "unit/test_conformance_filters.py::"
    "test_bgpd_accepts_and_exports_what_the_golden_configuration_does"
)
PROVEN: dict[str, str] = {
    "BGPPeer.filters": (
        "unit/test_speaker_filters.py::test_a_new_list_of_filters_regroups_the_peer_on_its_session"
    ),
    "BGPFilter.name": _FILTERS,
    "BGPFilter.export_v4": _FILTERS,
    "BGPFilter.import_v4": _FILTERS,
    "BGPFilter.export_v6": _FILTERS,
    "BGPFilter.import_v6": _FILTERS,
    "BGPConfiguration.name": "unit/test_plan_peering.py::test_mesh_settings_from_default_config",
    "BGPConfiguration.as_number": (
        "unit/test_plan_peering.py::test_mesh_settings_from_default_config"
    ),
    "BGPConfiguration.node_to_node_mesh_enabled": "unit/test_plan_peering.py::test_mesh_off",
    "BGPConfiguration.listen_port": (
        "unit/test_plan_peering.py::test_mesh_settings_from_default_config"
    ),
    "BGPConfiguration.log_severity_screen": (
        "unit/test_daemon_settings.py::test_the_daemon_follows_log_severity_unless_told_otherwise"
    ),
    "BGPConfiguration.node_mesh_password": (
        "unit/test_plan_peering.py::test_mesh_settings_from_default_config"
    ),
    "BGPConfiguration.node_mesh_max_restart_time": (
        "unit/test_plan_peering.py::test_mesh_settings_from_default_config"
    ),
    "BGPConfiguration.bind_mode": "unit/test_plan_peering.py::test_bind_mode_node_ip",
    "BGPConfiguration.ignored_interfaces": (
        "unit/test_kernel_learn.py::test_ignored_interfaces_keep_routes_out_of_learning"
    ),
    "BGPConfiguration.communities": (
        "unit/test_policy_settings.py::test_communities_are_added_per_prefix_for_every_source_and_peer"
    ),
    "BGPConfiguration.prefix_advertisements": (
        "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden"
    ),
    "BGPConfiguration.program_cluster_routes": (
        "unit/test_plan_kernel_rules.py::test_actions_per_program_cluster_routes"
    ),
    "BGPConfiguration.local_workload_peering_ipv4": (
        "unit/test_plan_peering.py::test_local_workload_peers_are_passive_sessions_per_workload_address"
    ),
    "BGPConfiguration.local_workload_peering_ipv6": (
        "unit/test_plan_peering.py::test_local_workload_peers_are_passive_sessions_per_workload_address"
    ),
    "Node.name": "unit/test_plan_peering.py::test_default_mesh",
    "Node.labels": "unit/test_plan_peering.py::test_selectors_and_reverse_peering",
    "Node.bgp.as_number": "unit/test_plan_peering.py::test_mesh_settings_from_default_config",
    "Node.bgp.ipv4_address": "unit/test_plan_peering.py::test_default_mesh",
    "Node.bgp.ipv6_address": "unit/test_plan_peering.py::test_mesh_families_are_separate",
    "Node.bgp.ipv4_ipip_tunnel_addr": (
        "unit/test_calico_ipam_check.py::test_every_tunnel_address_of_a_node_counts_as_in_use"
    ),
    "Node.bgp.route_reflector_cluster_id": (
        "unit/test_plan_peering.py::test_route_reflector_clients"
    ),
    "Node.ipv4_vxlan_tunnel_addr": (
        "unit/test_calico_ipam_check.py::test_every_tunnel_address_of_a_node_counts_as_in_use"
    ),
    "Node.vxlan_tunnel_mac_addr": "unit/test_felix_cluster.py::test_vxlan_routes_vteps_and_device",
    "Node.ipv6_vxlan_tunnel_addr": (
        "unit/test_calico_ipam_check.py::test_every_tunnel_address_of_a_node_counts_as_in_use"
    ),
    "Node.wireguard_ipv4_address": (
        "unit/test_calico_ipam_check.py::test_every_tunnel_address_of_a_node_counts_as_in_use"
    ),
    "Node.wireguard_ipv6_address": (
        "unit/test_calico_ipam_check.py::test_every_tunnel_address_of_a_node_counts_as_in_use"
    ),
    "Node.bfd.enabled": "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults",
    "Node.bfd.interval": "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults",
    "Node.bfd.multiplier": "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults",
    "BGPPeer.name": (
        "unit/test_plan_peering.py::test_local_workload_peer_scope_and_first_peer_by_name"
    ),
    "BGPPeer.node": "unit/test_plan_peering.py::test_node_specific_peers",
    "BGPPeer.node_selector": "unit/test_plan_peering.py::test_selectors_and_reverse_peering",
    "BGPPeer.peer_ip": "unit/test_plan_peering.py::test_global_peer",
    "BGPPeer.peer_port": "unit/test_plan_peering_edges.py::test_ipv6_global_peer_with_a_port",
    "BGPPeer.as_number": "unit/test_plan_peering.py::test_global_peer",
    "BGPPeer.local_as_number": (
        "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden"
    ),
    "BGPPeer.peer_selector": "unit/test_plan_peering.py::test_selectors_and_reverse_peering",
    "BGPPeer.keep_original_next_hop": (
        "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden"
    ),
    "BGPPeer.next_hop_mode": "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden",
    "BGPPeer.password": "unit/test_plan_peering.py::test_peer_settings",
    "BGPPeer.source_address": "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden",
    "BGPPeer.max_restart_time": (
        "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden"
    ),
    "BGPPeer.keepalive_time": "unit/test_plan_peering.py::test_peer_settings",
    "BGPPeer.num_allowed_local_as_numbers": (
        "unit/test_policy_settings.py::test_allow_local_as_lets_our_as_appear_that_often"
    ),
    "BGPPeer.ttl_security": "unit/test_conformance_behaviour.py::test_scenario_behaves_as_golden",
    "BGPPeer.reachable_by": (
        "unit/test_kernel_programming.py::test_static_routes_outrank_bgp_and_go_with_the_plan"
    ),
    "BGPPeer.local_workload_selector": (
        "unit/test_plan_peering.py::test_local_workload_peer_scope_and_first_peer_by_name"
    ),
    "BGPPeer.reverse_peering": (
        "unit/test_plan_peering_edges.py::test_manual_reverse_peering_of_a_peer_ip"
    ),
    "BGPPeer.bfd.enabled": "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults",
    "BGPPeer.bfd.interval": "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults",
    "BGPPeer.bfd.multiplier": (
        "unit/test_bfd_settings.py::test_plan_combines_peer_node_and_defaults"
    ),
    "IPPool.name": "unit/test_plan_export.py::test_pools_in_the_plan",
    "IPPool.cidr": "unit/test_plan_export.py::test_pools_in_the_plan",
    "IPPool.ipip_mode": "unit/test_plan_kernel_rules.py::test_ipip_tunnels_and_cross_subnet",
    "IPPool.vxlan_mode": "unit/test_plan_kernel_rules.py::test_actions_per_program_cluster_routes",
    "IPPool.nat_outgoing": (
        "interop/test_felix_policy.py::test_nat_outgoing_masquerades_only_its_pool"
    ),
    "IPPool.disabled": "unit/test_felix_ipam.py::test_pool_selection",
    "IPPool.disable_bgp_export": "unit/test_plan_export.py::test_pools_in_the_plan",
    "IPPool.block_size": (
        "unit/test_felix_ipam.py::test_blocks_of_an_old_block_size_are_not_overlapped"
    ),
    "IPPool.node_selector": "unit/test_felix_ipam.py::test_pool_selection",
    "IPPool.allowed_uses": "unit/test_felix_ipam.py::test_pool_selection",
    "IPPool.assignment_mode": (
        "unit/test_felix_ipam.py::test_manual_pools_are_used_only_when_asked_for"
    ),
    "BlockAffinity.name": "unit/test_model_resources.py::test_block_affinity_forms",
    "BlockAffinity.node": "unit/test_plan_export.py::test_blocks_blackholes_and_originations",
    "BlockAffinity.cidr": "unit/test_plan_export.py::test_blocks_blackholes_and_originations",
    "BlockAffinity.state": "unit/test_plan_export.py::test_blocks_blackholes_and_originations",
    "BlockAffinity.type": "unit/test_model_snapshot.py::test_affinities_of",
    "BlockAffinity.deleted": "unit/test_model_snapshot.py::test_affinities_of",
    "IPAMBlock.name": (
        "unit/test_felix_ipam.py::test_written_blocks_read_back_through_the_shared_model"
    ),
    "IPAMBlock.block": (
        "unit/test_felix_ipam.py::test_written_blocks_read_back_through_the_shared_model"
    ),
    "WorkloadEndpoint.name": (
        "unit/test_model_snapshot.py::test_workload_endpoints_are_kept_per_namespace"
    ),
    "WorkloadEndpoint.namespace": (
        "unit/test_model_snapshot.py::test_workload_endpoints_are_kept_per_namespace"
    ),
    "WorkloadEndpoint.node": (
        "unit/test_plan_peering.py::test_local_workload_peers_are_passive_sessions_per_workload_address"
    ),
    "WorkloadEndpoint.labels": (
        "unit/test_plan_peering.py::test_local_workload_peer_scope_and_first_peer_by_name"
    ),
    "WorkloadEndpoint.ip_networks": (
        "unit/test_plan_peering.py::test_local_workload_peers_are_passive_sessions_per_workload_address"
    ),
}

# For each field not supported: a value other than its default, to show the note appears.
UNSUPPORTED_VALUES: dict[str, Any] = {
    "BGPConfiguration.service_cluster_ips": ("10.96.0.0/12",),
    "BGPConfiguration.service_external_ips": ("203.0.113.0/24",),
    "BGPConfiguration.service_load_balancer_ips": ("198.51.100.0/24",),
    "BGPConfiguration.ipv4_normal_route_priority": 2000,
    "BGPConfiguration.ipv6_normal_route_priority": 80,
    "Node.addresses": (NodeAddress("10.0.0.1/24", "CalicoNodeIP"),),
    "IPPool.namespace_selector": "all()",
}


@cache
def _functions(file: str) -> frozenset[str]:
    tree = ast.parse((TESTS / file).read_text())
    return frozenset(n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))


def test_every_field_is_proven_or_not_supported() -> None:
    fields = model_fields()
    assert len(fields) == len(set(fields))
    neither = [f for f in fields if f not in PROVEN and f not in NOT_SUPPORTED]
    both = [f for f in fields if f in PROVEN and f in NOT_SUPPORTED]
    assert not neither, f"fields neither proven by a test nor listed as not supported: {neither}"
    assert not both, f"fields both proven and listed as not supported: {both}"
    stale = sorted((set(PROVEN) | set(NOT_SUPPORTED)) - set(fields))
    assert not stale, f"entries for fields the model does not have: {stale}"


@pytest.mark.parametrize("field", sorted(PROVEN))
def test_the_proving_test_exists(field: str) -> None:
    file, _, name = PROVEN[field].partition("::")
    assert (TESTS / file).is_file(), PROVEN[field]
    assert name in _functions(file), PROVEN[field]


def _snapshot_with(field: str, value: Any) -> Snapshot:
    kind, _, path = field.partition(".")
    config = BGPConfiguration("default")
    node = Node("n1", bgp=NodeBGP(ipv4_address="10.0.0.1/24"))
    peer = BGPPeer("p", peer_ip="10.0.0.9", as_number=65000)
    pool = IPPool("pool", "192.168.0.0/16")
    wep = WorkloadEndpoint("w", "ns", "n1", ip_networks=("192.168.0.5/32",))
    resources = {"BGPConfiguration": config, "Node": node, "BGPPeer": peer, "IPPool": pool,
                 "WorkloadEndpoint": wep}
    target = resources[kind]
    names = path.split(".")
    if len(names) == 1:
        resources[kind] = dataclasses.replace(target, **{names[0]: value})
    else:
        inner = getattr(target, names[0])
        resources[kind] = dataclasses.replace(
            target, **{names[0]: dataclasses.replace(inner, **{names[1]: value})}
        )
    return Snapshot.of(resources.values())


def test_every_unsupported_field_has_a_value_to_show() -> None:
    assert set(UNSUPPORTED_VALUES) == set(NOT_SUPPORTED)


@pytest.mark.parametrize("field", sorted(NOT_SUPPORTED))
def test_an_unsupported_field_set_is_a_plan_note(field: str) -> None:
    snapshot = _snapshot_with(field, UNSUPPORTED_VALUES[field])
    plan = compute(snapshot, "n1")
    kind = field.partition(".")[0]
    assert any(n.startswith(f"{kind} ") and NOT_SUPPORTED[field] in n for n in plan.notes), (
        field,
        plan.notes,
    )
    # At its default it is no note.
    quiet = compute(_snapshot_with(field, _default_of(field)), "n1")
    assert not any(NOT_SUPPORTED[field] in n for n in quiet.notes)


def _default_of(field: str) -> Any:
    kind, _, path = field.partition(".")
    cls = {"BGPConfiguration": BGPConfiguration, "Node": Node, "BGPPeer": BGPPeer,
           "IPPool": IPPool, "WorkloadEndpoint": WorkloadEndpoint}[kind]
    names = path.split(".")
    if len(names) > 1:
        cls = NodeBGP
    (f,) = [f for f in dataclasses.fields(cls) if f.name == names[-1]]
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def test_set_fields_sees_nested_settings_and_skips_defaults() -> None:
    node = Node("n1", bgp=NodeBGP(ipv4_address="10.0.0.1/24"), vxlan_tunnel_mac_addr="aa")
    assert dict(set_fields(node)) == {"bgp.ipv4_address": "10.0.0.1/24",
                                      "vxlan_tunnel_mac_addr": "aa"}
    assert list(set_fields(BGPConfiguration("default"))) == []


def test_notes_only_for_what_concerns_the_node() -> None:
    snapshot = Snapshot.of([
        BGPConfiguration("node.other", ipv4_normal_route_priority=10),
        Node("n1", bgp=NodeBGP(ipv4_address="10.0.0.1/24")),
        Node("other", addresses=(NodeAddress("10.0.0.2"),)),
        BGPPeer("elsewhere", node="other", peer_ip="10.0.0.9", as_number=1, filters=("f",)),
        WorkloadEndpoint("w", node="other"),
    ])
    assert unsupported_notes(snapshot, "n1", ()) == []
    assert compute(snapshot, "n1").notes == ()
