"""Network-namespace labs: nodes, veth links, bridge segments, tracked processes.

Every namespace a `Lab` creates is named `pyb-<lab id>-<name>` and is removed on `close()`,
together with every process running in it, whether the test passed or not. Veth ends are created
directly inside their namespaces, so interface names only have to be unique per node and nothing
ever appears in the host's namespace. Addresses live only inside the lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .wait import wait_for

PREFIX = "pyb-"
# Lab ids whose owner process is alive; a namespace without a live owner is a crashed run's.
REGISTRY = Path("/run/pyb-lab")
# Parent of each lab's socket directory: short, whatever TMPDIR says (unix sockets: 108 bytes).
RUN_PARENT = "/tmp"
IFNAMSIZ = 15
TERM_GRACE = 5.0

Command = Sequence[str] | str

_open_labs: list[Lab] = []
_all_labs: list[Lab] = []


def open_labs() -> list[Lab]:
    """Labs not closed yet (conftest dumps their logs when a test fails)."""
    return list(_open_labs)


def all_labs() -> list[Lab]:
    """Every lab this process created, closed or not, oldest first."""
    return list(_all_labs)


def _argv(cmd: Command) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def _host(
    cmd: Command, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    argv = _argv(cmd)
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class LabError(RuntimeError):
    """A lab command (ip, sysctl, ...) failed."""


def _with_len(
    address: str, default_v4: int, default_v6: int
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if "/" not in address:
        version = ipaddress.ip_address(address).version
        address = f"{address}/{default_v4 if version == 4 else default_v6}"
    return ipaddress.ip_interface(address)


def netns_names() -> list[str]:
    out = _host(["ip", "-j", "netns", "list"]).stdout.strip()
    return [entry["name"] for entry in json.loads(out)] if out else []


def netns_pids(netns: str) -> list[int]:
    proc = _host(["ip", "netns", "pids", netns], check=False)
    return [int(word) for word in proc.stdout.split()] if proc.returncode == 0 else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_processes(netns: str) -> None:
    pids = netns_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not any(_pid_alive(p) for p in pids), timeout=TERM_GRACE, interval=0.05)


def _delete_netns(netns: str) -> None:
    _kill_netns_processes(netns)
    _host(["ip", "netns", "del", netns], check=False)


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete what labs whose owning process died left behind (namespaces with their processes,
    temporary directories); return the namespace names removed."""
    owners: dict[str, int] = {}
    if REGISTRY.is_dir():
        for entry in REGISTRY.iterdir():
            with contextlib.suppress(OSError, ValueError):
                owners[entry.name] = int(entry.read_text().strip())
    dead = {lab_id for lab_id, owner in owners.items() if not _pid_alive(owner)}
    removed = []
    for name in netns_names():
        match = re.fullmatch(re.escape(prefix) + r"([0-9a-f]{6})-\w+", name)
        if not match:
            continue  # not a lab's (another tool may use the same prefix)
        lab_id = match.group(1)
        if lab_id not in owners or lab_id in dead:
            _delete_netns(name)
            removed.append(name)
            dead.add(lab_id)
    for lab_id in dead:
        for parent in {Path(RUN_PARENT), Path(tempfile.gettempdir())}:
            for path in [*parent.glob(f"pyb-{lab_id}-*"), *parent.glob(f"pyb-lab-{lab_id}-*")]:
                shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            (REGISTRY / lab_id).unlink()
    return removed


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One interface of a node with the addresses the lab gave it (bare, no prefix length)."""

    node: Node
    ifname: str
    v4: str | None
    v6: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between two nodes."""

    a: Endpoint
    b: Endpoint


