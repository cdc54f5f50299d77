"""bgpd and felix inside the sandbox their unit files describe, as far as it can be built here
without systemd as PID 1, doing their real work:

- capabilities: exactly the unit's CapabilityBoundingSet=/AmbientCapabilities=, and no
  others even though the process keeps uid 0 (securebits noroot: this machine's Python may
  live where only root can read, so the daemons cannot take the pybgpd user here). The
  daemon's /proc/PID/status is checked to hold just those;
- the unit's Group= as the process's group (the control socket's group);
- /proc: a fresh instance with hidepid=invisible (ProtectProc=) and subset=pid where the unit
  says ProcSubset=pid, /proc/sys and /sys read-only (ProtectKernelTunables=);
- system calls and address families: the daemon runs under strace, and every system call it
  made must be one the unit's SystemCallFilter= lets through (resolved with
  `systemd-analyze syscall-filter`), every socket family one of RestrictAddressFamilies=.

bgpd peers with BIRD using TCP MD5, GTSM (ttlSecurity) and BFD (UDP 3784, SO_PRIORITY),
listens on port 179, programs the routes it learns and is reloaded and stopped; felix sweeps
a stale workload route at start, restores a deleted one and keeps its status lease. Not
reproduced: ProtectSystem=strict and the other mount-namespace settings, and the seccomp
filter itself (its effect is checked from the trace instead).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from felix.status import status_key
from felix.workload import PREFIX
from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember
from labs.harness.felix_node import Felix, add_pod
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP = 64201  # stands in for the pybgpd group
# Linux capability numbers (linux/capability.h).
CAP_NUMBERS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}
# Always allowed by systemd's filter (systemd.exec(5), SystemCallFilter=).
IMPLICIT = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}

BGPD_V4, PEER_V4 = "10.0.12.1", "10.0.12.2"
BGPD_AS, PEER_AS = 64512, 65002
BLOCK = "192.168.10.0/26"
PEER_ROUTE = "10.99.2.0/24"
PASSWORD = "s3cret-key"


def unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def need_tools() -> None:
    missing = [
        t for t in ("strace", "setpriv", "unshare", "systemd-analyze") if not shutil.which(t)
    ]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (scripts/setup.sh installs strace, systemd)")


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The system calls of a `@group`, nested groups expanded, as systemd resolves them."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", name],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:  # the first line is the group's own name
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        calls |= syscall_group(word) if word.startswith("@") else {word}
    return frozenset(calls)


def allowed_syscalls(settings: dict[str, list[str]]) -> set[str]:
    """What SystemCallFilter= lets through: the allow-list of the first assignment, less each
    `~` assignment after it."""
    allowed: set[str] | None = None
    for value in settings["SystemCallFilter"]:
        deny = value.startswith("~")
        names = value.lstrip("~").split()
        calls = set().union(*(syscall_group(n) if n.startswith("@") else {n} for n in names))
        if deny:
            assert allowed is not None, "a deny-list first would allow everything else"
            allowed -= calls
        else:
            allowed = calls if allowed is None else allowed | calls
    assert allowed is not None
    return allowed | IMPLICIT


def sandbox(settings: dict[str, list[str]], trace: Path, argv: list[str]) -> list[str]:
    """`argv` run as the unit would run it (see the module docstring), under strace."""
    caps = [c.removeprefix("CAP_").lower() for c in settings["AmbientCapabilities"][0].split()]
    assert (
        settings["CapabilityBoundingSet"][0].split() == settings["AmbientCapabilities"][0].split()
    )
    capset = ",".join(["-all", *(f"+{c}" for c in caps)])
    hidepid = settings["ProtectProc"][0]
    proc_options = f"hidepid={hidepid}"
    if settings.get("ProcSubset") == ["pid"]:
        proc_options += ",subset=pid"
    assert settings["ProtectKernelTunables"] == ["yes"]
    script = (
        "set -e\n"
        f"mount -t proc -o {proc_options} proc /proc\n"
        "if [ -d /proc/sys ]; then mount --bind /proc/sys /proc/sys;"
        " mount -o remount,bind,ro /proc/sys; fi\n"
        "mount -o remount,ro /sys\n"
        'exec "$@"\n'
    )
    setpriv = [
        "setpriv",
        "--no-new-privs",
        f"--regid={GROUP}",
        "--clear-groups",
        "--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked",
        f"--bounding-set={capset}",
        f"--inh-caps={capset}",
        f"--ambient-caps={capset}",
    ]
    strace = ["strace", "-f", "-qq", "-y", "-e", "signal=none", "-o", str(trace)]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sandbox",
        *setpriv,
        "--",
        *strace,
        "--",
        *argv,
    ]


def traced_pid(strace_pid: int) -> int:
    """The daemon: strace's child."""
    children = Path(f"/proc/{strace_pid}/task/{strace_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def check_credentials(pid: int, settings: dict[str, list[str]]) -> None:
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    want = sum(1 << CAP_NUMBERS[c] for c in settings["AmbientCapabilities"][0].split())
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == want, f"{field} {status[field]} vs {want:016x}"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Gid"].split()[0] == str(GROUP)
    assert status["Groups"].strip() == ""


def check_trace(trace: Path, settings: dict[str, list[str]]) -> set[str]:
    """Every system call in the trace passes the unit's filter, every socket family its
    RestrictAddressFamilies=; the calls made."""
    used: set[str] = set()
    families: set[str] = set()
    call = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]")
    family = re.compile(r"^\d+\s+(?:socket|socketpair)\((AF_[A-Z0-9]+)")
    # SQLite hands its -wal/-shm/-journal files to the database's owner when, and only when,
    # it runs as root (os_unix.c robust_fchown), and goes on if that fails: an artefact of
    # the uid 0 here, not made under User=pybgpd.
    sqlite_chown = re.compile(r"^\d+\s+fchown\(\d+<[^>]*-(?:wal|shm|journal)>")
    for line in trace.read_text(errors="replace").splitlines():
        m = call.match(line)
        if m is None or sqlite_chown.match(line):
            continue
        used.add(m.group(1))
        f = family.match(line)
        if f is not None:
            families.add(f.group(1))
    assert {"execve", "socket", "setsockopt"} <= used, sorted(used)  # the trace is real
    denied = used - allowed_syscalls(settings)
    assert not denied, f"system calls the unit's SystemCallFilter= would refuse: {sorted(denied)}"
    assert families <= set(settings["RestrictAddressFamilies"][0].split()), families
    return used


