"""PeerDriver and Listener over real sockets on loopback: 127.0.0.1 (active) talks to
127.0.0.2 (passive, listening). TCP MD5 and GTSM use the real kernel options."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from session_pair import update_bytes

from bgpd.session.driver import Listener, PeerDriver
from bgpd.session.events import (
    SessionDown,
    SessionEstablished,
    SessionEvent,
    UpdateReceived,
)
from bgpd.session.fsm import State
from bgpd.session.settings import PeerSettings
from bgpd.wire.messages import Notification

T = TypeVar("T")
A_ADDR, B_ADDR = "127.0.0.1", "127.0.0.2"


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Recorder:
    """An on_event callback that can be awaited for a condition on what it has seen."""

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self._changed: asyncio.Event | None = None

    def __call__(self, event: SessionEvent) -> None:
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, predicate: Callable[[Recorder], bool], timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            self._changed = asyncio.Event()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("condition not met")
            await asyncio.wait_for(self._changed.wait(), remaining)


@dataclass
class Setup:
    a: PeerDriver
    b: PeerDriver
    rec_a: Recorder
    rec_b: Recorder
    listener: Listener
    drivers: dict[str, PeerDriver] = field(default_factory=dict)

    async def close(self) -> None:
        await self.a.stop()
        await self.b.stop()
        await self.listener.close()


async def setup(
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    *,
    max_buffered: int | None = None,
    start: bool = True,
) -> Setup:
    drivers: dict[str, PeerDriver] = {}
    listener = await Listener.start(B_ADDR, 0, drivers.get)
    sb = PeerSettings(
        name="Mesh_127_0_0_1",
        peer_address=A_ADDR,
        peer_as=65000,
        local_as=65000,
        router_id=2,
        passive=True,
        local_address=B_ADDR,
        **(b or {}),
    )
    sa = PeerSettings(
        name="Mesh_127_0_0_2",
        peer_address=B_ADDR,
        peer_port=listener.port,
        peer_as=65000,
        local_as=65000,
        router_id=1,
        local_address=A_ADDR,
        connect_delay_time=0.0,
        connect_retry_time=1.0,
        **(a or {}),
    )
    rec_a, rec_b = Recorder(), Recorder()
    extra = {"max_buffered": max_buffered} if max_buffered is not None else {}
    driver_a = PeerDriver(sa, rec_a, **extra)
    driver_b = PeerDriver(sb, rec_b)
    drivers[A_ADDR] = driver_b
    if sb.password is not None:
        listener.set_md5(A_ADDR, sb.password)
    s = Setup(driver_a, driver_b, rec_a, rec_b, listener, drivers)
    if start:
        driver_b.start()
        driver_a.start()
    return s


def established(rec: Recorder) -> bool:
    return bool(rec.of(SessionEstablished))


def test_active_and_passive_establish_exchange_updates_and_stop() -> None:
    async def main() -> None:
        s = await setup()
        try:
            await s.rec_a.wait(established)
            await s.rec_b.wait(established)
            assert s.a.state is State.ESTABLISHED and s.b.state is State.ESTABLISHED
            assert s.a.established_since is not None and s.a.info == ""
            blob = update_bytes("192.168.1.0/24") + update_bytes("192.168.2.0/24")
            s.a.send(blob)
            await s.rec_b.wait(lambda r: len(r.of(UpdateReceived)) == 2)
            assert s.a.stats.updates_sent == 2 and s.b.stats.updates_received == 2
            await s.a.stop()
            await s.rec_b.wait(lambda r: bool(r.of(SessionDown)))
            (down,) = s.rec_b.of(SessionDown)
            assert down.notification_received == Notification(6, 2)
            assert s.a.state is State.IDLE
            assert s.rec_a.of(SessionDown)[0].notification_sent == Notification(6, 2)
            # B waits for A again.
            await s.rec_b.wait(lambda r: s.b.state is State.ACTIVE)
            assert s.b.state_text == "Passive"
        finally:
            await s.close()

    run(main())


def test_connection_refused_is_reported_and_retried() -> None:
    async def main() -> None:
        s = await setup(start=False)
        port = s.listener.port
        await s.listener.close()  # nothing listens on the port any more
        assert s.a.settings.peer_port == port
        s.a.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while s.a.info != "Socket: Connection refused":
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        assert s.a.state in (State.ACTIVE, State.CONNECT)
        await s.a.stop()

    run(main())


def test_listener_refuses_addresses_that_are_not_peers() -> None:
    async def main() -> None:
        s = await setup(start=False)
        try:
            reader, writer = await asyncio.open_connection(
                B_ADDR, s.listener.port, local_addr=("127.0.0.3", 0)
            )
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
            writer.close()
        finally:
            await s.listener.close()

    run(main())


def test_tcp_md5_with_matching_passwords_establishes() -> None:
    async def main() -> None:
        s = await setup({"password": "s3cret"}, {"password": "s3cret"})
        try:
            await s.rec_a.wait(established)
            await s.rec_b.wait(established)
        finally:
            await s.close()

    run(main())


@pytest.mark.parametrize("a_password", ["wrong", None])
def test_tcp_md5_mismatch_never_establishes(a_password: str | None) -> None:
    async def main() -> None:
        s = await setup({"password": a_password}, {"password": "s3cret"})
        try:
            with pytest.raises(TimeoutError):
                await s.rec_a.wait(established, timeout=3.0)
            assert not established(s.rec_b)
            assert s.a.state in (State.CONNECT, State.ACTIVE)
        finally:
            await s.close()

    run(main())


def test_gtsm_on_both_ends_establishes() -> None:
    async def main() -> None:
        s = await setup({"ttl_security": 1}, {"ttl_security": 1})
        try:
            await s.rec_a.wait(established)
        finally:
            await s.close()

    run(main())


def test_gtsm_drops_a_peer_that_sends_a_low_ttl() -> None:
    async def main() -> None:
        # A requires TTL 255; B (iBGP, no GTSM) sends with TTL 64: A never hears B.
        s = await setup({"ttl_security": 1}, {})
        try:
            with pytest.raises(TimeoutError):
                await s.rec_a.wait(established, timeout=3.0)
        finally:
            await s.close()

    run(main())


def test_peer_that_stops_reading_is_reset_at_the_buffer_cap() -> None:
    async def main() -> None:
        s = await setup(max_buffered=4 << 20)
        try:
            await s.rec_a.wait(established)
            await s.rec_b.wait(established)
            (proto_b,) = s.b._protocols.values()
            assert proto_b.transport is not None
            proto_b.transport.pause_reading()
            one = update_bytes()
            blob = one * (1 << 20 // len(one))
            saw_pause = False
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not s.rec_a.of(SessionDown):
                assert loop.time() < deadline
                s.a.send(blob)
                await asyncio.sleep(0)  # let this tick's flush run
                saw_pause = saw_pause or s.a.write_paused
            assert saw_pause
            (down,) = s.rec_a.of(SessionDown)
            assert down.reason == "Error: Send buffer overflow"
            assert down.notification_sent == Notification(6, 8)
            assert s.a.info == "Error: Send buffer overflow"
        finally:
            await s.close()

    run(main())


def test_drained_returns_when_writes_resume() -> None:
    async def main() -> None:
        s = await setup()
        try:
            await s.rec_a.wait(established)
            await s.rec_b.wait(established)
            (proto_b,) = s.b._protocols.values()
            assert proto_b.transport is not None
            proto_b.transport.pause_reading()
            one = update_bytes()
            blob = one * (1 << 20 // len(one))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while not s.a.write_paused:
                assert loop.time() < deadline
                s.a.send(blob)
                await asyncio.sleep(0)
            proto_b.transport.resume_reading()
            await asyncio.wait_for(s.a.drained(), 10)
            assert not s.a.write_paused
            assert s.a.state is State.ESTABLISHED
        finally:
            await s.close()

    run(main())


def test_dual_stack_listener_sees_ipv4_peers_as_ipv4() -> None:
    async def main() -> None:
        seen: list[str] = []

        def lookup(address: str) -> PeerDriver | None:
            seen.append(address)
            return None

        try:
            listener = await Listener.start("::", 0, lookup)
        except OSError as exc:  # no IPv6 on this machine
            pytest.skip(f"no dual-stack listener: {exc}")
        try:
            assert listener.family == socket.AF_INET6
            listener.set_md5("10.9.9.9", "key")  # an IPv4 key on the IPv6 socket
            listener.set_md5("10.9.9.9", None)
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert seen == ["127.0.0.1"]
        finally:
            await listener.close()

    run(main())
