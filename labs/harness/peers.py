"""Real BGP daemons (BIRD 2, FRR, GoBGP, ExaBGP) run inside lab nodes, behind one interface.

Each peer writes its configuration into a directory of its own, starts the daemon in the
foreground inside the node's namespace (no system service, no shared sockets or pid files) and
answers questions through the daemon's own client (birdc, vtysh, gobgp) or, for ExaBGP, through
the JSON its API process records. All of them:

    peer = BirdPeer(node, "10.0.0.1", 65001, [Neighbor("10.0.0.2", 65002)], routes_v4=[...])
    peer.start()                       # returns once the daemon answers its control socket
    peer.wait_established()            # every neighbour (or one: peer.wait_established(addr))
    peer.received_prefixes(4)          # {"10.99.2.0/24", ...}  (learned over BGP only)
    peer.received_routes(6)            # {prefix: [Route(...), ...]} with next hop, AS path, ...
    peer.announce("10.99.1.0/24"); peer.withdraw("10.99.1.0/24")
    peer.freeze(); peer.thaw()         # SIGSTOP/SIGCONT, e.g. to let a hold timer expire
    peer.stop(); peer.kill()           # SIGTERM (clean Cease) / SIGKILL (no NOTIFICATION)
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from .lab import LabError, Node, stop_process
from .wait import wait_for

STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
_CANONICAL = {s.lower(): s for s in STATES}
START_TIMEOUT = 15.0
CONNECT_RETRY = 2  # seconds; small so that tests converge quickly after a peer comes back


def normalise_state(raw: str) -> str:
    """RFC 4271 spelling of a daemon's session state ("ESTABLISHED", "established" ...)."""
    key = raw.strip().lower().replace("_", "").replace(" ", "")
    return _CANONICAL.get(key, raw.strip())


def family_of(address: str) -> int:
    return ipaddress.ip_address(address.split("/")[0]).version


