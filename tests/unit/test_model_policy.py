"""Calico's policy kinds in the model: defaults as clientv3 applies them, validation that
names the field, the stored form round-tripping, and the kinds through calicoctl-style
apply/get/delete (namespaced where Calico namespaces them)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from calico import ResourceError, parse_resource, resources
from calico.codec import decode, encode, to_v3
from calico.file import load_text
from calico.model import FelixConfiguration
from calico.policy import (
    EntityRule,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    ICMPMatch,
    NetworkPolicy,
    Port,
    Profile,
    Protocol,
    Rule,
    ServiceAccountMatch,
    Tier,
)
from calico.store.sqlite import SqliteKV


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": kind,
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, **meta},
    }
    if spec is not None:
        d["spec"] = spec
    return d


def error(kind: str, spec: dict[str, Any], **meta: Any) -> str:
    with pytest.raises(ResourceError) as e:
        parse_resource(doc(kind, "p", spec, **meta))
    return str(e.value)


def test_a_global_policy_with_every_field() -> None:
    gnp = parse_resource(
        doc(
            "GlobalNetworkPolicy",
            "security.x",
            {
                "tier": "security",
                "order": 10,
                "selector": "role == 'db'",
                "namespaceSelector": "env == 'prod'",
                "serviceAccountSelector": "team == 'a'",
                "types": ["Ingress"],
                "ingress": [
                    {
                        "action": "Allow",
                        "ipVersion": 4,
                        "protocol": "tcp",
                        "notProtocol": 17,
                        "source": {
                            "nets": ["10.0.0.5", "192.168.1.9/24"],
                            "notNets": ["10.9.0.0/16"],
                            "selector": "app == 'web'",
                            "notSelector": "has(bad)",
                            "namespaceSelector": "all()",
                            "ports": [1024, "2000:3000", "http"],
                            "serviceAccounts": {"names": ["web"], "selector": "x == 'y'"},
                        },
                        "destination": {"ports": ["6379"], "notPorts": [9]},
                        "metadata": {"annotations": {"why": "tests"}},
                    }
                ],
            },
        )
    )
    assert gnp == GlobalNetworkPolicy(
        name="security.x",
        tier="security",
        order=10.0,
        selector="role == 'db'",
        namespace_selector="env == 'prod'",
        service_account_selector="team == 'a'",
        types=("Ingress",),
        ingress=(
            Rule(
                action="Allow",
                ip_version=4,
                protocol=Protocol(6, "TCP"),
                not_protocol=Protocol(17),
                source=EntityRule(
                    nets=("10.0.0.5/32", "192.168.1.0/24"),
                    not_nets=("10.9.0.0/16",),
                    selector="app == 'web'",
                    not_selector="has(bad)",
                    namespace_selector="all()",
                    ports=(Port(1024, 1024), Port(2000, 3000), Port(name="http")),
                    service_accounts=ServiceAccountMatch(("web",), "x == 'y'"),
                ),
                destination=EntityRule(ports=(Port(6379, 6379),), not_ports=(Port(9, 9),)),
                annotations={"why": "tests"},
            ),
        ),
    )


@pytest.mark.parametrize(
    ("ingress", "egress", "types"),
    [
        (False, False, ("Ingress",)),
        (True, False, ("Ingress",)),
        (False, True, ("Egress",)),
        (True, True, ("Ingress", "Egress")),
    ],
)
def test_types_default_from_the_rules(ingress: bool, egress: bool, types: tuple[str, ...]) -> None:
    spec: dict[str, Any] = {}
    if ingress:
        spec["ingress"] = [{"action": "Allow"}]
    if egress:
        spec["egress"] = [{"action": "Deny"}]
    np = parse_resource(doc("NetworkPolicy", "p", spec, namespace="ns1"))
    assert isinstance(np, NetworkPolicy) and np.types == types and np.namespace == "ns1"


def test_profile_tier_sets_and_felix_configuration() -> None:
    prof = parse_resource(
        doc(
            "Profile",
            "kns.dev",
            {"ingress": [{"action": "Allow"}], "labelsToApply": {"pcns.env": "dev", "n": 1}},
        )
    )
    assert prof == Profile(
        "kns.dev", ingress=(Rule("Allow"),), labels_to_apply={"pcns.env": "dev", "n": "1"}
    )
    assert parse_resource(doc("Tier", "security", {"order": 100, "defaultAction": "Pass"})) == Tier(
        "security", 100.0, "Pass"
    )
    assert parse_resource(doc("Tier", "default", {})) == Tier("default", 1_000_000.0, "Deny")
    gns = parse_resource(doc("GlobalNetworkSet", "x", {"nets": ["8.8.8.8"]}, labels={"a": "b"}))
    assert gns == GlobalNetworkSet("x", {"a": "b"}, ("8.8.8.8/32",))
    fc = parse_resource(
        doc(
            "FelixConfiguration",
            "default",
            {"defaultEndpointToHostAction": "ACCEPT", "logPrefix": "x %n", "bpfEnabled": True},
        )
    )
    assert fc == FelixConfiguration(
        "default",
        default_endpoint_to_host_action="Accept",
        log_prefix="x %n",
        unsupported=("bpfEnabled",),
    )


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("GlobalNetworkPolicy", {"ingress": [{}]}, "spec.ingress[0].action: required"),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "allow"}]},
            "spec.ingress[0].action: 'allow' is not one of 'Allow', 'Deny', 'Log', 'Pass'",
        ),
        (
            "GlobalNetworkPolicy",
            {"egress": [{"action": "Allow", "protocol": "GRE"}]},
            "spec.egress[0].protocol: 'GRE' is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, "
            "UDPLite or a number 1..255)",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]},
            "spec.ingress[0].destination.ports: numeric ports need spec.protocol TCP, UDP or SCTP",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "protocol": "ICMP", "source": {"ports": ["http"]}}]},
            "spec.ingress[0].source.ports: protocol ICMP has no ports (use TCP, UDP or SCTP)",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "icmp": {"type": 8}}]},
            "spec.ingress[0].icmp: needs spec.protocol ICMP or ICMPv6",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "protocol": "ICMP", "icmp": {"code": 0}}]},
            "spec.ingress[0].icmp.code: needs spec.type as well",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "protocol": "ICMP", "ipVersion": 6}]},
            "spec.ingress[0].protocol: ICMP is IPv4's; IPv6 rules use ICMPv6",
        ),
        (
            "GlobalNetworkPolicy",
            {
                "ingress": [
                    {
                        "action": "Allow",
                        "source": {"nets": ["10.0.0.0/8"]},
                        "destination": {"nets": ["fd00::/64"]},
                    }
                ]
            },
            "spec.ingress[0].destination.nets: the rule would mix IPv4 and IPv6 CIDRs",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "source": {"notNets": ["0.0.0.0/0"]}}]},
            "spec.ingress[0].source.notNets: a catch-all CIDR in notNets matches no traffic",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": ["HTTP"]}}]},
            "spec.ingress[0].source.ports[0]: 'HTTP' is not a port, a range 'first:last' or a port "
            "name (up to 15 lowercase letters, digits and '-')",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "protocol": "TCP", "source": {"ports": ["90:80"]}}]},
            "spec.ingress[0].source.ports[0]: '90:80' is not a port range first:last within "
            "0..65535",
        ),
        (
            "GlobalNetworkPolicy",
            {"selector": "role = 'db'"},
            "spec.selector: \"role = 'db'\" is not a valid selector: expected '==' at position 5",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}]},
            "spec.ingress[0].http: not supported: HTTP matches need an application-layer proxy, "
            "which felix does not run",
        ),
        (
            "GlobalNetworkPolicy",
            {"ingress": [{"action": "Allow", "destination": {"services": {"name": "x"}}}]},
            "spec.ingress[0].destination.services: not supported: Kubernetes Service matches are "
            "not supported by felix",
        ),
        (
            "GlobalNetworkPolicy",
            {"doNotTrack": True},
            "spec.applyOnForward: must be true when spec.doNotTrack is",
        ),
        (
            "GlobalNetworkPolicy",
            {"types": ["ingress"]},
            "spec.types[0]: 'ingress' is not 'Ingress' or 'Egress'",
        ),
        ("GlobalNetworkPolicy", {"order": "1"}, "spec.order: expected a number, found '1'"),
        (
            "GlobalNetworkPolicy",
            {"tier": "Sec.urity"},
            "spec.tier: 'Sec.urity' is not a tier name (lowercase, digits, '-')",
        ),
        (
            "Tier",
            {"defaultAction": "Allow"},
            "spec.defaultAction: 'Allow' is not one of 'Deny', 'Pass'",
        ),
        ("NetworkSet", {"nets": ["10.0.0.300/32"]}, "spec.nets[0]: '10.0.0.300/32' is not a CIDR"),
        (
            "FelixConfiguration",
            {"defaultEndpointToHostAction": "Allow"},
            "spec.defaultEndpointToHostAction: 'Allow' is not one of 'Drop', 'Accept', 'Return'",
        ),
    ],
)
def test_bad_policies_name_the_field(kind: str, spec: dict[str, Any], message: str) -> None:
    assert error(kind, spec) == f"{kind} 'p': {message}"


ROUND_TRIP = [
    doc(
        "NetworkPolicy",
        "knp.default.x",
        {
            "order": 1000,
            "selector": "projectcalico.org/orchestrator == 'k8s'",
            "types": ["Ingress", "Egress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "source": {"namespaceSelector": "env == 'dev'"},
                    "destination": {"ports": [6379, "redis", "1:2"]},
                }
            ],
            "egress": [
                {
                    "action": "Deny",
                    "protocol": 1,
                    "icmp": {"type": 8, "code": 0},
                    "notICMP": {"type": 3},
                }
            ],
        },
        namespace="shop",
    ),
    doc(
        "GlobalNetworkPolicy",
        "g",
        {
            "order": 1.5,
            "selector": "all()",
            "preDNAT": True,
            "applyOnForward": True,
            "ingress": [{"action": "Log"}],
        },
    ),
    doc("Profile", "kns.x", {"egress": [{"action": "Allow"}], "labelsToApply": {"a": "b"}}),
    doc("Tier", "t", {"order": 5, "defaultAction": "Pass"}),
    doc("NetworkSet", "n", {"nets": ["10.1.0.0/16"]}, namespace="shop", labels={"k": "v"}),
    doc("FelixConfiguration", "node.n1", {"natOutgoingAddress": "10.0.0.1"}),
]


@pytest.mark.parametrize("original", ROUND_TRIP, ids=lambda d: d["kind"])
def test_stored_form_reads_back(original: dict[str, Any]) -> None:
    resource = parse_resource(original)
    assert resource is not None
    assert parse_resource(to_v3(resource)) == resource
    key, value = encode(resource)
    assert decode(key, value) == resource
    if original["kind"] in ("NetworkPolicy", "NetworkSet"):
        assert key.split("/")[-2:] == ["shop", original["metadata"]["name"]]


def test_one_name_in_two_namespaces_is_two_policies() -> None:
    text = "\n---\n".join(
        json.dumps(doc("NetworkPolicy", "same", {}, namespace=ns)) for ns in ("a", "b")
    )
    snap = load_text(text)
    assert sorted(snap.by_kind["NetworkPolicy"]) == ["a/same", "b/same"]


def test_apply_get_delete_namespaced(tmp_path: Path) -> None:
    async def main() -> None:
        kv = SqliteKV(str(tmp_path / "c.db"))
        try:
            rule = {
                "action": "Allow",
                "source": {"selector": "a == 'b'"},
                "metadata": {"annotations": {"x": "y"}},
                "futureField": 1,
            }
            for ns in ("a", "b"):
                await resources.apply(
                    kv, doc("NetworkPolicy", "p", {"ingress": [rule]}, namespace=ns)
                )
            await resources.apply(kv, doc("NetworkPolicy", "q", {}))  # namespace default
            got = await resources.get(kv, "NetworkPolicy", "p", "a")
            assert [o["metadata"]["namespace"] for o in got] == ["a"]
            spec = got[0]["spec"]
            # Calico's defaults written out, the user's unknown rule field kept.
            assert spec["types"] == ["Ingress"] and spec["tier"] == "default"
            assert spec["ingress"][0]["futureField"] == 1
            every = await resources.get(kv, "NetworkPolicy")
            assert sorted((o["metadata"]["namespace"], o["metadata"]["name"]) for o in every) == [
                ("a", "p"),
                ("b", "p"),
                ("default", "q"),
            ]
            await resources.delete(kv, doc("NetworkPolicy", "p", namespace="a"))
            assert len(await resources.get(kv, "NetworkPolicy")) == 2
            assert resources.kind_of("gnp") == "GlobalNetworkPolicy"
            assert resources.kind_of("networkpolicies") == "NetworkPolicy"
        finally:
            await kv.close()

    asyncio.run(main())


def test_icmp_match_defaults() -> None:
    rule = parse_resource(
        doc(
            "GlobalNetworkPolicy",
            "g",
            {"ingress": [{"action": "Allow", "protocol": "ICMPv6", "icmp": {"type": 128}}]},
        )
    )
    assert isinstance(rule, GlobalNetworkPolicy)
    assert rule.ingress[0].icmp == ICMPMatch(128, None)
