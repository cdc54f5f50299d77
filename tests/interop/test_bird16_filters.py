"""BGPFilter conformance by behaviour, with BIRD 1.6 (the BIRD calico-node ships) as the
oracle: for every step of every bgpfilter/* scenario and ignored_interfaces, BIRD 1.6 runs the
golden bird.cfg and bird6.cfg (as confd wrote them, plus one external eBGP peer) in a lab
node; the route corpus reaches it as real BGP sessions from the injector (every golden peer's
address and the external one), kernel routes through interfaces of the corpus' names and
metrics, and connected subnets. What BIRD accepted from each peer (`show route protocol P
all`) and what it sent to each (the injector's tables) must be what bgpd's policy for the
same node decides on the same routes, prefix by prefix, with LOCAL_PREF, communities, large
communities and AS path. The golden-text evaluator of the unit tests is checked against BIRD
on the way.

Known, reported, not counted: routes of BIRD's `direct` protocol (connected subnets, here the
lab's own) that a filter or Calico's rules let out; bgpd has no direct protocol.
"""

from __future__ import annotations

from typing import Any

import pytest

from labs.conformance import bird16
from labs.conformance.judge import cases
from labs.conformance.oracle import Run, compare
from labs.conformance.scenarios import CORPUS, MISSING, plan_for, scenarios, steps
from labs.harness.lab import Lab
from labs.harness.needs import require

pytestmark = pytest.mark.interop


def _cases() -> list[Any]:
    out = []
    for s in scenarios():
        if s["name"].startswith(("bgpfilter/", "ignored_interfaces")):
            for i, _ in enumerate(steps(s)):
                out.append(pytest.param(s["name"], i, id=f"{s['name']}#{i + 1}"))
    return out


@pytest.fixture(autouse=True)
def _oracle_present() -> None:
    require(CORPUS is not None, MISSING)
    problem = bird16.missing()
    require(problem is None, problem or "")


def test_every_filter_scenario_has_a_case() -> None:
    names = {s["name"] for s in scenarios() if s["name"].startswith("bgpfilter/")}
    assert names and names <= {p.values[0] for p in _cases()}


@pytest.mark.parametrize(("name", "step"), _cases())
def test_bird16_and_bgpd_accept_and_export_the_same(lab: Lab, name: str, step: int) -> None:
    planned = plan_for(name, step)
    run = Run(lab, planned, cases(planned))
    run.build()
    run.feed()
    run.converge()
    out = compare(run)
    assert out.compared > 0
    bgpd = [str(m) for m in out.mismatches if m.side == "bgpd"]
    evaluator = [str(m) for m in out.mismatches if m.side == "evaluator"]
    assert not bgpd, f"{len(bgpd)} differ from BIRD 1.6:\n" + "\n".join(bgpd[:30])
    assert not evaluator, "the unit tests' evaluator differs:\n" + "\n".join(evaluator[:30])
    lab_subnets = {sub for case in run.fams for sub in case.layout.subnets.values()}
    direct = {p for case in run.fams for p in case.direct_prefixes} | lab_subnets
    assert {prefix for _, prefix in out.direct_only} <= direct
    print(f"{name}#{step + 1}: {out.compared} routes from peers ({out.accepted} accepted), "
          f"{out.exported} sent; BIRD-only connected subnets: {sorted(set(out.direct_only))}")
