"""The byte-forwarding floor: a "reflector" that only forwards each UPDATE's bytes.

    python3 bench/rr_floor.py ADDRESS PORT ASN ROUTER_ID

No decoding, no RIB, no attribute rewriting: each connection gets an OPEN and a KEEPALIVE, and
every UPDATE any peer sends is queued; once per event-loop tick the queued UPDATEs are joined
into one bytes object that is written to every established peer (the sender included: one group,
one join). A peer that connects later first gets everything forwarded so far (the joined
blobs, kept as they were written), as a reflector owes a late joiner the whole table: in a
storm, where clients announce while others still connect, the floor moves every byte to every
peer too. What a real reflector does on top of this is its cost above the floor.
"""

from __future__ import annotations

import asyncio
import sys

MARKER = b"\xff" * 16


class Floor:
    def __init__(self, asn: int, router_id: bytes) -> None:
        caps = b"\x02\x06\x01\x04\x00\x01\x00\x01" + b"\x02\x06\x41\x04" + asn.to_bytes(4, "big")
        body = bytes([4]) + min(asn, 23456).to_bytes(2, "big") + (90).to_bytes(2, "big")
        body += router_id + bytes([len(caps)]) + caps
        self.open = MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x01" + body
        self.keepalive = MARKER + b"\x00\x13\x04"
        self.peers: list[asyncio.Transport] = []
        self.queued: list[bytes] = []
        self.history: list[bytes] = []  # every blob flushed so far, for late joiners

    def queue(self, data: bytes) -> None:
        if not self.queued:
            asyncio.get_running_loop().call_soon(self.flush)
        self.queued.append(data)

    def flush(self) -> None:
        blob = b"".join(self.queued)
        self.queued.clear()
        self.history.append(blob)
        for transport in self.peers:
            transport.write(blob)


class Peer(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.floor.open + self.floor.keepalive)
        if self.floor.history:
            transport.writelines(self.floor.history)
        self.floor.peers.append(transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, size = 0, len(buf)
        updates = []
        while size - pos >= 19:
            length = int.from_bytes(buf[pos + 16 : pos + 18], "big")
            if size - pos < length:
                break
            if buf[pos + 18] == 2:
                updates.append(buf[pos : pos + length])
            pos += length
        self.buf = buf[pos:]
        if updates:
            self.floor.queue(b"".join(updates))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport in self.floor.peers:
            self.floor.peers.remove(self.transport)


async def main(address: str, port: int, asn: int, router_id: str) -> None:
    floor = Floor(asn, bytes(int(x) for x in router_id.split(".")))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Peer(floor), address, port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
