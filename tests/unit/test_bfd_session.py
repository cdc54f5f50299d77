"""The RFC 5880 6.8 machine on a fake clock: the three-way handshake with slow start, the
detection time, Poll/Final for timer changes, AdminDown, a peer that signals Down, the
6.8.6 discard rules and the 6.8.7 jitter."""

from __future__ import annotations

import itertools
import random

import pytest
from bfd_pair import FAST, BfdPair

from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdDown, BfdStateChanged, BfdUp
from bgpd.bfd.fsm import TRANSITIONS
from bgpd.bfd.packet import ControlPacket, Diag, State
from bgpd.bfd.session import SLOW_TX, Session, Timers


def up_pair(**kwargs: object) -> BfdPair:
    pair = BfdPair(**kwargs)  # type: ignore[arg-type]
    pair.run_until(lambda: pair.a.state == State.UP and pair.b.state == State.UP)
    # Let both Poll Sequences (for the faster rate after Up) finish.
    pair.run_until(lambda: not pair.a.polling and not pair.b.polling)
    pair.run_for(1.0)
    return pair


def test_every_state_pair_is_in_the_table() -> None:
    local = (State.DOWN, State.INIT, State.UP)
    assert set(TRANSITIONS) == {(s, r) for s in local for r in State}


def test_handshake_goes_down_init_up_on_both_sides() -> None:
    pair = up_pair()
    for name in ("a", "b"):
        changes = [(e.old, e.new) for _, e in pair.of_type(name, BfdStateChanged)]  # type: ignore[attr-defined]
        assert changes[-1][1] == State.UP
        assert len(pair.of_type(name, BfdUp)) == 1
        assert not pair.of_type(name, BfdDown)
    # One side saw the other's Down first and went through Init; the other jumped on Init.
    paths = {
        tuple(e.new for _, e in pair.of_type(n, BfdStateChanged))  # type: ignore[attr-defined]
        for n in ("a", "b")
    }
    assert (State.INIT, State.UP) in paths
    assert pair.a.remote_discriminator == 0xB and pair.b.remote_discriminator == 0xA


def test_slow_start_then_the_configured_rate_after_a_poll() -> None:
    pair = BfdPair(a_to_b=False, b_to_a=False)  # nobody answers yet
    pair.run_for(4.0)
    lonely = pair.packets("a")
    # 6.8.3: no faster than once a second while not Up, and advertised so.
    assert len(lonely) >= 4 and all(s.packet.state == State.DOWN for s in lonely)
    assert all(s.packet.desired_min_tx == SLOW_TX for s in lonely)
    gaps = [b.at - a.at for a, b in itertools.pairwise(lonely)]
    assert all(0.75 - 1e-9 <= gap <= 1.0 + 1e-9 for gap in gaps)
    pair.a_to_b = pair.b_to_a = True
    up_at = pair.run_until(lambda: pair.a.state == State.UP and pair.b.state == State.UP)
    # On Up: the configured rate, announced with Poll until the peer's Final.
    pair.run_until(lambda: not pair.a.polling and not pair.b.polling)
    first_up = next(
        s for s in pair.packets("a") if s.packet.state == State.UP and not s.packet.final
    )
    assert first_up.at == up_at
    assert first_up.packet.poll and first_up.packet.desired_min_tx == FAST.desired_min_tx
    assert any(s.packet.final for s in pair.packets("b", since=first_up.at))
    settled = pair.now
    pair.run_for(2.0)
    steady = [s for s in pair.packets("a", since=settled + 1e-9)]
    assert steady and not any(s.packet.poll or s.packet.final for s in steady)
    gaps = [b.at - a.at for a, b in itertools.pairwise(steady)]
    assert len(gaps) > 15 and all(0.075 - 1e-9 <= g <= 0.1 + 1e-9 for g in gaps)


@pytest.mark.parametrize(("mult_a", "mult_b"), [(3, 3), (3, 5), (5, 2), (1, 1)])
def test_detection_within_remote_multiplier_times_the_agreed_interval(
    mult_a: int, mult_b: int
) -> None:
    pair = up_pair(a_timers=Timers.of(0.1, mult_a), b_timers=Timers.of(0.05, mult_b))
    pair.run_for(1.0)
    pair.b_to_a = False  # b falls silent
    last_rx = pair.a.last_rx
    assert last_rx is not None
    # a expects b's packets every max(a's RequiredMinRx 100 ms, b's DesiredMinTx 50 ms).
    expected = mult_b * 0.1
    assert pair.a.detection_time == round(expected * 1e6)
    down_at = pair.run_until(lambda: pair.of_type("a", BfdDown))
    ((_, event),) = pair.of_type("a", BfdDown)
    assert isinstance(event, BfdDown)
    assert event.diag == Diag.CONTROL_DETECTION_TIME_EXPIRED and not event.admin
    assert down_at - last_rx == pytest.approx(expected)
    assert pair.a.state == State.DOWN and pair.a.remote_discriminator == 0
    # Back to slow start, telling b why (diag 1) in its Down packets.
    after = pair.packets("a", since=down_at)
    assert after[0].at == down_at and after[0].packet.state == State.DOWN
    assert after[0].packet.diag == Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert after[0].packet.desired_min_tx == SLOW_TX


