"""The session table: demultiplexing by discriminator and address, the single-hop TTL rule,
one timer for many sessions, removal through AdminDown, and `show bfd sessions` records and
text (BIRD 2's layout)."""

from __future__ import annotations

import random
from datetime import UTC

import pytest

from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdDown, BfdUp
from bgpd.bfd.packet import ControlPacket, Diag, State, encode_control
from bgpd.bfd.session import Timers
from bgpd.bfd.status import BfdSessionStatus, bird_seconds, format_bird_sessions
from bgpd.bfd.table import SessionTable

FAST = Timers.of(0.1, 3)


class Net:
    """Tables at addresses, joined on a fake clock; a datagram reaches the table at its
    peer address with TTL 255, from the sender's address."""

    def __init__(self, *addresses: str) -> None:
        self.now = 0.0
        self.tables = {a: SessionTable(random.Random(i)) for i, a in enumerate(addresses)}
        self.silent: set[str] = set()
        self.drops: list[str] = []

    def deliver(self) -> None:
        moved = True
        while moved:
            moved = False
            for address, table in self.tables.items():
                for d in table.datagrams_to_send():
                    moved = True
                    target = self.tables.get(d.peer)
                    if target is None or address in self.silent:
                        continue
                    reason = target.receive(d.data, self.now, source=address, ttl=255)
                    if reason is not None:
                        self.drops.append(reason)

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            deadlines = [t.next_timer() for t in self.tables.values()]
            due = [d for d in deadlines if d is not None]
            if not due or min(due) > end:
                self.now = end
                return
            self.now = max(self.now, min(due))
            for table in self.tables.values():
                table.handle_timer(self.now)
            self.deliver()

    def events(self, address: str) -> list[object]:
        table = self.tables[address]
        out = []
        while (event := table.next_event()) is not None:
            out.append(event)
        return out


def test_many_sessions_behind_one_table() -> None:
    hub = "10.0.0.1"
    spokes = [f"10.0.1.{i}" for i in range(1, 41)]
    net = Net(hub, *spokes)
    for spoke in spokes:
        net.tables[hub].add(spoke, FAST, net.now, local=hub)
        net.tables[spoke].add(hub, FAST, net.now)
    net.deliver()
    net.run_for(3.0)
    assert not net.drops
    ups = [e for e in net.events(hub) if isinstance(e, BfdUp)]
    assert sorted(e.peer for e in ups) == sorted(spokes)
    records = net.tables[hub].status(net.now, 1000.0)
    assert all(r.state == "Up" and r.interval == 100_000 for r in records)
    discriminators = {r.local_discriminator for r in records}
    assert len(discriminators) == len(spokes) and 0 not in discriminators
    # One spoke falls silent: only its session goes down, by the detection time.
    net.silent.add(spokes[7])
    net.run_for(1.0)
    downs = [e for e in net.events(hub) if isinstance(e, BfdDown)]
    assert [(e.peer, e.diag) for e in downs] == [(spokes[7], Diag.CONTROL_DETECTION_TIME_EXPIRED)]


def test_next_timer_is_the_earliest_session_deadline() -> None:
    table = SessionTable(random.Random(3))
    for i in range(1, 30):
        table.add(f"10.9.0.{i}", Timers.of(0.05 * i, 3), 0.0)
    now = 0.0
    for _ in range(200):
        deadline = table.next_timer()
        expected = min(
            t for s in table._by_peer.values() if (t := s.session.next_timer()) is not None
        )
        assert deadline == expected
        now = deadline
        table.handle_timer(now)
        table.datagrams_to_send()


def _from(source_disc: int, yours: int = 0, state: State = State.DOWN) -> bytes:
    return encode_control(
        ControlPacket(
            state,
            3,
            my_discriminator=source_disc,
            your_discriminator=yours,
            desired_min_tx=1_000_000,
            required_min_rx=100_000,
        )
    )


def test_drop_reasons() -> None:
    table = SessionTable(random.Random(1))
    session = table.add("10.0.0.2", FAST, 0.0)
    mine = session.local_discriminator

    def drop(data: bytes, source: str = "10.0.0.2", ttl: int | None = 255) -> str:
        reason = table.receive(data, 0.1, source=source, ttl=ttl)
        assert reason is not None
        return reason

    assert drop(_from(5), ttl=254).startswith("wrong TTL")  # RFC 5881 5: one hop only
    assert drop(_from(5), ttl=None).startswith("wrong TTL")
    assert drop(b"\x20\x40").startswith("too short")
    assert drop(_from(5), source="10.0.0.3").startswith("no session")
    assert drop(_from(5, yours=mine ^ 1)).startswith("unknown session id")
    assert drop(_from(5, yours=mine), source="10.0.0.3").startswith("wrong source")
    assert drop(_from(5, state=State.UP)).startswith("rejected: zero your-discriminator")
    assert table.dropped["wrong TTL"] == 2 and table.dropped["no session"] == 1
    # A good one is taken, and learns the interface it came in on.
    assert table.receive(_from(5), 0.1, source="10.0.0.2", ttl=255, interface="eth0") is None
    assert session.state == State.INIT and session.remote_discriminator == 5
    (record,) = table.status(0.1, 100.0)
    assert record.interface == "eth0" and record.state == "Init"


