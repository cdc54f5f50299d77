"""BGPFilters on a running session, in the pure speaker: a changed filter is applied to the
routes the peer already sent (re-decided from its Adj-RIB-In) and to what the peer was sent
(the difference goes out), and a changed list of filters moves the peer to another update
group with the withdrawals it needs; the session is never closed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from bgpd_pair import _docs
from test_speaker import PEER, V4, caught_up, drain, up
from test_speaker import speaker_for as _speaker_for

from bgpd.plan.peering import PeeringPlan, compute
from bgpd.session.events import UpdateReceived
from bgpd.speaker.actions import Action, Broadcast, Close, Dump
from bgpd.speaker.speaker import Speaker
from bgpd.wire import split_messages
from bgpd.wire.attributes import ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, nlri_to_prefix, prefix_to_nlri
from bgpd.wire.messages import Update
from calico.file import load_file
from calico.model import BGPFilter, FilterOperation, FilterRule

BLOCK = "192.168.1.0/26"  # node1's block, which it originates


@pytest.fixture
def base(tmp_path: Path) -> PeeringPlan:
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(_docs(179, {"node1": BLOCK})))
    return compute(load_file(str(path)), "node1", {})


def speaker_for(plan: PeeringPlan) -> Speaker:
    # Without ADD-PATH (Calico's `add paths on` for mesh sessions): the UPDATEs written here
    # carry plain prefixes.
    return _speaker_for(plan, add_path=())


def nlri(p: str) -> bytes:
    return prefix_to_nlri(p)[1]


def filtered(
    plan: PeeringPlan, *filters: BGPFilter, names: tuple[str, ...] | None = None
) -> PeeringPlan:
    (spec,) = plan.sessions
    use = tuple(f.name for f in filters) if names is None else names
    return replace(plan, sessions=(replace(spec, filters=use),), filters=filters)


def reject_import(cidr: str) -> BGPFilter:
    return BGPFilter("f", import_v4=(FilterRule("Reject", cidr, "In"),))


def routes_in(s: Speaker) -> set[str]:
    return {nlri_to_prefix(V4, r.prefix) for r in s.rib.iter_best(V4) if not r.is_local}


def sent(actions: list[Action]) -> tuple[set[str], set[str]]:
    """(announced, withdrawn) IPv4 prefixes in the speaker's writes to PEER."""
    data: list[bytes] = []
    for a in actions:
        if isinstance(a, Broadcast) and PEER in a.members:
            data.extend(a.out.for_member(PEER))
        elif isinstance(a, Dump) and a.peer == PEER:
            data.extend(chunk for chunk, _n in a.chunks)
    announced: set[str] = set()
    withdrawn: set[str] = set()
    for blob in data:
        messages, rest = split_messages(blob)
        assert rest == b""
        for raw in messages:
            if raw[18] != 2:
                continue
            # The NLRI fields as sent (the decoder would treat these loopback next hops as
            # martian and read every announcement as a withdrawal).
            body = raw[19:]
            wlen = int.from_bytes(body[:2], "big")
            alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
            for item in _items(body[2 : 2 + wlen]):
                withdrawn.add(item)
                announced.discard(item)
            for item in _items(body[4 + wlen + alen :]):
                announced.add(item)
                withdrawn.discard(item)
    return announced, withdrawn


def _items(field: bytes) -> list[str]:
    out = []
    pos = 0
    while pos < len(field):
        n = 1 + (field[pos] + 7) // 8
        out.append(nlri_to_prefix(V4, field[pos : pos + n]))
        pos += n
    return out


def announce(*prefixes: str, communities: tuple[int, ...] = ()) -> UpdateReceived:
    attrs = PathAttributes(origin=ORIGIN_IGP, next_hop=bytes([127, 0, 0, 2]), local_pref=100,
                           communities=communities)
    return UpdateReceived(PEER, Update(attributes=attrs, nlri=tuple(nlri(p) for p in prefixes)))


