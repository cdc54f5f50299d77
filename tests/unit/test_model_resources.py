"""Typed Calico resources: defaults applied on read, accepted forms, one-line errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico import ResourceError, ipam, model, parse_resource
from calico.codec import decode, encode
from calico.ipam import Affinity, Block
from calico.keys import block_key
from calico.model import (
    BGPConfiguration,
    BGPPeer,
    BlockAffinity,
    IPAMBlock,
    IPPool,
    Node,
    SecretKeyRef,
    WorkloadEndpoint,
    parse_as_number,
    parse_duration,
    split_peer_ip,
)


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": kind,
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, **meta},
    }
    if spec is not None:
        d["spec"] = spec
    return d


def read(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any) -> Any:
    return parse_resource(doc(kind, name, spec, **meta))


def error(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> str:
    with pytest.raises(ResourceError) as e:
        read(kind, name, spec, **meta)
    assert "\n" not in str(e.value)
    return str(e.value)


# --- BGPConfiguration ---------------------------------------------------------------------


def test_bgp_configuration_local_workload_peering_and_log_severity() -> None:
    c = read(
        "BGPConfiguration",
        "default",
        {
            "localWorkloadPeeringIPV4": "169.254.0.179",
            "localWorkloadPeeringIPV6": "fd12:3456:789a::1",
            "logSeverityScreen": "debug",
        },
    )
    assert (c.local_workload_peering_ipv4, c.local_workload_peering_ipv6) == (
        "169.254.0.179",
        "fd12:3456:789a::1",
    )
    assert c.log_severity_screen == "Debug"  # any case, as Calico's validation
    assert read("BGPConfiguration", "default").log_severity_screen is None
    assert "is not one of" in error("BGPConfiguration", "default", {"logSeverityScreen": "Loud"})
    assert "IPv4 address" in error(
        "BGPConfiguration", "default", {"localWorkloadPeeringIPV4": "fd00::1"}
    )
    key, value = encode(c)
    assert decode(key, value) == c


def test_bgp_configuration_defaults() -> None:
    c = read("BGPConfiguration", "default")
    assert c == BGPConfiguration("default")
    assert c.as_number == 64512
    assert c.node_to_node_mesh_enabled is True
    assert c.listen_port is None  # unset: the node's, else default's, else 179
    assert c.node_name is None
    assert read("BGPConfiguration", "default", {}) == c
    assert read("BGPConfiguration", "node.n1", {"listenPort": 180}).node_name == "n1"


def test_bgp_configuration_fields() -> None:
    c = read(
        "BGPConfiguration",
        "default",
        {
            "asNumber": "65000",
            "nodeToNodeMeshEnabled": False,
            "listenPort": 1790,
            "nodeMeshPassword": {"secretKeyRef": {"name": "bgp", "key": "mesh"}},
            "nodeMeshMaxRestartTime": "1m30s",
            "bindMode": "NodeIP",
            "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {}],
            "communities": [{"name": "c1", "value": "65000:100"}],
            "prefixAdvertisements": [{"cidr": "192.168.0.0/16", "communities": ["c1"]}],
            "someFutureField": {"x": 1},
        },
    )
    assert c.as_number == 65000
    assert c.node_to_node_mesh_enabled is False
    assert c.listen_port == 1790
    assert c.node_mesh_password == SecretKeyRef("bgp", "mesh")
    assert c.node_mesh_max_restart_time == 90
    assert c.bind_mode == "NodeIP"
    assert c.service_cluster_ips == ("10.96.0.0/12",)
    assert c.prefix_advertisements[0].communities == ("c1",)


@pytest.mark.parametrize(
    ("value", "asn"),
    [(64512, 64512), ("64512", 64512), ("1.10", 65546), (4294967295, 4294967295), (65000.0, 65000)],
)
def test_as_number_forms(value: Any, asn: int) -> None:
    assert parse_as_number(value) == asn
    assert read("BGPConfiguration", "default", {"asNumber": value}).as_number == asn


@pytest.mark.parametrize("value", ["abc", True, -1, 2**32, "1.70000", 1.5, [1]])
def test_bad_as_numbers(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_as_number(value)
    msg = error("BGPConfiguration", "default", {"asNumber": value})
    assert msg.startswith("BGPConfiguration 'default': spec.asNumber: ")
    assert "is not an AS number" in msg


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("0", 0.0),
        ("2h45m", 9900.0),
        ("1us", 1e-6),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_durations_round_half_away_from_zero_to_whole_seconds() -> None:
    # Go's math.Round, as confd turns maxRestartTime into BIRD's seconds.
    assert (
        read(
            "BGPConfiguration", "default", {"nodeMeshMaxRestartTime": "500ms"}
        ).node_mesh_max_restart_time
        == 1
    )
    assert (
        read(
            "BGPConfiguration", "default", {"nodeMeshMaxRestartTime": "2.4s"}
        ).node_mesh_max_restart_time
        == 2
    )


@pytest.mark.parametrize("text", ["10", "s", "1d", "", "1.2.3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_negative_durations_are_refused() -> None:
    msg = error("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "keepaliveTime": "-5s"})
    assert msg == "BGPPeer 'p': spec.keepaliveTime: '-5s' is negative"


def test_duration_must_be_a_string() -> None:
    msg = error("BGPPeer", "p", {"peerIP": "10.0.0.1", "asNumber": 1, "maxRestartTime": 120})
    assert msg == (
        "BGPPeer 'p': spec.maxRestartTime: expected a duration such as '120s', found the number 120"
    )


def test_bgp_configuration_errors() -> None:
    assert error("BGPConfiguration", "default", {"listenPort": 70000}) == (
        "BGPConfiguration 'default': spec.listenPort: 70000 is out of range 0..65535"
    )
    assert error("BGPConfiguration", "default", {"bindMode": "Any"}) == (
        "BGPConfiguration 'default': spec.bindMode: 'Any' is not one of 'None', 'NodeIP'"
    )
    assert error("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": "yes please"}) == (
        "BGPConfiguration 'default': spec.nodeToNodeMeshEnabled: expected true or false, "
        "found 'yes please'"
    )
    assert error("BGPConfiguration", "default", {"nodeMeshPassword": {"secretKeyRef": {}}}) == (
        "BGPConfiguration 'default': spec.nodeMeshPassword.secretKeyRef: "
        "required (passwords are secret references)"
    )
    assert (
        error("BGPConfiguration", "default", {"communities": [{"name": "x", "value": "1"}]})
        == "BGPConfiguration 'default': spec.communities[0].value: '1' is not a community "
        "'a:b' or 'a:b:c'"
    )


# --- Node -------------------------------------------------------------------------------


def test_node_addresses() -> None:
    n = read(
        "Node",
        "n1",
        {
            "bgp": {
                "ipv4Address": "10.0.0.2/24",
                "ipv6Address": "FD00:0::2/64",
                "asNumber": 65001,
                "routeReflectorClusterID": "224.0.0.1",
            },
            "orchRefs": [{"nodeName": "n1", "orchestrator": "k8s"}],
        },
        labels={"rack": "r1", "route-reflector": True, "count": 3},
    )
    assert isinstance(n, Node)
    assert (n.ipv4, n.ipv4_network) == ("10.0.0.2", "10.0.0.0/24")
    assert (n.ipv6, n.ipv6_network) == ("fd00::2", "fd00::/64")
    assert n.as_number == 65001
    assert n.rr_cluster_id == "224.0.0.1"
    # YAML reads `true` and numbers; Calico labels are strings.
    assert dict(n.labels) == {"rack": "r1", "route-reflector": "true", "count": "3"}


def test_node_plain_ip_is_a_host_network() -> None:
    n = read("Node", "n1", {"bgp": {"ipv4Address": "10.0.0.2"}})
    assert (n.ipv4, n.ipv4_network) == ("10.0.0.2", "10.0.0.2/32")


def test_node_without_bgp() -> None:
    n = read("Node", "n1", {"addresses": [{"address": "10.0.0.2", "type": "InternalIP"}]})
    assert n.bgp is None
    assert (n.ipv4, n.ipv6, n.as_number, n.rr_cluster_id) == (None, None, None, None)


def test_node_errors() -> None:
    assert error("Node", "n1", {"bgp": {"ipv4Address": "10.0.0.300/24"}}) == (
        "Node 'n1': spec.bgp.ipv4Address: '10.0.0.300/24' is not an IPv4 address or CIDR"
    )
    assert error("Node", "n1", {"bgp": {"ipv4Address": "fd00::1/64"}}) == (
        "Node 'n1': spec.bgp.ipv4Address: 'fd00::1/64' is not an IPv4 address or CIDR"
    )
    assert error("Node", "n1", {"bgp": {"routeReflectorClusterID": "rr1"}}) == (
        "Node 'n1': spec.bgp.routeReflectorClusterID: 'rr1' is not an IPv4 address"
    )
    assert error("Node", "n1", {}, labels=["a"]) == (
        "Node 'n1': metadata.labels: expected a mapping, found a list"
    )


# --- BGPPeer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ip", "port"),
    [
        ("10.0.0.5", "10.0.0.5", None),
        ("10.0.0.5:1790", "10.0.0.5", 1790),
        ("[fd00::5]:1790", "fd00::5", 1790),
        ("fd00:0::5", "fd00::5", None),
        (" 10.0.0.5 ", "10.0.0.5", None),
    ],
)
def test_peer_ip_forms(text: str, ip: str, port: int | None) -> None:
    assert split_peer_ip(text) == (ip, port)


@pytest.mark.parametrize(
    "text",
    [
        "10.0.0.300",
        "10.0.0.5:",
        "10.0.0.5:0",
        "10.0.0.5:70000",
        "[fd00::5]",
        "[fd00::5]:x",
        "host.example:179",
        "",
    ],
)
def test_bad_peer_ips(text: str) -> None:
    with pytest.raises(ValueError):
        split_peer_ip(text)


def test_bgp_peer_defaults_and_fields() -> None:
    p = read("BGPPeer", "rack1-tor", {"peerIP": "10.0.1.1", "asNumber": 64513})
    assert p == BGPPeer("rack1-tor", peer_ip="10.0.1.1", as_number=64513)
    assert p.is_global
    assert p.source_address == "UseNodeIP"
    assert p.reverse_peering == "Auto"

    p = read(
        "BGPPeer",
        "rack1-tor",
        {
            "nodeSelector": "rack == 'rack-1'",
            "peerIP": "10.0.1.1:1790",
            "asNumber": "64513",
            "localASNumber": 65001,
            "keepOriginalNextHop": True,
            "nextHopMode": "Keep",
            "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rack1"}},
            "sourceAddress": "None",
            "maxRestartTime": "15s",
            "keepaliveTime": "10s",
            "numAllowedLocalASNumbers": 2,
            "ttlSecurity": 1,
            "reachableBy": "10.0.0.254",
            "filters": ["only-pods"],
            "reversePeering": "Manual",
        },
    )
    assert not p.is_global
    assert (p.peer_ip, p.peer_port, p.as_number, p.local_as_number) == (
        "10.0.1.1",
        1790,
        64513,
        65001,
    )
    assert p.password == SecretKeyRef("bgp-secrets", "rack1")
    assert (p.max_restart_time, p.keepalive_time, p.ttl_security) == (15, 10, 1)
    assert (p.source_address, p.next_hop_mode, p.reachable_by) == ("None", "Keep", "10.0.0.254")
    assert p.filters == ("only-pods",)
    assert p.num_allowed_local_as_numbers == 2


def test_bgp_peer_error_names_resource_and_field() -> None:
    assert error("BGPPeer", "rack1-tor", {"peerIP": "10.0.0.300", "asNumber": 64513}) == (
        "BGPPeer 'rack1-tor': spec.peerIP: '10.0.0.300' is not an IP address"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"asNumber": 1},
            "spec.peerIP: one of peerIP, peerSelector, localWorkloadSelector is required",
        ),
        (
            {"peerIP": "10.0.0.1", "peerSelector": "all()"},
            "spec.peerSelector: cannot be set together with spec.peerIP",
        ),
        (
            {"peerSelector": "all()", "node": "a", "nodeSelector": "all()"},
            "spec.nodeSelector: cannot be set together with spec.node",
        ),
        (
            {"peerSelector": "rack = 'a'"},
            "spec.peerSelector: \"rack = 'a'\" is not a valid selector: "
            "expected '==' at position 5",
        ),
        (
            {"peerSelector": "all()", "nextHopMode": "self"},
            "spec.nextHopMode: 'self' is not one of 'Auto', 'Self', 'Keep'",
        ),
        (
            {"peerSelector": "all()", "ttlSecurity": 256},
            "spec.ttlSecurity: 256 is out of range 0..255",
        ),
        ({"peerSelector": "all()", "filters": "f"}, "spec.filters: expected a list, found 'f'"),
        (
            {"peerSelector": "all()", "password": {"secretKeyRef": {"name": "s"}}},
            "spec.password.secretKeyRef.key: required",
        ),
    ],
)
def test_bgp_peer_errors(spec: dict[str, Any], message: str) -> None:
    assert error("BGPPeer", "p", spec) == f"BGPPeer 'p': {message}"


# --- IPPool -------------------------------------------------------------------------------


def test_ip_pool_defaults() -> None:
    v4 = read("IPPool", "p4", {"cidr": "192.168.0.0/16"})
    assert v4 == IPPool("p4", "192.168.0.0/16")
    assert (v4.block_size, v4.node_selector, v4.allowed_uses) == (
        26,
        "all()",
        ("Workload", "Tunnel"),
    )
    assert (v4.ipip_mode, v4.vxlan_mode, v4.assignment_mode) == ("Never", "Never", "Automatic")
    v6 = read("IPPool", "p6", {"cidr": "fd00:10::/48"})
    assert (v6.block_size, v6.version) == (122, 6)


def test_ip_pool_cidr_is_masked() -> None:
    assert read("IPPool", "p", {"cidr": "192.168.3.7/16"}).cidr == "192.168.0.0/16"


def test_ip_pool_deprecated_fields() -> None:
    p = read(
        "IPPool",
        "p",
        {
            "cidr": "10.0.0.0/8",
            "ipip": {"enabled": True, "mode": "cross-subnet"},
            "nat-outgoing": True,
        },
    )
    assert (p.ipip_mode, p.nat_outgoing) == ("CrossSubnet", True)
    p = read("IPPool", "p", {"cidr": "10.0.0.0/8", "ipip": {"enabled": True}})
    assert p.ipip_mode == "Always"
    p = read("IPPool", "p", {"cidr": "10.0.0.0/8", "ipip": {"enabled": False, "mode": "always"}})
    assert p.ipip_mode == "Never"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.cidr: required"),
        ({"cidr": "192.168.0.0"}, "spec.cidr: '192.168.0.0' is not a CIDR"),
        ({"cidr": "10.0.0.0/8", "blockSize": 19}, "spec.blockSize: 19 is out of range 20..32"),
        (
            {"cidr": "10.0.0.0/24", "blockSize": 20},
            "spec.blockSize: 20 is shorter than the pool's prefix",
        ),
        ({"cidr": "fd00::/64", "blockSize": 26}, "spec.blockSize: 26 is out of range 116..128"),
        (
            {"cidr": "10.0.0.0/8", "ipipMode": "always"},
            "spec.ipipMode: 'always' is not one of 'Never', 'Always', 'CrossSubnet'",
        ),
        (
            {"cidr": "10.0.0.0/8", "ipipMode": "Always", "vxlanMode": "Always"},
            "spec.vxlanMode: cannot be enabled together with spec.ipipMode",
        ),
        (
            {"cidr": "fd00::/64", "ipipMode": "Always"},
            "spec.ipipMode: IPIP is not supported on an IPv6 pool",
        ),
    ],
)
def test_ip_pool_errors(spec: dict[str, Any], message: str) -> None:
    assert error("IPPool", "p", spec) == f"IPPool 'p': {message}"


# --- BlockAffinity and IPAMBlock ----------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "read_as"),
    [
        ("", "confirmed"),
        (None, "confirmed"),
        ("confirmed", "confirmed"),
        ("pending", "pending"),
        ("pendingDeletion", "pendingDeletion"),
    ],
)
def test_block_affinity_state(state: str | None, read_as: str) -> None:
    spec: dict[str, Any] = {"node": "n1", "cidr": "192.168.1.0/26"}
    if state is not None:
        spec["state"] = state
    a = read("BlockAffinity", "n1-192-168-1-0-26", spec)
    assert a == BlockAffinity("n1-192-168-1-0-26", "n1", "192.168.1.0/26", read_as)


def test_block_affinity_forms() -> None:
    a = read(
        "BlockAffinity",
        "x",
        {"node": "n1", "cidr": "fd00::/122", "deleted": "true", "type": "host"},
    )
    assert (a.deleted, a.version) == (True, 6)
    assert BlockAffinity.from_ipam("n1", "192.168.1.0/26", {"state": "pending"}).state == "pending"
    b = BlockAffinity.from_ipam("n1", "192.168.1.0/26", "")
    assert b == BlockAffinity("n1-192-168-1-0-26", "n1", "192.168.1.0/26", "confirmed")
    assert (
        error("BlockAffinity", "x", {"node": "n1", "cidr": "10.0.0.0/26", "state": "claimed"})
        == "BlockAffinity 'x': spec.state: 'claimed' is not one of 'confirmed', 'pending', "
        "'pendingDeletion'"
    )
    assert error("BlockAffinity", "x", {"cidr": "10.0.0.0/26"}) == (
        "BlockAffinity 'x': spec.node: required"
    )


def test_ipam_block() -> None:
    b = read(
        "IPAMBlock",
        "192-168-221-64-30",
        {
            "cidr": "192.168.221.64/30",
            "affinity": "host:node1",
            "allocations": [0, 1, None, None],
            "unallocated": [2, 3],
            "attributes": [
                {
                    "handle_id": "ipip-tunnel-addr-node1",
                    "secondary": {"node": "node1", "type": "ipipTunnelAddress"},
                },
                {"handle_id": "k8s-pod-network.4f3c", "secondary": None},
            ],
            "sequenceNumber": 1714557605100000002,
            "deleted": False,
        },
    )
    assert isinstance(b, IPAMBlock)
    assert b.host == "node1"
    assert b.block.allocations == (0, 1, None, None)
    assert b.block.attributes[0].secondary == {"node": "node1", "type": "ipipTunnelAddress"}
    assert b.block.attributes[1].handle_id == "k8s-pod-network.4f3c"
    assert b.block.sequence_number == 1714557605100000002
    assert (
        error("IPAMBlock", "x", {"cidr": "10.0.0.0/30", "allocations": [0, None, None, None]})
        == "IPAMBlock 'x': spec.allocations[0]: 0 is not an index into attributes"
    )
    assert (
        error("IPAMBlock", "x", {"cidr": "10.0.0.0/30", "allocations": [None]})
        == "IPAMBlock 'x': spec.allocations: has 1 entries, the block has 4"
    )


CALICO_BLOCK = (
    b'{"cidr":"192.168.221.64/30","affinity":"host:node1",'
    b'"affinity_claim_time":"2024-05-01T10:00:00Z","allocations":[0,null,1,null],'
    b'"unallocated":[1,3],"attributes":[{"handle_id":"ipip-tunnel-addr-node1",'
    b'"secondary":{"node":"node1","type":"ipipTunnelAddress"}},{"handle_id":"k8s-pod-network.1"}],'
    b'"sequenceNumber":7,"sequenceNumberForAllocation":{"0":5,"2":6},"deleted":false}'
)


def test_one_ipam_model_for_the_etcd_value_and_the_v3_spec() -> None:
    """Both forms go through calico.ipam's records, so they read alike, and a block is
    written back as Calico (and felix) writes it."""
    value = json.loads(CALICO_BLOCK)
    from_v3 = read("IPAMBlock", "192-168-221-64-30", value)
    from_etcd = IPAMBlock.from_ipam(value)
    assert from_v3.block == from_etcd.block == Block.from_json(CALICO_BLOCK)
    assert encode(from_v3) == (block_key("192.168.221.64/30"), CALICO_BLOCK)
    aff = read(
        "BlockAffinity", "n1-10-0-0-0-26", {"node": "n1", "cidr": "10.0.0.0/26", "deleted": "false"}
    )
    assert aff == BlockAffinity.from_ipam("n1", "10.0.0.0/26", {"deleted": False})
    assert aff.deleted is False and aff.state == ipam.AFFINITY_CONFIRMED
    assert encode(aff)[1] == Affinity().to_json() == b'{"state":"confirmed","deleted":false}'
    # The states are calico.ipam's (the model re-exports them for bgpd's planner).
    assert model.AFFINITY_PENDING is ipam.AFFINITY_PENDING


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"cidr": None}, "cidr", "required"),
        ({"cidr": "10.0.0.300/30"}, "cidr", "'10.0.0.300/30' is not a CIDR"),
        (
            {"allocations": [0, None, True, None]},
            "allocations[2]",
            "expected an integer or null, found a boolean",
        ),
        ({"allocations": [0, None]}, "allocations", "has 2 entries, the block has 4"),
        (
            {"unallocated": [1, -1]},
            "unallocated[1]",
            "the number -1 is not an ordinal of the block",
        ),
        (
            {"attributes": [{"handle_id": 5}, {}]},
            "attributes[0].handle_id",
            "expected a string or null, found the number 5",
        ),
        ({"attributes": ["x", {}]}, "attributes[0]", "expected a mapping, found 'x'"),
        (
            {"allocations": [0, None, 2, None]},
            "allocations[2]",
            "2 is not an index into attributes",
        ),
        ({"sequenceNumber": -1}, "sequenceNumber", "-1 is not a uint64"),
        (
            {"sequenceNumberForAllocation": []},
            "sequenceNumberForAllocation",
            "expected a mapping, found a list",
        ),
        ({"deleted": "yes"}, "deleted", "expected true or false, found 'yes'"),
    ],
)
def test_a_bad_block_is_refused_naming_the_field_in_both_forms(
    change: dict[str, Any], field: str, reason: str
) -> None:
    value = {**json.loads(CALICO_BLOCK), **change}
    with pytest.raises(ipam.RecordError) as record:
        Block.from_obj(value)
    assert (record.value.field, record.value.reason) == (field, reason)
    assert error("IPAMBlock", "x", value) == f"IPAMBlock 'x': spec.{field}: {reason}"
    with pytest.raises(ResourceError) as etcd:
        decode(block_key("192.168.221.64/30"), json.dumps(value).encode())
    assert str(etcd.value).endswith(f": {field}: {reason}")


def test_felix_configuration() -> None:
    """Read since felix programs cluster routes: programClusterRoutes, vxlanVNI, vxlanPort
    (the policy settings: test_model_policy); the rest of Felix's settings are named as
    not read."""
    c = read("FelixConfiguration", "default", {"bpfEnabled": True})
    assert (c.program_cluster_routes, c.vxlan_vni, c.vxlan_port, c.node_name) == (
        None, None, None, None
    )  # fmt: skip
    assert c.unsupported == ("bpfEnabled",)
    c = read(
        "FelixConfiguration",
        "node.n1",
        {"programClusterRoutes": "Enabled", "vxlanVNI": 4097, "vxlanPort": 8472},
    )
    assert (c.program_cluster_routes, c.vxlan_vni, c.vxlan_port, c.node_name) == (
        "Enabled", 4097, 8472, "n1"
    )  # fmt: skip
    with pytest.raises(ResourceError, match="'Sometimes' is not one of 'Enabled'"):
        read("FelixConfiguration", "default", {"programClusterRoutes": "Sometimes"})
    with pytest.raises(ResourceError, match="out of range"):
        read("FelixConfiguration", "default", {"vxlanVNI": 2**24})
    from calico.codec import decode

    key, value = encode(c)
    assert key == "/calico/resources/v3/projectcalico.org/felixconfigurations/node.n1"
    assert decode(key, value) == c


# --- documents ----------------------------------------------------------------------------


def test_workload_endpoint() -> None:
    w = read(
        "WorkloadEndpoint",
        "node1-k8s-bird-eth0",
        {"node": "node1", "ipNetworks": ["192.168.1.5/32", "fd10::5/128"], "pod": "bird"},
        namespace="child",
        labels={"app": "bird"},
    )
    assert w == WorkloadEndpoint(
        "node1-k8s-bird-eth0", "child", "node1", {"app": "bird"}, ("192.168.1.5/32", "fd10::5/128")
    )
    assert w.qualified_name == "child/node1-k8s-bird-eth0"
    assert (w.addresses(4), w.addresses(6)) == (("192.168.1.5",), ("fd10::5",))
    key, value = encode(w)
    assert key == (
        "/calico/resources/v3/projectcalico.org/workloadendpoints/child/node1-k8s-bird-eth0"
    )
    assert decode(key, value) == w
    assert read("WorkloadEndpoint", "w").namespace == "default"
    assert "is not a CIDR" in error("WorkloadEndpoint", "w", {"ipNetworks": ["nope"]})


def test_ignored_and_unknown_kinds() -> None:
    assert read("ClusterInformation", "default", {}) is None
    assert read("StagedNetworkPolicy", "s", {}) is None
    assert read("CalicoNodeStatus", "n", {}) is None
    with pytest.raises(ResourceError) as e:
        read("BGPPeers", "p", {})
    assert str(e.value) == "BGPPeers 'p': kind: unknown kind"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a mapping, found a list"),
        ({"apiVersion": "projectcalico.org/v3"}, "kind: required"),
        (
            {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n"}},
            "Node: apiVersion: must be 'projectcalico.org/v3', found 'v1'",
        ),
        (
            {"kind": "Node", "apiVersion": "projectcalico.org/v3", "metadata": {}},
            "Node: metadata.name: required",
        ),
        (
            {
                "kind": "Node",
                "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": "n"},
                "spec": "x",
            },
            "Node 'n': spec: expected a mapping, found 'x'",
        ),
    ],
)
def test_document_errors(obj: Any, message: str) -> None:
    with pytest.raises(ResourceError) as e:
        parse_resource(obj)
    assert str(e.value) == message


def test_error_located_in_a_file() -> None:
    with pytest.raises(ResourceError) as e:
        read("BGPPeer", "rack1-tor", {"peerIP": "10.0.0.300", "asNumber": 1})
    located = e.value.located(source="config.yaml", index=3)
    assert (
        str(located) == "config.yaml: BGPPeer 'rack1-tor': spec.peerIP: '10.0.0.300' is "
        "not an IP address"
    )
    assert (located.kind, located.name, located.field) == ("BGPPeer", "rack1-tor", "spec.peerIP")
    with pytest.raises(ResourceError) as e2:
        parse_resource({"apiVersion": "projectcalico.org/v3"})
    assert (
        str(e2.value.located(source="config.yaml", index=2))
        == "config.yaml: document 2: kind: required"
    )


def test_ipam_block_from_etcd_value() -> None:
    value = {
        "cidr": "192.168.221.64/30",
        "affinity": "host:node1",
        "affinity_claim_time": "2024-05-01T10:00:00Z",
        "allocations": [0, None, None, None],
        "unallocated": [1, 2, 3],
        "attributes": [{"handle_id": "ipip-tunnel-addr-node1", "secondary": {"node": "node1"}}],
        "sequenceNumber": 5,
        "sequenceNumberForAllocation": {"0": 4},
        "deleted": False,
    }
    b = IPAMBlock.from_ipam(value)
    assert (b.name, b.cidr, b.host, b.block.unallocated) == (
        "192.168.221.64-30",
        "192.168.221.64/30",
        "node1",
        (1, 2, 3),
    )
    assert b.block.attributes[0].handle_id == "ipip-tunnel-addr-node1"
    assert b.block.seq_for_allocation == {"0": 4}
    with pytest.raises(ResourceError) as e:
        IPAMBlock.from_ipam(
            {"cidr": "192.168.221.64/30", "allocations": [None] * 4, "unallocated": [4]}
        )
    assert str(e.value) == (
        "IPAMBlock '192.168.221.64-30': unallocated[0]: the number 4 is not an ordinal of the block"
    )
