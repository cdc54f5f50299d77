"""The Listener over real loopback sockets: an unknown source address is refused before a
byte is read, and a configured neighbor is held to its connection rate."""

from __future__ import annotations

import asyncio
import socket

from test_driver_loopback import run

from bgpd.session.driver import Listener, PeerDriver
from bgpd.session.limits import ConnectionRateLimiter
from bgpd.session.settings import PeerSettings
from bgpd.wire.messages import HEADER_LEN, MSG_OPEN

LISTEN, KNOWN, UNKNOWN = "127.0.0.1", "127.0.0.2", "127.0.0.3"


async def first_bytes(port: int, source: str) -> bytes:
    """Connect from `source` and read until the listener's side sends a header or closes."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    try:
        await loop.sock_connect(sock, (LISTEN, port))
        data = b""
        while len(data) < HEADER_LEN:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def test_unknown_source_is_refused_and_known_one_rate_limited() -> None:
    async def main() -> None:
        settings = PeerSettings(
            name="known",
            peer_address=KNOWN,
            peer_as=65000,
            local_as=65000,
            router_id=1,
            passive=True,
        )
        driver = PeerDriver(settings, lambda event: None)
        drivers = {KNOWN: driver}
        limiter = ConnectionRateLimiter(rate=0.01, burst=2)
        listener = await Listener.start(LISTEN, 0, drivers.get, limiter)
        driver.start()
        try:
            # Unknown: closed at once, without our OPEN; nothing is kept about it.
            assert await first_bytes(listener.port, UNKNOWN) == b""
            assert listener.refused == 1 and len(limiter) == 0
            # Known: the burst is served (each gets our OPEN), then refusals.
            got = [await first_bytes(listener.port, KNOWN) for _ in range(4)]
            assert [g[18] if len(g) >= HEADER_LEN else None for g in got] == [
                MSG_OPEN,
                MSG_OPEN,
                None,
                None,
            ]
            assert listener.refused == 3
        finally:
            await driver.stop()
            await listener.close()

    run(main())