def test_a_peer_that_comes_back_is_up_again() -> None:
    pair = up_pair()
    pair.b_to_a = False
    pair.run_until(lambda: pair.a.state == State.DOWN)
    # b hears a's Down (diag 1) and goes Down too: neighbour signalled.
    pair.run_until(lambda: pair.b.state != State.UP)
    ((_, b_down),) = pair.of_type("b", BfdDown)
    assert isinstance(b_down, BfdDown) and b_down.diag == Diag.NEIGHBOR_SIGNALED_DOWN
    pair.b_to_a = True
    pair.run_until(lambda: pair.a.state == State.UP and pair.b.state == State.UP)
    assert len(pair.of_type("a", BfdUp)) == 2


def test_remote_signals_down() -> None:
    pair = up_pair()
    pair.a_to_b = False  # b stops hearing a; a still hears b
    b_down = pair.run_until(lambda: pair.b.state == State.DOWN)
    assert pair.b.local_diag == Diag.CONTROL_DETECTION_TIME_EXPIRED
    # b's Down packet (sent at once) takes a down: neighbour signalled, not a timeout.
    a_down = pair.run_until(lambda: pair.a.state != State.UP)
    assert a_down == b_down
    ((_, event),) = pair.of_type("a", BfdDown)
    assert isinstance(event, BfdDown)
    assert event.diag == Diag.NEIGHBOR_SIGNALED_DOWN and not event.admin
    assert pair.a.remote_diag == Diag.CONTROL_DETECTION_TIME_EXPIRED


def test_admin_down_is_announced_for_a_detection_time_then_silent() -> None:
    pair = up_pair()
    t0 = pair.now
    pair.a.admin_down(t0)
    pair.flush()
    ((_, mine),) = pair.of_type("a", BfdDown)
    ((_, theirs),) = pair.of_type("b", BfdDown)
    assert isinstance(mine, BfdDown) and isinstance(theirs, BfdDown)
    assert mine.diag == Diag.ADMINISTRATIVELY_DOWN and mine.admin
    assert theirs.diag == Diag.NEIGHBOR_SIGNALED_DOWN and theirs.admin  # RFC 5882 3.2
    assert pair.b.state == State.DOWN
    pair.run_until(lambda: pair.a.finished(pair.now), limit=t0 + 10)
    announced = pair.packets("a", since=t0)
    assert announced and all(s.packet.state == State.ADMIN_DOWN for s in announced)
    assert all(s.packet.diag == Diag.ADMINISTRATIVELY_DOWN for s in announced)
    # A detection time of b's view of us at the slow rate: 3 x 1 s.
    assert pair.now - t0 == pytest.approx(3 * SLOW_TX / 1e6)
    last = announced[-1].at
    pair.run_for(5.0)
    assert not [s for s in pair.packets("a", since=last + 1e-9) if not s.packet.final]
    # b stays Down: AdminDown never moves a Down session on (6.8.6).
    assert pair.b.state == State.DOWN
    changes = [(e.old, e.new) for _, e in pair.of_type("b", BfdStateChanged)]  # type: ignore[attr-defined]
    assert changes[-1] == (State.UP, State.DOWN)


def test_admin_down_discards_packets_and_admin_up_recovers() -> None:
    pair = up_pair()
    pair.a.admin_down(pair.now)
    pair.flush()
    poll = ControlPacket(
        State.DOWN,
        3,
        my_discriminator=0xB,
        your_discriminator=0xA,
        poll=True,
        desired_min_tx=SLOW_TX,
        required_min_rx=100_000,
    )
    assert pair.a.receive(poll, pair.now) is None
    assert pair.a.state == State.ADMIN_DOWN
    assert not pair.a.packets_to_send()  # 6.8.6 discards before the Final rule
    pair.a.admin_up(pair.now)
    pair.flush()
    pair.run_until(lambda: pair.a.state == State.UP and pair.b.state == State.UP)


def test_poll_sequence_for_a_slower_transmit_rate() -> None:
    pair = up_pair()
    slower = Timers.of(0.3, 3, min_rx=0.1)
    pair.lose = lambda sender, packet: sender == "b" and packet.final  # b's Finals get lost
    t0 = pair.now
    pair.a.configure(slower, t0)
    pair.run_for(0.25)
    polls = pair.packets("a", since=t0)
    assert polls and all(s.packet.poll and s.packet.desired_min_tx == 300_000 for s in polls)
    # 6.8.3: a slower rate waits for the Final; until then a still sends every 100 ms.
    assert pair.a.tx_interval == 100_000 and len(polls) >= 2
    pair.lose = None
    pair.run_until(lambda: not pair.a.polling)
    assert pair.a.tx_interval == 300_000
    # b now expects a's packets every 300 ms: its detection time follows.
    assert pair.b.detection_time == 3 * 300_000
    settled = pair.now
    pair.run_for(2.0)
    steady = [s.at for s in pair.packets("a", since=settled) if not s.packet.final]
    gaps = [b - a for a, b in itertools.pairwise(steady)]
    assert gaps and all(0.225 - 1e-9 <= g <= 0.3 + 1e-9 for g in gaps)
    assert pair.a.state == pair.b.state == State.UP


