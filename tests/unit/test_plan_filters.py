"""The plan carries what the routing policy needs: the BGPFilters the sessions name (only
those, so a change elsewhere changes no plan), notes for names with no filter and for rules
BIRD treats in ways one may not expect, the normal route priorities, and who programs IPIP
routes (which decides whether tunl0 routes go to internal peers)."""

from __future__ import annotations

from typing import Any

import yaml

from bgpd.plan import compute
from calico import load_text


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def plan_of(*extra: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    docs = [
        doc("BGPConfiguration", "default", {"asNumber": 64512, **(config or {})}),
        doc("Node", "n1", {"bgp": {"ipv4Address": "10.0.0.1/24"}}),
        doc("BGPPeer", "tor", {"peerIP": "10.0.0.254", "asNumber": 65000,
                               "filters": ["used", "missing"]}),
        *extra,
    ]
    return compute(load_text(yaml.safe_dump_all(docs)), "n1", {})


def test_the_named_filters_that_exist_are_in_the_plan() -> None:
    used = doc("BGPFilter", "used", {"exportV4": [{"action": "Reject"}]})
    other = doc("BGPFilter", "other", {"exportV4": [{"action": "Accept"}]})
    plan = plan_of(used, other)
    assert [f.name for f in plan.filters] == ["used"]
    (session,) = plan.sessions
    assert session.filters == ("used", "missing")
    assert any("BGPFilter 'missing' does not exist" in n for n in plan.notes)
    # A filter no session names is not the plan's business.
    changed = doc("BGPFilter", "other", {"exportV4": [{"action": "Reject"}]})
    assert plan_of(used, changed) == plan


def test_rules_bird_does_not_do_as_written_are_noted() -> None:
    odd = doc("BGPFilter", "used", {"importV4": [
        {"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "Equal",
         "prefixLength": {"min": 16}},
    ]})
    assert any("is an error in BIRD at run time" in n for n in plan_of(odd).notes)


def test_priorities_and_the_ipip_owner() -> None:
    plan = plan_of()
    assert (plan.normal_priority_v4, plan.normal_priority_v6, plan.felix_ipip) == (1024, 1024, True)
    assert "tunl0" in plan.calico_export().tunnels
    plan = plan_of(config={"ipv4NormalRoutePriority": 5000, "programClusterRoutes": "Enabled"})
    assert (plan.normal_priority_v4, plan.felix_ipip) == (5000, False)
    assert "tunl0" not in plan.calico_export().tunnels
