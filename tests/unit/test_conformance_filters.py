"""BGPFilter (and the priority and ignored-interfaces lines) against Calico's golden confd
output, by behaviour: for every step of every bgpfilter/* scenario and ignored_interfaces,
the route corpus (labs/conformance/routes.py: every prefix role around every CIDR the
scenario names, from each BGP peer and one external eBGP peer with attribute variants, from
the kernel through interfaces of many names and metrics, connected subnets) goes through the
golden bird.cfg / bird6.cfg, evaluated as BIRD 1.6 runs it (labs/conformance/birdfilter.py),
and through bgpd's policy for the same node; what each accepts from every peer and exports to
every peer, with LOCAL_PREF, communities, large communities and AS path, must be the same.

BIRD 1.6 itself is the oracle that counts: tests/interop/test_bird16_filters.py runs the same
corpus through it (and checks this evaluator against it too).
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from bgpd.policy import policy as policy_module
from bgpd.policy.policy import Verdict
from labs.conformance.birdfilter import Function
from labs.conformance.judge import BGP, Bgpd, Golden, cases, compare, compare_one
from labs.conformance.routes import DIRECT, CorpusRoute, sample
from labs.conformance.scenarios import CORPUS, MISSING, plan_for, scenarios, steps
from labs.harness.needs import require

FILTER_SCENARIOS = ("bgpfilter/", "ignored_interfaces")


def _cases() -> list[Any]:
    out = []
    for s in scenarios():
        if s["name"].startswith(FILTER_SCENARIOS):
            for i, _ in enumerate(steps(s)):
                out.append(pytest.param(s["name"], i, id=f"{s['name']}#{i + 1}"))
    return out


@pytest.fixture(autouse=True)
def _corpus_present() -> None:
    require(CORPUS is not None, MISSING)


@pytest.mark.parametrize(("name", "step"), _cases())
def test_bgpd_accepts_and_exports_what_the_golden_configuration_does(name: str, step: int) -> None:
    planned = plan_for(name, step)
    checked = 0
    for case in cases(planned):
        bgpd = Bgpd(planned.plan, case.layout)
        diffs = [
            d for d in compare(Golden(case.config, case.layout), bgpd, case.routes)
            if not d.direct_only
        ]
        assert not diffs, f"v{case.version}: {len(diffs)} differ:\n" + "\n".join(
            str(d) for d in diffs[:25]
        )
        checked += len(case.routes)
    assert checked > 0


SAMPLES = int(os.environ.get("PYBGPD_CONFORMANCE_SAMPLES", "150"))


@pytest.mark.parametrize(("name", "step"), _cases())
def test_any_route_of_the_corpus_kinds_alone(name: str, step: int) -> None:
    """Routes drawn from every (prefix role, kind of route) pair, prefixes shared, each
    compared alone: the combinations the one-prefix-per-route corpus leaves out.
    $PYBGPD_CONFORMANCE_SAMPLES draws more (per family)."""
    planned = plan_for(name, step)
    for case in cases(planned):
        golden = Golden(case.config, case.layout)
        bgpd = Bgpd(planned.plan, case.layout)
        for r in sample(case.setting, SAMPLES, f"{name}#{step}v{case.version}"):
            diffs = [d for d in compare_one(golden, bgpd, r) if not d.direct_only]
            assert not diffs, "\n".join(str(d) for d in diffs)


def _outcomes(golden: Golden, routes: list[Any]) -> dict[tuple[str, str, str], Any]:
    out: dict[tuple[str, str, str], Any] = {}
    for r in routes:
        state = None
        if r.kind == BGP:
            seen, state = golden.imported(r)
            out["import", str(r.peer), r.prefix] = seen
            if seen is None:
                continue
        for target in golden.protocols():
            out["export", target, r.prefix] = golden.exported(target, r, state)
    return out


def test_every_filter_scenario_is_compared_and_its_filters_decide_something() -> None:
    """Every bgpfilter scenario step whose golden files call BGPFilter functions has corpus
    routes whose fate those functions decide (the same golden files with the functions emptied
    decide them otherwise), and every direction whose functions can change anything does: no
    scenario passes by checking nothing."""
    names = {s["name"] for s in scenarios() if s["name"].startswith("bgpfilter/")}
    assert len(names) >= 22
    decided: dict[tuple[str, int], set[str]] = {}
    for name in sorted(names):
        s = next(x for x in scenarios() if x["name"] == name)
        for step in range(len(steps(s))):
            planned = plan_for(name, step)
            calls = False
            changed: set[str] = set()
            for case in cases(planned):
                with_filters = _outcomes(Golden(case.config, case.layout), case.routes)
                bare = copy.deepcopy(case.config)
                for fn in list(bare.functions):
                    if fn.startswith("bgp_"):
                        bare.functions[fn] = Function(bare.functions[fn].params, [])
                without = _outcomes(Golden(bare, case.layout), case.routes)
                changed |= {k[0] for k, v in with_filters.items() if without[k] != v}
                calls |= any(
                    "FilterV" in str(body)
                    for table in (case.config.imports, case.config.exports)
                    for body in table.values()
                )
            assert bool(changed) == calls, (name, step)
            decided[name, step] = changed
    # What the corpus shows each scenario's filters deciding (the rest of what a direction's
    # filters do cannot change a route: an import rule list that accepts every BGP route).
    assert decided["bgpfilter/match_source", 0] == {"export"}
    assert decided["bgpfilter/import_only/global_peer", 0] == {"import"}
    assert decided["bgpfilter/export_only/global_peer", 0] == {"export"}
    assert decided["bgpfilter/filter_deletion", 1] == set()  # the filter is gone
    assert all(decided["bgpfilter/node_mesh/priority", i] == set() for i in range(3))


def test_connected_subnets_are_the_known_difference_of_ignored_interfaces() -> None:
    """bgpd has no `direct` protocol, so connected subnets are never its routes. Through the
    golden files (ignoredInterfaces iface-1, iface-2): a connected subnet on an ignored
    interface (or cali*, kube-ipvs*) is no route either; on any other interface it is, and
    goes out where Calico's rules let it: a subnet that is exactly a local block. bgpd
    advertises the blackholed blocks anyway, so what differs is only a block with no
    blackhole, a /32 (10.2.0.1/32 here) as a connected subnet."""
    planned = plan_for("ignored_interfaces", 0)
    (case, *_) = cases(planned)
    golden = Golden(case.config, case.layout)
    bgpd = Bgpd(planned.plan, case.layout)
    only: set[tuple[str, str]] = set()
    for ifname in ("iface-1", "iface-2", "eth5", "cali0direct", "kube-ipvs0"):
        for prefix in ("10.2.0.1/32", "10.1.0.0/24", "192.168.221.192/28", "10.77.0.0/24"):
            r = CorpusRoute(prefix, DIRECT, ifname=ifname)
            for d in compare_one(golden, bgpd, r):
                assert d.direct_only, d
                only.add((ifname, prefix))
    assert only == {("eth5", "10.2.0.1/32"), ("eth5", "10.1.0.0/24")}


def test_the_comparison_sees_bgpd_ignoring_the_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: with BGPFilters left out of bgpd's policy, it finds differences
    both ways."""
    planned = plan_for("bgpfilter/single_filter/explicit_peer", 0)
    chain = policy_module.Policy.chain
    monkeypatch.setattr(
        policy_module.Policy, "chain", lambda self, names, d, f, i: None
    )
    found: Counter[str] = Counter()
    for case in cases(planned):
        for d in compare(Golden(case.config, case.layout), Bgpd(planned.plan, case.layout),
                         case.routes):
            found[d.direction] += 1
    assert found["import"] and found["export"]
    monkeypatch.setattr(policy_module.Policy, "chain", chain)