def _prefix(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One BGP session of a peer. None fields take the peer's defaults.

    `families` defaults to the family of `address` (4 or 6); give (4, 6) for one multiprotocol
    session carrying both. `extra` is appended verbatim to this neighbour's configuration (BIRD
    protocol block, FRR `router bgp` block, GoBGP `[[neighbors]]` table).
    """

    address: str
    remote_as: int
    password: str | None = None
    passive: bool | None = None
    hold_time: int | None = None
    families: tuple[int, ...] | None = None
    port: int = 179
    local_address: str | None = None
    rr_client: bool = False
    multihop: int | None = None
    graceful_restart: bool = False
    extra: str = ""

    @property
    def afs(self) -> tuple[int, ...]:
        return self.families or (family_of(self.address),)


@dataclass(frozen=True, slots=True)
class Route:
    """One path a peer learned over BGP."""

    prefix: str
    neighbor: str | None
    next_hop: str | None
    as_path: tuple[int, ...] = ()
    local_pref: int | None = None
    med: int | None = None
    origin: str | None = None  # "IGP", "EGP" or "INCOMPLETE"
    communities: frozenset[str] = frozenset()  # "65000:1"
    large_communities: frozenset[str] = frozenset()  # "65000:1:2"
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    best: bool = False
    raw: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)


NeighborSpec = Neighbor | tuple[str, int]


class Peer(abc.ABC):
    """A BGP daemon in a lab node. Subclasses fill in configuration and queries."""

    kind: ClassVar[str]
    programs: ClassVar[tuple[str, ...]]
    log_name: ClassVar[str]  # the BGP daemon's main log, in workdir
    can_program_kernel: ClassVar[bool] = False

    def __init__(
        self,
        node: Node,
        router_id: str,
        local_as: int,
        neighbors: Iterable[NeighborSpec] = (),
        routes_v4: Iterable[str] = (),
        routes_v6: Iterable[str] = (),
        password: str | None = None,
        passive: bool = False,
        hold_time: int | None = None,
        name: str | None = None,
        kernel: bool = False,
        extra: str = "",
    ) -> None:
        """`kernel`: install BGP-learned routes into the node's FIB (BIRD, FRR only).
        `extra`: configuration text appended verbatim at the end of the daemon's config."""
        if kernel and not self.can_program_kernel:
            raise LabError(f"{type(self).__name__} cannot install routes into the kernel")
        self.kernel = kernel
        self.extra = extra
        self.node = node
        self.router_id = router_id
        self.local_as = local_as
        self.neighbors = [n if isinstance(n, Neighbor) else Neighbor(*n) for n in neighbors]
        self.routes: dict[int, set[str]] = {
            4: {_prefix(p) for p in routes_v4},
            6: {_prefix(p) for p in routes_v6},
        }
        self.password = password
        self.passive = passive
        self.hold_time = hold_time
        self.name = name or self.kind
        self.workdir = node.workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Sockets, pid files (and for FRR, configs) live in the lab's short, traversable rundir.
        self.rundir = node.lab.rundir / f"{node.name}-{self.name}"
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / self.log_name
        self.procs: list[subprocess.Popen[bytes]] = []
        self.proc_names: dict[int, str] = {}
        node.lab.defer(self._after_stop)  # the lab may stop the daemons instead of stop()
        self._setup()

    def _setup(self) -> None:  # noqa: B027 - optional hook
        """Hook: per-daemon paths and state, after the common attributes are set."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.node.name}/{self.name}, AS{self.local_as})"

    @classmethod
    def missing(cls) -> list[str]:
        """What this daemon needs that the machine lacks (for skip reasons)."""
        return [
            p for p in cls.programs if not (os.access(p, os.X_OK) if "/" in p else shutil.which(p))
        ]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- neighbour settings with the peer-wide defaults applied

    def neighbor(self, address: str | None = None) -> Neighbor:
        """The configured neighbour at `address` (the only one when None), defaults applied."""
        if address is None:
            if len(self.neighbors) != 1:
                raise LabError(f"{self}: {len(self.neighbors)} neighbours; name one")
            found = self.neighbors[0]
        else:
            want = ipaddress.ip_address(address)
            matches = [n for n in self.neighbors if ipaddress.ip_address(n.address) == want]
            if not matches:
                raise KeyError(f"{self}: no neighbour {address}")
            found = matches[0]
        return replace(
            found,
            password=found.password if found.password is not None else self.password,
            passive=found.passive if found.passive is not None else self.passive,
            hold_time=found.hold_time if found.hold_time is not None else self.hold_time,
        )

    def effective_neighbors(self) -> list[Neighbor]:
        return [self.neighbor(n.address) for n in self.neighbors]

    # -- life cycle

    def start(self) -> Self:
        if self.running:
            raise LabError(f"{self} is already running")
        self._start()
        try:
            wait_for(
                self._ready,
                timeout=START_TIMEOUT,
                interval=0.1,
                message=lambda: f"{self} to answer its control socket\n{self.log_tail()}",
                ignore=(LabError, OSError, ValueError, subprocess.SubprocessError),
            )
        except BaseException:
            self.stop()
            raise
        self._after_start()
        return self

    @property
    def running(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def _check_alive(self) -> None:
        dead = [p for p in self.procs if p.poll() is not None]
        if dead:
            codes = ", ".join(f"{self.proc_names[p.pid]}={p.returncode}" for p in dead)
            raise DaemonExited(f"{self} exited ({codes})\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (the daemon closes its sessions with a Cease), SIGKILL after a grace time."""
        for proc in reversed(self.procs):
            stop_process(proc)
        self._after_stop()
        self.procs = []

    def kill(self) -> None:
        """SIGKILL: the sessions drop without a NOTIFICATION (like a crash or power loss)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(10)
        self._after_stop()
        self.procs = []

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def freeze(self) -> None:
        """SIGSTOP the BGP process: it stops sending keepalives and answering."""
        os.kill(self.bgp_pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.bgp_pid, signal.SIGCONT)

    @property
    def bgp_pid(self) -> int:
        if not self.running:
            raise LabError(f"{self} is not running")
        return self.procs[-1].pid

    def register_log(self, path: Path) -> Path:
        """Make a daemon-written log part of the failure dump."""
        self.node.lab.register_log(f"{self.node.name}/{self.name}/{path.name}", path)
        return path

    def popen(
        self, argv: Sequence[str], log_name: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        proc = self.node.popen(
            argv,
            log_path=self.workdir / log_name,
            env=env,
            label=f"{self.node.name}/{self.name}/{log_name}",
        )
        self.procs.append(proc)
        self.proc_names[proc.pid] = Path(argv[0]).name
        return proc

    def _after_start(self) -> None:  # noqa: B027 - optional hook
        """Hook: things to do once the daemon answers (GoBGP adds its routes here)."""

    def _after_stop(self) -> None:  # noqa: B027 - optional hook
        """Hook: clean-up once the processes are gone."""

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _ready(self) -> bool: ...

    # -- queries

    @abc.abstractmethod
    def session_state(self, neighbor: str | None = None) -> str:
        """RFC 4271 state name of the session with `neighbor` (see `STATES`)."""

    @abc.abstractmethod
    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        """Paths learned over BGP (from every neighbour, or from `neighbor`), by prefix."""

    def received_prefixes(self, family: int = 4, neighbor: str | None = None) -> set[str]:
        return set(self.received_routes(family, neighbor))

    def established(self, neighbor: str | None = None) -> bool:
        return self.session_state(neighbor) == "Established"

    def wait_established(self, neighbor: str | None = None, timeout: float = 30.0) -> None:
        """Wait for the session with `neighbor`, or with every neighbour when None."""
        addresses = [neighbor] if neighbor else [n.address for n in self.neighbors]

        def all_up() -> bool:
            self._check_alive()
            return all(self.established(a) for a in addresses)

        wait_for(
            all_up,
            timeout=timeout,
            message=lambda: f"{self} sessions {self._states(addresses)} to be Established",
        )

    def wait_state(self, state: str, neighbor: str | None = None, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.session_state(neighbor) == state,
            timeout=timeout,
            message=lambda: (
                f"{self} session {neighbor} ({self.session_state(neighbor)}) to be {state}"
            ),
        )

    def wait_not_established(self, neighbor: str | None = None, timeout: float = 30.0) -> None:
        """Wait for the session with `neighbor`, or with every neighbour, to be down."""
        addresses = [neighbor] if neighbor else [n.address for n in self.neighbors]
        wait_for(
            lambda: not any(self.established(a) for a in addresses),
            timeout=timeout,
            message=lambda: f"{self} sessions {self._states(addresses)} to leave Established",
        )

    def wait_received(
        self,
        family: int,
        present: Iterable[str] = (),
        absent: Iterable[str] = (),
        neighbor: str | None = None,
        timeout: float = 30.0,
    ) -> set[str]:
        """Wait until every `present` prefix is received and no `absent` one is."""
        want = {_prefix(p) for p in present}
        gone = {_prefix(p) for p in absent}

        def ok() -> tuple[set[str], ...]:
            got = self.received_prefixes(family, neighbor)
            return (got,) if want <= got and not gone & got else ()

        (result,) = wait_for(
            ok,
            timeout=timeout,
            message=lambda: (
                f"{self} to receive {sorted(want)} and not {sorted(gone)}; has "
                f"{sorted(self.received_prefixes(family, neighbor))}"
            ),
        )
        return result

    def _states(self, addresses: Sequence[str]) -> dict[str, str]:
        states = {}
        for address in addresses:
            try:
                states[address] = self.session_state(address)
            except Exception as exc:
                states[address] = f"? ({exc})"
        return states

    # -- announcements

    def announce(self, prefix: str) -> None:
        net = _prefix(prefix)
        self.routes[family_of(net)].add(net)
        if self.running:
            self._announce(net)

    def withdraw(self, prefix: str) -> None:
        net = _prefix(prefix)
        self.routes[family_of(net)].discard(net)
        if self.running:
            self._withdraw(net)

    @abc.abstractmethod
    def _announce(self, prefix: str) -> None: ...

    @abc.abstractmethod
    def _withdraw(self, prefix: str) -> None: ...

    # -- debugging

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*.log")) + sorted(self.workdir.glob("*.out")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


class DaemonExited(LabError):
    """A peer daemon died while a test waited on it."""


# ---------------------------------------------------------------- BIRD 2


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
                body.append(f"ipv{family} {{ import all; export filter bgp_out; }};")
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
            prefix = _prefix(head.group(1))
        current = {"protocol": head.group(3), "best": head.group(4).lstrip().startswith("*")}
    flush()
    return result


def _origin(value: object) -> str | None:
    """ORIGIN as "IGP", "EGP" or "INCOMPLETE", whatever the daemon's spelling."""
    return str(value).upper() if value is not None else None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def _bird_route(prefix: str, attrs: Mapping[str, object], protocols: Mapping[str, str]) -> Route:
    def get(key: str) -> str | None:
        value = attrs.get(key)
        return str(value) if value is not None else None

    def pairs(key: str, size: int) -> frozenset[str]:
        numbers = _ints(get(key) or "")
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
        as_path=_ints(get("BGP.as_path") or ""),
        local_pref=int(local_pref) if local_pref else None,
        med=int(med) if med else None,
        origin=_origin(get("BGP.origin")),
        communities=pairs("BGP.community", 2),
        large_communities=pairs("BGP.large_community", 3),
        originator_id=get("BGP.originator_id"),
        cluster_list=tuple((get("BGP.cluster_list") or "").split()),
        best=bool(attrs.get("best")),
        raw=dict(attrs),
    )


