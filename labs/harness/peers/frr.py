"""FRR (zebra + bgpd, no watchfrr) as a lab peer, and the parser of its per-prefix JSON."""

from __future__ import annotations

import ipaddress
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..lab import LabError
from ..wait import wait_for
from .base import (
    CONNECT_RETRY,
    START_TIMEOUT,
    Peer,
    Route,
    canonical_prefix,
    family_of,
    int_or_none,
    normalise_state,
    numbers_in,
    origin_name,
)

FRR_DIR = Path("/usr/lib/frr")


class FrrPeer(Peer):
    """FRR 8.4 zebra + bgpd started directly (no watchfrr, no frr service), queried with vtysh.

    Both daemons run as user frr (zebra refuses root unless root is in group frrvty) with their
    vty sockets, zserv socket, pid files and configuration in a private directory:

        zebra -u frr -g frr --vty_socket DIR -z DIR/zserv.api -i DIR/zebra.pid -f DIR/zebra.conf
              -P 0 --log file:zebra.log
        bgpd  -u frr -g frr --vty_socket DIR -z DIR/zserv.api -i DIR/bgpd.pid -f DIR/bgpd.conf
              -P 0 --log file:common.log [-n]
        vtysh --vty_socket DIR -d bgpd -c ...

    Without `kernel=True`, bgpd runs with `-n` and installs nothing into the node's FIB.
    """

    kind = "frr"
    log_name = "common.log"
    programs = (str(FRR_DIR / "zebra"), str(FRR_DIR / "bgpd"), "vtysh")

    can_program_kernel = True

    def config(self) -> str:
        lines = [
            "frr defaults traditional",
            f"hostname {self.node.name}-{self.name}",
            "debug bgp neighbor-events",
            "!",
            f"router bgp {self.local_as}",
            f" bgp router-id {self.router_id}",
            " no bgp ebgp-requires-policy",
            " no bgp network import-check",
            " no bgp default ipv4-unicast",
        ]
        neighbors = self.effective_neighbors()
        for n in neighbors:
            a = n.address
            lines.append(f" neighbor {a} remote-as {n.remote_as}")
            lines.append(f" neighbor {a} timers connect {CONNECT_RETRY}")
            if n.port != 179:
                lines.append(f" neighbor {a} port {n.port}")
            if n.local_address:
                lines.append(f" neighbor {a} update-source {n.local_address}")
            if n.passive:
                lines.append(f" neighbor {a} passive")
            if n.password:
                lines.append(f" neighbor {a} password {n.password}")
            if n.hold_time is not None:
                lines.append(f" neighbor {a} timers {max(1, n.hold_time // 3)} {n.hold_time}")
            if n.multihop:
                lines.append(f" neighbor {a} ebgp-multihop {n.multihop}")
            if n.graceful_restart:
                lines.append(f" neighbor {a} graceful-restart")
            if n.extra:
                lines += [f" {x}" for x in n.extra.splitlines()]
        for family in (4, 6):
            lines.append(f" address-family ipv{family} unicast")
            lines += [f"  network {p}" for p in sorted(self.routes[family])]
            for n in neighbors:
                if family in n.afs:
                    lines.append(f"  neighbor {n.address} activate")
                    if n.rr_client:
                        lines.append(f"  neighbor {n.address} route-reflector-client")
                    if n.af_extra:
                        lines += [f"  {x}" for x in n.af_extra.splitlines()]
            lines.append(" exit-address-family")
        lines.append("exit")
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def _daemon_argv(self, daemon: str) -> list[str]:
        d = self.rundir
        return [
            str(FRR_DIR / daemon),
            "-u", "frr", "-g", "frr",
            "--vty_socket", str(d),
            "-z", str(d / "zserv.api"),
            "-i", str(d / f"{daemon}.pid"),
            "-f", str(d / f"{daemon}.conf"),
            "-P", "0",
            "--log", f"file:{self.register_log(self.workdir / f'{daemon}.log')}",
        ]  # fmt: skip

    def _start(self) -> None:
        for stale in ("zserv.api", "zebra.vty", "bgpd.vty"):
            (self.rundir / stale).unlink(missing_ok=True)  # from a previous run of this peer
        (self.rundir / "zebra.conf").write_text(f"hostname {self.node.name}-{self.name}\n")
        (self.rundir / "bgpd.conf").write_text(self.config())
        shutil.chown(self.rundir, "frr", "frr")
        for path in self.rundir.iterdir():
            shutil.chown(path, "frr", "frr")
        self.popen(self._daemon_argv("zebra"), "zebra.out")

        def zebra_listening() -> bool:
            self._check_alive()
            return (self.rundir / "zserv.api").exists()

        wait_for(
            zebra_listening,
            timeout=START_TIMEOUT,
            interval=0.05,
            message=f"{self} zebra socket",
        )
        self.popen(self._daemon_argv("bgpd") + ([] if self.kernel else ["-n"]), "bgpd.out")

    def _ready(self) -> bool:
        self._check_alive()
        return "router bgp" in self.vtysh("show running-config")

    def _after_stop(self) -> None:
        # FRR keeps a crash-log directory per process; a clean exit removes it, SIGKILL does not.
        for proc in self.procs:
            name = self.proc_names[proc.pid]
            shutil.rmtree(f"/var/tmp/frr/{name}.{proc.pid}", ignore_errors=True)

    def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "--vty_socket", str(self.rundir), "-d", "bgpd"]
        for command in commands:
            argv += ["-c", command]
        proc = self.node.run(argv)
        if "% " in proc.stdout and any(
            w in proc.stdout for w in ("% Unknown", "% Invalid", "% Command incomplete")
        ):
            raise LabError(f"{self}: vtysh {commands}: {proc.stdout.strip()}")
        return proc.stdout

    def vtysh_json(self, command: str) -> Any:
        return json.loads(self.vtysh(command))

    def _network(self, prefix: str, no: bool) -> None:
        self.vtysh(
            "configure terminal",
            f"router bgp {self.local_as}",
            f"address-family ipv{family_of(prefix)} unicast",
            f"{'no ' if no else ''}network {prefix}",
        )

    def _announce(self, prefix: str) -> None:
        self._network(prefix, no=False)

    def _withdraw(self, prefix: str) -> None:
        self._network(prefix, no=True)

    def session_state(self, neighbor: str | None = None) -> str:
        address = self.neighbor(neighbor).address
        data = self.vtysh_json(f"show bgp neighbors {address} json")
        assert isinstance(data, dict)
        info: dict[str, Any] = data.get(address) or next(iter(data.values()), {})
        return normalise_state(str(info.get("bgpState", "Unknown")))

    def received_prefixes(self, family: int = 4, neighbor: str | None = None) -> set[str]:
        return set(self._learned(family, neighbor))

    def _learned(self, family: int, neighbor: str | None) -> list[str]:
        """Prefixes with a path from a neighbour, from the (cheap) table view."""
        data = self.vtysh_json(f"show bgp ipv{family} unicast json")
        assert isinstance(data, dict)
        want = ipaddress.ip_address(neighbor) if neighbor else None
        found = []
        for prefix, paths in data.get("routes", {}).items():
            peers = {p.get("peerId") for p in paths} - {None, "(unspec)"}
            if (want is None and peers) or any(ipaddress.ip_address(x) == want for x in peers):
                found.append(canonical_prefix(prefix))
        return found

    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        # The table view lacks communities, ORIGINATOR_ID and CLUSTER_LIST, and 8.4 has no
        # `detail json` for a whole table: ask per prefix, many prefixes per vtysh call.
        want = ipaddress.ip_address(neighbor) if neighbor else None
        prefixes = self._learned(family, neighbor)
        result: dict[str, list[Route]] = {}
        decoder = json.JSONDecoder()
        for start in range(0, len(prefixes), 200):
            batch = prefixes[start : start + 200]
            text = self.vtysh(*(f"show bgp ipv{family} unicast {p} json" for p in batch))
            pos = 0
            while (pos := _skip_space(text, pos)) < len(text):
                entry, pos = decoder.raw_decode(text, pos)
                for path in entry.get("paths", []):
                    route = _frr_route(entry["prefix"], path)
                    if route.neighbor is None:
                        continue  # originated here
                    if want is not None and ipaddress.ip_address(route.neighbor) != want:
                        continue
                    result.setdefault(route.prefix, []).append(route)
        return result


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _frr_route(prefix: str, path: Mapping[str, Any]) -> Route:
    peer = path.get("peer")
    neighbor = None
    if isinstance(peer, dict) and peer.get("peerId") not in (None, "0.0.0.0", "::", "(unspec)"):
        neighbor = str(peer["peerId"])
    nexthops = path.get("nexthops")
    next_hop = None
    if isinstance(nexthops, list) and nexthops:
        next_hop = str(nexthops[0].get("ip"))
    as_path = path.get("aspath")
    community = path.get("community")
    large = path.get("largeCommunity")
    cluster = path.get("clusterList")
    bestpath = path.get("bestpath")  # {"overall": true, ...} in the per-prefix view
    return Route(
        prefix=canonical_prefix(prefix),
        neighbor=neighbor,
        next_hop=next_hop,
        as_path=numbers_in(str(as_path.get("string", ""))) if isinstance(as_path, dict) else (),
        local_pref=int_or_none(path.get("locPrf", path.get("localpref"))),
        med=int_or_none(path.get("med", path.get("metric"))),
        origin=origin_name(path.get("origin")),
        communities=frozenset(str(community.get("string", "")).split())
        if isinstance(community, dict)
        else frozenset(),
        large_communities=frozenset(str(large.get("string", "")).split())
        if isinstance(large, dict)
        else frozenset(),
        originator_id=str(path["originatorId"]) if "originatorId" in path else None,
        cluster_list=tuple(str(c) for c in cluster.get("list", []))
        if isinstance(cluster, dict)
        else (),
        best=bool(bestpath.get("overall")) if isinstance(bestpath, dict) else bool(bestpath),
        raw=dict(path),
    )