def test_a_changed_import_filter_is_applied_to_what_the_peer_sent(base: PeeringPlan) -> None:
    s = speaker_for(filtered(base, reject_import("10.0.1.0/24")))
    up(s)
    s.receive(announce("10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"), 1.0)
    drain(s, 1.0)
    assert routes_in(s) == {"10.0.0.0/24", "10.0.2.0/24"}
    assert s.rib.counts(PEER).received == 3
    s.take_actions()
    s.apply_routing(filtered(base, reject_import("10.0.2.0/24")), 2.0)
    assert routes_in(s) == {"10.0.0.0/24", "10.0.1.0/24"}
    s.write_out(2.0)
    actions = s.take_actions()
    assert not [a for a in actions if isinstance(a, Close)]
    assert s.peers[PEER].established
    # Deleting the filter (the session still names it) accepts everything again.
    s.apply_routing(filtered(base, names=("f",)), 3.0)
    assert routes_in(s) == {"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"}


def test_import_operations_keep_what_the_peer_sent(base: PeeringPlan) -> None:
    """A rule's operations change the route the Loc-RIB holds, not the Adj-RIB-In's: a
    changed rule decides again from what was received."""
    tag = FilterOperation(add_community="65000:7")
    first = BGPFilter(
        "f", import_v4=(FilterRule("Accept", "10.0.0.0/16", "In", operations=(tag,)),)
    )
    s = speaker_for(filtered(base, first))
    s.begin(0.0)
    up(s)
    s.receive(announce("10.0.0.0/24", "10.1.0.0/24"), 1.0)
    drain(s, 1.0)
    held = {
        nlri_to_prefix(V4, r.prefix): r.attrs.communities
        for r in s.rib.iter_best(V4)
        if not r.is_local
    }
    assert held == {"10.0.0.0/24": (65000 << 16 | 7,), "10.1.0.0/24": ()}
    received = {nlri_to_prefix(V4, r.prefix): r.attrs.communities
                for r in s.rib.adj_rib_in(PEER).routes(V4)}
    assert received == {"10.0.0.0/24": (), "10.1.0.0/24": ()}
    second = BGPFilter(
        "f", import_v4=(FilterRule("Accept", "10.1.0.0/16", "In", operations=(tag,)),)
    )
    s.apply_routing(filtered(base, second), 2.0)
    held = {
        nlri_to_prefix(V4, r.prefix): r.attrs.communities
        for r in s.rib.iter_best(V4)
        if not r.is_local
    }
    assert held == {"10.0.0.0/24": (), "10.1.0.0/24": (65000 << 16 | 7,)}
    s.rib.remove_peer(PEER)
    s.rib.attr_cache.collect()
    assert len(s.rib.attr_cache) == 1  # only the node's own route's attributes are left


def test_a_changed_export_filter_sends_the_difference(base: PeeringPlan) -> None:
    s = speaker_for(filtered(base, BGPFilter("f")))
    s.begin(0.0)
    up(s)
    s.write_out(1.0)
    s.take_actions()
    block = BGPFilter("f", export_v4=(FilterRule("Reject", BLOCK, "Equal"),))
    s.apply_routing(filtered(base, block), 2.0)
    s.write_out(2.0)
    actions = s.take_actions()
    assert sent(actions) == (set(), {BLOCK})
    assert not [a for a in actions if isinstance(a, Close)]
    s.apply_routing(filtered(base, BGPFilter("f")), 3.0)
    s.write_out(3.0)
    assert sent(s.take_actions()) == ({BLOCK}, set())


def test_a_new_list_of_filters_regroups_the_peer_on_its_session(base: PeeringPlan) -> None:
    s = speaker_for(base)
    s.begin(0.0)
    up(s)
    s.write_out(1.0)
    s.take_actions()
    assert s.adj_out.group_of(PEER).key.policies == ()  # type: ignore[union-attr]
    block = BGPFilter("f", export_v4=(FilterRule("Reject", BLOCK, "Equal"),))
    s.apply_routing(filtered(base, block), 2.0)
    assert s.adj_out.group_of(PEER).key.policies == ("f",)  # type: ignore[union-attr]
    actions = s.take_actions()
    assert not [a for a in actions if isinstance(a, Close)]
    assert sent(actions) == (set(), {BLOCK})
    assert s.peers[PEER].established
    s.apply_routing(base, 3.0)
    assert sent(s.take_actions()) == ({BLOCK}, set())
    assert caught_up(s) == []
    assert Family.IPV4_UNICAST in s.adj_out.group_of(PEER).key.families  # type: ignore[union-attr]