def test_removal_announces_admin_down_then_forgets() -> None:
    net = Net("10.0.0.1", "10.0.0.2")
    a, b = net.tables["10.0.0.1"], net.tables["10.0.0.2"]
    a.add("10.0.0.2", FAST, 0.0)
    b.add("10.0.0.1", FAST, 0.0)
    net.deliver()
    net.run_for(2.0)
    net.events("10.0.0.1")
    net.events("10.0.0.2")
    assert a.remove("10.0.0.2", net.now)
    assert not a.remove("10.0.0.2", net.now)  # already going
    assert a.get("10.0.0.2") is None and len(a) == 1
    net.deliver()
    (down,) = [e for e in net.events("10.0.0.2") if isinstance(e, BfdDown)]
    assert down.admin and down.diag == Diag.NEIGHBOR_SIGNALED_DOWN
    (record,) = a.status(net.now, 0.0)
    assert record.removing and record.state == "AdminDown"
    net.run_for(5.0)
    assert len(a) == 0 and a.next_timer() is None
    # b keeps trying (with a's old discriminator, then without), and a no longer knows it.
    assert net.drops and all(d.startswith("unknown session id") for d in net.drops)
    net.run_for(5.0)
    assert net.drops[-1] == "no session: with 10.0.0.2"


def test_adding_again_during_removal_brings_the_session_back() -> None:
    net = Net("10.0.0.1", "10.0.0.2")
    a, b = net.tables["10.0.0.1"], net.tables["10.0.0.2"]
    first = a.add("10.0.0.2", FAST, 0.0)
    b.add("10.0.0.1", FAST, 0.0)
    net.deliver()
    net.run_for(1.0)
    a.remove("10.0.0.2", net.now)
    net.run_for(0.5)
    again = a.add("10.0.0.2", Timers.of(0.2, 4), net.now)
    assert again is first
    net.run_for(3.0)
    assert again.state == State.UP and again.timers.detect_mult == 4
    assert b.get("10.0.0.1") is not None
    assert b.get("10.0.0.1").remote_detect_mult == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        ("10.0.0", None),
        ("224.0.0.5", None),
        ("fe80::1", None),
        ("::", None),
        ("10.0.0.2", "fd00::1"),
    ],
)
def test_bad_addresses(peer: str, local: str | None) -> None:
    with pytest.raises(LocalBfdError):
        SessionTable(random.Random(1)).add(peer, FAST, 0.0, local=local)


def test_mapped_addresses_are_the_ipv4_peer() -> None:
    table = SessionTable(random.Random(1))
    table.add("::ffff:10.0.0.2", FAST, 0.0)
    assert table.get("10.0.0.2") is not None


def _record(**fields: object) -> BfdSessionStatus:
    base: dict[str, object] = {
        "address": "10.0.0.2",
        "local_address": None,
        "interface": "eth0",
        "state": "Up",
        "since": 0.0,
        "interval": 100_000,
        "timeout": 300_000,
        "local_discriminator": 1,
        "remote_discriminator": 2,
        "local_diag": "No diagnostic",
        "remote_state": "Up",
        "remote_diag": "No diagnostic",
        "detect_mult": 3,
        "remote_detect_mult": 3,
        "desired_min_tx": 100_000,
        "required_min_rx": 100_000,
        "remote_min_tx": 100_000,
        "remote_min_rx": 100_000,
        "packets_received": 10,
        "packets_sent": 11,
    }
    return BfdSessionStatus(**{**base, **fields})  # type: ignore[arg-type]


def test_bird_show_bfd_sessions_text() -> None:
    # 2024-05-01 12:00:01.123456 UTC; the columns of BIRD 2 bfd_show_sessions().
    since = 1714564801.123456
    records = [
        _record(
            address="fd00::2",
            interface=None,
            state="Down",
            interval=1_000_000,
            timeout=0,
            since=since,
        ),
        _record(since=since),
        _record(
            address="10.0.0.10",
            state="Init",
            interval=1_500_500,
            timeout=12_345_678,
            since=since - 86400 * 3,
        ),
    ]
    text = format_bird_sessions(records, now=since + 5, tz=UTC)
    assert text == (
        "bfd1:\n"
        "IP address                Interface  State      Since         Interval  Timeout\n"
        "10.0.0.2                  eth0       Up         12:00:01.123    0.100    0.300\n"
        "10.0.0.10                 eth0       Init       2024-04-28      1.500   12.345\n"
        "fd00::2                   ---        Down       12:00:01.123    1.000    0.000\n"
    )


def test_bird_seconds_truncates_like_bird() -> None:
    assert bird_seconds(0) == "  0.000"
    assert bird_seconds(999_999) == "  0.999"
    assert bird_seconds(1234_567_000) == "1234.567"


def test_record_json_round_trip() -> None:
    record = _record(local_address="10.0.0.1", removing=True)
    assert BfdSessionStatus.from_json(record.to_json()) == record
    with pytest.raises(ValueError):
        _record(state="Established")
