"""What every lab BGP daemon shares: the `Peer` life cycle and queries, `Neighbor` sessions,
learned `Route`s, RFC 4271 state names, and the helpers the per-daemon route parsers use."""

from __future__ import annotations

import abc
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from ..lab import LabError, Node, stop_process
from ..wait import wait_for

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


def canonical_prefix(text: str) -> str:
    """`text` as a network in its canonical spelling ("10.0.0.1/24" -> "10.0.0.0/24")."""
    return str(ipaddress.ip_network(text, strict=False))


def origin_name(value: object) -> str | None:
    """ORIGIN as "IGP", "EGP" or "INCOMPLETE", whatever the daemon's spelling."""
    return str(value).upper() if value is not None else None


def numbers_in(text: str) -> tuple[int, ...]:
    """Every decimal number in `text`, in order (AS paths, communities)."""
    return tuple(int(x) for x in re.findall(r"\d+", text))


def int_or_none(value: object) -> int | None:
    """An attribute value as an int; None when absent or not a number."""
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


@dataclass(frozen=True, slots=True)
class Neighbor:
    """One BGP session of a peer. None fields take the peer's defaults.

    `families` defaults to the family of `address` (4 or 6); give (4, 6) for one multiprotocol
    session carrying both. `extra` is appended verbatim to this neighbour's configuration (BIRD
    protocol block, FRR `router bgp` block, GoBGP `[[neighbors]]` table); `af_extra` inside
    each of its address families (BIRD channel block, FRR `address-family` block: `add paths
    rx;`, `neighbor X addpath-tx-all-paths`), for BIRD and FRR only.
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
    af_extra: str = ""

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
            4: {canonical_prefix(p) for p in routes_v4},
            6: {canonical_prefix(p) for p in routes_v6},
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
        want = {canonical_prefix(p) for p in present}
        gone = {canonical_prefix(p) for p in absent}

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
        net = canonical_prefix(prefix)
        self.routes[family_of(net)].add(net)
        if self.running:
            self._announce(net)

    def withdraw(self, prefix: str) -> None:
        net = canonical_prefix(prefix)
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


def missing_programs(peer_type: type[Peer]) -> list[str]:
    """Programs (or Python modules) `peer_type` needs that this machine lacks (skip reasons)."""
    return peer_type.missing()
