"""A BGP peer that feeds a route corpus to a daemon and records what it is sent back (runs in a
lab namespace, one process for any number of sessions).

    python3 -m labs.conformance.injector CONFIG.json STATE.json

CONFIG lists neighbours: {"name", "local" (our address), "peer", "local_as", "peer_as",
"family" (4 or 6), "routes": [{"prefix", "next_hop", "local_pref", "communities": [[a, b]],
"large": [[a, b, c]], "as_path": [..]}]}. Each session connects from its address (and keeps
trying until the peer takes it), sends OPEN (multiprotocol for its family, 4-octet AS), its
routes once established, then End-of-RIB, and keeps every UPDATE it receives as a table.
STATE is rewritten (atomically) after each change: per neighbour, whether it is established,
how many times it came up, whether the peer's End-of-RIB came, and the routes it holds with
their attributes. The codec is bgpd.wire's; nothing here is a BGP implementation beyond that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

from bgpd.wire import (
    Family,
    FourOctetAs,
    Multiprotocol,
    Open,
    PathAttributes,
    encode_end_of_rib,
    encode_keepalive,
    encode_open,
    pack_announcements,
)
from bgpd.wire.codec import decode_message, split_messages
from bgpd.wire.family import nlri_to_prefix, prefix_to_nlri
from bgpd.wire.messages import Keepalive, Notification, Update
from bgpd.wire.options import CodecOptions

HOLD = 90
OPTS = CodecOptions(four_octet_as=True)


def _attrs(route: dict[str, Any]) -> PathAttributes:
    path = tuple(route.get("as_path") or ())
    return PathAttributes(
        origin=0,
        as_path=((2, path),) if path else (),
        next_hop=ipaddress.ip_address(route["next_hop"]).packed,
        local_pref=route.get("local_pref"),
        communities=tuple(a << 16 | b for a, b in route.get("communities") or ()),
        large_communities=tuple(tuple(c) for c in route.get("large") or ()),  # type: ignore[misc]
    )


def _updates(family: Family, routes: list[dict[str, Any]]) -> list[bytes]:
    by_attrs: dict[PathAttributes, list[bytes]] = {}
    for r in routes:
        by_attrs.setdefault(_attrs(r), []).append(prefix_to_nlri(r["prefix"])[1])
    out: list[bytes] = []
    for attrs, items in by_attrs.items():
        out.extend(pack_announcements(family, attrs, items, OPTS))
    out.append(encode_end_of_rib(family))
    return out


def _seen(attrs: PathAttributes) -> dict[str, Any]:
    path: list[int] = []
    for _seg, asns in attrs.as_path:
        path.extend(asns)
    nh = attrs.next_hop
    return {
        "local_pref": attrs.local_pref,
        "communities": sorted([c >> 16, c & 0xFFFF] for c in attrs.communities),
        "large": sorted(list(c) for c in attrs.large_communities),
        "as_path": path,
        "next_hop": str(ipaddress.ip_address(nh[:16])) if nh else None,
    }


class Session:
    def __init__(self, owner: Injector, cfg: dict[str, Any]) -> None:
        self.owner = owner
        self.cfg = cfg
        self.family = Family.of_version(cfg["family"])
        self.established = False
        self.ups = 0
        self.eor = False
        self.routes: dict[str, dict[str, Any]] = {}
        self.error = ""
        self.updates = _updates(self.family, cfg["routes"])

    def state(self) -> dict[str, Any]:
        return {
            "established": self.established,
            "ups": self.ups,
            "eor": self.eor,
            "error": self.error,
            "routes": self.routes,
        }

    async def run(self) -> None:
        while True:
            try:
                await self._once()
            except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            self.established = False
            self.routes = {}
            self.eor = False
            self.owner.changed()
            await asyncio.sleep(1.0)

    async def _once(self) -> None:
        cfg = self.cfg
        reader, writer = await asyncio.open_connection(
            cfg["peer"], 179, local_addr=(cfg["local"], 0)
        )
        try:
            asn = cfg["local_as"]
            rid = int(ipaddress.IPv4Address(cfg["router_id"]))
            caps = (Multiprotocol(self.family), FourOctetAs(asn))
            writer.write(encode_open(Open(asn if asn < 65536 else 23456, HOLD, rid, caps)))
            await writer.drain()
            buf = b""
            keepalives = asyncio.get_running_loop().create_task(self._keepalives(writer))
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        raise ValueError("closed by the peer")
                    buf += data
                    messages, buf = split_messages(buf)
                    for raw in messages:
                        self._message(decode_message(raw, OPTS), writer)
                    await writer.drain()
            finally:
                keepalives.cancel()
        finally:
            writer.close()

    async def _keepalives(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(HOLD / 3)
            writer.write(encode_keepalive())

    def _message(self, msg: object, writer: asyncio.StreamWriter) -> None:
        if isinstance(msg, Open):
            writer.write(encode_keepalive())
        elif isinstance(msg, Keepalive) and not self.established:
            self.established = True
            self.ups += 1
            for data in self.updates:
                writer.write(data)
            self.owner.changed()
        elif isinstance(msg, Update):
            self._update(msg)
        elif isinstance(msg, Notification):
            raise ValueError(f"NOTIFICATION {msg.code}/{msg.subcode}")

    def _update(self, u: Update) -> None:
        if u.end_of_rib is not None:
            self.eor = True
        for item in u.withdrawn:
            self.routes.pop(nlri_to_prefix(Family.IPV4_UNICAST, item), None)
        if u.mp_unreach is not None:
            for item in u.mp_unreach.withdrawn:
                self.routes.pop(nlri_to_prefix(u.mp_unreach.family, item), None)
        if u.attributes is not None:
            if u.nlri:
                seen = _seen(u.attributes)
                for item in u.nlri:
                    self.routes[nlri_to_prefix(Family.IPV4_UNICAST, item)] = seen
            if u.mp_reach is not None:
                seen = _seen(u.attributes.replace(next_hop=u.mp_reach.next_hop))
                for item in u.mp_reach.nlri:
                    self.routes[nlri_to_prefix(u.mp_reach.family, item)] = seen
        self.owner.changed()


class Injector:
    def __init__(self, config: dict[str, Any], state: Path) -> None:
        self.state_path = state
        self.sessions = {n["name"]: Session(self, n) for n in config["neighbors"]}
        self._dirty = asyncio.Event()

    def changed(self) -> None:
        self._dirty.set()

    async def _writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            tmp = self.state_path.with_suffix(".tmp")
            state = {name: s.state() for name, s in self.sessions.items()}
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)
            await asyncio.sleep(0.2)

    async def run(self) -> None:
        self.changed()
        await asyncio.gather(self._writer(), *(s.run() for s in self.sessions.values()))


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(Injector(config, Path(sys.argv[2])).run())


if __name__ == "__main__":
    main()
