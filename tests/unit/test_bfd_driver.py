"""BfdManager over real UDP sockets on loopback: two managers on one host (ports 3784+N
swapped, since both cannot own 3784), IPv4 127.0.0.1 <-> 127.0.0.2 and IPv6 ::1. The
kernel's TTL / pktinfo ancillary data is the real thing; so is a packet sent with TTL 64
being dropped. The outcomes are checked, not how long they took."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from bgpd.bfd.driver import BfdManager, BfdSocketError
from bgpd.bfd.errors import LocalBfdError
from bgpd.bfd.events import BfdDown, BfdEvent, BfdUp
from bgpd.bfd.packet import ControlPacket, Diag, State, encode_control
from bgpd.bfd.sockopts import SOURCE_PORTS, parse_ancillary

T = TypeVar("T")
A4, B4 = "127.0.0.1", "127.0.0.2"


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def free_udp_ports(count: int) -> list[int]:
    """Ports free on both families right now (bound and released)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class Recorder:
    def __init__(self) -> None:
        self.events: list[BfdEvent] = []
        self._changed: asyncio.Event | None = None

    def __call__(self, event: BfdEvent) -> None:
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()

    def of(self, kind: type[T], peer: str | None = None) -> list[T]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and peer in (None, e.peer)  # type: ignore[attr-defined]
        ]

    async def wait(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed = asyncio.Event()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met; events: {self.events}")
            await asyncio.wait_for(self._changed.wait(), remaining)


async def pair(rec_a: Recorder, rec_b: Recorder, v6: bool = True) -> tuple[BfdManager, BfdManager]:
    pa, pb = free_udp_ports(2)
    listen = ("0.0.0.0", "::") if v6 else ("0.0.0.0",)
    a = BfdManager(
        rec_a, listen_port=pa, peer_port=pb, listen_addresses=listen, rng=random.Random(1)
    )
    b = BfdManager(
        rec_b, listen_port=pb, peer_port=pa, listen_addresses=listen, rng=random.Random(2)
    )
    await a.start()
    await b.start()
    return a, b


def test_sessions_come_up_on_both_families_and_show_the_interface() -> None:
    async def body() -> None:
        rec_a, rec_b = Recorder(), Recorder()
        a, b = await pair(rec_a, rec_b)
        try:
            a.add(B4, A4, interval=0.05, multiplier=3)
            b.add(A4, B4, interval=0.05, multiplier=3)
            a.add("::1", "::1", interval=0.05, multiplier=3)
            b.add("::1", "::1", interval=0.05, multiplier=3)
            await rec_a.wait(lambda: len(rec_a.of(BfdUp)) == 2)
            await rec_b.wait(lambda: len(rec_b.of(BfdUp)) == 2)
            records = {r.address: r for r in a.sessions()}
            assert set(records) == {B4, "::1"}
            for r in records.values():
                assert r.state == "Up" and r.interface == "lo"
                assert r.remote_discriminator != 0 and r.packets_received > 0
            assert records[B4].local_address == A4
            assert a.state(B4) == State.UP
            assert not a.table.dropped and not b.table.dropped
        finally:
            await a.close()
            await b.close()

    run(body())


def test_a_silent_peer_is_declared_down_by_the_detection_timer() -> None:
    async def body() -> None:
        rec_a, rec_b = Recorder(), Recorder()
        a, b = await pair(rec_a, rec_b, v6=False)
        try:
            a.add(B4, A4, interval=0.05, multiplier=3)
            b.add(A4, B4, interval=0.05, multiplier=3)
            await rec_a.wait(lambda: rec_a.of(BfdUp))
            await rec_b.wait(lambda: rec_b.of(BfdUp))
            b._send = lambda datagram: None  # type: ignore[method-assign]  # b falls silent
            await rec_a.wait(lambda: rec_a.of(BfdDown))
            (down,) = rec_a.of(BfdDown)
            assert down.diag == Diag.CONTROL_DETECTION_TIME_EXPIRED and not down.admin
            (record,) = a.sessions()
            assert record.state == "Down" and record.local_diag == "Control detection time expired"
        finally:
            await a.close()
            await b.close()

    run(body())


def test_closing_announces_admin_down() -> None:
    async def body() -> None:
        rec_a, rec_b = Recorder(), Recorder()
        a, b = await pair(rec_a, rec_b, v6=False)
        try:
            a.add(B4, A4, interval=0.05, multiplier=3)
            b.add(A4, B4, interval=0.05, multiplier=3)
            await rec_a.wait(lambda: rec_a.of(BfdUp))
            await b.close()
            await rec_a.wait(lambda: rec_a.of(BfdDown))
            (down,) = rec_a.of(BfdDown)
            assert down.admin and down.diag == Diag.NEIGHBOR_SIGNALED_DOWN
            (record,) = a.sessions()
            assert record.remote_state == "AdminDown"
        finally:
            await a.close()
            await b.close()

    run(body())


def test_packets_not_sent_with_ttl_255_are_dropped() -> None:
    async def body() -> None:
        rec = Recorder()
        (port,) = free_udp_ports(1)
        a = BfdManager(rec, listen_port=port, listen_addresses=("0.0.0.0",))
        await a.start()
        try:
            a.add(B4, A4)
            down = ControlPacket(
                State.DOWN, 3, my_discriminator=99, desired_min_tx=10**6, required_min_rx=10**5
            )
            packet = encode_control(down)
            loop = asyncio.get_running_loop()
            for ttl in (64, 255):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                    s.bind((B4, 0))
                    s.sendto(packet, (A4, port))
                deadline = loop.time() + 5
                while sum(a.table.dropped.values()) + a.sessions()[0].packets_received < (
                    1 if ttl == 64 else 2
                ):
                    assert loop.time() < deadline
                    await asyncio.sleep(0.01)
            assert a.table.dropped == {"wrong TTL": 1}
            (record,) = a.sessions()
            assert record.packets_received == 1 and record.state == "Init"
        finally:
            await a.close()

    run(body())


def test_misuse_and_a_taken_port() -> None:
    async def body() -> None:
        (port,) = free_udp_ports(1)
        a = BfdManager(listen_port=port, listen_addresses=("0.0.0.0",))
        with pytest.raises(LocalBfdError):
            a.add(B4)  # not started
        await a.start()
        try:
            with pytest.raises(LocalBfdError, match="no IPv6 BFD socket"):
                a.add("fd00::2")
            with pytest.raises(LocalBfdError):
                a.add(B4, interval=0)
            taken = BfdManager(listen_port=port, listen_addresses=("0.0.0.0",))
            with pytest.raises(BfdSocketError, match="cannot receive BFD"):
                await taken.start()
        finally:
            await a.close()

    run(body())


def test_transmit_sockets_use_the_rfc_5881_source_ports() -> None:
    async def body() -> None:
        (port,) = free_udp_ports(1)
        a = BfdManager(listen_port=port, listen_addresses=("0.0.0.0",))
        await a.start()
        try:
            a.add(B4, A4)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while (4, A4) not in a._tx:  # made for the first packet, due at once
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            sock = a._tx[(4, A4)]
            address, source_port = sock.getsockname()
            assert address == A4 and source_port in SOURCE_PORTS
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        finally:
            await a.close()

    run(body())


def test_parse_ancillary() -> None:
    import struct

    v4 = [
        (0, 2, struct.pack("=i", 255)),
        (0, 8, struct.pack("=i4s4s", 3, bytes(4), bytes([10, 0, 0, 1]))),
    ]
    got = parse_ancillary(v4)
    assert (got.ttl, got.ifindex, got.destination) == (255, 3, "10.0.0.1")
    v6 = [(41, 52, struct.pack("=i", 254)), (41, 50, struct.pack("=16sI", bytes(15) + b"\1", 7))]
    got = parse_ancillary(v6)
    assert (got.ttl, got.ifindex, got.destination) == (254, 7, "::1")
    assert parse_ancillary([]).ttl is None
