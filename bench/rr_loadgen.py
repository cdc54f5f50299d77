"""Pre-encoded BGP load generator for the route-reflector benchmark (runs in the load namespace).

    python3 bench/rr_loadgen.py CONFIG.json RESULT.json

All client addresses are secondary addresses of one interface. Every client opens a TCP
session to the reflector from its own address, sends a pre-built OPEN + KEEPALIVE, and waits
for the reflector's KEEPALIVE (the only parsing a client ever does). Then all clients write
their pre-built UPDATEs at once; from then on they drain what the reflector sends without
looking at it. One more client, the monitor, announces nothing and walks every UPDATE it gets
(NLRI lengths only) to know when it holds all M x N routes. The codec (bgpd.wire) is used once,
up front, to build the bytes; nothing is encoded or decoded per message in the measured part.

In storm and stagger modes (issue 17) nobody waits: the monitor connects first, then the
clients connect (storm: at most `burst`, 20, attempts in flight, as nodes come back after a
reflector restart; stagger: spread evenly over `stagger_s`) and each writes its UPDATEs the
moment its own session is up, while the others are still connecting. The clock starts at the
first connection; per client the connect, Established and announce times are recorded (into
`client_log` when the config names one), and sessions the reflector drops connect again.

Timings and the daemon's CPU seconds (utime + stime of its process tree, from /proc) and peak
RSS (VmHWM) go to RESULT.json. In churn mode the clients then announce a fresh /32 and withdraw
an old one `churn_rate` times a second for `churn_seconds`; the monitor records each announced
prefix's arrival, giving the announce-to-arrival latency distribution.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from procstat import cpu_seconds, peak_rss_mb, process_tree  # bench/ is sys.path[0]

from bgpd.wire import (
    Family,
    FourOctetAs,
    Multiprotocol,
    Open,
    PathAttributes,
    RouteRefreshCap,
    encode_keepalive,
    encode_open,
    pack_announcements,
    pack_withdrawals,
)

IPV4 = Family.IPV4_UNICAST
KEEPALIVE = encode_keepalive()
MSG_OPEN, MSG_UPDATE, MSG_NOTIFICATION, MSG_KEEPALIVE = 1, 2, 3, 4
# settled: every session up, a pause, then every client announces at once; storm and stagger:
# each client announces as soon as its own session is up (see LoadGen.run_storm).
MODES = ("settled", "storm", "stagger")


# ------------------------------------------------------------------ pre-encoded messages


def open_bytes(address: str, asn: int, hold: int) -> bytes:
    caps = (Multiprotocol(IPV4), RouteRefreshCap(), FourOctetAs(asn))
    bgp_id = int(ipaddress.IPv4Address(address))
    return encode_open(Open(my_as=asn if asn < 65536 else 23456, hold_time=hold, bgp_id=bgp_id,
                            capabilities=caps))  # fmt: skip


def prefix_items(start: int, count: int, plen: int) -> list[bytes]:
    step = 1 << (32 - plen)
    nbytes = (plen + 7) // 8
    return [bytes([plen]) + ((start + k) * step).to_bytes(4, "big")[:nbytes] for k in range(count)]


def attrs_for(address: str) -> PathAttributes:
    return PathAttributes(
        origin=0, as_path=(), next_hop=ipaddress.IPv4Address(address).packed, local_pref=100
    )


# ------------------------------------------------------------------ UPDATE walking (monitor)


def walk_update(body: memoryview, added: list[bytes], removed: list[bytes]) -> None:
    """Collect the NLRI items (classic fields and IPv4 MP_REACH/MP_UNREACH) of one UPDATE body."""
    wlen = (body[0] << 8) | body[1]
    _items(body, 2, 2 + wlen, removed)
    pos = 2 + wlen
    alen = (body[pos] << 8) | body[pos + 1]
    pos += 2
    end = pos + alen
    while pos < end:
        flags, code = body[pos], body[pos + 1]
        if flags & 0x10:
            vlen = (body[pos + 2] << 8) | body[pos + 3]
            vpos = pos + 4
        else:
            vlen = body[pos + 2]
            vpos = pos + 3
        if code == 14 and body[vpos] == 0 and body[vpos + 1] == 1 and body[vpos + 2] == 1:
            nh_len = body[vpos + 3]
            _items(body, vpos + 5 + nh_len, vpos + vlen, added)
        elif code == 15 and body[vpos] == 0 and body[vpos + 1] == 1 and body[vpos + 2] == 1:
            _items(body, vpos + 3, vpos + vlen, removed)
        pos = vpos + vlen
    _items(body, end, len(body), added)


def _items(body: memoryview, pos: int, end: int, out: list[bytes]) -> None:
    while pos < end:
        n = 1 + ((body[pos] + 7) >> 3)
        out.append(bytes(body[pos : pos + n]))
        pos += n


# ------------------------------------------------------------------ clients


class Client(asyncio.Protocol):
    """One session. Parses only until the reflector's first KEEPALIVE; drains afterwards.

    With `announce` (storm modes) the client writes those pre-built UPDATEs the moment that
    KEEPALIVE arrives: its own session is Established, whatever the others are doing."""

    def __init__(
        self, gen: LoadGen, index: int, address: str, announce: bytes | None = None
    ) -> None:
        self.gen = gen
        self.index = index
        self.address = address
        self.announce = announce
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.established = loop.create_future()
        self.lost = loop.create_future()  # set when the connection ends, up or not
        self.buf = bytearray()
        self.up = False
        self.received = 0
        self.closed_reason: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.gen.opens[self.index] + KEEPALIVE)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.up:
            return
        self.buf += data
        while len(self.buf) >= 19:
            length = (self.buf[16] << 8) | self.buf[17]
            if len(self.buf) < length:
                return
            kind = self.buf[18]
            message = bytes(self.buf[:length])
            del self.buf[:length]
            if kind == MSG_NOTIFICATION:
                self.closed_reason = f"NOTIFICATION {message[19]}/{message[20]}"
                if self.transport is not None:
                    self.transport.close()
                return
            if kind == MSG_KEEPALIVE:
                self.up = True
                self.gen.session_up(self, time.monotonic())
                self.on_established(bytes(self.buf))
                self.buf.clear()
                if not self.established.done():
                    self.established.set_result(True)
                return

    def on_established(self, rest: bytes) -> None:
        """Hook for the monitor: bytes that came after the KEEPALIVE."""

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed_reason is None:
            self.closed_reason = f"closed by reflector ({exc})" if exc else "closed by reflector"
        if self.up:
            self.gen.drops.append((time.monotonic(), self.address, self.closed_reason))
        if not self.established.done():
            self.established.set_result(False)
        if not self.lost.done():
            self.lost.set_result(None)


class Monitor(Client):
    """The client that counts prefixes (a set of NLRI items: duplicates do not count twice)."""

    def __init__(self, gen: LoadGen, index: int, address: str, announce: None = None) -> None:
        super().__init__(gen, index, address)
        self.held: set[bytes] = set()
        self.rest = bytearray()
        self.first_route: float | None = None
        self.arrivals: dict[bytes, float] = {}
        self.watch: set[bytes] = set()

    def on_established(self, rest: bytes) -> None:
        self.feed(rest)

    def data_received(self, data: bytes) -> None:
        if not self.up:
            super().data_received(data)
        else:
            self.received += len(data)
            self.feed(data)

    def feed(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.rest
        buf += data
        view = memoryview(buf)
        pos = 0
        size = len(buf)
        added: list[bytes] = []
        removed: list[bytes] = []
        while size - pos >= 19:
            length = (view[pos + 16] << 8) | view[pos + 17]
            if size - pos < length:
                break
            if view[pos + 18] == MSG_UPDATE:
                walk_update(view[pos + 19 : pos + length], added, removed)
            pos += length
        view.release()
        del buf[:pos]
        if removed:
            self.held.difference_update(removed)
        if added:
            if self.first_route is None:
                self.first_route = now
            self.held.update(added)
            if self.watch:
                for item in added:
                    if item in self.watch and item not in self.arrivals:
                        self.arrivals[item] = now
        self.gen.progress(self, now)


@dataclass(slots=True)
class ClientTimes:
    """One storm client's life, in seconds after the first connection (None: never)."""

    connect: float | None = None  # its first connection attempt began
    established: float | None = None  # its first session was up
    announced: float | None = None  # it first wrote its UPDATEs
    attempts: int = 0  # connection attempts, the successful ones included
    failures: int = 0  # attempts that did not reach Established
    reconnects: int = 0  # sessions it opened again after one it had up was closed


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank below) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def storm_summary(times: list[ClientTimes]) -> dict[str, Any]:
    """The per-client record boiled down to what the report shows."""
    setup = [
        t.established - t.connect
        for t in times
        if t.established is not None and t.connect is not None
    ]
    connects = [t.connect for t in times if t.connect is not None]
    ups = [t.established for t in times if t.established is not None]
    announced = [t.announced for t in times if t.announced is not None]
    return {
        "clients_established": len(ups),
        "first_announce_s": min(announced) if announced else None,
        "last_connect_s": max(connects) if connects else None,
        "last_established_s": max(ups) if ups else None,
        "last_announce_s": max(announced) if announced else None,
        "session_setup_p50_ms": _ms(quantile(setup, 0.5)),
        "session_setup_p99_ms": _ms(quantile(setup, 0.99)),
        "session_setup_max_ms": _ms(max(setup) if setup else None),
        "connect_failures": sum(t.failures for t in times),
        "reconnects": sum(t.reconnects for t in times),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class LoadGen:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.mode: str = cfg.get("mode", "settled")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        self.addresses: list[str] = cfg["clients"]
        self.monitor_address: str = cfg["monitor"]
        self.asn = int(cfg["asn"])
        self.hold = int(cfg.get("hold_time", 90))
        self.routes = int(cfg["prefixes"])
        self.plen = int(cfg["prefix_len"])
        # A reflector under export policy (rr_bench's bgpd-filter) withholds some routes.
        self.want = len(self.addresses) * self.routes - int(cfg.get("withheld", 0))
        base = int(ipaddress.IPv4Address(cfg["prefix_base"])) >> (32 - self.plen)
        every = [*self.addresses, self.monitor_address]
        self.opens = [open_bytes(a, self.asn, self.hold) for a in every]
        self.updates = [
            b"".join(
                pack_announcements(
                    IPV4, attrs_for(a), prefix_items(base + i * self.routes, self.routes, self.plen)
                )
            )
            for i, a in enumerate(self.addresses)
        ]
        self.clients: list[Client] = []
        self.sessions: list[Client] = []  # every session that came up (storm: reconnects too)
        self.live: list[Client] = []  # established so far (keepalives go to these)
        self.drops: list[tuple[float, str, str]] = []
        self.times = [ClientTimes() for _ in self.addresses]
        self.done = asyncio.get_running_loop().create_future()
        self.t0: float | None = None
        self.t_done: float | None = None
        self.pids = process_tree([int(p) for p in cfg["pids"]])

    def progress(self, monitor: Monitor, now: float) -> None:
        if self.t0 is not None and len(monitor.held) >= self.want and not self.done.done():
            self.t_done = now
            self.done.set_result(True)

    def session_up(self, client: Client, now: float) -> None:
        """A client's session reached Established; a storm client announces right away."""
        if client.announce is not None and client.transport is not None:
            client.transport.write(client.announce)
        if self.t0 is None or client.index >= len(self.times):
            return
        t = self.times[client.index]
        if t.established is None:
            t.established = now - self.t0
        if client.announce is not None and t.announced is None:
            t.announced = time.monotonic() - self.t0

    async def connect(
        self, index: int, address: str, deadline: float, announce: bytes | None = None
    ) -> Client:
        loop = asyncio.get_running_loop()
        cls = Monitor if index == len(self.addresses) else Client
        while True:
            client = cls(self, index, address, announce)
            if index < len(self.times):
                self.times[index].attempts += 1
            try:
                await loop.create_connection(
                    lambda c=client: c,
                    self.cfg["reflector"],
                    int(self.cfg.get("port", 179)),
                    local_addr=(address, 0),
                )
                if await client.established:
                    self.live.append(client)
                    self.sessions.append(client)
                    return client
            except OSError:
                pass
            if index < len(self.times):
                self.times[index].failures += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address}: no session ({client.closed_reason})")
            await asyncio.sleep(0.5)

    async def keepalives(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.hold / 3))
            for c in self.live:
                if c.transport is not None and not c.transport.is_closing():
                    c.transport.write(KEEPALIVE)

    async def run(self) -> dict[str, Any]:
        if self.mode == "settled":
            return await self.run_settled()
        return await self.run_storm()

    async def run_settled(self) -> dict[str, Any]:
        limit = float(self.cfg.get("time_limit", 300))
        result: dict[str, Any] = {"pids": self.pids, "mode": "settled"}
        every = [*self.addresses, self.monitor_address]
        gate = asyncio.Semaphore(int(self.cfg.get("connect_parallel", 8)))

        async def one(i: int, a: str) -> Client:
            async with gate:
                return await self.connect(i, a, start + limit)

        start = time.monotonic()
        ka = asyncio.create_task(self.keepalives())
        try:
            self.clients = list(await asyncio.gather(*(one(i, a) for i, a in enumerate(every))))
        except TimeoutError as exc:
            result["error"] = f"session set-up not done after {limit:.0f} s: {exc}"
            ka.cancel()
            return result
        result["setup_s"] = time.monotonic() - start
        monitor = self.clients[-1]
        assert isinstance(monitor, Monitor)
        await asyncio.sleep(float(self.cfg.get("settle", 1.0)))
        monitor.held.clear()
        monitor.first_route = None
        result["rss_before_mb"] = peak_rss_mb(self.pids, "VmRSS:")
        result["hwm_before_mb"] = peak_rss_mb(self.pids)
        cpu0 = cpu_seconds(self.pids)
        own0 = time.process_time()
        self.t0 = time.monotonic()
        for c, data in zip(self.clients, self.updates, strict=False):
            assert c.transport is not None
            c.transport.write(data)
        result["write_s"] = time.monotonic() - self.t0
        try:
            await asyncio.wait_for(asyncio.shield(self.done), limit)
            result["elapsed_s"] = self.t_done - self.t0  # type: ignore[operator]
        except TimeoutError:
            result["elapsed_s"] = None
            result["timeout_s"] = limit
        result["cpu_s"] = cpu_seconds(self.pids) - cpu0
        result["loadgen_cpu_s"] = time.process_time() - own0
        result["routes_held"] = len(monitor.held)
        result["routes_wanted"] = self.want
        if monitor.first_route is not None:
            result["first_route_s"] = monitor.first_route - self.t0
        if self.cfg.get("churn_seconds") and result["elapsed_s"] is not None:
            result["churn"] = await self.churn(monitor)
        result["rss_mb"] = peak_rss_mb(self.pids)
        result["drops"] = len(self.drops)
        result["drop_examples"] = [f"{a}: {r}" for _, a, r in self.drops[:5]]
        result["bytes_to_clients_mb"] = sum(c.received for c in self.clients) / 1e6
        ka.cancel()
        return result

    async def run_storm(self) -> dict[str, Any]:
        """The monitor connects first; then the clients connect (storm: at most `burst`
        attempts in flight; stagger: client i starts at i/M of `stagger_s`) and each announces
        as soon as its own session is up. A client whose session the reflector closes connects
        again and announces again, as a node would. The clock starts at the first connection."""
        limit = float(self.cfg.get("time_limit", 300))
        result: dict[str, Any] = {"pids": self.pids, "mode": self.mode}
        ka = asyncio.create_task(self.keepalives())
        began = time.monotonic()
        try:
            monitor = await self.connect(len(self.addresses), self.monitor_address, began + limit)
        except TimeoutError as exc:
            result["error"] = f"monitor session not up after {limit:.0f} s: {exc}"
            ka.cancel()
            return result
        assert isinstance(monitor, Monitor)
        result["monitor_setup_s"] = time.monotonic() - began
        result["rss_before_mb"] = peak_rss_mb(self.pids, "VmRSS:")
        result["hwm_before_mb"] = peak_rss_mb(self.pids)
        cpu0 = cpu_seconds(self.pids)
        own0 = time.process_time()
        gate = asyncio.Semaphore(int(self.cfg.get("burst", 20))) if self.mode == "storm" else None
        spread = float(self.cfg.get("stagger_s", 10.0)) if self.mode == "stagger" else 0.0
        count = len(self.addresses)
        self.t0 = start = time.monotonic()
        deadline = start + limit

        async def node(i: int, address: str) -> None:
            at = start + spread * i / count
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            t = self.times[i]
            while not self.done.done():
                if gate is not None:
                    await gate.acquire()
                try:
                    if t.connect is None:
                        t.connect = time.monotonic() - start
                    client = await self.connect(i, address, deadline, self.updates[i])
                finally:
                    if gate is not None:
                        gate.release()
                await client.lost
                if self.done.done():
                    return
                t.reconnects += 1

        tasks = [asyncio.create_task(node(i, a)) for i, a in enumerate(self.addresses)]
        try:
            await asyncio.wait_for(asyncio.shield(self.done), limit)
            result["from_connect_s"] = self.t_done - start  # type: ignore[operator]
        except TimeoutError:
            result["from_connect_s"] = None
            result["timeout_s"] = limit
        result["cpu_s"] = cpu_seconds(self.pids) - cpu0
        result["loadgen_cpu_s"] = time.process_time() - own0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        result.update(storm_summary(self.times))
        first = result["first_announce_s"]
        done = result["from_connect_s"]
        result["from_announce_s"] = done - first if done is not None and first is not None else None
        result["routes_held"] = len(monitor.held)
        result["routes_wanted"] = self.want
        if monitor.first_route is not None:
            result["first_route_s"] = monitor.first_route - start
        result["rss_mb"] = peak_rss_mb(self.pids)
        result["drops"] = len(self.drops)
        result["drop_examples"] = [f"{a}: {r}" for _, a, r in self.drops[:5]]
        result["bytes_to_clients_mb"] = sum(c.received for c in self.sessions) / 1e6
        self.clients = [*self.sessions]
        log = self.cfg.get("client_log")
        if log:
            Path(log).write_text(json.dumps(
                {"fields": [f.name for f in dataclasses.fields(ClientTimes)],
                 "clients": [dataclasses.astuple(t) for t in self.times]}))  # fmt: skip
        ka.cancel()
        return result

    async def churn(self, monitor: Monitor) -> dict[str, Any]:
        """`rate` times a second, one client announces a fresh /32 and withdraws the one it
        announced a second before (all messages built before the first)."""
        rate = int(self.cfg.get("churn_rate", 100))
        seconds = float(self.cfg["churn_seconds"])
        total = int(rate * seconds)
        base = int(ipaddress.IPv4Address(self.cfg["churn_base"]))
        clients = self.clients[:-1]
        items = prefix_items(base, total, 32)
        announce = [
            b"".join(pack_announcements(IPV4, attrs_for(clients[k % len(clients)].address),
                                        [items[k]]))
            for k in range(total)
        ]  # fmt: skip
        withdraw = [b"".join(pack_withdrawals(IPV4, [item])) for item in items]
        monitor.watch = set(items)
        sent: dict[bytes, float] = {}
        loop = asyncio.get_running_loop()
        start = loop.time()
        for k in range(total):
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            c = clients[k % len(clients)]
            assert c.transport is not None
            data = announce[k]
            if k >= rate:
                owner = clients[(k - rate) % len(clients)]
                if owner is c:
                    data = withdraw[k - rate] + data
                else:
                    assert owner.transport is not None
                    owner.transport.write(withdraw[k - rate])
            sent[items[k]] = time.monotonic()
            c.transport.write(data)
        deadline = time.monotonic() + 10
        while len(monitor.arrivals) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        lat = sorted((monitor.arrivals[i] - sent[i]) * 1000 for i in items if i in monitor.arrivals)
        out: dict[str, Any] = {"announced": total, "arrived": len(lat)}
        if lat:
            out["p50_ms"] = lat[len(lat) // 2]
            out["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            out["max_ms"] = lat[-1]
        return out


async def main(cfg_path: str, out_path: str) -> None:
    cfg = json.loads(Path(cfg_path).read_text())
    gen = LoadGen(cfg)
    result = await gen.run()
    Path(out_path).write_text(json.dumps(result, indent=1))
    for c in gen.clients:
        if c.transport is not None:
            c.transport.abort()


if __name__ == "__main__":
    # Many sockets: one per client.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(sys.argv[1], sys.argv[2]))