def test_policy_evaluate_is_what_the_update_groups_do() -> None:
    """Bgpd's answers come from the groups' allows/export; Policy.evaluate (bgpctl explain,
    the tests) must give the same verdicts."""
    planned = plan_for("bgpfilter/multi_filter/explicit_peer", 0)
    for case in cases(planned)[:1]:
        bgpd = Bgpd(planned.plan, case.layout)
        for r in case.routes:
            bgpd.add(r)
        for r in case.routes[::7]:
            if r.kind != BGP:
                continue
            _, stored = bgpd.imported(r)
            if stored is None:
                continue
            for target in Golden(case.config, case.layout).protocols():
                via_group = bgpd.exported(target, r, stored)
                verdict, _ = bgpd.evaluate_export(target, stored)
                assert (verdict is Verdict.ACCEPT) == (via_group is not None), (r, target)


@pytest.mark.parametrize(
    "name", ["bgpfilter/multi_filter/explicit_peer", "bgpfilter/match_operators",
             "bgpfilter/filter_deletion"],
)
def test_the_fast_paths_decide_as_the_general_one(name: str) -> None:
    """Without hooks (as the daemon runs today) the groups take shortcuts for routes from BGP
    (prefix rules only) and for no filters at all (Calico's rules only); with hooks that know
    nothing (None) they take the general path. Both must give the same answers."""
    planned = plan_for(name, 0)
    for case in cases(planned):
        bgpd = Bgpd(planned.plan, case.layout)
        plain = policy_module.Policy.of_plan(planned.plan, planned.plan.calico_export())
        general = policy_module.Policy.of_plan(
            planned.plan, planned.plan.calico_export(), ifname_of=lambda r: None,
            metric_of=lambda r: None, next_hop_ifname=lambda f, nh: None,
        )
        for target in Golden(case.config, case.layout).protocols():
            key = bgpd.key(target)
            for k in (key, replace(key, policies=())):
                fast = plain.for_group(k, 1)
                slow = general.for_group(k, 1)
                for r in case.routes:
                    if r.kind != BGP:
                        continue
                    route = bgpd.received(r)
                    a, b = fast.allows(route), slow.allows(route)
                    assert bool(a) == bool(b), (r, target, k.policies)
                    if a:
                        assert fast.export(route, None, a) == slow.export(route, None, b)