class SandboxedBgpd(Bgpd):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = unit("bgpd.service")
        self.trace = self.dir / "bgpd.strace"

    def argv(self) -> list[str]:
        return sandbox(self.settings, self.trace, super().argv())

    def start(self) -> SandboxedBgpd:
        self.proc = self.node.popen(self.argv(), log_path=self.log_path, label=f"bgpd {self.name}")
        wait_for(
            lambda: self._alive() and self.socket.exists(), 60, message="sandboxed bgpd started"
        )
        return self


@pytest.mark.interop
def test_bgpd_in_its_sandbox(lab: Lab) -> None:
    need_tools()
    if missing_programs(BirdPeer):
        pytest.skip("bird2 not installed")
    a, b = lab.add_node("bgpd"), lab.add_node("peer")
    lab.link(a, b, BGPD_V4, PEER_V4)
    peer = BirdPeer(
        b,
        "10.255.0.2",
        PEER_AS,
        [Neighbor(BGPD_V4, BGPD_AS, password=PASSWORD, extra="ttl security on;\nbfd on;")],
        routes_v4=[PEER_ROUTE],
        extra='protocol bfd {\n  interface "*" { interval 100 ms; multiplier 3; };\n}\n',
    )
    peer.start()
    docs = resources(
        node="node1",
        ipv4=f"{BGPD_V4}/24",
        asn=BGPD_AS,
        peers=[
            {
                "peerIP": PEER_V4,
                "asNumber": PEER_AS,
                "ttlSecurity": 1,
                "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "peer"}},
            }
        ],
        pools=["192.168.0.0/16"],
        blocks=[BLOCK],
    )
    for doc in docs:
        if doc["kind"] == "BGPPeer":
            doc["metadata"]["annotations"] = {"pybgpd.io/bfd": "true"}
    bgpd = SandboxedBgpd(a, "node1", docs, secrets={"bgp-secrets": {"peer": PASSWORD}}).start()
    assert bgpd.proc is not None
    check_credentials(traced_pid(bgpd.proc.pid), bgpd.settings)
    assert os.stat(bgpd.socket).st_gid == GROUP  # the control socket is Group='s
    # Port 179 (NET_BIND_SERVICE), MD5 and GTSM (no capability), the learned route in the
    # FIB (NET_ADMIN), our block at the peer.
    assert ":179" in a.run(["ss", "-Hltn", "sport = :179"]).stdout
    bgpd.wait_established(PEER_V4, timeout=60)
    peer.wait_received(4, [BLOCK])
    wait_for(lambda: PEER_ROUTE in bgpd.kernel_prefixes(4), 30, message="peer route in FIB")
    wait_for(
        lambda: " Up " in bgpd.bgpctl("show", "bfd", "sessions").stdout,
        30,
        message=lambda: "BFD session Up: " + bgpd.bgpctl("show", "bfd", "sessions").stdout,
    )
    # ExecReload= (bgpctl reload: the daemon answers with the outcome), then a graceful stop.
    bgpd.bgpctl("reload")
    bgpd.wait_established(PEER_V4, timeout=30)
    assert bgpd.stop() == 0, bgpd.log_tail()
    check_trace(bgpd.trace, bgpd.settings)


