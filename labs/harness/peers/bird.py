"""BIRD 2 as a lab peer, and the parser of `birdc show route ... all`."""

from __future__ import annotations

import ipaddress
import re
import shlex
import textwrap
from collections.abc import Mapping

from ..lab import LabError
from .base import (
    CONNECT_RETRY,
    Peer,
    Route,
    canonical_prefix,
    normalise_state,
    numbers_in,
    origin_name,
)


def _bird_symbol(address: str) -> str:
    return "n" + re.sub(r"[^0-9A-Za-z]", "_", address)


class BirdPeer(Peer):
    """BIRD 2: `bird -f -c bird.conf -s bird.ctl -P bird.pid`, queried with `birdc -s bird.ctl`.

    Announced routes are `route P blackhole` in a static protocol (BGP next hop: self).
    `kernel=True` adds kernel protocols that export BGP-learned routes into the node's FIB.
    """

    kind = "bird"
    log_name = "bird.log"
    programs = ("bird", "birdc")

    can_program_kernel = True

    def _setup(self) -> None:
        self.config_path = self.workdir / "bird.conf"
        self.socket = self.rundir / "bird.ctl"
        self.pid_file = self.rundir / "bird.pid"

    def protocol_name(self, address: str) -> str:
        return _bird_symbol(str(ipaddress.ip_address(self.neighbor(address).address)))

    def config(self) -> str:
        lines = [
            f'log "{self.log_path}" all;',
            f"router id {self.router_id};",
            "timeformat protocol iso long;",
            "debug protocols { states, events };",
            "protocol device { scan time 10; }",
            # Connected routes resolve iBGP next hops (gateway recursive); they are not exported.
            "protocol direct { ipv4; ipv6; }",
        ]
        for family, channel in ((4, "ipv4"), (6, "ipv6")):
            routes = "".join(f"\n  route {p} blackhole;" for p in sorted(self.routes[family]))
            lines.append(f"protocol static static{family} {{\n  {channel};{routes}\n}}")
            if self.kernel:
                lines.append(
                    f"protocol kernel kernel{family} {{\n  {channel} {{ export where source = "
                    "RTS_BGP; };\n}"
                )
        lines.append("filter bgp_out { if source ~ [RTS_STATIC, RTS_BGP] then accept; reject; }")
        for n in self.effective_neighbors():
            body = [
                f"local as {self.local_as};",
                f"neighbor {n.address} port {n.port} as {n.remote_as};",
            ]
            if n.local_address:
                body.append(f"source address {n.local_address};")
            body += [
                "connect delay time 1;",
                f"connect retry time {CONNECT_RETRY};",
                "error wait time 1, 5;",
            ]
            if n.passive:
                body.append("passive on;")
            if n.password:
                body.append(f'password "{n.password}";')
            if n.hold_time is not None:
                body.append(f"hold time {n.hold_time};")
                body.append(f"keepalive time {max(1, n.hold_time // 3)};")
            if n.rr_client:
                body.append("rr client;")
            if n.multihop:
                body.append(f"multihop {n.multihop};")
            if n.graceful_restart:
                body.append("graceful restart on;")
            for family in n.afs:
                more = f" {n.af_extra}" if n.af_extra else ""
                body.append(f"ipv{family} {{ import all; export filter bgp_out;{more} }};")
            if n.extra:
                body.append(n.extra)
            inner = textwrap.indent("\n".join(body), "  ")
            lines.append(f"protocol bgp {self.protocol_name(n.address)} {{\n{inner}\n}}")
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def _write_config(self) -> None:
        self.config_path.write_text(self.config())
        check = self.node.run(["bird", "-p", "-c", str(self.config_path)], check=False)
        if check.returncode != 0:
            raise LabError(f"{self}: bad config: {check.stderr.strip()}\n{self.config()}")

    def _start(self) -> None:
        self._write_config()
        self.register_log(self.log_path)
        self.popen(
            [
                "bird",
                "-f",
                "-c",
                str(self.config_path),
                "-s",
                str(self.socket),
                "-P",
                str(self.pid_file),
            ],
            "bird.out",
        )

    def _ready(self) -> bool:
        self._check_alive()
        return "BIRD" in self.birdc("show status")

    def birdc(self, command: str) -> str:
        """Run one birdc command; birdc's own failures raise LabError."""
        return self.node.run(["birdc", "-s", str(self.socket), *shlex.split(command)]).stdout

    def reconfigure(self) -> None:
        self._write_config()
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise LabError(f"{self}: birdc configure: {out.strip()}")

    def _announce(self, prefix: str) -> None:
        self.reconfigure()

    def _withdraw(self, prefix: str) -> None:
        self.reconfigure()

    def session_state(self, neighbor: str | None = None) -> str:
        address = self.neighbor(neighbor).address
        out = self.birdc(f"show protocols all {self.protocol_name(address)}")
        match = re.search(r"^\s*BGP state:\s*(\S+)", out, re.M)
        if not match:
            raise LabError(f"{self}: no BGP state in:\n{out}")
        return normalise_state(match.group(1))

    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        where = f"protocol {self.protocol_name(neighbor)}" if neighbor else "where source = RTS_BGP"
        out = self.birdc(f"show route table master{family} {where} all")
        names = {self.protocol_name(n.address): n.address for n in self.neighbors}
        return parse_bird_routes(out, names)


