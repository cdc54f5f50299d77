"""The daemon's inbound queue (DESIGN principle 5): session events are applied in arrival
order, a big UPDATE in pieces with the event loop served between them, and peers that keep
sending while much is queued stop being read until the queue drains.

The daemon runs in-process without starting (no sockets, no FIB); each peer's driver is
replaced by a recorder, the one edge where bytes would leave."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from bgpd_pair import _docs

from bgpd import daemon as daemon_mod
from bgpd.daemon import Daemon, DaemonOptions, load_plan
from bgpd.session.errors import LocalSessionError
from bgpd.session.events import SessionDown, SessionEstablished, UpdateReceived
from bgpd.session.negotiate import build_open, negotiate
from bgpd.wire.attributes import ORIGIN_IGP, PathAttributes
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.messages import MpReach, Update, split_update

PEER = "Mesh_127_0_0_2"


class Recorder:
    """Stands in for a PeerDriver: what the daemon sent and whether it reads the peer."""

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
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    path = tmp_path / "calico.yaml"
    path.write_text(yaml.safe_dump_all(_docs(179, {"node1": "192.168.1.0/26"})))
    options = DaemonOptions(
        node="node1", datastore=f"file://{path}", control_socket=str(tmp_path / "s"), fib=False
    )
    d = Daemon(options, load_plan(options))
    for spec in d.plan.sessions:
        d._add_peer(spec)
    assert list(d.peers) == [PEER]
    d.peers[PEER].driver = Recorder()  # type: ignore[assignment]
    yield d


def established(d: Daemon) -> SessionEstablished:
    settings = d.peers[PEER].settings
    local = build_open(settings)
    remote = build_open(settings)  # the other node speaks the same (it is a bgpd too)
    neg = negotiate(settings, local, remote)
    return SessionEstablished(PEER, local, remote, neg.options, neg)


def announce(n: int, start: int = 0) -> Update:
    nlri = tuple(prefix_to_nlri(f"10.{(i >> 8) & 255}.{i & 255}.0/24")[1] for i in
                 range(start, start + n))
    return Update(
        attributes=PathAttributes(origin=ORIGIN_IGP, next_hop=bytes([127, 0, 0, 2]),
                                  local_pref=100),
        nlri=nlri,
    )


def withdraw(n: int) -> Update:
    return Update(withdrawn=announce(n).nlri)


def count(d: Daemon) -> int:
    return d.rib.counts(PEER).accepted


async def until_drained(d: Daemon) -> int:
    """Loop iterations it took for the queue to empty."""
    ticks = 0
    while d._inbound_task is not None:
        await asyncio.sleep(0)
        ticks += 1
    return ticks


def test_big_update_is_applied_in_pieces_with_the_loop_served_between(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_mod, "INBOUND_SLICE", 0.0)  # one piece per slice

    async def main() -> tuple[int, int]:
        daemon._on_event(established(daemon))
        daemon._on_event(UpdateReceived(PEER, announce(1000)))
        ticks = await until_drained(daemon)
        return ticks, count(daemon)

    ticks, accepted = asyncio.run(main())
    assert accepted == 1000
    pieces = -(-1000 // daemon_mod.INBOUND_PIECE)
    assert ticks >= pieces
    assert daemon._inbound_items == 0


def test_route_work_gets_as_much_of_the_loop_as_everything_else(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When other callbacks took the CPU between two slices (thousands of sockets written,
    say), the next slice may take as long (up to INBOUND_SLICE_MAX), so the queue is not
    starved to one short slice per loop iteration."""
    monkeypatch.setattr(daemon_mod, "INBOUND_SLICE", 0.0)  # one piece per slice, unless...
    clock = iter(range(10**6))
    monkeypatch.setattr(daemon_mod, "_cpu", lambda: float(next(clock)))  # ...1 s elsewhere

    async def main() -> int:
        daemon._on_event(established(daemon))
        daemon._on_event(UpdateReceived(PEER, announce(1000)))
        return await until_drained(daemon)

    ticks = asyncio.run(main())
    assert count(daemon) == 1000
    assert ticks < -(-1000 // daemon_mod.INBOUND_PIECE) // 4


def test_a_timer_due_during_a_slice_runs_before_the_next_slice(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lag a timer sees is at most the rest of the slice it fell due in: the queue's
    next slice waits behind due timers (asyncio.sleep(0) would put it ahead of them)."""
    monkeypatch.setattr(daemon_mod, "INBOUND_SLICE", 0.0)  # one piece per slice
    applied = daemon._on_update
    seen: dict[str, int] = {}

    def apply_and_set_a_timer(peer: object, update: Update) -> None:
        applied(peer, update)  # type: ignore[arg-type]
        if not seen and count(daemon) >= 5 * daemon_mod.INBOUND_PIECE:
            seen["due"] = count(daemon)
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time(), lambda: seen.setdefault("ran", count(daemon)))

    monkeypatch.setattr(daemon, "_on_update", apply_and_set_a_timer)

    async def main() -> None:
        daemon._on_event(established(daemon))
        daemon._on_event(UpdateReceived(PEER, announce(1000)))
        await until_drained(daemon)

    asyncio.run(main())
    assert count(daemon) == 1000
    assert seen["ran"] == seen["due"]


def test_events_apply_in_arrival_order(daemon: Daemon) -> None:
    at_down: list[int] = []
    on_down = daemon._on_down

    def record_then_down(peer: object, event: SessionDown) -> None:
        at_down.append(count(daemon))
        on_down(peer, event)  # type: ignore[arg-type]

    daemon._on_down = record_then_down  # type: ignore[method-assign]

    async def main() -> list[int]:
        seen = []
        daemon._on_event(established(daemon))
        daemon._on_event(UpdateReceived(PEER, announce(300)))
        daemon._on_event(UpdateReceived(PEER, withdraw(100)))
        await until_drained(daemon)
        seen.append(count(daemon))
        # The session goes down behind a queued UPDATE: the UPDATE lands first, then the
        # down takes every route with it, whatever the slices.
        daemon._on_event(UpdateReceived(PEER, announce(500, start=300)))
        daemon._on_event(SessionDown(PEER, "Socket: Connection closed"))
        await until_drained(daemon)
        seen.append(len(daemon.routes()))
        return seen

    assert asyncio.run(main()) == [200, 0]
    assert at_down == [700]


def test_peers_stop_being_read_while_much_is_queued(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon_mod, "INBOUND_HIGH", 500)
    monkeypatch.setattr(daemon_mod, "INBOUND_LOW", 200)
    recorder = daemon.peers[PEER].driver
    assert isinstance(recorder, Recorder)

    async def main() -> None:
        daemon._on_event(established(daemon))
        for i in range(4):
            daemon._on_event(UpdateReceived(PEER, announce(200, start=200 * i)))
        assert recorder.reading == [False]  # paused once, when the queue passed 500 items
        await until_drained(daemon)

    asyncio.run(main())
    assert recorder.reading == [False, True]
    assert count(daemon) == 800


def test_a_removed_peer_s_queued_updates_are_dropped(daemon: Daemon) -> None:
    async def main() -> None:
        daemon._on_event(established(daemon))
        await until_drained(daemon)
        daemon._on_event(UpdateReceived(PEER, announce(400)))
        peer = daemon.peers.pop(PEER)  # reconfiguration removed it meanwhile
        await until_drained(daemon)
        daemon.peers[PEER] = peer

    asyncio.run(main())
    assert count(daemon) == 0
    assert daemon._inbound_items == 0


def test_split_keeps_family_and_attributes() -> None:
    v6 = Family.IPV6_UNICAST
    nlri = tuple(prefix_to_nlri(f"fd00:{i:x}::/64")[1] for i in range(300))
    whole = Update(
        attributes=PathAttributes(origin=ORIGIN_IGP), mp_reach=MpReach(v6, bytes(16), nlri)
    )
    parts = list(split_update(whole, 128))
    assert [p.size for p in parts] == [128, 128, 44]
    assert all(p.mp_reach is not None and p.mp_reach.family is v6 for p in parts)
    assert all(p.attributes is whole.attributes and p.end_of_rib is None for p in parts)


def test_a_member_whose_session_just_ended_does_not_stop_the_queue(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session ends (send buffer overflow, say) while its SessionDown still waits in the
    queue behind an UPDATE: the write-out after that UPDATE finds the member no longer
    established. The queue must go on and the SessionDown take the member out."""
    monkeypatch.setattr(daemon_mod, "INBOUND_SLICE", 0.0)  # a write-out after every item
    recorder = daemon.peers[PEER].driver
    assert isinstance(recorder, Recorder)

    async def main() -> None:
        daemon._on_event(established(daemon))
        await until_drained(daemon)
        recorder.ended = True
        daemon._on_event(UpdateReceived(PEER, announce(10)))
        daemon._originate()  # our block: a change the write-out sends to the member
        daemon._on_event(SessionDown(PEER, "Error: Send buffer overflow"))
        await until_drained(daemon)

    asyncio.run(main())
    assert not daemon._inbound and daemon._inbound_items == 0
    assert not daemon.rib.has_peer(PEER)
    assert daemon.adj_out.group_of(PEER) is None