class Node:
    """A network namespace with loopback up, IPv6 enabled and forwarding on."""

    def __init__(self, lab: Lab, name: str, netns: str) -> None:
        self.lab = lab
        self.name = name
        self.netns = netns
        self.workdir = lab.workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._next_if = 0

    def __repr__(self) -> str:
        return f"Node({self.name!r}, netns={self.netns!r})"

    def exec_argv(self, cmd: Command) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *_argv(cmd)]

    def run(
        self,
        cmd: Command,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and capture its output (text)."""
        argv = self.exec_argv(cmd)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise LabError(
                f"[{self.name}] {shlex.join(argv[4:])} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc

    def popen(
        self,
        cmd: Command,
        log_path: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        label: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a background process in the namespace; the lab stops it on close.

        stdout and stderr go to `log_path` (default: <node workdir>/<program>.out), which is
        registered with the lab for the failure log dump. The process leads its own process group,
        so freeze/stop reach any children too.
        """
        argv = self.exec_argv(cmd)
        program = Path(argv[4]).name
        path = Path(log_path) if log_path is not None else self.workdir / f"{program}.out"
        path.parent.mkdir(parents=True, exist_ok=True)
        full_env = None if env is None else {**os.environ, **env}
        with path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        self.lab.track(proc)
        self.lab.register_log(label or f"{self.name}/{program}", path)
        return proc

    def sysctl(self, **settings: str | int) -> None:
        """`node.sysctl(**{"net.ipv4.ip_forward": 1})`; keys use dots."""
        self.run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())])

    def new_ifname(self, stem: str = "eth") -> str:
        name = f"{stem}{self._next_if}"
        self._next_if += 1
        if len(name) > IFNAMSIZ:
            raise LabError(f"interface name {name!r} is longer than {IFNAMSIZ}")
        return name

    def add_address(self, ifname: str, address: str) -> str:
        """Add an address (IPv4 default /24, IPv6 default /64, without DAD); return it bare."""
        iface = _with_len(address, 24, 64)
        cmd = ["ip", "addr", "add", str(iface), "dev", ifname]
        if iface.version == 6:
            cmd.append("nodad")
        self.run(cmd)
        return str(iface.ip)

    def addresses(self, family: int | None = None, scope: str = "global") -> list[str]:
        """Bare addresses of the given family (4, 6 or both) and scope, loopback included."""
        cmd = ["ip", "-j"]
        if family is not None:
            cmd.append(f"-{family}")
        out = self.run([*cmd, "addr", "show"]).stdout
        return [
            info["local"]
            for link in json.loads(out or "[]")
            for info in link.get("addr_info", [])
            if info.get("scope") == scope
        ]

    def routes(
        self, family: int = 4, proto: str | int | None = None, table: str | int = "main"
    ) -> list[dict[str, object]]:
        """`ip -j route show` as parsed JSON, optionally only routes of one protocol."""
        cmd = ["ip", "-j", f"-{family}", "route", "show", "table", str(table)]
        if proto is not None:
            cmd += ["proto", str(proto)]
        out = self.run(cmd).stdout.strip()
        return list(json.loads(out)) if out else []

    def route_prefixes(
        self, family: int = 4, proto: str | int | None = None, table: str | int = "main"
    ) -> set[str]:
        """Destinations of `routes()` as normalised prefixes ("10.1.1.1" becomes "10.1.1.1/32")."""
        result = set()
        for route in self.routes(family, proto, table):
            dst = str(route["dst"])
            if dst == "default":
                dst = "0.0.0.0/0" if family == 4 else "::/0"
            result.add(str(ipaddress.ip_network(dst, strict=False)))
        return result

    def ping(self, address: str, timeout: float = 1.0) -> bool:
        """One echo request; True when answered within `timeout` seconds."""
        proc = self.run(
            ["ping", "-n", "-q", "-c", "1", "-W", f"{timeout:g}", address],
            check=False,
            timeout=timeout + 5,
        )
        return proc.returncode == 0

    def pids(self) -> list[int]:
        return netns_pids(self.netns)

    def capture(self, ifname: str = "any", name: str | None = None) -> Path:
        """Record packets on `ifname` with tcpdump until the lab closes; returns the pcap path
        (a debugging aid: `tcpdump -r` it, or open it in Wireshark)."""
        path = self.workdir / f"{name or ifname}.pcap"
        self.popen(
            ["tcpdump", "-i", ifname, "-n", "-U", "-w", str(path)],
            log_path=self.workdir / f"{path.stem}.tcpdump.out",
        )
        return path


