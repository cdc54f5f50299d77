"""felix's pure parts beside IPAM: the workload routes it wants and the changes to get
there, the status value, the tunnel-address rules and the WorkloadEndpoint round trip."""

from __future__ import annotations

import json

from calico.model import IPPool
from felix.routes import DeviceRoute, RouteChange, desired_routes, reconcile
from felix.status import status_key, status_value
from felix.tunnel import ipip_pools, keeps, tunnel_handle, with_tunnel_address
from felix.workload import WorkloadEndpoint, go_time_string, new_endpoint


def wep(node: str, cid: str, ifname: str, *nets: str) -> WorkloadEndpoint:
    return new_endpoint(
        node=node,
        container_id=cid,
        endpoint="eth0",
        interface_name=ifname,
        ip_networks=nets,
        mac="0a:58:00:00:00:01",
        network="k8s-pod-network",
    )


def test_desired_routes_are_this_nodes_endpoints() -> None:
    endpoints = [
        wep("node1", "a", "cali1", "10.0.0.1/32", "fd00::1/128"),
        wep("node2", "b", "cali2", "10.0.0.2/32"),
        wep("node1", "c", "cali3", "10.0.0.3/32"),
    ]
    assert desired_routes(endpoints, "node1") == {
        "10.0.0.1/32": DeviceRoute("10.0.0.1/32", "cali1"),
        "fd00::1/128": DeviceRoute("fd00::1/128", "cali1"),
        "10.0.0.3/32": DeviceRoute("10.0.0.3/32", "cali3"),
    }


def test_reconcile_adds_replaces_and_cleans_up() -> None:
    desired = {
        "10.0.0.1/32": DeviceRoute("10.0.0.1/32", "cali1"),
        "10.0.0.3/32": DeviceRoute("10.0.0.3/32", "cali3"),
        "10.0.0.4/32": DeviceRoute("10.0.0.4/32", "cali4"),  # its interface is not there yet
    }
    observed = [
        DeviceRoute("10.0.0.1/32", "cali1"),  # right already
        DeviceRoute("10.0.0.3/32", "caliold"),  # a stale pod's interface
        DeviceRoute("10.0.0.9/32", "cali9"),  # no endpoint any more
        DeviceRoute("10.9.0.0/24", "eth0"),  # not ours
    ]
    links = ["lo", "eth0", "cali1", "cali3", "caliold", "cali9"]
    assert reconcile(desired, observed, links) == [
        RouteChange(DeviceRoute("10.0.0.3/32", "caliold"), remove=True),
        RouteChange(DeviceRoute("10.0.0.9/32", "cali9"), remove=True),
        RouteChange(DeviceRoute("10.0.0.3/32", "cali3")),
    ]
    assert reconcile(desired, [*observed[:1], DeviceRoute("10.0.0.3/32", "cali3")], links) == []


def test_status_value() -> None:
    assert status_key("node1") == "/calico/felix/v2/no-region/host/node1/status"
    doc = json.loads(status_value(now=1714557605.5, started=1714557600.0, first_update=True))
    assert doc == {"time": "2024-05-01T10:00:05.500000Z", "uptime": 5.5, "first_update": True}


def test_tunnel_address_rules() -> None:
    pools = [
        IPPool(name="ipip", cidr="10.1.0.0/16", ipip_mode="Always"),
        IPPool(name="plain", cidr="10.2.0.0/16"),
        IPPool(name="ws", cidr="10.3.0.0/16", ipip_mode="CrossSubnet", allowed_uses=("Workload",)),
        IPPool(name="other", cidr="10.4.0.0/16", ipip_mode="Always", node_selector="rack == 'x'"),
    ]
    assert [p.name for p in ipip_pools(pools, {})] == ["ipip"]
    assert [p.name for p in ipip_pools(pools, {"rack": "x"})] == ["ipip", "other"]
    assert keeps("10.1.2.3", pools[:1]) and not keeps("10.2.0.1", pools[:1])
    assert tunnel_handle("node1") == "ipip-tunnel-addr-node1"
    node = b'{"kind":"Node","metadata":{"name":"n"},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}'
    set_ = with_tunnel_address(node, "10.1.0.1")
    assert set_ is not None
    assert json.loads(set_)["spec"]["bgp"] == {
        "ipv4Address": "10.0.0.1/24",
        "ipv4IPIPTunnelAddr": "10.1.0.1",
    }
    assert with_tunnel_address(set_, "10.1.0.1") is None
    cleared = with_tunnel_address(set_, None)
    assert cleared is not None and "ipv4IPIPTunnelAddr" not in json.loads(cleared)["spec"]["bgp"]
    assert with_tunnel_address(node, None) is None


def test_workload_endpoint_round_trip() -> None:
    k8s = new_endpoint(
        node="node1",
        container_id="4f3c",
        endpoint="eth0",
        interface_name="cali3a1b2c3d4e5",
        ip_networks=["192.168.221.65/32"],
        mac="2a:1b:3c:4d:5e:6f",
        network="k8s-pod-network",
        k8s_namespace="default",
        k8s_pod="nginx-7d9f",
        uid="u",
        now=1714557605.0,
    )
    assert k8s.name == "node1-k8s-nginx--7d9f-eth0"
    assert k8s.key == (
        "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-nginx--7d9f-eth0"
    )
    doc = json.loads(k8s.to_json())
    assert doc["spec"] == {
        "orchestrator": "k8s",
        "node": "node1",
        "containerID": "4f3c",
        "pod": "nginx-7d9f",
        "endpoint": "eth0",
        "serviceAccountName": "default",
        "ipNetworks": ["192.168.221.65/32"],
        "profiles": ["kns.default", "ksa.default.default"],
        "interfaceName": "cali3a1b2c3d4e5",
        "mac": "2a:1b:3c:4d:5e:6f",
    }
    assert doc["metadata"]["creationTimestamp"] == "2024-05-01T10:00:05Z"
    assert doc["metadata"]["labels"] == {  # as reference/calico.md 2.9 shows a pod's WEP
        "projectcalico.org/namespace": "default",
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/serviceaccount": "default",
    }
    assert WorkloadEndpoint.from_json(k8s.to_json()) == k8s


