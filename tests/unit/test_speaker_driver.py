"""The speaker's asyncio shell: slices of route work with the loop served between them, a fair
share of a busy loop, timers never waiting behind the next slice, and a write-out that skips
a member whose session has just ended.

The speaker runs in-process; the peer's session driver is replaced by a recorder, the one
edge where bytes would leave."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from bgpd_pair import _docs

from bgpd.daemon.plancheck import peer_settings
from bgpd.plan.peering import compute
from bgpd.session.errors import LocalSessionError
from bgpd.session.events import SessionDown, SessionEstablished, StateChanged, UpdateReceived
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open, negotiate
from bgpd.speaker import driver as driver_mod
from bgpd.speaker.driver import SpeakerDriver
from bgpd.speaker.inbound import PIECE
from bgpd.speaker.speaker import Speaker
from bgpd.wire.attributes import ORIGIN_IGP, PathAttributes
from bgpd.wire.family import prefix_to_nlri
from bgpd.wire.messages import Update
from calico.file import load_file

PEER = "Mesh_127_0_0_2"


class Recorder:
    """Stands in for a PeerDriver: what was sent and whether it reads the peer."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.reading: list[bool] = []
        self.ended = False  # the session is gone: sending raises, as PeerDriver.send does

    def send(self, data: bytes, count: int | None = None) -> None:
        if self.ended:
            raise LocalSessionError("not established")
        self.sent.append(data)

    def set_reading(self, reading: bool) -> None:
        self.reading.append(reading)

    async def drained(self) -> None:
        return None


@pytest.fixture
def pump(tmp_path: Path) -> SpeakerDriver:
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(_docs(179, {"node1": "192.168.1.0/26"})))
    plan = compute(load_file(str(path)), "node1", {})
    speaker = Speaker(plan)
    for spec in plan.sessions:
        speaker.add_peer(spec, peer_settings(spec, speaker.router_id, None))
    return SpeakerDriver(speaker, {PEER: Recorder()})  # type: ignore[dict-item]


def established(pump: SpeakerDriver) -> list[object]:
    settings = pump.speaker.peers[PEER].settings
    local = build_open(settings)
    # Updates below carry no path ids: the peer offers no ADD-PATH.
    remote = build_open(replace(settings, add_path=()))
    neg = negotiate(settings, local, remote)
    return [
        StateChanged(PEER, State.OPEN_CONFIRM, State.ESTABLISHED),
        SessionEstablished(PEER, local, remote, neg.options, neg),
    ]


def announce(n: int) -> Update:
    nlri = tuple(prefix_to_nlri(f"10.{(i >> 8) & 255}.{i & 255}.0/24")[1] for i in range(n))
    return Update(
        attributes=PathAttributes(origin=ORIGIN_IGP, next_hop=bytes([127, 0, 0, 2])), nlri=nlri
    )


def count(pump: SpeakerDriver) -> int:
    return pump.speaker.rib.counts(PEER).accepted


async def until_drained(pump: SpeakerDriver) -> int:
    """Loop iterations it took for the queue to empty."""
    ticks = 0
    while pump._drain_task is not None:
        await asyncio.sleep(0)
        ticks += 1
    return ticks


def feed(pump: SpeakerDriver, *events: object) -> None:
    for event in events:
        pump.on_event(event)  # type: ignore[arg-type]


