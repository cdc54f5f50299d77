"""ExaBGP as a lab peer: its API process (exabgp_api.py) records what it hears, and the parser
of those JSON messages answers the questions."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..lab import LabError
from .base import (
    Neighbor,
    Peer,
    Route,
    canonical_prefix,
    family_of,
    int_or_none,
    origin_name,
)


class ExabgpPeer(Peer):
    """ExaBGP 5 (PyPI): `exabgp server exabgp.conf` with environment
    `exabgp_daemon_user=root exabgp_daemon_drop=false exabgp_api_cli=false
    exabgp_api_ack=false exabgp_tcp_bind="<local addresses>"`.

    ExaBGP has no query client: its API process (`exabgp_api.py`) records every JSON state and
    update message in events.jsonl, which this class replays to answer session and route
    questions, and forwards `announce route P next-hop self` / `withdraw route ...` commands.
    The session states it can tell are Established ("up"), OpenSent ("connected") and Idle.
    """

    kind = "exabgp"
    programs = ()
    log_name = "exabgp.log"

    @classmethod
    def missing(cls) -> list[str]:
        return [] if importlib.util.find_spec("exabgp") else ["python module exabgp"]

    def _setup(self) -> None:
        self.config_path = self.workdir / "exabgp.conf"
        self.events_path = self.workdir / "events.jsonl"
        self.fifo = self.rundir / "commands.fifo"
        self._offset = 0
        self._session: dict[str, str] = {}
        self._rib: dict[str, dict[str, Route]] = {}  # neighbour -> prefix -> route

    def local_address(self, neighbor: Neighbor) -> str:
        if neighbor.local_address:
            return neighbor.local_address
        out = self.node.run(["ip", "-j", "route", "get", neighbor.address]).stdout
        return str(json.loads(out)[0]["prefsrc"])

    def config(self) -> str:
        if any(n.rr_client for n in self.neighbors):
            raise LabError("ExaBGP does not reflect routes (rr_client)")
        api = Path(__file__).with_name("exabgp_api.py")
        lines = [
            "process api {",
            f"  run {sys.executable} {api} {self.fifo} {self.events_path};",
            "  encoder json;",
            "}",
        ]
        for n in self.effective_neighbors():
            body = [
                f"router-id {self.router_id};",
                f"local-address {self.local_address(n)};",
                f"local-as {self.local_as};",
                f"peer-as {n.remote_as};",
            ]
            if n.port != 179:
                body.append(f"peer-port {n.port};")
            if n.hold_time is not None:
                body.append(f"hold-time {n.hold_time};")
            if n.passive:
                body.append("passive true;")
            if n.password:
                body.append(f'md5-password "{n.password}";')
            if n.multihop:
                body.append(f"outgoing-ttl {n.multihop};")
            if n.graceful_restart:
                body.append("capability { graceful-restart 120; }")
            body.append("family { " + " ".join(f"ipv{f} unicast;" for f in n.afs) + " }")
            body.append("api { processes [ api ]; neighbor-changes; receive { parsed; update; } }")
            for family in n.afs:
                routes = "".join(
                    f" unicast {p} next-hop self;" for p in sorted(self.routes[family])
                )
                if routes:
                    body.append(f"announce {{ ipv{family} {{{routes} }} }}")
            if n.af_extra:
                raise LabError(f"{self}: af_extra is for BIRD and FRR only")
            if n.extra:
                body.append(n.extra)
            inner = textwrap.indent("\n".join(body), "  ")
            lines.append(f"neighbor {n.address} {{\n{inner}\n}}")
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def _start(self) -> None:
        self.config_path.write_text(self.config())
        self.events_path.write_text("")
        self._offset = 0
        self._session.clear()
        self._rib.clear()
        self.fifo.unlink(missing_ok=True)
        os.mkfifo(self.fifo)
        binds = sorted({self.local_address(n) for n in self.effective_neighbors()})
        env = {
            "exabgp_daemon_user": "root",
            "exabgp_daemon_drop": "false",
            "exabgp_daemon_daemonize": "false",
            "exabgp_api_cli": "false",
            "exabgp_api_ack": "false",
            "exabgp_tcp_bind": " ".join(binds),
            "exabgp_log_destination": "stdout",
        }
        # `python -m exabgp`: the console script may lack a pyenv shim.
        self.popen(
            [sys.executable, "-m", "exabgp", "server", str(self.config_path)], "exabgp.log", env
        )

    def _ready(self) -> bool:
        self._check_alive()
        # The API process has the FIFO open for reading once ExaBGP started it.
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        os.close(fd)
        return True

    def command(self, line: str) -> None:
        """Send one API command line to ExaBGP."""
        fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, (line.rstrip("\n") + "\n").encode())
        finally:
            os.close(fd)

    def _route_command(self, verb: str, prefix: str) -> None:
        # Only to the sessions that carry the family (ExaBGP warns about the others).
        family = family_of(prefix)
        for n in self.neighbors:
            if family in n.afs:
                self.command(f"neighbor {n.address} {verb} route {prefix} next-hop self")

    def _announce(self, prefix: str) -> None:
        self._route_command("announce", prefix)

    def _withdraw(self, prefix: str) -> None:
        self._route_command("withdraw", prefix)

    def _replay(self) -> None:
        with self.events_path.open() as events:
            events.seek(self._offset)
            while True:
                line = events.readline()
                if not line.endswith("\n"):
                    break  # none left, or half written: read it next time
                self._offset = events.tell()
                if line.lstrip().startswith("{"):
                    self._event(json.loads(line))

    def _event(self, event: Mapping[str, Any]) -> None:
        neighbor = event.get("neighbor")
        if not isinstance(neighbor, dict):
            return
        peer = str(ipaddress.ip_address(neighbor["address"]["peer"]))
        if event.get("type") == "state":
            self._session[peer] = str(neighbor.get("state"))
            if neighbor.get("state") == "down":
                self._rib.pop(peer, None)
            return
        update = neighbor.get("message", {}).get("update")
        if event.get("type") != "update" or not isinstance(update, dict):
            return
        rib = self._rib.setdefault(peer, {})
        for nlris in update.get("withdraw", {}).values():
            for nlri in nlris:
                rib.pop(canonical_prefix(_exabgp_nlri(nlri)), None)
        attributes = update.get("attribute", {})
        for by_next_hop in update.get("announce", {}).values():
            # IPv6 routes come under their global and their link-local next hop: global wins.
            hops = sorted(by_next_hop.items(), key=lambda h: not _link_local(h[0]))
            for next_hop, nlris in hops:
                for nlri in nlris:
                    route = _exabgp_route(_exabgp_nlri(nlri), peer, next_hop, attributes)
                    rib[route.prefix] = route

    def session_state(self, neighbor: str | None = None) -> str:
        address = str(ipaddress.ip_address(self.neighbor(neighbor).address))
        self._replay()
        raw = self._session.get(address, "down")
        return {"up": "Established", "connected": "OpenSent"}.get(raw, "Idle")

    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        self._replay()
        want = str(ipaddress.ip_address(neighbor)) if neighbor else None
        result: dict[str, list[Route]] = {}
        for peer, rib in self._rib.items():
            if want is not None and peer != want:
                continue
            for prefix, route in rib.items():
                if family_of(prefix) == family:
                    result.setdefault(prefix, []).append(route)
        return result


def _link_local(address: str) -> bool:
    return ipaddress.ip_address(address).is_link_local


def _exabgp_nlri(nlri: object) -> str:
    return str(nlri["nlri"]) if isinstance(nlri, dict) else str(nlri)


def _exabgp_route(prefix: str, neighbor: str, next_hop: str, attrs: Mapping[str, Any]) -> Route:
    def numbers(value: object) -> list[int]:
        if isinstance(value, dict):  # {"0": {"element": "as-sequence", "value": [...]}, ...}
            return [n for seg in value.values() for n in numbers(seg.get("value", []))]
        return [int(x) for x in value] if isinstance(value, list) else []

    def joined(value: object) -> frozenset[str]:
        items = value if isinstance(value, list) else []
        return frozenset(":".join(str(x) for x in item) for item in items)

    return Route(
        prefix=canonical_prefix(prefix),
        neighbor=neighbor,
        next_hop=next_hop,
        as_path=tuple(numbers(attrs.get("as-path"))),
        local_pref=int_or_none(attrs.get("local-preference")),
        med=int_or_none(attrs.get("med")),
        origin=origin_name(attrs.get("origin")),
        communities=joined(attrs.get("community")),
        large_communities=joined(attrs.get("large-community")),
        originator_id=str(attrs["originator-id"]) if "originator-id" in attrs else None,
        cluster_list=tuple(str(c) for c in attrs.get("cluster-list", [])),
        best=True,
        raw=dict(attrs),
    )
