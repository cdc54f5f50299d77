"""The pure speaker on a fake clock: the inbound queue (arrival order, pieces, backpressure),
write-outs per update group, graceful restart in both roles, prefix limits and pacing. No
sockets, no event loop: every call takes `now`, and what would leave the process comes back
as actions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from bgpd_pair import _docs

from bgpd.daemon.plancheck import peer_settings
from bgpd.plan.peering import PeeringPlan, compute
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open, negotiate
from bgpd.session.settings import PeerSettings
from bgpd.speaker.actions import (
    Action,
    Broadcast,
    CancelDump,
    Close,
    Dump,
    FibChanges,
    FibConverged,
    Log,
    SetReading,
)
from bgpd.speaker.inbound import PIECE
from bgpd.speaker.pacing import Pacer
from bgpd.speaker.restart import Deadlines
from bgpd.speaker.speaker import Speaker
from bgpd.wire import encode_end_of_rib, split_messages
from bgpd.wire.attributes import ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.messages import Update
from calico.file import load_file

PEER = "Mesh_127_0_0_2"
V4 = Family.IPV4_UNICAST


@pytest.fixture
def plan(tmp_path: Path) -> PeeringPlan:
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(_docs(179, {"node1": "192.168.1.0/26"})))
    return compute(load_file(str(path)), "node1", {})


def speaker_for(plan: PeeringPlan, **settings: object) -> Speaker:
    s = Speaker(plan)
    for spec in plan.sessions:
        s.add_peer(spec, replace(peer_settings(spec, s.router_id, None), **settings))
    assert list(s.peers) == [PEER]
    return s


@pytest.fixture
def speaker(plan: PeeringPlan) -> Speaker:
    return speaker_for(plan)


def settings_of(s: Speaker) -> PeerSettings:
    return s.peers[PEER].settings


def up(s: Speaker, now: float = 0.0, *, graceful: bool = True) -> None:
    """The session comes up: state change (at once), then establishment (queued)."""
    settings = settings_of(s)
    local = build_open(settings)
    remote = build_open(settings if graceful else replace(settings, graceful_restart_time=None))
    neg = negotiate(settings, local, remote)
    s.receive(StateChanged(PEER, State.OPEN_CONFIRM, State.ESTABLISHED), 0.0)
    s.receive(SessionEstablished(PEER, local, remote, neg.options, neg), 0.0)
    drain(s, now)
    caught_up(s)


def caught_up(s: Speaker) -> list[bytes]:
    """Read the catch-ups the speaker asked for, as the shell sends them (the member is live
    once read to the end); the other actions stay for the test to take."""
    actions = s.take_actions()
    sent = [data for a in actions if isinstance(a, Dump) for data, _count in a.chunks]
    s._actions[:0] = actions
    return sent


def down(s: Speaker, now: float, restart_time: int | None = None) -> None:
    s.receive(StateChanged(PEER, State.ESTABLISHED, State.IDLE), 0.0)
    s.receive(SessionDown(PEER, "Socket: Connection closed", restart_time=restart_time), 0.0)
    drain(s, now)


def drain(s: Speaker, now: float) -> int:
    steps = 0
    while s.has_work():
        s.step(now)
        steps += 1
    s.slice_done()
    return steps


def announce(n: int, start: int = 0) -> Update:
    nlri = tuple(
        prefix_to_nlri(f"10.{(i >> 8) & 255}.{i & 255}.0/24")[1] for i in range(start, start + n)
    )
    return Update(
        attributes=PathAttributes(origin=ORIGIN_IGP, next_hop=bytes([127, 0, 0, 2]),
                                  local_pref=100),
        nlri=nlri,
    )


def count(s: Speaker) -> int:
    return s.rib.counts(PEER).accepted if s.rib.has_peer(PEER) else 0


def of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def test_a_big_update_is_applied_one_piece_per_step(speaker: Speaker) -> None:
    up(speaker)
    speaker.receive(UpdateReceived(PEER, announce(1000)), 0.0)
    speaker.step(1.0)
    assert count(speaker) == PIECE
    assert drain(speaker, 1.0) == -(-1000 // PIECE) - 1
    assert count(speaker) == 1000 and speaker.inbound.size == 0


def test_events_apply_in_arrival_order(speaker: Speaker) -> None:
    up(speaker)
    speaker.receive(UpdateReceived(PEER, announce(300)), 0.0)
    speaker.receive(UpdateReceived(PEER, Update(withdrawn=announce(100).nlri)), 0.0)
    drain(speaker, 1.0)
    assert count(speaker) == 200
    # The session goes down behind a queued UPDATE: the UPDATE lands first, then the down
    # takes every route with it.
    speaker.receive(UpdateReceived(PEER, announce(500, start=300)), 0.0)
    speaker.receive(SessionDown(PEER, "Socket: Connection closed"), 0.0)
    speaker.step(2.0)
    assert count(speaker) == 200 + PIECE
    drain(speaker, 2.0)
    assert not speaker.rib.has_peer(PEER)
    assert speaker.rib.loc_rib_size() == 0
    assert of(speaker.take_actions(), CancelDump) == [CancelDump(PEER)]


def test_peers_stop_being_read_while_much_is_queued(speaker: Speaker) -> None:
    speaker.inbound.high, speaker.inbound.low = 500, 200
    up(speaker)
    speaker.take_actions()
    for i in range(4):
        speaker.receive(UpdateReceived(PEER, announce(200, start=200 * i)), 0.0)
    assert of(speaker.take_actions(), SetReading) == [SetReading(PEER, False)]
    resumed = []
    while speaker.has_work():
        speaker.step(1.0)
        speaker.slice_done()
        if of(speaker.take_actions(), SetReading):
            resumed.append(speaker.inbound.size)
    # Read again once, the first time fewer than 200 items were left.
    assert len(resumed) == 1 and 200 - PIECE <= resumed[0] < 200
    drain(speaker, 1.0)
    assert count(speaker) == 800


def test_a_removed_peer_s_queued_updates_are_dropped(speaker: Speaker) -> None:
    up(speaker)
    speaker.receive(UpdateReceived(PEER, announce(400)), 0.0)
    peer = speaker.detach_peer(PEER)
    drain(speaker, 1.0)
    assert speaker.inbound.size == 0
    speaker.retire_peer(peer, keep_routes=False, now=1.0)
    assert not speaker.rib.has_peer(PEER)


def test_establishment_dumps_the_table_and_write_outs_go_to_the_group(
    speaker: Speaker,
) -> None:
    speaker.begin(0.0)  # our block
    up(speaker)
    assert len(of(speaker.take_actions(), Dump)) == 1
    # The group was made with the first member's join, from the Loc-RIB: the block went out
    # in the catch-up, and the write-out has nothing for the group (only the FIB's share).
    assert speaker.write_due(1.0) == 1.0
    assert speaker.write_out(1.0) == 0
    assert speaker.write_due(1.0) is None
    speaker.take_actions()
    speaker.receive(RouteRefreshReceived(PEER, V4, 0), 0.0)  # the table again, from the log
    drain(speaker, 2.0)
    chunks = b"".join(caught_up(speaker))
    # Our block, then End-of-RIB for IPv4.
    assert chunks.endswith(encode_end_of_rib(V4))
    assert len(split_messages(chunks)[0]) == 2
    speaker.take_actions()
    speaker.learned([("192.168.1.7/32", True), ("192.168.9.1/32", True)])
    assert speaker.write_due(5.0) == 5.0
    assert speaker.write_out(5.0) == 1
    (bc,) = of(speaker.take_actions(), Broadcast)
    assert bc.members == (PEER,)
    # The borrowed /32 goes out; the workload inside our own block does not.
    messages, rest = split_messages(bc.out.data)
    assert len(messages) == 1 and rest == b""
    assert prefix_to_nlri("192.168.9.1/32")[1] in bc.out.data


def test_a_slice_plans_its_fib_changes_and_the_write_out_programs_them(
    speaker: Speaker,
) -> None:
    """The FIB decisions of a slice's routes are made with the slice (as their RIB work),
    not all at the write-out, which then only has the kernel program them."""
    up(speaker)
    speaker.write_out(1.0)
    speaker.take_actions()
    # The mesh session negotiated ADD-PATH (Calico's `add paths on`): items carry path ids.
    assert V4 in speaker.peers[PEER].options.add_path_receive
    update = announce(3)
    speaker.receive(
        UpdateReceived(PEER, replace(update, nlri=tuple(b"\0\0\0\1" + n for n in update.nlri))),
        1.0,
    )
    drain(speaker, 1.0)
    (planned,) = of(speaker.take_actions(), FibChanges)
    assert not planned.program
    assert sorted(c.prefix for c in planned.changes) == sorted(update.nlri)
    speaker.write_out(2.0)
    (programmed,) = of(speaker.take_actions(), FibChanges)
    assert programmed.program and programmed.changes == ()
    speaker.write_out(3.0)
    assert not of(speaker.take_actions(), FibChanges)  # nothing left to program


def test_write_outs_are_spaced_by_their_fan_out(speaker: Speaker) -> None:
    up(speaker)
    speaker.learned([("192.168.9.1/32", True)])
    speaker.write_out(10.0)
    speaker.learned([("192.168.9.2/32", True)])
    assert speaker.write_due(10.0) == pytest.approx(10.0 + speaker.pacer.gap_per_send)


def test_route_refresh_dumps_again(speaker: Speaker) -> None:
    up(speaker)
    speaker.take_actions()
    speaker.receive(RouteRefreshReceived(PEER, V4, 0), 0.0)
    drain(speaker, 1.0)
    assert [a.peer for a in of(speaker.take_actions(), Dump)] == [PEER]


def test_helper_keeps_stale_routes_until_the_restart_time(speaker: Speaker) -> None:
    up(speaker)
    speaker.receive(UpdateReceived(PEER, announce(10)), 0.0)
    drain(speaker, 0.0)
    down(speaker, 100.0, restart_time=120)
    assert count(speaker) == 10
    assert speaker.next_timer() == 220.0
    speaker.handle_timer(219.9)
    assert count(speaker) == 10
    speaker.handle_timer(220.0)
    assert not speaker.rib.has_peer(PEER)
    assert speaker.next_timer() is None


def test_helper_sweeps_what_was_not_sent_again_at_end_of_rib(speaker: Speaker) -> None:
    up(speaker)
    speaker.receive(UpdateReceived(PEER, announce(10)), 0.0)
    drain(speaker, 0.0)
    down(speaker, 100.0, restart_time=120)
    up(speaker, 130.0)
    assert speaker.next_timer() is None  # back: the stale routes wait for End-of-RIB
    speaker.receive(UpdateReceived(PEER, announce(4)), 0.0)
    speaker.receive(UpdateReceived(PEER, Update(attributes=None)), 0.0)  # End-of-RIB (IPv4)
    drain(speaker, 131.0)
    assert count(speaker) == 4
    assert not any(r.stale for r in speaker.rib.paths(V4, announce(1).nlri[0]))


def test_restarting_speaker_waits_for_every_end_of_rib(plan: PeeringPlan) -> None:
    s = speaker_for(plan)
    s.adopted_routes = True
    assert s.settings_for(settings_of(s)).graceful_restart_restarting
    s.begin(0.0)
    assert s.restarting is not None and s.next_timer() == 120.0
    up(s, 1.0)
    assert not of(s.take_actions(), FibConverged)
    s.learned([("192.168.1.7/32", True)])
    s.receive(UpdateReceived(PEER, Update(attributes=None)), 0.0)
    drain(s, 2.0)
    actions = s.take_actions()
    assert of(actions, FibConverged) == [FibConverged()]
    # The routes reach the FIB state before the sweep.
    assert actions.index(of(actions, FibChanges)[-1]) < actions.index(FibConverged())
    assert s.restarting is None and not s.settings_for(settings_of(s)).graceful_restart_restarting


def test_restarting_speaker_gives_up_at_its_deadline(plan: PeeringPlan) -> None:
    s = speaker_for(plan)
    s.adopted_routes = True
    s.begin(0.0)
    s.handle_timer(119.0)
    assert s.restarting is not None
    s.handle_timer(120.0)
    assert s.restarting is None
    logs = [a.fields.get("reason") for a in of(s.take_actions(), Log)]
    assert "restart timer expired" in logs


def test_without_peers_a_restart_is_over_at_once(plan: PeeringPlan) -> None:
    s = Speaker(plan)
    s.adopted_routes = True
    s.begin(0.0)
    assert s.restarting is None
    assert of(s.take_actions(), FibConverged) == [FibConverged()]


def test_prefix_limit_closes_the_session(plan: PeeringPlan) -> None:
    s = speaker_for(plan, max_prefixes=100, max_prefixes_restart=30.0)
    up(s)
    s.receive(UpdateReceived(PEER, announce(50)), 0.0)
    drain(s, 1.0)
    assert not of(s.take_actions(), Close)
    s.receive(UpdateReceived(PEER, announce(60, start=50)), 0.0)
    drain(s, 1.0)
    (close,) = of(s.take_actions(), Close)
    assert (close.peer, close.hold_down) == (PEER, 30.0)
    assert close.notification.code == 6 and close.notification.subcode == 1


def test_an_error_in_one_event_is_logged_and_the_queue_goes_on(speaker: Speaker) -> None:
    # An UPDATE before establishment is a bug elsewhere: logged, never fatal.
    speaker.receive(UpdateReceived(PEER, announce(3)), 0.0)
    up(speaker)
    errors = [a for a in of(speaker.take_actions(), Log) if a.level == "error"]
    assert errors and errors[0].event == "error handling UPDATE"
    assert errors[0].traceback is not None
    assert speaker.rib.has_peer(PEER)


def test_pacer_gives_route_work_the_cpu_the_loop_spent_elsewhere() -> None:
    p = Pacer()
    p.begin(0.0)
    assert p.slice_length(0.0) == p.slice_min
    p.slice_done(0.0)
    # 0.1 s elsewhere: a moving average, so one long gap lengthens the slice a little.
    assert p.slice_length(0.1) == pytest.approx(0.1 / p.smoothing)
    p.slice_done(0.1)
    cpu = 0.1
    for _ in range(50):
        cpu += 1.0
        length = p.slice_length(cpu)
        p.slice_done(cpu)
    assert length == p.slice_max


def test_pacer_spaces_write_outs() -> None:
    p = Pacer()
    assert p.write_at(3.0) == 3.0
    p.wrote(3.0, 5000)
    assert p.write_at(3.0) == pytest.approx(3.0 + 5000 * p.gap_per_send)
    p.wrote(4.0, 10**6)
    assert p.write_at(4.0) == 4.0 + p.gap_max


def test_deadlines_replace_cancel_and_pop_in_order() -> None:
    d = Deadlines[str]()
    d.set("a", 5.0)
    d.set("b", 3.0)
    d.set("a", 1.0)
    d.cancel("b")
    d.set("c", 2.0)
    assert d.next() == 1.0
    assert d.pop_due(2.0) == ["a", "c"]
    assert d.next() is None and len(d) == 0


def test_an_establishment_is_handled_at_once_unless_its_peer_has_events_queued(
    plan: PeeringPlan,
) -> None:
    s = speaker_for(plan)
    other = replace(plan.sessions[0], name="Global_127_0_0_3", peer_address="127.0.0.3")
    s.add_peer(other, peer_settings(other, s.router_id, None))
    up(s)
    s.take_actions()
    s.receive(UpdateReceived(PEER, announce(500)), 0.0)  # a backlog from the first peer
    settings = s.peers[other.name].settings
    local, remote = build_open(settings), build_open(settings)
    neg = negotiate(settings, local, remote)
    s.receive(SessionEstablished(other.name, local, remote, neg.options, neg), 1.0)
    # Not behind the backlog: the new peer is in its group and its catch-up is asked for.
    assert s.adj_out.group_of(other.name) is not None
    assert [a.peer for a in of(s.take_actions(), Dump)] == [other.name]
    # A peer whose earlier session's events are still queued waits its turn.
    s.receive(SessionDown(PEER, "Socket: Connection closed"), 1.0)
    s.receive(SessionEstablished(PEER, local, remote, neg.options, neg), 1.0)
    assert not of(s.take_actions(), Dump)
    drain(s, 2.0)
    assert [a.peer for a in of(s.take_actions(), Dump)] == [PEER]