class Switch:
    """A bridge in its own namespace; `attach()` plugs a node into it with a veth pair."""

    def __init__(self, lab: Lab, node: Node, v4_subnet: str, v6_subnet: str) -> None:
        self.lab = lab
        self.node = node
        self.v4_subnet = ipaddress.IPv4Network(v4_subnet)
        self.v6_subnet = ipaddress.IPv6Network(v6_subnet)
        self.ports: list[Endpoint] = []
        node.run(
            [
                "ip",
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ]
        )
        node.run(["ip", "link", "set", "br0", "up"])

    @property
    def name(self) -> str:
        return self.node.name

    def attach(self, node: Node, v4: str | None = None, v6: str | None = None) -> Endpoint:
        """Connect `node`; addresses default to host number (ports so far + 1) in the subnets."""
        index = len(self.ports) + 1
        v4 = v4 or str(self.v4_subnet[index])
        v6 = v6 or str(self.v6_subnet[index])
        ifname = node.new_ifname()
        port = self.node.new_ifname("p")
        self.lab.veth(node, ifname, self.node, port)
        self.node.run(["ip", "link", "set", port, "master", "br0", "up"])
        end = Endpoint(
            node,
            ifname,
            node.add_address(ifname, f"{v4}/{self.v4_subnet.prefixlen}"),
            node.add_address(ifname, f"{v6}/{self.v6_subnet.prefixlen}"),
        )
        node.run(["ip", "link", "set", ifname, "up"])
        self.ports.append(end)
        return end


