"""The planner against Calico's own golden confd output (conformance/calico-confd).

For every scenario the planner covers, the input YAML goes through `load_text` and `compute`,
and the golden bird.cfg / bird6.cfg / bird*_aggr.cfg / bird*_ipam.cfg are parsed into the
same terms: per `protocol bgp` block the neighbor, port, AS numbers, source address, TTL
security, multihop, passive end, graceful-restart time, next-hop handling, route-reflector
role, password and iBGP/eBGP export flag; the router ID and listen socket; the blackhole and
`via` static routes; the aggregated blocks; the pools whose export is rejected or accepted;
the communities added per prefix. Meaning is compared, not text: the golden export filter is
also evaluated on probe prefixes and must agree with ExportPolicy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bgpd.plan import PeeringPlan, PeerSpec
from bgpd.plan.peering import DEFAULT_MULTIHOP_TTL, DEFAULT_RESTART_TIME
from bgpd.policy.calico import ExportPolicy
from calico import Snapshot, load_file
from calico.file import read_documents
from calico.model import SecretKeyRef
from labs.conformance.scenarios import CORPUS, MISSING, apply_change, plan_for, scenarios, steps
from labs.harness.needs import require


@pytest.fixture(autouse=True)
def _corpus_present() -> None:
    require(CORPUS is not None, MISSING)


# Scenarios the planner does not cover yet, and why. Every scenario in scenarios.json must be
# either run or listed here (test_every_scenario_is_accounted_for).
NOT_COVERED = {
    "mesh/static-routes": "kdd_only: service IP advertisement needs Kubernetes Services",
    "mesh/static-routes-exclude-node": "kdd_only: service IP advertisement",
    "mesh/static-routes-no-ipv4-address": "kdd_only: service IP advertisement",
    "mesh/static-routes (with step2)": "kdd_only: service IP advertisement",
    "mesh/static-routes-exclude-node (with step2)": "kdd_only: service IP advertisement",
}

@dataclass
class GoldenPeer:
    name: str
    address: str = ""
    port: int = 179
    peer_as: int = 0
    local_as: int | None = None
    source_address: str | None = None
    ttl_security: bool = False
    multihop: int | None = None
    passive: bool = False
    restart_time: int = DEFAULT_RESTART_TIME
    next_hop_self: bool = False
    next_hop_keep: bool = False
    rr_client: bool = False
    rr_cluster_id: str | None = None
    password: str | None = None
    allow_local_as: int = 0
    keepalive_time: int | None = None
    internal: bool | None = None
    filters: list[str] = field(default_factory=list)


@dataclass
class GoldenBird:
    disabled: bool = False
    router_id: str | None = None
    local_as: int | None = None
    listen_address: str | None = None
    listen_port: int | None = None
    communities: dict[str, tuple[set[tuple[int, ...]], set[tuple[int, ...]]]] = field(
        default_factory=dict
    )
    peers: dict[str, GoldenPeer] = field(default_factory=dict)


_STMT = [
    (re.compile(r"neighbor (\S+)(?: port (\d+))? as (\d+);"), "neighbor"),
    (re.compile(r"allow local as (\d+);"), "allow_local_as"),
    (re.compile(r"local as (\d+);"), "local_as"),
    (re.compile(r"source address (\S+);"), "source"),
    (re.compile(r"ttl security (on|off);"), "ttl"),
    (re.compile(r"multihop(?: (\d+))?;"), "multihop"),
    (re.compile(r"passive on;"), "passive"),
    (re.compile(r"graceful restart time (\d+);"), "gr"),
    (re.compile(r"next hop self;"), "nh_self"),
    (re.compile(r"next hop keep;"), "nh_keep"),
    (re.compile(r"rr client;"), "rr_client"),
    (re.compile(r"rr cluster id (\S+);"), "rr_cluster_id"),
    (re.compile(r'password "(.*)";'), "password"),
    (re.compile(r"keepalive time (\d+);"), "keepalive"),
    (re.compile(r"calico_export_to_bgp_peers\((true|false)\);"), "internal"),
    (re.compile(r"'bgp_(.+)_(?:import|export)FilterV[46]'"), "filter"),
]


def _parse_peer(name: str, body: list[str]) -> GoldenPeer:
    p = GoldenPeer(name)
    for line in body:
        text = line.split("#", 1)[0].strip()
        for rx, what in _STMT:
            m = rx.search(text)
            if not m:
                continue
            g = m.groups()
            if what == "neighbor":
                p.address, p.port, p.peer_as = g[0], int(g[1] or 179), int(g[2])
            elif what == "local_as":
                p.local_as = int(g[0])
            elif what == "source":
                p.source_address = g[0]
            elif what == "ttl":
                p.ttl_security = g[0] == "on"
            elif what == "multihop":
                p.multihop = int(g[0]) if g[0] else DEFAULT_MULTIHOP_TTL
            elif what == "passive":
                p.passive = True
            elif what == "gr":
                p.restart_time = int(g[0])
            elif what == "nh_self":
                p.next_hop_self = True
            elif what == "nh_keep":
                p.next_hop_keep = True
            elif what == "rr_client":
                p.rr_client = True
            elif what == "rr_cluster_id":
                p.rr_cluster_id = g[0]
            elif what == "password":
                p.password = g[0]
            elif what == "allow_local_as":
                p.allow_local_as = int(g[0])
            elif what == "keepalive":
                p.keepalive_time = int(g[0])
            elif what == "internal":
                p.internal = g[0] == "true"
            elif what == "filter" and g[0] not in p.filters:
                symbol = g[0]
                if len(symbol) == 45 and re.fullmatch(r".{28}_[0-9A-F]{16}", symbol):
                    symbol = symbol[:29] + "?" * 16
                p.filters.append(symbol)
            break
    return p


def parse_bird(path: Path) -> GoldenBird:
    out = GoldenBird()
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "disabled on this node" in line:
            out.disabled = True
        if m := re.match(r"router id (\S+);", line):
            out.router_id = m.group(1)
        if m := re.match(r"listen bgp(?: address (\S+))?(?: port (\d+))?;", line):
            out.listen_address = m.group(1)
            out.listen_port = int(m.group(2)) if m.group(2) else None
        if line.startswith("template bgp bgp_template"):
            while lines[i] != "}":
                if m := re.match(r"\s*local as (\d+);", lines[i]):
                    out.local_as = int(m.group(1))
                i += 1
        if line.startswith("function apply_communities"):
            current = None
            while lines[i] != "}":
                if m := re.search(r"if \( net ~ (\S+) \)", lines[i]):
                    current = m.group(1)
                    out.communities[current] = (set(), set())
                elif m := re.search(r"bgp_(large_)?community\.add\(\(([\d, ]+)\)\)", lines[i]):
                    assert current is not None
                    values = tuple(int(v) for v in m.group(2).split(","))
                    out.communities[current][1 if m.group(1) else 0].add(values)
                i += 1
        if m := re.match(r"protocol bgp (\S+) from bgp_template \{", line):
            body = []
            i += 1
            while lines[i] != "}":
                body.append(lines[i])
                i += 1
            out.peers[m.group(1)] = _parse_peer(m.group(1), body)
        i += 1
    return out


@dataclass
class GoldenAggr:
    blackholes: list[str] = field(default_factory=list)
    static_routes: list[tuple[str, str]] = field(default_factory=list)
    aggregates: list[str] = field(default_factory=list)


def parse_aggr(path: Path) -> GoldenAggr:
    out = GoldenAggr()
    for line in path.read_text().splitlines():
        if m := re.match(r"\s*route (\S+) blackhole;", line):
            out.blackholes.append(m.group(1))
        elif m := re.match(r"\s*route (\S+) via (\S+);", line):
            out.static_routes.append((m.group(1), m.group(2)))
        elif m := re.match(r"\s*if \( net = (\S+) \) then \{ accept; \}", line):
            out.aggregates.append(m.group(1))
    return out


def parse_export_rules(path: Path) -> list[tuple[str, str]]:
    """calico_export_to_bgp_peers' top-level prefix rules, in order, with ("aggr", "") where
    it calls calico_aggr()."""
    rules: list[tuple[str, str]] = []
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith("function calico_export_to_bgp_peers"):
            inside = True
            continue
        if inside and line == "}":
            break
        if not inside:
            continue
        if line.strip() == "calico_aggr();":
            rules.append(("aggr", ""))
        elif m := re.match(r"  if \(net ~ (\S+)\) then \{ (accept|reject); \}", line):
            rules.append((m.group(2), m.group(1)))
    return rules


def _net(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(prefix, strict=False)


def _within(a: str, b: str) -> bool:
    na, nb = _net(a), _net(b)
    return na.version == nb.version and na.subnet_of(nb)  # type: ignore[arg-type]


def golden_allows(
    rules: list[tuple[str, str]], aggr: list[str], prefix: str, elevated: bool
) -> bool:
    for action, cidr in rules:
        if action == "aggr":
            for block in aggr:
                if _net(prefix) == _net(block):
                    return True
                if _within(prefix, block):
                    return elevated
        elif _within(prefix, cidr):
            return action == "accept"
    return False


# --- scenarios ----------------------------------------------------------------------------


def _scenarios() -> list[dict[str, Any]]:
    return scenarios()


def _steps(s: dict[str, Any]) -> list[dict[str, Any]]:
    return steps(s)


def _cases() -> list[Any]:
    out = []
    for s in _scenarios():
        if s["name"] in NOT_COVERED:
            continue
        for i, _ in enumerate(_steps(s)):
            out.append(pytest.param(s["name"], i, id=f"{s['name']}#{i + 1}"))
    return out


def _plan_for(name: str, step: int) -> tuple[PeeringPlan, dict[str, Any], dict[str, Any]]:
    planned = plan_for(name, step)
    return planned.plan, planned.scenario, planned.step_meta


def _resolve(ref: SecretKeyRef | None, secrets: Mapping[str, Mapping[str, str]]) -> str | None:
    if ref is None:
        return None
    return secrets.get(ref.name, {}).get(ref.key)


def _check_peer(
    spec: PeerSpec,
    golden: GoldenPeer,
    template_as: int | None,
    secrets: Mapping[str, Mapping[str, str]],
) -> None:
    got = {
        "address": spec.peer_address,
        "port": spec.peer_port,
        "peer_as": spec.peer_as,
        "local_as": spec.local_as,
        "source_address": spec.source_address,
        "ttl_security": spec.ttl_security,
        "multihop": spec.multihop,
        "passive": spec.passive,
        "restart_time": spec.max_restart_time,
        "next_hop_self": spec.next_hop_self,
        "next_hop_keep": spec.keep_original_next_hop,
        "rr_client": spec.rr_client,
        "rr_cluster_id": spec.rr_cluster_id,
        "password": _resolve(spec.password, secrets),
        "allow_local_as": spec.allow_local_as,
        "keepalive_time": spec.keepalive_time,
        "internal": not spec.ebgp,
    }
    want = {
        "address": golden.address,
        "port": golden.port,
        "peer_as": golden.peer_as,
        "local_as": golden.local_as if golden.local_as is not None else template_as,
        "source_address": golden.source_address,
        "ttl_security": golden.ttl_security,
        "multihop": golden.multihop,
        "passive": golden.passive,
        "restart_time": golden.restart_time,
        "next_hop_self": golden.next_hop_self,
        "next_hop_keep": golden.next_hop_keep,
        "rr_client": golden.rr_client,
        "rr_cluster_id": golden.rr_cluster_id,
        "password": golden.password,
        "allow_local_as": golden.allow_local_as,
        "keepalive_time": golden.keepalive_time,
        "internal": golden.internal,
    }
    assert got == want, spec.name
    # BGPFilters are carried by name (the filter engine is not the planner's); the golden's
    # filter functions must be among them.
    for called in golden.filters:
        assert any(_filter_symbol(f) == called for f in spec.filters), (spec.name, called)


def _filter_symbol(name: str) -> str:
    """confd's BIRD symbol part for a filter name: names over 45 characters become their
    first 28 characters, '_' and a 16-digit hash (TruncateAndHashName); the hash is taken
    as given, the rest must match."""
    return name if len(name) <= 45 else name[:28] + "_" + "?" * 16


def _probes(plan: PeeringPlan, family: str, golden_aggr: list[str]) -> list[str]:
    out = {"203.0.113.0/24", "203.0.113.7/32"} if family == "ipv4" else {"2001:db8::/64"}
    cidrs = [b.cidr for b in plan.blocks] + [p.cidr for p in plan.pools] + golden_aggr
    for c in cidrs:
        net = _net(c)
        if (net.version == 4) != (family == "ipv4"):
            continue
        out.add(str(net))
        out.add(f"{net.network_address}/{net.max_prefixlen}")
        if net.prefixlen < net.max_prefixlen:
            out.add(str(next(net.subnets())))
        if net.prefixlen > 0:
            out.add(str(net.supernet()))
    return sorted(out)


_KERNEL_LINE = re.compile(r"if \(net ~ (\S+)\) then \{ (.*) \}")
_CROSS_SUBNET = re.compile(
    r'if \(defined\(bgp_next_hop\)&&\(bgp_next_hop ~ (\S+)\)\) then krt_tunnel=""; '
    r'else krt_tunnel="(\w+)"; accept;'
)


def parse_kernel_programming(path: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """`filter calico_kernel_programming`: per pool, (action, tunnel, direct_within)."""
    text = path.read_text()
    start = text.index("filter calico_kernel_programming")
    out: dict[str, tuple[str, str | None, str | None]] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("}"):
            break
        m = _KERNEL_LINE.search(line)
        if m is None:
            continue
        cidr, body = m.group(1), m.group(2)
        if body.startswith("reject;"):
            out[cidr] = ("felix", None, None)
        elif cross := _CROSS_SUBNET.fullmatch(body):
            out[cidr] = ("program", cross.group(2), cross.group(1))
        elif tunnel := re.fullmatch(r'krt_tunnel="(\w*)"; accept;', body):
            out[cidr] = ("program", tunnel.group(1) or None, None)
        else:
            assert body == "accept;", line
            out[cidr] = ("program", None, None)
    return out


@pytest.mark.parametrize(("name", "step"), _cases())
def test_plan_matches_golden(name: str, step: int) -> None:
    assert CORPUS is not None
    plan, _, st = _plan_for(name, step)
    golden_dir = CORPUS / st["golden"]
    secrets: Mapping[str, Mapping[str, str]] = st.get("secrets", {})
    policy = ExportPolicy(plan.blocks, plan.pools)
    for family, suffix in (("ipv4", ""), ("ipv6", "6")):
        bird = parse_bird(golden_dir / f"bird{suffix}.cfg")
        sessions = {s.name: s for s in plan.sessions if s.family == family}
        assert sorted(sessions) == sorted(bird.peers), f"{family} sessions"
        for peer_name, golden in bird.peers.items():
            _check_peer(sessions[peer_name], golden, bird.local_as, secrets)
        if not bird.disabled:
            assert plan.router_id == bird.router_id
            assert plan.local_as == bird.local_as
            assert plan.listen_port == (bird.listen_port or 179)
            if bird.listen_address:
                assert bird.listen_address in plan.listen_addresses
            elif family == "ipv4":
                assert not plan.listen_addresses
        communities = {
            c.cidr: ({tuple(v) for v in c.standard}, {tuple(v) for v in c.large})
            for c in plan.communities
            if c.family == family
        }
        assert communities == bird.communities

        aggr = parse_aggr(golden_dir / f"bird{suffix}_aggr.cfg")
        assert sorted(b for b in plan.blackholes if (":" in b) == (family == "ipv6")) == sorted(
            aggr.blackholes
        )
        assert sorted(
            (r.prefix, r.via) for r in plan.static_routes if (":" in r.prefix) == (family == "ipv6")
        ) == sorted(aggr.static_routes)
        assert sorted(b.cidr for b in plan.blocks if b.family == family and b.confirmed) == sorted(
            aggr.aggregates
        )

        rules = parse_export_rules(golden_dir / f"bird{suffix}_ipam.cfg")
        pools = [p for p in plan.pools if p.family == family]
        assert sorted(c for a, c in rules if a == "reject") == sorted(
            p.cidr for p in pools if p.disable_bgp_export
        )
        assert sorted(c for a, c in rules if a == "accept") == sorted(
            p.cidr for p in pools if not p.disable_bgp_export
        )
        for prefix in _probes(plan, family, aggr.aggregates):
            for elevated in (False, True):
                want = golden_allows(rules, aggr.aggregates, prefix, elevated)
                assert policy.allows(prefix, elevated=elevated) == want, (prefix, elevated)
        originated = sorted(o.prefix for o in plan.originate if o.family == family)
        assert originated == sorted(
            b for b in aggr.blackholes if golden_allows(rules, aggr.aggregates, b, False)
        )

        kernel = parse_kernel_programming(golden_dir / f"bird{suffix}_ipam.cfg")
        for rule in plan.kernel:
            if rule.family != family:
                continue
            got = (rule.action, rule.tunnel, rule.direct_within)
            assert got == kernel.get(rule.cidr, ("program", None, None)), rule
        assert set(kernel) <= {r.cidr for r in plan.kernel if r.family == family}


def test_every_scenario_is_accounted_for() -> None:
    names = {s["name"] for s in _scenarios()}
    assert set(NOT_COVERED) <= names
    covered = names - set(NOT_COVERED)
    assert covered, "no scenario runs"
    kdd = {s["name"] for s in _scenarios() if s.get("kdd_only")}
    assert kdd <= set(NOT_COVERED)


@pytest.mark.parametrize(
    "name", sorted(n for n in NOT_COVERED if n.startswith("mesh/static-routes"))
)
def test_uncovered_service_scenarios_say_why_in_the_plan(name: str) -> None:
    """The kdd_only scenarios stay uncovered, and the plan says what is not done and why."""
    assert CORPUS is not None
    scenario = next(s for s in _scenarios() if s["name"] == name)
    docs = [d for d in read_documents((CORPUS / scenario["input"]).read_text()) if d]
    fields = ("serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs")
    last: list[Any] = [None]
    for i, st in enumerate(_steps(scenario)):
        docs = apply_change(docs, st.get("change", "none"), last)
        plan = plan_for(name, i).plan
        services = any(
            isinstance(entry, dict) and entry.get("cidr")
            for d in docs
            if d["kind"] == "BGPConfiguration"
            for f in fields
            for entry in (d.get("spec") or {}).get(f) or []
        )
        noted = any("bgpd has no Kubernetes source" in n for n in plan.notes)
        assert noted == services, (st, plan.notes)


def test_mesh_scenarios_are_covered() -> None:
    mesh = [s["name"] for s in _scenarios() if s["name"].startswith("mesh/")]
    run = [n for n in mesh if n not in NOT_COVERED]
    assert {
        "mesh/ipip-always",
        "mesh/bgp-export",
        "mesh/hash",
        "mesh/restart-time",
        "mesh/route-reflector-mesh-enabled",
        "mesh/password",
    } <= set(run)


def test_inputs_load_through_the_file_datastore() -> None:
    """The corpus's own files (not re-dumped YAML) load as they are."""
    assert CORPUS is not None
    for s in _scenarios():
        if s["name"] in NOT_COVERED:
            continue
        snapshot = load_file(str(CORPUS / s["input"]))
        assert isinstance(snapshot, Snapshot)
        assert s.get("node", "kube-master") in snapshot.nodes