# ---------------------------------------------------------------- FRR


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
                found.append(_prefix(prefix))
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
        prefix=_prefix(prefix),
        neighbor=neighbor,
        next_hop=next_hop,
        as_path=_ints(str(as_path.get("string", ""))) if isinstance(as_path, dict) else (),
        local_pref=_int_or_none(path.get("locPrf", path.get("localpref"))),
        med=_int_or_none(path.get("med", path.get("metric"))),
        origin=_origin(path.get("origin")),
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


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


# ---------------------------------------------------------------- GoBGP


class GobgpPeer(Peer):
    """GoBGP 3.10: `gobgpd -f gobgpd.toml -t toml --api-hosts unix://DIR/api.sock -p
    --pprof-disable`, queried with `gobgp --target unix://DIR/api.sock ... -j`.

    GoBGP's configuration has no static routes: they are added with `gobgp global rib add`
    once the API answers (GoBGP replaces the 0.0.0.0 / :: next hop with its session address).
    """

    kind = "gobgp"
    log_name = "gocommon.log"
    programs = ("gobgpd", "gobgp")

    def _setup(self) -> None:
        self.config_path = self.workdir / "gobgpd.toml"
        self.target = f"unix://{self.rundir / 'api.sock'}"

    def config(self) -> str:
        out = [
            "[global.config]",
            f"  as = {self.local_as}",
            f'  router-id = "{self.router_id}"',
        ]
        for n in self.effective_neighbors():
            out += [
                "",
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{n.address}"',
                f"    peer-as = {n.remote_as}",
            ]
            if n.password:
                out.append(f'    auth-password = "{n.password}"')
            out += [
                "  [neighbors.timers.config]",
                f"    connect-retry = {CONNECT_RETRY}",
                "    idle-hold-time-after-reset = 1",
            ]
            if n.hold_time is not None:
                out.append(f"    hold-time = {n.hold_time}")
                out.append(f"    keepalive-interval = {max(1, n.hold_time // 3)}")
            out.append("  [neighbors.transport.config]")
            out.append(f"    passive-mode = {str(bool(n.passive)).lower()}")
            if n.port != 179:
                out.append(f"    remote-port = {n.port}")
            if n.local_address:
                out.append(f'    local-address = "{n.local_address}"')
            if n.multihop:
                out += [
                    "  [neighbors.ebgp-multihop.config]",
                    "    enabled = true",
                    f"    multihop-ttl = {n.multihop}",
                ]
            if n.rr_client:
                out += [
                    "  [neighbors.route-reflector.config]",
                    "    route-reflector-client = true",
                    f'    route-reflector-cluster-id = "{self.router_id}"',
                ]
            if n.graceful_restart:
                out += [
                    "  [neighbors.graceful-restart.config]",
                    "    enabled = true",
                    "    restart-time = 120",
                ]
            for family in n.afs:
                out += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "ipv{family}-unicast"',
                ]
                if n.graceful_restart:
                    out += [
                        "    [neighbors.afi-safis.mp-graceful-restart.config]",
                        "      enabled = true",
                    ]
            if n.extra:
                out.append(n.extra)
        if self.extra:
            out.append(self.extra)
        return "\n".join(out) + "\n"

    def _start(self) -> None:
        self.config_path.write_text(self.config())
        (self.rundir / "api.sock").unlink(missing_ok=True)
        self.popen(
            [
                "gobgpd", "-f", str(self.config_path), "-t", "toml",
                "--api-hosts", self.target, "-p", "--pprof-disable",
            ],
            "gocommon.log",
        )  # fmt: skip

    def gobgp(self, *args: str) -> str:
        return self.node.run(["gobgp", "--target", self.target, *args]).stdout

    def gobgp_json(self, *args: str) -> Any:
        out = self.gobgp(*args, "-j").strip()
        return json.loads(out) if out else None

    def _ready(self) -> bool:
        self._check_alive()
        data = self.gobgp_json("global")
        return isinstance(data, dict) and data.get("asn") == self.local_as

    def _after_start(self) -> None:
        for family in (4, 6):
            for prefix in sorted(self.routes[family]):
                self._announce(prefix)

    def _announce(self, prefix: str) -> None:
        self.gobgp("global", "rib", "add", "-a", f"ipv{family_of(prefix)}", prefix)

    def _withdraw(self, prefix: str) -> None:
        self.gobgp("global", "rib", "del", "-a", f"ipv{family_of(prefix)}", prefix)

    def session_state(self, neighbor: str | None = None) -> str:
        address = self.neighbor(neighbor).address
        data = self.gobgp_json("neighbor", address)
        assert isinstance(data, dict)
        state = data.get("state", {}).get("session_state", "unknown")
        if isinstance(state, int):  # the gRPC enum: 1 idle ... 6 established
            names = {1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent", 5: "OpenConfirm"}
            return names.get(state, "Established" if state == 6 else f"Unknown({state})")
        return normalise_state(str(state))

    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        data = self.gobgp_json("global", "rib", "-a", f"ipv{family}")
        want = ipaddress.ip_address(neighbor) if neighbor else None
        result: dict[str, list[Route]] = {}
        for prefix, paths in (data or {}).items():
            for path in paths:
                route = _gobgp_route(prefix, path)
                if route.neighbor is None:
                    continue
                if want is not None and ipaddress.ip_address(route.neighbor) != want:
                    continue
                result.setdefault(route.prefix, []).append(route)
        return result


def _gobgp_route(prefix: str, path: Mapping[str, Any]) -> Route:
    source = path.get("neighbor-ip") or path.get("source-id")
    neighbor = None if source in (None, "", "<nil>", "0.0.0.0", "::") else str(source)
    values: dict[int, Mapping[str, Any]] = {}
    for attr in path.get("attrs", []):
        values[int(attr["type"])] = attr
    next_hop = values.get(3, {}).get("nexthop") or values.get(14, {}).get("nexthop")
    as_path: list[int] = []
    for segment in values.get(2, {}).get("as_paths", []):
        as_path += [int(x) for x in segment.get("asns", [])]
    communities = frozenset(
        f"{c >> 16}:{c & 0xFFFF}" for c in values.get(8, {}).get("communities", [])
    )
    large = frozenset(
        f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}"
        for c in values.get(32, {}).get("values", [])
    )
    origin = values.get(1, {}).get("value")
    return Route(
        prefix=_prefix(prefix),
        neighbor=neighbor,
        next_hop=str(next_hop) if next_hop else None,
        as_path=tuple(as_path),
        local_pref=_int_or_none(values.get(5, {}).get("value")),
        med=_int_or_none(values.get(4, {}).get("metric")),
        origin={0: "IGP", 1: "EGP", 2: "INCOMPLETE"}.get(origin)
        if isinstance(origin, int)
        else None,
        communities=communities,
        large_communities=large,
        originator_id=str(values[9]["value"]) if 9 in values else None,
        cluster_list=tuple(str(c) for c in values.get(10, {}).get("value", [])),
        best=bool(path.get("best")),
        raw=dict(path),
    )


