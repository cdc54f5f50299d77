"""felix's policy model without a kernel: Calico's selector merging (namespaces, service
accounts, pcns. labels), label inheritance, evaluation order (tiers, orders, Pass, end of
tier, profiles, missing profiles), rule matching (ports, named ports, nets, ICMP, IP
version), the index kept current one change at a time, and the compiler's incremental
output equal to a fresh one."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico import selector as sel
from calico.model import parse_resource
from calico.policy import EntityRule, ServiceAccountMatch
from felix.dataplane.nft_compile import Compiler, compile_ruleset, diff, render
from felix.policy.evaluate import explain, parse_packet
from felix.policy.feed import Feed, index_from_items
from felix.policy.index import PolicyIndex
from felix.policy.rules import applies_to, side_selector
from felix.workload import EndpointPort, new_endpoint

RES = "/calico/resources/v3/projectcalico.org/"


def doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


def key_of(d: dict[str, Any]) -> str:
    from calico import keys

    m = d["metadata"]
    return keys.resource_key(d["kind"], m["name"], m.get("namespace"))


PODS = {
    # name: (namespace, node, address, labels)
    "fe": ("default", "n1", "10.0.0.1", {"role": "frontend"}),
    "db": ("default", "n1", "10.0.0.2", {"role": "db", "pcns.env": "forged"}),
    "other": ("default", "n2", "10.0.0.3", {"role": "other"}),
    "devfe": ("dev", "n2", "10.0.0.4", {"role": "frontend"}),
}


def pod_items() -> list[tuple[str, bytes]]:
    items = []
    for name, (ns, node, ip, labels) in PODS.items():
        wep = new_endpoint(
            node=node,
            container_id=name,
            endpoint="eth0",
            interface_name=f"cali{name}",
            ip_networks=[f"{ip}/32"],
            mac="",
            network="k8s-pod-network",
            k8s_namespace=ns,
            k8s_pod=name,
            labels=labels,
        )
        if name == "db":
            wep = dataclasses.replace(wep, ports=(EndpointPort("redis", "TCP", 6379),))
        items.append((wep.key, wep.to_json()))
    for ns, env in (("default", "prod"), ("dev", "dev")):
        p = doc(
            "Profile",
            f"kns.{ns}",
            {
                "ingress": [{"action": "Allow"}],
                "egress": [{"action": "Allow"}],
                "labelsToApply": {"pcns.projectcalico.org/name": ns, "pcns.env": env},
            },
        )
        items.append((key_of(p), json.dumps(p).encode()))
        sa = doc("Profile", f"ksa.{ns}.default", {})
        items.append((key_of(sa), json.dumps(sa).encode()))
    return items


def model(*docs: dict[str, Any]) -> PolicyIndex:
    index, errors = index_from_items(
        "n1", pod_items() + [(key_of(d), json.dumps(d).encode()) for d in docs]
    )
    assert not errors
    return index


def verdict(index: PolicyIndex, src: str, dst: str, spec: str | None = "tcp/6379") -> str:
    addr = {n: p[2] for n, p in PODS.items()} | {"ext": "192.0.2.9"}
    e = explain(index, parse_packet(addr[src], addr[dst], spec))
    deciders = [f"{d.by}" + (f" rule {d.rule}" if d.rule is not None else "") for d in e.decisions]
    return ("allow " if e.allowed else "deny ") + " / ".join(deciders)


# --- Calico's selector merging (updateprocessors/rules_test.go) ---------------------------


LABEL_SETS = [
    {},
    {"projectcalico.org/namespace": "ns1"},
    {"projectcalico.org/namespace": "ns2", "mylabel": "v"},
    {"projectcalico.org/namespace": "ns1", "mylabel": "v"},
    {"projectcalico.org/namespace": "ns1", "pcns.k": "v", "mylabel": "v"},
    {"projectcalico.org/namespace": "ns2", "pcns.k": "v"},
    {
        "projectcalico.org/serviceaccount": "sa1",
        "pcsa.key": "value1",
        "projectcalico.org/namespace": "ns1",
    },
    {"mylabel": "v", "pcns.k": "v"},
]


@pytest.mark.parametrize(
    ("entity", "namespace", "calico"),
    [
        (
            EntityRule(selector="mylabel == 'v'"),
            "ns1",
            "(projectcalico.org/namespace == 'ns1') && (mylabel == 'v')",
        ),
        (EntityRule(not_selector="has(x)"), "ns1", "projectcalico.org/namespace == 'ns1'"),
        (EntityRule(), "ns1", None),  # no selector field: any address
        (EntityRule(namespace_selector="k == 'v'"), "ns1", 'pcns.k == "v"'),
        (
            EntityRule(namespace_selector="k == 'v'", selector="mylabel == 'v'"),
            "ns1",
            "(pcns.k == 'v') && (mylabel == 'v')",
        ),
        (EntityRule(namespace_selector="all()"), None, "has(projectcalico.org/namespace)"),
        (EntityRule(namespace_selector="global()"), "ns1", "!has(projectcalico.org/namespace)"),
        (EntityRule(selector="mylabel == 'v'"), None, "mylabel == 'v'"),
        (
            EntityRule(service_accounts=ServiceAccountMatch(("sa1", "sa2"), "key == 'value1'")),
            "ns1",
            "(projectcalico.org/namespace == 'ns1') && ((pcsa.key == \"value1\") && "
            '(projectcalico.org/serviceaccount in {"sa1", "sa2"}))',
        ),
    ],
)
def test_rule_selectors_mean_what_calicos_do(
    entity: EntityRule, namespace: str | None, calico: str | None
) -> None:
    ours = side_selector(entity, namespace)
    if calico is None:
        assert ours is None
        return
    assert ours is not None
    theirs = sel.parse(calico)
    for labels in LABEL_SETS:
        assert ours.matches(labels) == theirs.matches(labels), (labels, str(ours))


def test_policy_selectors() -> None:
    np = parse_resource(doc("NetworkPolicy", "p", {"selector": "role == 'db'"}, namespace="a"))
    gnp = parse_resource(
        doc("GlobalNetworkPolicy", "g", {"selector": "all()", "namespaceSelector": "env == 'dev'"})
    )
    assert np is not None and gnp is not None
    assert applies_to(np).matches({"role": "db", "projectcalico.org/namespace": "a"})  # type: ignore[arg-type]
    assert not applies_to(np).matches({"role": "db", "projectcalico.org/namespace": "b"})  # type: ignore[arg-type]
    assert applies_to(gnp).matches({"projectcalico.org/namespace": "x", "pcns.env": "dev"})  # type: ignore[arg-type]
    assert not applies_to(gnp).matches({"pcns.env": "prod", "projectcalico.org/namespace": "x"})  # type: ignore[arg-type]


def test_prefix_and_required_label() -> None:
    s = sel.with_label_prefix(sel.parse("a == 'x' && !has(b) || c in {'1'}"), "pcns.")
    assert s.key == '((pcns.a == "x" && !has(pcns.b)) || pcns.c in {"1"})'
    assert sel.required_label(sel.parse("x == '1' && y == '2'")) == ("x", "1")
    assert sel.required_label(sel.parse("x == '1' || y == '2'")) is None


KEYS = st.sampled_from(["a", "b", "c"])
VALUES = st.sampled_from(["", "x", "xy", "yx"])


@st.composite
def selectors(draw: Any, depth: int = 0) -> str:
    leaf = st.one_of(
        st.builds(lambda k: f"has({k})", KEYS),
        st.builds(
            lambda k, op, v: f"{k} {op} '{v}'",
            KEYS,
            st.sampled_from(["==", "!=", "contains", "starts with", "ends with"]),
            VALUES,
        ),
        st.builds(
            lambda k, neg, vs: (
                f"{k} {'not in' if neg else 'in'} {{{', '.join(repr(v) for v in vs)}}}"
            ),
            KEYS,
            st.booleans(),
            st.lists(VALUES, max_size=2),
        ),
        st.just("all()"),
        st.just("global()"),
    )
    if depth > 2:
        return draw(leaf)
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(leaf)
    if choice == 1:
        return "!(" + draw(selectors(depth + 1)) + ")"
    op = " && " if choice == 2 else " || "
    return "(" + draw(selectors(depth + 1)) + op + draw(selectors(depth + 1)) + ")"


@given(selectors(), st.dictionaries(KEYS, VALUES))
def test_compiled_selectors_match_like_the_tree(text: str, labels: dict[str, str]) -> None:
    s = sel.parse(text)
    assert s.matches(labels) == s.root.matches(labels)


# --- labels ---------------------------------------------------------------------------------


def test_endpoint_labels_inherit_from_profiles_but_cannot_forge_them() -> None:
    index = model()
    (db,) = [e for e in index.endpoints.values() if e.name.endswith("-db-eth0")]
    labels = index.labels[db.key]
    assert labels["pcns.env"] == "prod"  # from kns.default, not the WEP's forged label
    assert labels["projectcalico.org/namespace"] == "default"
    assert labels["projectcalico.org/serviceaccount"] == "default"
    assert labels["role"] == "db"


# --- evaluation order -----------------------------------------------------------------------

END = "end of tier default (no policy allowed or passed)"
FROM_FE = {
    "action": "Allow",
    "protocol": "TCP",
    "source": {"selector": "role == 'frontend'"},
    "destination": {"ports": [6379]},
}


def np(name: str, spec: dict[str, Any], ns: str = "default") -> dict[str, Any]:
    return doc("NetworkPolicy", name, spec, namespace=ns)


def gnp(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return doc("GlobalNetworkPolicy", name, spec)


CASES: list[tuple[str, list[dict[str, Any]], list[tuple[str, str, str | None, str]]]] = [
    (
        "no policy: profiles allow",
        [],
        [
            (
                "fe",
                "db",
                "tcp/6379",
                "allow Profile kns.default rule 0 / Profile kns.default rule 0",
            ),
        ],
    ),
    (
        "selected, nothing matches: end of tier",
        [np("p", {"selector": "role == 'db'", "ingress": [FROM_FE]})],
        [
            (
                "fe",
                "db",
                "tcp/6379",
                "allow Profile kns.default rule 0 / NetworkPolicy default/p rule 0",
            ),
            (
                "other",
                "db",
                "tcp/6379",
                f"deny Profile kns.default rule 0 / {END}",
            ),
            (
                "devfe",
                "db",
                "tcp/6379",
                f"deny Profile kns.dev rule 0 / {END}",
            ),
            (
                "fe",
                "db",
                "tcp/80",
                f"deny Profile kns.default rule 0 / {END}",
            ),
        ],
    ),
    (
        "lower order first, name breaks ties",
        [
            gnp(
                "b-allow",
                {"order": 5, "selector": "role == 'db'", "ingress": [{"action": "Allow"}]},
            ),
            gnp(
                "a-deny", {"order": 5, "selector": "role == 'db'", "ingress": [{"action": "Deny"}]}
            ),
            gnp(
                "first",
                {
                    "order": 1,
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Log"},
                        {"action": "Pass", "source": {"selector": "role == 'frontend'"}},
                    ],
                },
            ),
        ],
        [
            (
                "other",
                "db",
                None,
                "deny Profile kns.default rule 0 / GlobalNetworkPolicy a-deny rule 0",
            ),
            # Pass skips the rest of the tier; no later tier: the profiles decide.
            ("fe", "db", None, "allow Profile kns.default rule 0 / Profile kns.default rule 0"),
        ],
    ),
    (
        "tiers by order; an unset order is last",
        [
            doc("Tier", "late", {}),
            doc("Tier", "early", {"order": 10}),
            gnp(
                "late.deny",
                {"tier": "late", "selector": "role == 'db'", "ingress": [{"action": "Deny"}]},
            ),
            gnp(
                "early.pass",
                {"tier": "early", "selector": "role == 'db'", "ingress": [{"action": "Pass"}]},
            ),
            np("allow", {"selector": "role == 'db'", "ingress": [{"action": "Pass"}]}),
        ],
        [
            # early (10) passes, default (1e6) passes, late (no order) denies.
            (
                "fe",
                "db",
                None,
                "deny Profile kns.default rule 0 / GlobalNetworkPolicy late.deny rule 0",
            ),
        ],
    ),
    (
        "a Pass tier default and a missing profile",
        [
            doc("Tier", "sec", {"order": 1, "defaultAction": "Pass"}),
            gnp(
                "sec.x",
                {
                    "tier": "sec",
                    "selector": "role == 'db'",
                    "ingress": [{"action": "Deny", "source": {"selector": "role == 'other'"}}],
                },
            ),
        ],
        [
            ("fe", "db", "udp/53", "allow Profile kns.default rule 0 / Profile kns.default rule 0"),
            (
                "other",
                "db",
                "udp/53",
                "deny Profile kns.default rule 0 / GlobalNetworkPolicy sec.x rule 0",
            ),
        ],
    ),
    (
        "named ports, nets and ICMP",
        [
            np(
                "named",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["redis"]}},
                        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
                    ],
                },
            ),
            gnp(
                "egress",
                {
                    "selector": "role == 'frontend'",
                    "types": ["Egress"],
                    "egress": [
                        {"action": "Deny", "destination": {"notNets": ["10.0.0.0/8"]}},
                        {"action": "Allow"},
                    ],
                },
            ),
        ],
        [
            (
                "fe",
                "db",
                "tcp/6379",
                "allow GlobalNetworkPolicy egress rule 1 / NetworkPolicy default/named rule 0",
            ),
            (
                "other",
                "db",
                "tcp/6380",
                f"deny Profile kns.default rule 0 / {END}",
            ),
            (
                "other",
                "db",
                "icmp/8/0",
                "allow Profile kns.default rule 0 / NetworkPolicy default/named rule 1",
            ),
            (
                "other",
                "db",
                "icmp/8/1",
                f"deny Profile kns.default rule 0 / {END}",
            ),
            ("fe", "ext", "tcp/80", "deny GlobalNetworkPolicy egress rule 0"),
        ],
    ),
    (
        "host-endpoint-only policies are not workload policy",
        [
            gnp(
                "untracked",
                {
                    "selector": "all()",
                    "doNotTrack": True,
                    "applyOnForward": True,
                    "ingress": [{"action": "Deny"}],
                },
            ),
        ],
        [
            ("fe", "db", None, "allow Profile kns.default rule 0 / Profile kns.default rule 0"),
        ],
    ),
    (
        "namespaceSelector through the kns. profiles",
        [
            np(
                "from-dev",
                {
                    "selector": "role == 'db'",
                    "ingress": [
                        {"action": "Allow", "source": {"namespaceSelector": "env == 'dev'"}}
                    ],
                },
            ),
        ],
        [
            (
                "devfe",
                "db",
                None,
                "allow Profile kns.dev rule 0 / NetworkPolicy default/from-dev rule 0",
            ),
            (
                "fe",
                "db",
                None,
                f"deny Profile kns.default rule 0 / {END}",
            ),
        ],
    ),
]


@pytest.mark.parametrize(("title", "docs", "probes"), CASES, ids=[c[0] for c in CASES])
def test_evaluation(
    title: str, docs: list[dict[str, Any]], probes: list[tuple[str, str, str | None, str]]
) -> None:
    index = model(*docs)
    for src, dst, spec, expected in probes:
        assert verdict(index, src, dst, spec) == expected, (src, dst, spec)


def test_missing_profile_denies() -> None:
    items = [i for i in pod_items() if not i[0].endswith("profiles/kns.default")]
    index, _ = index_from_items("n1", items)
    assert verdict(index, "fe", "db", None) == (
        "deny Profile kns.default (missing: deny all) rule 0"
        " / Profile kns.default (missing: deny all) rule 0"
    )


# --- incremental index and compiler ---------------------------------------------------------


def test_incremental_compiles_equal_fresh_ones() -> None:
    rng = random.Random(7)
    index = PolicyIndex("n1")
    feed = Feed(index)
    compiler = Compiler()
    for key, value in pod_items():
        feed.put(key, value)
    applied = compiler.compile(index)
    policies = [
        np(
            "p",
            {
                "selector": "role == 'db'",
                "ingress": [
                    FROM_FE,
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["redis"]}},
                ],
            },
        ),
        gnp(
            "g",
            {
                "selector": "has(role)",
                "egress": [{"action": "Deny", "destination": {"nets": ["10.9.0.0/16"]}}],
            },
        ),
        doc("Tier", "t", {"order": 3}),
        gnp(
            "t.x", {"tier": "t", "selector": "role == 'frontend'", "ingress": [{"action": "Pass"}]}
        ),
    ]
    for step in range(60):
        what = rng.randrange(4)
        if what == 0:  # relabel a pod
            name = rng.choice(list(PODS))
            ns, node, ip, _labels = PODS[name]
            wep = new_endpoint(
                node=node,
                container_id=name,
                endpoint="eth0",
                interface_name=f"cali{name}",
                ip_networks=[f"{ip}/32"],
                mac="",
                network="n",
                k8s_namespace=ns,
                k8s_pod=name,
                labels={"role": rng.choice(["db", "frontend", "other"])},
            )
            feed.put(wep.key, wep.to_json())
        elif what == 1:
            d = rng.choice(policies)
            feed.put(key_of(d), json.dumps(d).encode())
        elif what == 2:
            feed.delete(key_of(rng.choice(policies)))
        else:
            p = doc(
                "Profile",
                "kns.dev",
                {
                    "ingress": [{"action": "Allow"}],
                    "labelsToApply": {"pcns.env": rng.choice(["dev", "prod"])},
                },
            )
            feed.put(key_of(p), json.dumps(p).encode())
        new = compiler.compile(index)
        fresh = compile_ruleset(index)
        assert render(new) == render(fresh), step
        assert diff(new, fresh) == ""
        applied = new
    assert applied.chains
