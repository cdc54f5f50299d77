"""Calico's golden confd scenarios checked by behaviour, not by plan: for every scenario the
planner covers (test_conformance_mesh.py's cases), the plan runs in the pure speaker, every
session comes up against a peer that mirrors it, and what the speaker then does is compared
with what the golden BIRD configuration makes BIRD do:

* the session as the session machine runs it (PeerSettings): AS numbers, passive end,
  source address, TTL / GTSM, graceful-restart time, keepalive, ADD-PATH (`add paths on`
  in bgp_template), the iBGP/eBGP export flag (`calico_export_to_bgp_peers(<internal>)`);
* what each session is sent, from its update group: our originated blocks with our next
  hop, our AS prepended towards eBGP, the communities of `apply_communities()`; a learned
  route's next hop (`next hop self` / `next hop keep` / BIRD's default) (sessions with
  BGPFilters are left to the BGPFilter conformance);
* what each eBGP session's routes may carry on import (`allow local as N`);
* what the kernel gets: the blackhole and `route X via Y` static routes of bird_aggr.cfg.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from test_conformance_mesh import (
    CORPUS,
    GoldenBird,
    GoldenPeer,
    _cases,
    _plan_for,
    _resolve,
    parse_aggr,
    parse_bird,
    parse_kernel_programming,
)

from bgpd.daemon.reconfig import peer_settings
from bgpd.kernel.fib import RouteType
from bgpd.kernel.planner import FibPlanner, prefix_key
from bgpd.kernel.programming import Programming
from bgpd.plan import PeeringPlan, PeerSpec
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.route import PeerInfo, Route
from bgpd.session.events import SessionEstablished, StateChanged
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open, negotiate
from bgpd.session.settings import GTSM_TTL
from bgpd.speaker.speaker import Speaker
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, nlri_to_prefix, prefix_to_nlri
from bgpd.wire.messages import ADD_PATH_BOTH

pytestmark = pytest.mark.skipif(CORPUS is None, reason="calico-confd corpus not found")

# A route "learned" from an eBGP peer outside the plan, inside a pool: its next hop is what
# next hop self / keep decide about.
LEARNED_NEXT_HOP = {"ipv4": "192.0.2.99", "ipv6": "2001:db8::99"}
STRANGER = {
    "ipv4": PeerInfo("stranger", bytes([192, 0, 2, 99]), 65530, 0xC0000263, 0),
    "ipv6": PeerInfo("stranger6", ipaddress.ip_address("2001:db8::99").packed, 65530, 99, 0),
}


def _template_add_paths(path: Path) -> bool:
    text = path.read_text()
    start = text.find("template bgp bgp_template")
    return start >= 0 and "add paths on;" in text[start : text.index("\n}", start)]


def _golden(plan: PeeringPlan, golden_dir: Path) -> dict[str, tuple[GoldenPeer, GoldenBird, bool]]:
    out: dict[str, tuple[GoldenPeer, GoldenBird, bool]] = {}
    for suffix in ("", "6"):
        bird = parse_bird(golden_dir / f"bird{suffix}.cfg")
        add_paths = _template_add_paths(golden_dir / f"bird{suffix}.cfg")
        for name, peer in bird.peers.items():
            out[name] = (peer, bird, add_paths)
    assert sorted(out) == sorted(s.name for s in plan.sessions)
    return out


def _speaker(plan: PeeringPlan, secrets: Mapping[str, Mapping[str, str]]) -> Speaker:
    speaker = Speaker(plan)
    for spec in plan.sessions:
        settings = peer_settings(spec, speaker.router_id, _resolve(spec.password, secrets))
        speaker.add_peer(spec, settings)
    for spec in plan.sessions:
        settings = speaker.peers[spec.name].settings
        # The peer mirrors the session: its AS and ours swapped, the same capabilities.
        mirror = replace(
            settings,
            local_as=settings.peer_as,
            peer_as=settings.local_as,
            router_id=int(ipaddress.IPv4Address("198.51.100.1")),
        )
        local, remote = build_open(settings), build_open(mirror)
        neg = negotiate(settings, local, remote)
        speaker.receive(StateChanged(spec.name, State.OPEN_CONFIRM, State.ESTABLISHED), 0.0)
        speaker.receive(SessionEstablished(spec.name, local, remote, neg.options, neg), 0.0)
    speaker.begin(0.0)
    while speaker.has_work():
        speaker.step(0.0)
    speaker.write_out(0.0)
    return speaker


def _in(prefix: str, cidr: str) -> bool:
    a, b = ipaddress.ip_network(prefix), ipaddress.ip_network(cidr)
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _communities(prefix: str, bird: GoldenBird) -> tuple[set[int], set[tuple[int, int, int]]]:
    """What the golden apply_communities() adds to a route to `prefix`."""
    standard: set[int] = set()
    large: set[tuple[int, int, int]] = set()
    for cidr, (std, lg) in bird.communities.items():
        if _in(prefix, cidr):
            standard |= {a << 16 | b for a, b in std}  # type: ignore[misc]
            large |= {(a, b, c) for a, b, c in lg}  # type: ignore[misc]
    return standard, large


def _check_settings(spec: PeerSpec, speaker: Speaker, golden: GoldenPeer, add_paths: bool,
                    template_as: int | None) -> None:
    s = speaker.peers[spec.name].settings
    assert (s.peer_address, s.peer_port, s.peer_as) == (golden.address, golden.port,
                                                         golden.peer_as)
    assert s.local_as == (golden.local_as if golden.local_as is not None else template_as)
    assert s.passive == golden.passive
    assert s.local_address == golden.source_address
    if golden.ttl_security:
        assert (s.outgoing_ttl, s.min_ttl) == (GTSM_TTL, GTSM_TTL + 1 - (golden.multihop or 1))
    else:
        assert (s.outgoing_ttl, s.min_ttl) == (golden.multihop or 64, None)
    assert s.graceful_restart_time == golden.restart_time
    assert s.keepalive_time == golden.keepalive_time
    family = Family.of_label(spec.family)
    assert s.add_path == (((family, ADD_PATH_BOTH),) if add_paths else ())


def _check_exports(spec: PeerSpec, speaker: Speaker, golden: GoldenPeer, bird: GoldenBird,
                   plan: PeeringPlan) -> None:
    group = speaker.adj_out.group_of(spec.name)
    assert group is not None, spec.name
    family = Family.of_label(spec.family)
    key = group.key
    assert key.ibgp == golden.internal, spec.name
    assert family in key.options.add_path_send  # both ends said `add paths on`
    local_as = golden.local_as if golden.local_as is not None else bird.local_as
    ours = key.local_address(family)
    # Our blocks, as sent: our next hop, our AS towards eBGP, the golden communities.
    sent = {nlri_to_prefix(family, p): (a, src) for p, a, src in group.entries(family)}
    for org in plan.originate:
        if org.family != spec.family:
            continue
        attrs, _src = sent[org.prefix]
        assert attrs.next_hop == ours, (spec.name, org.prefix)
        assert attrs.as_path == (() if golden.internal else ((AS_SEQUENCE, (local_as,)),))
        standard, large = _communities(org.prefix, bird)
        assert (set(attrs.communities), set(attrs.large_communities)) == (standard, large)
    # A route learned from an outside eBGP peer, inside a pool.
    pools = [p for p in plan.pools if p.family == spec.family and not p.disable_bgp_export]
    if not pools:
        return
    net = ipaddress.ip_network(pools[0].cidr)
    prefix = str(next(net.subnets(new_prefix=min(net.max_prefixlen, net.prefixlen + 8))))
    template = STRANGER[spec.family]
    stranger = PeerInfo(
        template.name, template.address, template.asn, template.router_id, plan.local_as
    )
    fam, nlri = prefix_to_nlri(prefix)
    nh = ipaddress.ip_address(LEARNED_NEXT_HOP[spec.family]).packed
    route = Route(nlri, fam, PathAttributes(next_hop=nh, as_path=((AS_SEQUENCE, (65530,)),)),
                  stranger)
    token = group.policy.allows(route)
    assert token, (spec.name, prefix)
    attrs = group.policy.export(route, AttrCache(), token)
    assert attrs is not None, (spec.name, prefix)
    if golden.next_hop_self:
        want = ours
    elif golden.next_hop_keep:
        want = nh
    else:
        want = nh if golden.internal else ours  # BIRD: kept towards iBGP, self towards eBGP
    assert attrs.next_hop == want, (spec.name, "next hop")
    standard, large = _communities(prefix, bird)
    assert standard <= set(attrs.communities) and large <= set(attrs.large_communities)


def _check_import(spec: PeerSpec, speaker: Speaker, golden: GoldenPeer, bird: GoldenBird) -> None:
    if golden.internal:
        return  # the AS loop check is an eBGP one
    info = speaker.rib.peer(spec.name)
    own = golden.local_as if golden.local_as is not None else bird.local_as
    assert own is not None
    ident = speaker.rib.identity
    for times in range(golden.allow_local_as + 2):
        attrs = PathAttributes(as_path=((AS_SEQUENCE, (golden.peer_as, *([own] * times))),))
        _stored, loop = speaker.policy.import_attrs(ident, info, attrs)
        accepted = times == 0 or times <= golden.allow_local_as
        assert (loop is None) == accepted, (spec.name, times)


def _check_kernel(plan: PeeringPlan, golden_dir: Path) -> None:
    """The kernel gets bird_aggr.cfg's static protocol as calico_kernel_programming lets it
    through: blackholes but those in pools whose routes Felix programs, and `via` routes."""
    planner = FibPlanner(Programming(plan.kernel))
    planner.set_blackholes(plan.blackholes)
    planner.set_static_routes((r.prefix, r.via) for r in plan.static_routes)
    want_blackholes: set[tuple[int, bytes, int, int]] = set()
    want_statics: dict[tuple[int, bytes, int, int], bytes] = {}
    for suffix in ("", "6"):
        aggr = parse_aggr(golden_dir / f"bird{suffix}_aggr.cfg")
        felix = [
            cidr
            for cidr, (action, _t, _d) in parse_kernel_programming(
                golden_dir / f"bird{suffix}_ipam.cfg"
            ).items()
            if action == "felix"
        ]
        want_blackholes |= {
            prefix_key(b) for b in aggr.blackholes if not any(_in(b, c) for c in felix)
        }
        want_statics.update(
            {prefix_key(p): ipaddress.ip_address(via).packed for p, via in aggr.static_routes}
        )
    desired = {r.key: r for r in planner.fib}
    assert {k for k, r in desired.items() if r.type is RouteType.BLACKHOLE} == want_blackholes
    assert {
        k: r.nexthops[0].gateway for k, r in desired.items() if r.type is RouteType.UNICAST
    } == want_statics


@pytest.mark.parametrize(("name", "step"), _cases())
def test_scenario_behaves_as_golden(name: str, step: int) -> None:
    assert CORPUS is not None
    plan, _scenario, st = _plan_for(name, step)
    golden_dir = CORPUS / st["golden"]
    secrets: Mapping[str, Mapping[str, str]] = st.get("secrets", {})
    # A secret that does not exist: confd renders the session without a password (bgpd's
    # daemon refuses such a configuration instead, reconfig.resolve_password); here the
    # session runs without one, and everything else is compared.
    golden = _golden(plan, golden_dir)
    speaker = _speaker(plan, secrets)
    for spec in plan.sessions:
        peer, bird, add_paths = golden[spec.name]
        _check_settings(spec, speaker, peer, add_paths, bird.local_as)
        if not spec.filters:
            # A BGPFilter decides what such a session is sent: its own conformance test's.
            _check_exports(spec, speaker, peer, bird, plan)
        _check_import(spec, speaker, peer, bird)
    _check_kernel(plan, golden_dir)