def test_a_faster_receive_rate_keeps_the_old_detection_time_until_the_final() -> None:
    pair = up_pair(a_timers=Timers.of(0.3, 3), b_timers=Timers.of(0.05, 3))
    assert pair.a.detection_time == 3 * 300_000
    pair.lose = lambda sender, packet: sender == "b" and packet.final
    t0 = pair.now
    pair.a.configure(Timers.of(0.3, 3, min_rx=0.1), t0)
    pair.flush()
    assert pair.a.detection_time == 3 * 300_000  # old RequiredMinRx until the Final
    pair.run_for(0.5)
    assert pair.a.polling and pair.a.detection_time == 3 * 300_000
    pair.lose = None
    pair.run_until(lambda: not pair.a.polling)
    assert pair.a.detection_time == 3 * 100_000


def test_a_poll_is_answered_at_once_with_final() -> None:
    pair = up_pair()
    pair.run_for(0.05)
    t = pair.now
    poll = ControlPacket(
        State.UP,
        3,
        my_discriminator=0xB,
        your_discriminator=0xA,
        poll=True,
        desired_min_tx=100_000,
        required_min_rx=100_000,
    )
    assert pair.a.receive(poll, t) is None
    (answer,) = pair.a.packets_to_send()
    assert answer[1] & 0x30 == 0x10  # Final, not Poll


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ControlPacket(State.UP, 3, my_discriminator=0xB), "zero your-discriminator"),
        (ControlPacket(State.INIT, 3, my_discriminator=0xB), "zero your-discriminator"),
        (ControlPacket(State.UP, 3, my_discriminator=0xB, your_discriminator=9), "not ours"),
        (ControlPacket(State.DOWN, 3, my_discriminator=0xC), "is not the session's"),
    ],
)
def test_discard_rules(packet: ControlPacket, reason: str) -> None:
    pair = up_pair()
    got = pair.a.receive(packet, pair.now)
    assert got is not None and reason in got
    assert pair.a.state == State.UP and pair.a.remote_discriminator == 0xB


def test_no_periodic_packets_when_the_peer_asks_for_none() -> None:
    pair = up_pair()
    pair.b_to_a = False
    quiet = ControlPacket(
        State.UP,
        3,
        my_discriminator=0xB,
        your_discriminator=0xA,
        desired_min_tx=100_000,
        required_min_rx=0,
    )
    pair.a.receive(quiet, pair.now)
    assert not pair.a.transmitting
    t = pair.now
    pair.a.handle_timer(t + 0.2)
    assert not pair.a.packets_to_send()


def test_detection_expiry_while_down_forgets_the_remote() -> None:
    pair = BfdPair()
    pair.run_until(lambda: pair.a.remote_discriminator != 0)
    pair.b_to_a = False
    pair.a_to_b = False
    pair.run_until(lambda: pair.a.remote_discriminator == 0 and pair.a.state == State.DOWN)
    assert pair.a.remote_state == State.DOWN and pair.a.detection_deadline() is None


@pytest.mark.parametrize(("mult", "low", "high"), [(3, 0.75, 1.0), (1, 0.75, 0.9)])
def test_jitter_bounds(mult: int, low: float, high: float) -> None:
    rng = random.Random(7)
    s = Session("10.0.0.1", 1, Timers.of(0.1, mult), 0.0, rng.random)
    now = 0.0
    times = []
    for _ in range(300):
        deadline = s.next_timer()
        assert deadline is not None
        now = deadline
        s.handle_timer(now)
        if s.packets_to_send():
            times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Not Up: the 1 s slow-start interval, jittered.
    assert min(gaps) >= low - 1e-9 and max(gaps) <= high + 1e-9
    assert max(gaps) - min(gaps) > (high - low) / 2  # really random, not a fixed fraction


def test_deterministic_with_the_same_random_source() -> None:
    first, second = up_pair(seed=5), up_pair(seed=5)
    assert [(s.at, s.sender, s.packet) for s in first.sent] == [
        (s.at, s.sender, s.packet) for s in second.sent
    ]


@pytest.mark.parametrize("args", [(0.0005, 3), (0.1, 0), (0.1, 256), (5000.0, 3), (0.1, 3, 0.0)])
def test_timers_out_of_range(args: tuple[float, ...]) -> None:
    with pytest.raises(LocalBfdError):
        Timers.of(*args)  # type: ignore[arg-type]