class FrrBfdPeer(FrrPeer):
    """FRR with bfdd started beside zebra and bgpd, as FrrPeer starts those (directly, no
    watchfrr: starting it is what bfdd=yes in a daemons file would do), configured from
    `bfdd.conf` and its own control socket, queried with `vtysh -d bfdd`.

    `bfd_peers`: BFD sessions of their own, (peer, local address, interface, interval in ms,
    multiplier). A BGP neighbour with `neighbor ADDR bfd` (in its `extra`) gets one from
    bgpd through zebra instead."""

    programs = (*FrrPeer.programs, str(FRR_DIR / "bfdd"))

    def __init__(
        self,
        *args: Any,
        bfd_peers: list[tuple[str, str, str, int, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.bfd_peers = list(bfd_peers or ())
        self.last_view: dict[str, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)

    def bfdd_config(self) -> str:
        lines = ["bfd"]
        for peer, local, ifname, interval, multiplier in self.bfd_peers:
            lines += [
                f" peer {peer} local-address {local} interface {ifname}",
                f"  receive-interval {interval}",
                f"  transmit-interval {interval}",
                f"  detect-multiplier {multiplier}",
                " exit",
            ]
        return "\n".join([*lines, "exit", ""])

    def _start(self) -> None:
        super()._start()
        conf = self.rundir / "bfdd.conf"
        conf.write_text(self.bfdd_config())
        shutil.chown(conf, "frr", "frr")
        for stale in ("bfdd.vty", "bfdd.sock"):
            (self.rundir / stale).unlink(missing_ok=True)
        self.popen([*self._daemon_argv("bfdd"), "--bfdctl", str(self.rundir / "bfdd.sock")],
                   "bfdd.out")  # fmt: skip

    def _ready(self) -> bool:
        return super()._ready() and "bfd" in self.bfd_vtysh("show running-config")

    def bfd_vtysh(self, command: str) -> str:
        argv = ["vtysh", "--vty_socket", str(self.rundir), "-d", "bfdd", "-c", command]
        return self.node.run(argv).stdout

    def bfd_view(self) -> dict[str, dict[str, Any]]:
        """`show bfd peers json` by peer address; the last answer stays in `last_view`."""
        peers = json.loads(self.bfd_vtysh("show bfd peers json"))
        self.last_view = {str(p["peer"]): p for p in peers}
        return self.last_view