class Lab:
    """A set of namespaces; use as a context manager (or the `lab` pytest fixture)."""

    def __init__(self, workdir: Path | str | None = None, prefix: str = PREFIX) -> None:
        self.id = secrets.token_hex(3)
        self.prefix = f"{prefix}{self.id}-"
        # Logs and configs; kept after close (pytest's tmp_path) unless the lab made the directory.
        self._own_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"pyb-lab-{self.id}-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Control sockets need short paths (108 bytes) and a directory daemons that drop root
        # (FRR runs as user frr) can enter; pytest's tmp_path is neither.
        self.rundir = Path(tempfile.mkdtemp(prefix=f"pyb-{self.id}-", dir=RUN_PARENT))
        self.rundir.chmod(0o755)
        self.nodes: dict[str, Node] = {}
        self.switches: dict[str, Switch] = {}
        self.links: list[Link] = []
        self.logs: dict[str, Path] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._deferred: list[Callable[[], object]] = []
        self._subnets = 0
        self._closed = False
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / self.id).write_text(f"{os.getpid()}\n")
        _open_labs.append(self)
        _all_labs.append(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _netns(self, name: str) -> str:
        if not name or "-" in name or "/" in name:
            raise LabError(f"bad node name {name!r} (no '-' or '/')")
        if name in self.nodes or name in self.switches:
            raise LabError(f"node {name!r} exists")
        return f"{self.prefix}{name}"

    def add_node(self, name: str) -> Node:
        netns = self._netns(name)
        _host(["ip", "netns", "add", netns])
        node = Node(self, name, netns)
        self.nodes[name] = node
        node.sysctl(
            **{
                # Set before any interface exists so that new interfaces inherit it.
                "net.ipv6.conf.default.accept_dad": 0,
                "net.ipv6.conf.all.accept_dad": 0,
                "net.ipv6.conf.all.disable_ipv6": 0,
                "net.ipv6.conf.default.disable_ipv6": 0,
                "net.ipv4.ip_forward": 1,
                "net.ipv6.conf.all.forwarding": 1,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0,
            }
        )
        node.run(["ip", "link", "set", "lo", "up"])
        return node

    def veth(self, a: Node, a_ifname: str, b: Node, b_ifname: str) -> None:
        """A bare veth pair created straight inside both namespaces, both ends up."""
        _host(
            [
                "ip",
                "link",
                "add",
                a_ifname,
                "netns",
                a.netns,
                "type",
                "veth",
                "peer",
                "name",
                b_ifname,
                "netns",
                b.netns,
            ]
        )
        a.run(["ip", "link", "set", a_ifname, "up"])
        b.run(["ip", "link", "set", b_ifname, "up"])

    def _next_subnet(self) -> int:
        self._subnets += 1
        if self._subnets > 250:
            raise LabError("out of automatic subnets")
        return self._subnets

    def link(
        self,
        a: Node,
        b: Node,
        v4a: str | None = None,
        v4b: str | None = None,
        v6a: str | None = None,
        v6b: str | None = None,
    ) -> Link:
        """Connect two nodes with a veth pair.

        Addresses take "10.0.0.1" (gets /24) or "10.0.0.1/30" forms; IPv6 defaults to /64 and
        is added without DAD. With no address given at all, the link gets 10.200.N.1-2/24 and
        fd00:200:N::1-2/64, N counting links.
        """
        if v4a is v4b is v6a is v6b is None:
            n = self._next_subnet()
            v4a, v4b = f"10.200.{n}.1", f"10.200.{n}.2"
            v6a, v6b = f"fd00:200:{n}::1", f"fd00:200:{n}::2"
        a_if, b_if = a.new_ifname(), b.new_ifname()
        self.veth(a, a_if, b, b_if)
        link = Link(
            Endpoint(a, a_if, v4a and a.add_address(a_if, v4a), v6a and a.add_address(a_if, v6a)),
            Endpoint(b, b_if, v4b and b.add_address(b_if, v4b), v6b and b.add_address(b_if, v6b)),
        )
        self.links.append(link)
        return link

    def add_switch(
        self, name: str, v4_subnet: str | None = None, v6_subnet: str | None = None
    ) -> Switch:
        """A bridge segment; default subnets 10.201.N.0/24 and fd00:201:N::/64."""
        netns = self._netns(name)
        if v4_subnet is None or v6_subnet is None:
            n = self._next_subnet()
            v4_subnet = v4_subnet or f"10.201.{n}.0/24"
            v6_subnet = v6_subnet or f"fd00:201:{n}::/64"
        _host(["ip", "netns", "add", netns])
        node = Node(self, name, netns)
        node.run(["ip", "link", "set", "lo", "up"])
        switch = Switch(self, node, v4_subnet, v6_subnet)
        self.switches[name] = switch
        return switch

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        self._procs.append(proc)

    def defer(self, cleanup: Callable[[], object]) -> None:
        """Run `cleanup` on close, after the processes are stopped (last deferred runs first)."""
        self._deferred.append(cleanup)

    def register_log(self, label: str, path: Path) -> None:
        self.logs[label] = Path(path)

    def log_tails(self, lines: int = 60) -> Iterator[tuple[str, str]]:
        """(label, last lines) for every registered log file that has content."""
        for label, path in self.logs.items():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                yield label, "\n".join(text.splitlines()[-lines:])

    def namespaces(self) -> list[str]:
        return [n.netns for n in self.nodes.values()] + [
            s.node.netns for s in self.switches.values()
        ]

    def close(self) -> None:
        """Stop every tracked process, kill what is left in the namespaces, delete them.

        Every step runs even if an earlier one failed; the first failure is raised at the end.
        """
        if self._closed:
            return
        self._closed = True
        steps: list[Callable[[], object]] = [
            *(lambda p=p: stop_process(p) for p in reversed(self._procs)),
            *(lambda n=n: _delete_netns(n) for n in self.namespaces()),
            *reversed(self._deferred),
            lambda: shutil.rmtree(self.rundir, ignore_errors=True),
        ]
        if self._own_workdir:
            steps.append(lambda: shutil.rmtree(self.workdir, ignore_errors=True))
        errors: list[BaseException] = []
        for step in steps:
            try:
                step()
            except Exception as exc:
                errors.append(exc)
        with contextlib.suppress(OSError):
            (REGISTRY / self.id).unlink()
        if self in _open_labs:
            _open_labs.remove(self)
        if errors:
            raise errors[0]


def stop_process(proc: subprocess.Popen[bytes], grace: float = TERM_GRACE) -> int | None:
    """SIGTERM (and SIGCONT, in case it is frozen) the process group, then SIGKILL after `grace`."""
    if proc.poll() is not None:
        return proc.returncode
    for sig in (signal.SIGTERM, signal.SIGCONT):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(grace)


def missing_tools(*names: str) -> list[str]:
    """The named programs that are not on PATH (or absent as absolute paths)."""
    return [n for n in names if not (os.access(n, os.X_OK) if "/" in n else shutil.which(n))]