def test_a_big_update_is_applied_in_pieces_with_the_loop_served_between(
    pump: SpeakerDriver,
) -> None:
    pump.speaker.pacer.slice_min = 0.0  # one piece per slice

    async def main() -> int:
        feed(pump, *established(pump), UpdateReceived(PEER, announce(1000)))
        ticks = await until_drained(pump)
        await pump.close()
        return ticks

    ticks = asyncio.run(main())
    assert count(pump) == 1000
    assert ticks >= -(-1000 // PIECE)
    assert pump.speaker.inbound.size == 0


def test_route_work_gets_as_much_of_the_loop_as_everything_else(
    pump: SpeakerDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When other callbacks took the CPU between two slices (thousands of sockets written,
    say), the next slice may take as long (up to the pacer's maximum), so the queue is not
    starved to one short slice per loop iteration."""
    pump.speaker.pacer.slice_min = 0.0  # one piece per slice, unless...
    clock = iter(range(10**6))
    monkeypatch.setattr(driver_mod, "cpu_clock", lambda: float(next(clock)))  # ...1 s elsewhere

    async def main() -> int:
        feed(pump, *established(pump), UpdateReceived(PEER, announce(1000)))
        ticks = await until_drained(pump)
        await pump.close()
        return ticks

    ticks = asyncio.run(main())
    assert count(pump) == 1000
    assert ticks < -(-1000 // PIECE) // 4


def test_a_timer_due_during_a_slice_runs_before_the_next_slice(pump: SpeakerDriver) -> None:
    """The lag a timer sees is at most the rest of the slice it fell due in: the queue's next
    slice waits behind due timers (asyncio.sleep(0) would put it ahead of them)."""
    pump.speaker.pacer.slice_min = 0.0  # one piece per slice
    speaker = pump.speaker
    step = speaker.step
    seen: dict[str, int] = {}

    def step_and_set_a_timer(now: float) -> None:
        step(now)
        if not seen and speaker.rib.has_peer(PEER) and count(pump) >= 5 * PIECE:
            seen["due"] = count(pump)
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time(), lambda: seen.setdefault("ran", count(pump)))

    speaker.step = step_and_set_a_timer  # type: ignore[method-assign]

    async def main() -> None:
        feed(pump, *established(pump), UpdateReceived(PEER, announce(1000)))
        await until_drained(pump)
        await pump.close()

    asyncio.run(main())
    assert count(pump) == 1000
    assert seen["ran"] == seen["due"]


def test_a_member_whose_session_just_ended_does_not_stop_the_queue(
    pump: SpeakerDriver,
) -> None:
    """The session ends (send buffer overflow, say) while its SessionDown still waits in the
    queue behind an UPDATE: the write-out after that UPDATE finds the member no longer
    established. The queue must go on and the SessionDown take the member out."""
    pump.speaker.pacer.slice_min = 0.0
    recorder = pump.drivers[PEER]
    assert isinstance(recorder, Recorder)

    async def main() -> None:
        feed(pump, *established(pump))
        await until_drained(pump)
        recorder.ended = True
        feed(pump, UpdateReceived(PEER, announce(10)))
        pump.speaker.begin(asyncio.get_running_loop().time())  # our block: a change to send
        pump.write_now()
        feed(pump, SessionDown(PEER, "Error: Send buffer overflow"))
        await until_drained(pump)
        await pump.close()

    asyncio.run(main())
    assert not pump.speaker.inbound and pump.speaker.inbound.size == 0
    assert not pump.speaker.rib.has_peer(PEER)
    assert pump.speaker.adj_out.group_of(PEER) is None


def test_peers_stop_being_read_while_much_is_queued(pump: SpeakerDriver) -> None:
    pump.speaker.inbound.high, pump.speaker.inbound.low = 500, 200
    recorder = pump.drivers[PEER]
    assert isinstance(recorder, Recorder)

    async def main() -> None:
        feed(pump, *established(pump))
        for _ in range(4):
            feed(pump, UpdateReceived(PEER, announce(200)))
        assert recorder.reading == [False]  # paused once, when the queue passed 500 items
        await until_drained(pump)
        await pump.close()

    asyncio.run(main())
    assert recorder.reading == [False, True]


def test_graceful_restart_deadlines_fire_on_the_loop(pump: SpeakerDriver) -> None:
    """The helper's stale timer is the speaker's deadline, armed as one loop timer."""

    async def main() -> None:
        feed(pump, *established(pump), UpdateReceived(PEER, announce(5)))
        await until_drained(pump)
        feed(
            pump,
            StateChanged(PEER, State.ESTABLISHED, State.IDLE),
            SessionDown(PEER, "Socket: Connection closed", restart_time=1),
        )
        await until_drained(pump)
        assert count(pump) == 5  # kept, stale
        assert pump._timer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while pump.speaker.rib.has_peer(PEER) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert not pump.speaker.rib.has_peer(PEER)
        await pump.close()

    asyncio.run(main())
