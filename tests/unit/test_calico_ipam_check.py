"""calico/ipam_check.py and the release plans bgpctl uses, on hand-built views: every kind
of finding calicoctl's check makes (and the two it does not), the report's round trip, the
intersection of several reports, and the guarded deletion of a leaked handle."""

from __future__ import annotations

import json
import types

import pytest

from calico.ipam import AFFINITY_PENDING, Affinity, Block, Handle
from calico.ipam_check import (
    ClusterInfo,
    HandleInfo,
    WorkloadAddresses,
    check,
    format_attrs,
    merge_reports,
    read_report,
    read_workload,
    report_json,
)
from calico.ipam_release import (
    WINDOWS_RESERVED_HANDLE,
    ReleaseIP,
    ReleaseRefused,
    plan_delete_handle,
)
from calico.ipam_view import IpamView, Versioned
from calico.model import IPPool, Node, NodeBGP

POOLS = (IPPool("p4", "10.0.0.0/24", block_size=28), IPPool("off", "10.9.0.0/24", disabled=True))


def view() -> IpamView:
    b1 = Block.new("10.0.0.0/28", "n1", 1.0)
    b1, _ = b1.assign(1, "h-a", {"node": "n1", "pod": "a", "namespace": "ns"})  # 10.0.0.0
    b1, _ = b1.assign(1, "h-b", {"node": "n1", "pod": "b", "namespace": "ns"})  # .1 leaked
    b1, _ = b1.assign(1, "h-gone", {"node": "n1"})  # .2: no handle record
    b1, _ = b1.assign(1, "h-c", {"node": "n2", "pod": "c", "namespace": "ns"})  # .3 borrowed
    b1, _ = b1.assign(1, "ipip-n1", {"node": "n1", "type": "ipipTunnelAddress"})  # .4 tunnel
    b1, _ = b1.assign(1, WINDOWS_RESERVED_HANDLE, {"note": "reserved"})  # .5
    return IpamView(
        pools=POOLS,
        blocks={"10.0.0.0/28": Versioned(b1, 11)},
        affinities={
            ("n1", "10.0.0.0/28"): Versioned(Affinity(), 12),
            ("n2", "10.0.0.16/28"): Versioned(Affinity(AFFINITY_PENDING), 13),
        },
        handles={
            h: Versioned(Handle(types.MappingProxyType({"10.0.0.0/28": 1})), 20 + i)
            for i, h in enumerate(["h-a", "h-b", "h-c", "ipip-n1", "h-leak"])
        },
    )


NODES = (
    Node("n1", bgp=NodeBGP(ipv4_ipip_tunnel_addr="10.0.0.4")),
    Node("n2", ipv6_vxlan_tunnel_addr="fd00::9"),
)
WORKLOADS = (
    WorkloadAddresses("ns", "a", ("10.0.0.0",)),
    WorkloadAddresses("ns", "c", ("10.0.0.3",)),
    WorkloadAddresses("ns", "stray", ("10.0.0.9",)),  # in the pool, never allocated
    WorkloadAddresses("ns", "outside", ("192.168.1.1",)),  # in no pool
    WorkloadAddresses("ns", "twin", ("10.0.0.0",)),
)


def test_every_finding() -> None:
    r = check(view(), POOLS, NODES, WORKLOADS)
    assert [cidr for cidr, _, _ in r.blocks] == ["10.0.0.0/28"]
    assert r.active_pools == ["10.0.0.0/24"]
    assert (r.node_ips, r.workload_ips) == (2, 5)
    assert r.in_use["10.0.0.0"] == ["Workload(ns/a)", "Workload(ns/twin)"]
    assert r.in_use["10.0.0.5"] == ["Reserved for Windows"]
    assert r.leaked_ips == ["10.0.0.1", "10.0.0.2"]
    assert r.not_allocated == ["10.0.0.9"]
    assert r.not_in_pools == ["192.168.1.1", "fd00::9"]
    assert [h.id for h in r.leaked_handles] == ["h-leak"]
    assert r.handles["h-leak"] == HandleInfo("h-leak", "24")
    assert r.missing_handles == ["h-gone"]
    assert r.affinities_without_blocks == [("n2", "10.0.0.16/28", "pending")]
    assert [a.ip for a in r.borrowed] == ["10.0.0.3"]
    assert r.good_handles == 4
    assert r.problems == 2 + 1 + 2 + 1 + 1
    assert r.top_nodes() == [("n1", 5), ("n2", 1)]
    (a,) = r.allocations["10.0.0.0"]
    assert a.in_use and a.owners == ["Workload(ns/a)", "Workload(ns/twin)"]
    assert a.attrs == "Main:h-a Extra:namespace=ns,node=n1,pod=a"