_BIRD_ROUTE_HEAD = re.compile(r"^(\S+)?\s+(\w+) \[(\S+) [^\]]*?\](.*)$")


def parse_bird_routes(text: str, protocols: Mapping[str, str]) -> dict[str, list[Route]]:
    """Parse `birdc show route ... all` output; `protocols` maps protocol names to neighbours."""
    result: dict[str, list[Route]] = {}
    prefix: str | None = None
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None and prefix is not None:
            result.setdefault(prefix, []).append(_bird_route(prefix, current, protocols))

    for line in text.splitlines():
        if not line.strip() or line.startswith(("BIRD ", "Table ")):
            continue
        if line.startswith("\t"):
            if current is None:
                continue
            item = line.strip()
            if item.startswith("via "):
                current["via"] = item.split()[1]
            elif ": " in item:
                key, _, value = item.partition(": ")
                current[key.strip()] = value.strip()
            continue
        head = _BIRD_ROUTE_HEAD.match(line)
        if head is None:
            continue
        flush()
        if head.group(1):
            prefix = canonical_prefix(head.group(1))
        current = {"protocol": head.group(3), "best": head.group(4).lstrip().startswith("*")}
    flush()
    return result


def _bird_route(prefix: str, attrs: Mapping[str, object], protocols: Mapping[str, str]) -> Route:
    def get(key: str) -> str | None:
        value = attrs.get(key)
        return str(value) if value is not None else None

    def pairs(key: str, size: int) -> frozenset[str]:
        numbers = numbers_in(get(key) or "")
        return frozenset(
            ":".join(map(str, numbers[i : i + size])) for i in range(0, len(numbers), size)
        )

    next_hop = get("BGP.next_hop")
    local_pref = get("BGP.local_pref")
    med = get("BGP.med")
    return Route(
        prefix=prefix,
        neighbor=protocols.get(str(attrs["protocol"])),
        next_hop=next_hop.split()[0] if next_hop else None,
        as_path=numbers_in(get("BGP.as_path") or ""),
        local_pref=int(local_pref) if local_pref else None,
        med=int(med) if med else None,
        origin=origin_name(get("BGP.origin")),
        communities=pairs("BGP.community", 2),
        large_communities=pairs("BGP.large_community", 3),
        originator_id=get("BGP.originator_id"),
        cluster_list=tuple((get("BGP.cluster_list") or "").split()),
        best=bool(attrs.get("best")),
        raw=dict(attrs),
    )