class SandboxedFelix(Felix):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = unit("felix.service")
        self.trace = self.node.workdir / "felix.strace"

    def start(self) -> SandboxedFelix:
        argv = [
            sys.executable,
            "-m",
            "felix.driver",
            "--node",
            self.name,
            "--datastore",
            self.datastore,
            "--resync",
            str(self.resync),
            "--status-interval",
            "1",
            "--log-level",
            "debug",
        ]
        self.proc = self.node.popen(
            sandbox(self.settings, self.trace, argv), log_path=self.log_path, label="felix"
        )
        wait_for(
            lambda: self._alive() and "felix.started" in self.log_path.read_text(errors="replace"),
            60,
            message="sandboxed felix started",
        )
        return self


# The datastore as seen from a lab node (an etcd on the lab's segment is out of reach of the
# test's own namespace): put, delete, get (value and lease) and the keys under a prefix whose
# value holds a text.
_KV = """
import asyncio, json, sys
from calico.store.kv import open_kv
async def main():
    url, method, *args = sys.argv[1:]
    async with open_kv(url) as kv:
        if method == "put":
            await kv.put(args[0], args[1].encode())
        elif method == "delete":
            await kv.delete(args[0])
        elif method == "get":
            item = await kv.get(args[0])
            print(json.dumps(None if item is None else {"lease": item.lease}))
        elif method == "keys":
            items = (await kv.list(args[0])).items
            print(json.dumps([i.key for i in items if args[1].encode() in i.value]))
asyncio.run(main())
"""


def node_kv(node: Node, url: str, method: str, *args: str) -> Any:
    out = node.run([sys.executable, "-c", _KV, url, method, *args]).stdout.strip()
    return json.loads(out) if out else None


def cali_routes(node: Node) -> dict[str, str]:
    return {
        str(r["dst"]): str(r["dev"])
        for r in node.routes(4)
        if str(r.get("dev", "")).startswith("cali")
    }


@pytest.mark.interop
@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_felix_in_its_sandbox(lab: Lab, tmp_path: Path, backend: str) -> None:
    """Both stores: etcd's client is gRPC's C core, with threads and system calls of its own."""
    need_tools()
    if backend == "sqlite":
        host = lab.add_node("host")
        url = f"sqlite://{tmp_path}/calico.db"
    else:
        if ETCD is None:
            pytest.skip(MISSING)
        switch = lab.add_switch("sw")
        host, db = lab.add_node("host"), lab.add_node("db")
        switch.attach(host)
        address = switch.attach(db).v4 or ""
        url = f"etcd://{EtcdMember(tmp_path, host=address, node=db).start().endpoint}"
    res = "/calico/resources/v3/projectcalico.org/"
    pool = {
        "kind": "IPPool",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "pods"},
        "spec": {"cidr": "10.244.0.0/24", "blockSize": 28},
    }
    node_doc = {
        "kind": "Node",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "node1"},
        "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}},
    }
    node_kv(host, url, "put", res + "ippools/pods", json.dumps(pool))
    node_kv(host, url, "put", res + "nodes/node1", json.dumps(node_doc))
    # Pods plumbed by the CNI plugin (as the runtime runs it, outside felix's unit); one's
    # endpoint vanishes while felix is down.
    keep = add_pod(lab, host, "node1", url, "keep")
    stale = add_pod(lab, host, "node1", url, "stale")
    (stale_key,) = node_kv(host, url, "keys", PREFIX, "stale")
    node_kv(host, url, "delete", stale_key)

    felix = SandboxedFelix(host, "node1", url, resync=1.0).start()
    assert felix.proc is not None
    check_credentials(traced_pid(felix.proc.pid), felix.settings)
    wait_for(lambda: stale.address not in cali_routes(host), 30, message="stale route swept")
    assert keep.address in cali_routes(host)
    host.run(["ip", "route", "del", f"{keep.address}/32"])
    wait_for(lambda: keep.address in cali_routes(host), 30, message="route restored")
    status = wait_for(
        lambda: node_kv(host, url, "get", status_key("node1")), 30, message="status written"
    )
    assert status["lease"] != 0
    if shutil.which("nft"):
        # The policy table too, from inside the sandbox: libnftables in-process (ctypes,
        # under MemoryDenyWriteExecute=) and `nft monitor` as a child process.
        log = lambda: felix.log_path.read_text(errors="replace")  # noqa: E731
        wait_for(lambda: "felix.policy_applied" in log(), 30, message="policy table applied")
        assert "table inet felix" in host.run(["nft", "list", "tables"]).stdout
        assert "felix.policy_failed" not in log() and "felix.nft_monitor_failed" not in log()
    assert felix.stop() == 0
    assert node_kv(host, url, "get", status_key("node1")) is None  # lease revoked at stop
    check_trace(felix.trace, felix.settings)