def test_go_time_string() -> None:
    assert go_time_string(1714557605.1) == "2024-05-01 10:00:05.1 +0000 UTC"
    assert go_time_string(1714557605.0) == "2024-05-01 10:00:05 +0000 UTC"


def test_workload_routes_as_kernel_values_and_ops() -> None:
    from common.netlink.route import (
        AF_INET,
        AF_INET6,
        RTPROT_BOOT,
        RTPROT_STATIC,
        KernelRoute,
        Nexthop,
        OpKind,
    )
    from felix.routes import device_route, observed_routes, route_ops

    v4 = device_route(DeviceRoute("10.0.0.1/32", "cali1"), 7)
    assert v4 == KernelRoute(AF_INET, bytes([10, 0, 0, 1]), 32, (Nexthop(b"", 7),))
    v6 = device_route(DeviceRoute("fd00::1/128", "cali1"), 7)
    assert (v6.family, v6.dst_len) == (AF_INET6, 128)
    names = {7: "cali1", 8: "eth0", 9: "cali2"}
    via_gw = KernelRoute(AF_INET, bytes([10, 0, 0, 3]), 32, (Nexthop(bytes([10, 9, 0, 1]), 9),))
    entries = [
        (RTPROT_BOOT, v4),  # ours
        (RTPROT_STATIC, device_route(DeviceRoute("10.0.0.2/32", "cali2"), 9)),  # not boot
        (RTPROT_BOOT, device_route(DeviceRoute("10.9.0.0/24", "eth0"), 8)),  # not a workload
        (RTPROT_BOOT, via_gw),  # a gateway route, not a device route
    ]
    assert observed_routes(entries, names) == [DeviceRoute("10.0.0.1/32", "cali1")]
    changes = [
        RouteChange(DeviceRoute("10.0.0.3/32", "caliold"), remove=True),
        RouteChange(DeviceRoute("10.0.0.3/32", "cali3")),
        RouteChange(DeviceRoute("10.0.0.4/32", "cali4")),  # its interface went meanwhile
    ]
    placed, unplaced = route_ops(changes, {"caliold": 5, "cali3": 6})
    assert [(c, op.kind, op.route.nexthops) for c, op in placed] == [
        (changes[0], OpKind.DELETE, (Nexthop(b"", 5),)),
        (changes[1], OpKind.REPLACE, (Nexthop(b"", 6),)),
    ]
    assert unplaced == [changes[2]]


def test_pod_routes_and_the_check_of_its_default_route() -> None:
    from common.netlink.route import AF_INET6, Nexthop
    from felix.cni.plugin import default_via_gateway, pod_routes

    gw = bytes([169, 254, 1, 1])
    v4 = pod_routes(["10.0.0.5/32"], 3)
    assert [(r.dst, r.dst_len, r.nexthops) for r in v4] == [
        (gw, 32, (Nexthop(b"", 3),)),  # the gateway on the link first
        (bytes(4), 0, (Nexthop(gw, 3),)),
    ]
    both = pod_routes(["10.0.0.5/32", "fd00::5/128"], 3)
    assert both[:2] == v4 and both[2].family == AF_INET6 and both[2].dst_len == 0
    assert default_via_gateway(both) and default_via_gateway(v4[1:])
    assert not default_via_gateway(v4[:1])


def test_vxlan_tunnel_address_rules() -> None:
    from felix.tunnel import IPIP, VXLAN

    pools = [
        IPPool(name="v", cidr="10.5.0.0/16", vxlan_mode="Always"),
        IPPool(name="x", cidr="10.6.0.0/16", vxlan_mode="CrossSubnet", disabled=True),
        IPPool(name="i", cidr="10.1.0.0/16", ipip_mode="Always"),
        IPPool(name="v6", cidr="fd00:5::/48", vxlan_mode="Always"),
    ]
    assert [p.name for p in VXLAN.pools(pools, {})] == ["v"]
    assert [p.name for p in IPIP.pools(pools, {})] == ["i"]
    assert VXLAN.handle("n1") == "vxlan-tunnel-addr-n1"
    assert VXLAN.attrs("n1") == {"node": "n1", "type": "vxlanTunnelAddress"}
    node = b'{"kind":"Node","metadata":{"name":"n"},"spec":{"bgp":{"ipv4Address":"10.0.0.1/24"}}}'
    set_ = with_tunnel_address(node, "10.5.0.1", VXLAN)
    assert set_ is not None
    spec = json.loads(set_)["spec"]
    assert spec["ipv4VXLANTunnelAddr"] == "10.5.0.1"
    assert spec["bgp"] == {"ipv4Address": "10.0.0.1/24"}
    assert with_tunnel_address(set_, "10.5.0.1", VXLAN) is None
    cleared = with_tunnel_address(set_, None, VXLAN)
    assert cleared is not None and "ipv4VXLANTunnelAddr" not in json.loads(cleared)["spec"]
    # A Node without spec.bgp gets one only when an IPIP address is set.
    bare = b'{"kind":"Node","metadata":{"name":"n"}}'
    assert with_tunnel_address(bare, None) is None
    assert json.loads(with_tunnel_address(bare, "10.1.0.1") or b"")["spec"] == {
        "bgp": {"ipv4IPIPTunnelAddr": "10.1.0.1"}
    }