# ---------------------------------------------------------------- ExaBGP


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
                rib.pop(_prefix(_exabgp_nlri(nlri)), None)
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
        prefix=_prefix(prefix),
        neighbor=neighbor,
        next_hop=next_hop,
        as_path=tuple(numbers(attrs.get("as-path"))),
        local_pref=_int_or_none(attrs.get("local-preference")),
        med=_int_or_none(attrs.get("med")),
        origin=_origin(attrs.get("origin")),
        communities=joined(attrs.get("community")),
        large_communities=joined(attrs.get("large-community")),
        originator_id=str(attrs["originator-id"]) if "originator-id" in attrs else None,
        cluster_list=tuple(str(c) for c in attrs.get("cluster-list", [])),
        best=True,
        raw=dict(attrs),
    )


PEER_TYPES: dict[str, type[Peer]] = {
    "bird": BirdPeer,
    "frr": FrrPeer,
    "gobgp": GobgpPeer,
    "exabgp": ExabgpPeer,
}


def missing_programs(peer_type: type[Peer]) -> list[str]:
    """Programs (or Python modules) `peer_type` needs that this machine lacks (skip reasons)."""
    return peer_type.missing()


__all__ = [
    "STATES",
    "BirdPeer",
    "DaemonExited",
    "ExabgpPeer",
    "FrrPeer",
    "GobgpPeer",
    "Neighbor",
    "Peer",
    "Route",
    "missing_programs",
    "normalise_state",
]
