"""Calico's documented policy examples against real packets, on two nodes with felix and
pods made by felix-cni. Each case writes its resources, waits until both felixes report the
datastore revision in their kernels, then checks which probes (TCP, UDP, ping from inside
the pods) get through; `felix policy explain`'s model must agree with every probe.

Pods: fe (role=frontend) and db (role=db, named ports redis=6379 and pg=5432) on n1; other
(role=other) and plain (role=plain, in the pool without natOutgoing) in namespace default,
and devfe (role=frontend) in namespace dev, on n2. Namespaces carry env=prod / env=dev
through their kns. profiles, as kube-controllers writes them. `ext` is a host outside every
pool.

Sources: docs.tigera.io/calico/latest/network-policy/ ("Get started with Calico network
policy", "Enable a default deny policy", "Use namespace rules", "Use ICMP/ping rules",
"Policy tiers", "Use named ports", "Kubernetes policy"), and the knp.default.* form of a
Kubernetes NetworkPolicy that Calico's policy controller stores.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from felix.policy.evaluate import explain, parse_packet
from felix.policy.feed import index_from_items
from labs.harness.lab import Lab
from labs.harness.policy_lab import PLAIN_POOL, PolicyCluster, Probe, build, doc

NP, GNP = "NetworkPolicy", "GlobalNetworkPolicy"
CASE_KINDS = (NP, GNP, "Tier", "FelixConfiguration", "GlobalNetworkSet", "NetworkSet")
ALLOW_ALL = {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}


def ns_profile(ns: str, env: str) -> dict[str, Any]:
    labels = {"pcns.projectcalico.org/name": ns, "pcns.env": env}
    return doc("Profile", f"kns.{ns}", {**ALLOW_ALL, "labelsToApply": labels})


@pytest.fixture(scope="module")
def cluster(netns_ok: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyCluster]:
    tmp = tmp_path_factory.mktemp("policy")
    with Lab(workdir=tmp / "lab") as lab:
        c = build(lab, tmp)
        c.add_pod("n1", "fe", labels={"role": "frontend"})
        c.add_pod("n1", "db", labels={"role": "db"})
        c.add_pod("n2", "other", labels={"role": "other"})
        c.add_pod("n2", "devfe", namespace="dev", labels={"role": "frontend"})
        c.add_pod("n2", "plain", labels={"role": "plain"}, pool=PLAIN_POOL)
        wep = c.wep("db")
        wep["spec"]["ports"] = [
            {"name": "redis", "protocol": "TCP", "port": 6379},
            {"name": "pg", "protocol": "TCP", "port": 5432},
        ]
        c.synced(c.apply([wep, ns_profile("default", "prod"), ns_profile("dev", "dev")]))
        yield c


@dataclass(frozen=True)
class Case:
    id: str
    docs: tuple[dict[str, Any], ...]
    expect: tuple[tuple[Probe, bool], ...]


def tcp(src: str, dst: str, port: int) -> Probe:
    return Probe(src, dst, "tcp", port)


def ping(src: str, dst: str) -> Probe:
    return Probe(src, dst, "ping")


def np(name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return doc(NP, name, spec, namespace=ns)


def gnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return doc(GNP, name, spec)


FROM_FRONTEND_6379 = {
    "action": "Allow",
    "protocol": "TCP",
    "source": {"selector": "role == 'frontend'"},
    "destination": {"ports": [6379]},
}

CASES = [
    Case(
        "default-deny-namespace",
        (np("default-deny", {"selector": "all()", "types": ["Ingress", "Egress"]}),),
        (
            (tcp("fe", "db", 6379), False),
            (ping("other", "fe"), False),
            (tcp("devfe", "db", 6379), False),  # db's ingress is denied
            (tcp("fe", "ext", 80), False),  # and fe's egress
            (tcp("devfe", "ext", 80), True),  # namespace dev is not selected
        ),
    ),
    Case(
        "allow-6379-from-frontend",
        (np("allow-tcp-6379", {"selector": "role == 'db'", "ingress": [FROM_FRONTEND_6379]}),),
        (
            (tcp("fe", "db", 6379), True),
            (tcp("other", "db", 6379), False),
            (tcp("fe", "db", 80), False),
            (ping("fe", "db"), False),
            # A namespaced policy's selector means its namespace: dev's frontend is out.
            (tcp("devfe", "db", 6379), False),
            (tcp("db", "other", 80), True),  # db's egress is not governed
        ),
    ),
    Case(
        "allow-from-namespace",
        (
            np(
                "allow-dev",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Allow", "source": {"namespaceSelector": "env == 'dev'"}}
                    ],
                },
            ),
        ),
        (
            (tcp("devfe", "db", 6379), True),
            (ping("devfe", "db"), True),
            (tcp("fe", "db", 6379), False),
            (ping("other", "db"), False),
        ),
    ),
    Case(
        "deny-icmp-allow-the-rest",
        (
            gnp(
                "block-icmp",
                {
                    "order": 200,
                    "selector": "all()",
                    "types": ["Ingress", "Egress"],
                    "ingress": [
                        {"action": "Deny", "protocol": "ICMP"},
                        {"action": "Deny", "protocol": "ICMPv6"},
                    ],
                    "egress": [
                        {"action": "Deny", "protocol": "ICMP"},
                        {"action": "Deny", "protocol": "ICMPv6"},
                    ],
                },
            ),
            gnp("allow-rest", {"order": 300, "selector": "all()", **ALLOW_ALL}),
        ),
        (
            (ping("fe", "db"), False),
            (ping("other", "fe"), False),
            (ping("fe", "ext"), False),
            (tcp("fe", "db", 80), True),
            (tcp("other", "fe", 443), True),
            (tcp("fe", "ext", 80), True),
            (Probe("fe", "other", "udp", 53), True),
        ),
    ),
    Case(
        "allow-ping-only",
        (
            gnp(
                "allow-ping-in-cluster",
                {
                    "selector": "all()",
                    "types": ["Ingress"],
                    "ingress": [
                        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}
                    ],
                },
            ),
        ),
        (
            (ping("fe", "db"), True),
            (ping("devfe", "other"), True),
            (tcp("fe", "db", 80), False),
            (Probe("fe", "other", "udp", 53), False),
            (tcp("fe", "ext", 80), True),  # egress is not governed
        ),
    ),
    Case(
        "egress-to-nets-only",
        (
            gnp(
                "frontend-egress-to-ext",
                {
                    "selector": "role == 'frontend'",
                    "types": ["Egress"],
                    "egress": [{"action": "Allow", "destination": {"nets": ["{ext}/32"]}}],
                },
            ),
        ),
        (
            (tcp("fe", "ext", 80), True),
            (ping("devfe", "ext"), True),
            (tcp("fe", "db", 6379), False),
            (ping("devfe", "other"), False),
            (tcp("db", "ext", 80), True),
            (tcp("other", "fe", 80), True),
        ),
    ),
    Case(
        "pass-to-the-next-tier-and-profiles",
        (
            doc("Tier", "security", {"order": 100}),
            gnp(
                "security.db",
                {
                    "tier": "security",
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Pass", "source": {"selector": "role == 'frontend'"}},
                        {"action": "Deny"},
                    ],
                },
            ),
            # Pods other than db pass the security tier entirely (no policy selects them
            # there) and reach their profiles.
            np(
                "db-redis",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [6379]}}
                    ],
                },
            ),
        ),
        (
            (tcp("fe", "db", 6379), True),  # passed by security, allowed by db-redis
            (tcp("devfe", "db", 6379), True),
            (tcp("fe", "db", 80), False),  # passed, then the end of the default tier
            (tcp("other", "db", 6379), False),  # denied in security
            (tcp("db", "fe", 80), True),
        ),
    ),
    Case(
        "tier-default-action-pass",
        (
            doc("Tier", "security", {"order": 100, "defaultAction": "Pass"}),
            gnp(
                "security.deny-other",
                {
                    "tier": "security",
                    "selector": "role == 'db'",
                    "ingress": [{"action": "Deny", "source": {"selector": "role == 'other'"}}],
                },
            ),
        ),
        (
            (tcp("fe", "db", 6379), True),  # end of tier security passes; profile allows
            (tcp("other", "db", 6379), False),
        ),
    ),
    Case(
        "order-decides",
        (
            gnp(
                "deny-frontend",
                {
                    "order": 10,
                    "selector": "role == 'db'",
                    "ingress": [{"action": "Deny", "source": {"selector": "role == 'frontend'"}}],
                },
            ),
            np(
                "allow-all-to-db",
                {"order": 20, "selector": "role == 'db'", "ingress": [{"action": "Allow"}]},
            ),
        ),
        (
            (tcp("fe", "db", 6379), False),
            (tcp("devfe", "db", 6379), False),
            (tcp("other", "db", 6379), True),
        ),
    ),
    Case(
        "named-ports",
        (
            np(
                "allow-redis-by-name",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["redis"]}}
                    ],
                },
            ),
        ),
        (
            (tcp("fe", "db", 6379), True),
            (tcp("other", "db", 6379), True),
            (tcp("fe", "db", 5432), False),
            (tcp("fe", "db", 80), False),
        ),
    ),
    Case(
        "negations",
        (
            np(
                "not-other-not-80",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"notSelector": "role == 'other'"},
                            "destination": {"notPorts": [80, "5000:5999"]},
                        }
                    ],
                },
            ),
        ),
        (
            (tcp("fe", "db", 6379), True),
            (tcp("fe", "db", 80), False),
            (tcp("fe", "db", 5432), False),
            (tcp("other", "db", 6379), False),
            # notSelector alone still limits a namespaced policy to its namespace.
            (tcp("devfe", "db", 6379), False),
        ),
    ),
    Case(
        "knp-as-calico-stores-it",
        (
            # kubectl: podSelector role=db, ingress from podSelector role=frontend and from
            # namespaceSelector env=dev, on TCP 6379; converted by Calico's policy
            # controller (K8sNetworkPolicyToCalico).
            np(
                "knp.default.allow-frontend",
                {
                    "order": 1000,
                    "tier": "default",
                    "selector": "projectcalico.org/orchestrator == 'k8s' && role == 'db'",
                    "types": ["Ingress"],
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {
                                "selector": (
                                    "projectcalico.org/orchestrator == 'k8s' && role == 'frontend'"
                                )
                            },
                            "destination": {"ports": [6379]},
                        },
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {
                                "selector": "projectcalico.org/orchestrator == 'k8s'",
                                "namespaceSelector": "env == 'dev'",
                            },
                            "destination": {"ports": [6379]},
                        },
                    ],
                },
            ),
        ),
        (
            (tcp("fe", "db", 6379), True),
            (tcp("devfe", "db", 6379), True),
            (tcp("other", "db", 6379), False),
            (tcp("fe", "db", 5432), False),
        ),
    ),
    Case(
        "log-then-allow",
        (
            gnp(
                "log-db",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Log", "protocol": "TCP"},
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [6379]}},
                    ],
                },
            ),
        ),
        ((tcp("fe", "db", 6379), True), (tcp("fe", "db", 80), False), (ping("fe", "db"), False)),
    ),
    Case(
        "global-network-set",
        (
            doc("GlobalNetworkSet", "outside", {"nets": ["{ext}/32"]}, labels={"zone": "outside"}),
            gnp(
                "egress-to-outside",
                {
                    "selector": "role == 'frontend'",
                    "types": ["Egress"],
                    "egress": [
                        {"action": "Allow", "destination": {"selector": "zone == 'outside'"}}
                    ],
                },
            ),
        ),
        (
            (tcp("fe", "ext", 80), True),
            (tcp("fe", "db", 6379), False),
            (tcp("db", "ext", 80), True),
        ),
    ),
]


def _fill(value: Any, c: PolicyCluster) -> Any:
    """Put the lab's addresses into a case's documents ("{ext}")."""
    if isinstance(value, str):
        return value.replace("{ext}", c.ext_ip)
    if isinstance(value, dict):
        return {k: _fill(v, c) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fill(v, c) for v in value]
    return value


def run_case(c: PolicyCluster, docs: Any, expect: dict[Probe, bool]) -> None:
    c.synced(c.delete_kinds(CASE_KINDS))
    c.synced(c.apply(_fill(list(docs), c)))
    c.expect(expect)
    # The model felix explains with decides every probe as the kernel did.
    index, errors = index_from_items("n1", c.items())
    assert not errors, errors
    for probe, allowed in expect.items():
        spec = None if probe.kind == "ping" else f"{probe.kind}/{probe.port}"
        e = explain(index, parse_packet(c.address(probe.src), c.address(probe.dst), spec))
        assert e.allowed == allowed, f"explain {probe}: {e}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_example(cluster: PolicyCluster, case: Case) -> None:
    run_case(cluster, case.docs, dict(case.expect))


def test_no_policy_every_pod_talks(cluster: PolicyCluster) -> None:
    pods = ("fe", "db", "other", "devfe", "plain")
    expect = {tcp(a, b, 80): True for a in pods for b in pods if a != b}
    expect.update({ping(a, "ext"): True for a in pods})
    run_case(cluster, [], expect)


# --- behaviour around the rules -------------------------------------------------------------


def test_return_traffic_of_allowed_connections_flows(cluster: PolicyCluster) -> None:
    """fe may open connections to db:6379 and nothing may reach fe: the answers still come
    back (conntrack), new connections towards fe do not."""
    run_case(
        cluster,
        [
            np(
                "fe-out-only",
                {
                    "selector": "role == 'frontend'",
                    "types": ["Ingress", "Egress"],
                    "egress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "destination": {"selector": "role == 'db'", "ports": [6379]},
                        }
                    ],
                },
            )
        ],
        {
            tcp("fe", "db", 6379): True,
            tcp("db", "fe", 80): False,
            tcp("other", "fe", 6379): False,
            tcp("fe", "other", 6379): False,
        },
    )


def test_policy_change_keeps_established_connections(cluster: PolicyCluster) -> None:
    c = cluster
    run_case(c, [], {tcp("fe", "db", 6379): True})
    opened = c.agents["fe"].call({"op": "open", "id": "held", "dst": c.address("db"), "port": 6379})
    assert opened["ok"], opened
    deny = np("deny-all-to-db", {"selector": "role == 'db'", "types": ["Ingress"]})
    c.synced(c.apply([deny]))
    c.expect({tcp("fe", "db", 6379): False, tcp("other", "db", 6379): False})
    echo = c.agents["fe"].call({"op": "echo", "id": "held"})
    assert echo["ok"], f"the established connection was cut: {echo}"


def test_label_change_takes_effect_live(cluster: PolicyCluster, tmp_path: Path) -> None:
    """`bgpctl apply` of a WorkloadEndpoint with another label: no restart, new traffic."""
    c = cluster
    run_case(
        c,
        [np("allow-tcp-6379", {"selector": "role == 'db'", "ingress": [FROM_FRONTEND_6379]})],
        {tcp("other", "db", 6379): False, tcp("fe", "db", 6379): True},
    )
    pids = {n: f.proc.pid for n, f in c.felixes.items() if f.proc is not None}
    wep = c.wep("other")
    wep["metadata"]["labels"]["role"] = "frontend"
    path = tmp_path / "wep.yaml"
    path.write_text(yaml.safe_dump(wep))
    argv = [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", c.url, "apply", "-f", str(path)]
    done = c.hosts["n2"].run(argv, check=False)
    assert done.returncode == 0, done.stderr
    try:
        c.expect({tcp("other", "db", 6379): True, tcp("fe", "db", 6379): True})
    finally:
        wep["metadata"]["labels"]["role"] = "other"
        c.synced(c.apply([wep]))
    c.expect({tcp("other", "db", 6379): False})
    assert pids == {n: f.proc.pid for n, f in c.felixes.items() if f.proc is not None}


def test_nat_outgoing_masquerades_only_its_pool(cluster: PolicyCluster) -> None:
    c = cluster
    run_case(c, [], {tcp("fe", "ext", 80): True, tcp("plain", "ext", 80): True})
    seen = c.probe(tcp("fe", "ext", 80))["reply"].split()
    assert seen == ["ext", c.host_ips["n1"]], seen  # natOutgoing: the node's address
    seen = c.probe(tcp("plain", "ext", 80))["reply"].split()
    assert seen == ["ext", c.address("plain")], seen  # the pod keeps its address
    # Pod to pod is never masqueraded, natOutgoing pool or not.
    assert c.probe(tcp("fe", "other", 80))["reply"].split() == ["other", c.address("fe")]


def test_workload_to_host_follows_felix_configuration(cluster: PolicyCluster) -> None:
    c = cluster
    n1 = c.host_ips["n1"]
    c.synced(c.delete_kinds(CASE_KINDS))
    assert not c.agents["fe"].call({"op": "ping", "dst": n1, "timeout": 0.8})["ok"]  # Drop
    accept = doc("FelixConfiguration", "default", {"defaultEndpointToHostAction": "Accept"})
    c.synced(c.apply([accept]))
    assert c.agents["fe"].call({"op": "ping", "dst": n1, "timeout": 2})["ok"]


def test_table_restored_after_changes_behind_felix(cluster: PolicyCluster) -> None:
    """Someone flushes felix's table: felix notices (nft monitor) and puts it back whole;
    another table in the same namespace is never touched."""
    c = cluster
    n1 = c.hosts["n1"]
    n1.run(["nft", "add table ip other; add chain ip other c; add rule ip other c counter"])
    run_case(
        c,
        [np("allow-tcp-6379", {"selector": "role == 'db'", "ingress": [FROM_FRONTEND_6379]})],
        {tcp("other", "db", 6379): False},
    )
    n1.run(["nft", "flush", "table", "inet", "felix"])
    c.expect({tcp("other", "db", 6379): False, tcp("fe", "db", 6379): True})
    n1.run(["nft", "delete", "table", "inet", "felix"])
    c.expect({tcp("other", "db", 6379): False, tcp("fe", "db", 6379): True})
    log = c.felixes["n1"].log_path.read_text(errors="replace")
    assert "felix.table_changed_behind_our_back" in log
    other = n1.run(["nft", "list", "table", "ip", "other"]).stdout
    assert "counter" in other
    n1.run(["nft", "delete", "table", "ip", "other"])


def test_status_and_cli(cluster: PolicyCluster) -> None:
    c = cluster
    run_case(
        c,
        [np("allow-tcp-6379", {"selector": "role == 'db'", "ingress": [FROM_FRONTEND_6379]})],
        {tcp("fe", "db", 6379): True, tcp("other", "db", 6379): False},
    )
    # Endpoint status where Calico's Felix reports it.
    statuses = {
        k: json.loads(v) for k, v in c.items_under("/calico/felix/v2/no-region/host/n1/workload/")
    }
    db_key = "/calico/felix/v2/no-region/host/n1/workload/k8s/default%2fdb/endpoint/eth0"
    assert statuses.get(db_key) == {"status": "up"}, statuses
    felix = [sys.executable, "-m", "felix.cli", "policy", "--datastore", c.url, "--node", "n1"]
    shown = c.hosts["n1"].run([*felix, "show", "db", "--json"]).stdout
    (report,) = json.loads(shown)
    (tier,) = report["ingress"]["tiers"]
    (policy,) = tier["policies"]
    assert policy["name"] == "default/allow-tcp-6379"
    assert policy["packets"] > 0 and policy["rules"][0]["packets"] > 0, policy
    assert tier["end_of_tier_drops"] > 0, tier  # other's SYNs
    text = c.hosts["n1"].run([*felix, "explain", "fe", "db", "tcp/6379"]).stdout
    assert "ALLOWED" in text and "NetworkPolicy default/allow-tcp-6379 rule 0" in text, text
    text = c.hosts["n1"].run([*felix, "explain", "other", "db", "tcp/6379"]).stdout
    assert "DENIED" in text and "end of tier default" in text, text
