"""Calico's golden confd scenarios: where the corpus is, and a scenario's node planned as bgpd
plans it (the input YAML through the model, each step's change applied to the documents).

The corpus is conformance/calico-confd beside the checkout (`../shared/...`), or wherever
$PYBGPD_CONFORMANCE points. Without it the conformance tests skip, saying so; under CI=true
they fail instead (labs.harness.needs), since a CI run that checks nothing must not pass.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bgpd.plan import PeeringPlan, compute
from calico import BlockAffinity, load_text
from calico.file import read_documents

ROOT = Path(__file__).resolve().parents[2]


def corpus_dir() -> Path | None:
    candidates: list[str | Path] = [
        os.environ.get("PYBGPD_CONFORMANCE", ""),
        ROOT / "conformance" / "calico-confd",
        ROOT.parent / "conformance" / "calico-confd",
        # CI and developers have shared/ beside the checkout.
        ROOT.parent / "shared" / "conformance" / "calico-confd",
    ]
    for c in candidates:
        if c and (Path(c) / "scenarios.json").is_file():
            return Path(c)
    return None


CORPUS = corpus_dir()
MISSING = (
    "the calico-confd conformance corpus is not found (../shared/conformance/calico-confd "
    "beside the checkout, or $PYBGPD_CONFORMANCE)"
)


def meta() -> dict[str, Any]:
    assert CORPUS is not None
    data: dict[str, Any] = json.loads((CORPUS / "scenarios.json").read_text())
    return data


def scenarios() -> list[dict[str, Any]]:
    if CORPUS is None:
        return []
    found: list[dict[str, Any]] = meta()["scenarios"]
    return found


def steps(s: dict[str, Any]) -> list[dict[str, Any]]:
    return s.get("steps") or [{"golden": s["golden"]}]


def apply_change(docs: list[dict[str, Any]], change: str, last: list[Any]) -> list[dict[str, Any]]:
    """Apply a step's described change to the raw documents (so it goes through the model)."""
    if change.startswith("none"):
        return docs
    if m := re.match(r"apply (\S+) on top", change):
        assert CORPUS is not None
        delta = [d for d in read_documents((CORPUS / m.group(1)).read_text()) if d]
        keys = {(d["kind"], d["metadata"]["name"]) for d in delta}
        return [d for d in docs if (d["kind"], d["metadata"]["name"]) not in keys] + delta
    if m := re.match(r"delete (\w+) (\S+)$", change):
        return [d for d in docs if (d["kind"], d["metadata"]["name"]) != (m.group(1), m.group(2))]
    m = re.match(r"(?:(\w+) (\S+): )?(?:additionally )?spec\.(\w+) = (.+)$", change)
    assert m, f"step change not understood: {change!r}"
    kind, name = (m.group(1), m.group(2)) if m.group(1) else last[0]
    last[0] = (kind, name)
    for d in docs:
        if (d["kind"], d["metadata"]["name"]) == (kind, name):
            d.setdefault("spec", {})[m.group(3)] = yaml.safe_load(m.group(4))
            return docs
    raise AssertionError(f"no {kind} {name!r} to change")


def standard_affinities(node: str) -> list[BlockAffinity]:
    out = []
    for a in meta()["standard_block_affinities"]:
        name = f"{a['node']}-{a['cidr'].replace('.', '-').replace('/', '-')}"
        spec = {"node": a["node"], "cidr": a["cidr"], "state": a["state"]}
        doc = {
            "kind": "BlockAffinity",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name},
            "spec": spec,
        }
        out.append(load_text(yaml.safe_dump(doc)).block_affinities[name])
    return out


@dataclass(frozen=True, slots=True)
class Planned:
    """One step of a scenario: bgpd's plan for its node and the golden directory."""

    name: str
    step: int
    plan: PeeringPlan
    golden: Path
    scenario: dict[str, Any]
    step_meta: dict[str, Any]


# The workloads a scenario needs: Calico's confd test writes felix's endpoint status by hand
# (pod1 at 192.168.162.134 for test-global-peer-with-filter, pod2 at .136 for
# test-node-peer-with-filter); here they are WorkloadEndpoints and bgpd picks the BGPPeer
# as felix would (the first by name among those selecting the endpoint). Both BGPPeers
# select app == 'calico-bird-0', so felix would give both pods to the first; pod2 is
# labelled for the node peer alone, whose selector `INPUT_CHANGES` widens to match it.
WORKLOADS: dict[str, list[dict[str, Any]]] = {
    "explicit_peering/local_bgp_peer": [
        {
            "kind": "WorkloadEndpoint",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {
                "name": "kube--master-k8s-pod1-eth0",
                "namespace": "default",
                "labels": {"app": "calico-bird-0"},
            },
            "spec": {
                "node": "kube-master",
                "ipNetworks": ["192.168.162.134/32", "fd00:10:244:0:586d:4461:e980:a284/128"],
            },
        },
        {
            "kind": "WorkloadEndpoint",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {
                "name": "kube--master-k8s-pod2-eth0",
                "namespace": "default",
                "labels": {"app": "calico-bird-1"},
            },
            "spec": {
                "node": "kube-master",
                "ipNetworks": ["192.168.162.136/32", "fd00:10:244:0:586d:4461:e980:a286/128"],
            },
        },
    ],
}
INPUT_CHANGES: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
    "explicit_peering/local_bgp_peer": {
        ("BGPPeer", "test-node-peer-with-filter"): {
            "localWorkloadSelector": "app in {'calico-bird-0', 'calico-bird-1'}"
        },
    },
}


def plan_for(name: str, step: int) -> Planned:
    assert CORPUS is not None
    scenario = next(s for s in scenarios() if s["name"] == name)
    docs = [d for d in read_documents((CORPUS / scenario["input"]).read_text()) if d]
    docs += WORKLOADS.get(name, [])
    for d in docs:
        change = INPUT_CHANGES.get(name, {}).get((d["kind"], d["metadata"]["name"]))
        if change:
            d["spec"] = {**d.get("spec", {}), **change}
    last: list[Any] = [None]
    for st in steps(scenario)[: step + 1]:
        docs = apply_change(docs, st.get("change", "none"), last)
    snapshot = load_text(yaml.safe_dump_all(docs), source=scenario["input"])
    if scenario.get("block_affinities") == "standard":
        snapshot = snapshot.with_resources(standard_affinities(scenario.get("node", "kube-master")))
    plan = compute(snapshot, scenario.get("node", "kube-master"), scenario.get("env", {}))
    st = steps(scenario)[step]
    return Planned(name, step, plan, CORPUS / st["golden"], scenario, st)