def test_report_round_trip_and_merge() -> None:
    r = check(view(), POOLS, NODES, WORKLOADS)
    doc = report_json(r, ClusterInfo("guid-1", "k8s,bgp", "7", True), "0.1.0")
    assert (doc["clusterGUID"], doc["clusterInformationRevision"], doc["datastoreLocked"]) == (
        "guid-1",
        "7",
        True,
    )
    assert list(doc["allocations"])[:2] == ["10.0.0.0", "10.0.0.1"]
    leaked = doc["allocations"]["10.0.0.1"][0]
    assert leaked == {
        "ip": "10.0.0.1",
        "handle": "h-b",
        "sequenceNumber": leaked["sequenceNumber"],
        "pod": "b",
        "namespace": "ns",
        "node": "n1",
        "inUse": False,
        "owners": None,
    }
    report = read_report(json.dumps(doc), "r.json")
    assert report.cluster_guid == "guid-1" and report.version == "0.1.0"
    assert [x.ip for x in report.leaked] == ["10.0.0.1", "10.0.0.2"]
    assert report.leaked[0] == ReleaseIP("10.0.0.1", "h-b", leaked["sequenceNumber"])
    # A second report: .2 is in use by then, h-leak was rewritten meanwhile.
    later = json.loads(json.dumps(doc))
    later["allocations"]["10.0.0.2"][0]["inUse"] = True
    later["leakedHandles"][0]["Revision"] = "99"
    ips, handles = merge_reports([report, read_report(json.dumps(later), "later.json")])
    assert [x.ip for x in ips] == ["10.0.0.1"] and handles == []
    ips, handles = merge_reports([report])
    assert [h.id for h in handles] == ["h-leak"]
    with pytest.raises(ValueError, match=r"bad\.json: not an IPAM check report"):
        read_report("[1]", "bad.json")


def test_deleting_a_leaked_handle_is_guarded() -> None:
    v = view()
    step = plan_delete_handle(v, "h-leak", 24)
    assert step.final and [(w.key, w.value, w.revision) for w in step.writes] == [
        ("/calico/ipam/v2/handle/h-leak", None, 24)
    ]
    assert plan_delete_handle(v, "h-leak", 23).writes == ()  # changed since the report
    assert plan_delete_handle(v, "nope", 1).writes == ()
    with pytest.raises(ReleaseRefused, match=r"holds addresses in 10\.0\.0\.0/28"):
        plan_delete_handle(v, "h-a", 20)


def test_reading_workloads_and_attrs() -> None:
    doc = {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": "w", "namespace": "x"},
        "spec": {"ipNetworks": ["10.0.0.1/32", "fd00::1/128"]},
    }
    assert read_workload(json.dumps(doc)) == WorkloadAddresses("x", "w", ("10.0.0.1", "fd00::1"))
    with pytest.raises(ValueError):
        read_workload(json.dumps({"kind": "Node"}))
    assert format_attrs(None, {}, {"vmi-name": "v"}) == "Main:<none> Extra: Alternate:vmi-name=v"


def test_every_tunnel_address_of_a_node_counts_as_in_use() -> None:
    from calico.ipam_check import node_addresses

    node = Node(
        "n3",
        bgp=NodeBGP(ipv4_ipip_tunnel_addr="10.0.0.20"),
        ipv4_vxlan_tunnel_addr="10.0.0.21",
        ipv6_vxlan_tunnel_addr="fd00::21",
        wireguard_ipv4_address="10.0.0.22",
        wireguard_ipv6_address="fd00::22",
    )
    assert sorted(node_addresses(node)) == sorted(
        ["10.0.0.20", "10.0.0.21", "fd00::21", "10.0.0.22", "fd00::22"]
    )
    r = check(view(), POOLS, (node,), ())
    assert r.node_ips == 5
