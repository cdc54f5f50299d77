"""Node-to-node mesh benchmark: N bgpd nodes against N BIRD 2 nodes configured as Calico does.

    sudo python3 bench/mesh_bench.py [--nodes 25,50,100] [--daemons bgpd,bird] [--limit 300]
                                     [--idle 30] [--no-restart] [--no-report]

Per mesh size and daemon: a fresh lab of N network namespaces on one bridge (10.0.0.1-N/24),
node i owning block 192.168.i.0/26 of pool 192.168.0.0/16, every node peering with every other
(iBGP, AS 64512). bgpd: Calico's default node-to-node mesh, every node reading one shared
resource file (as a cluster shares its datastore), FIB on. BIRD 2: the bird.cfg Calico's confd
writes for a mesh node (ipip off), in BIRD 2 syntax, with its kernel protocol.

Measured (see bench/README.md): time from starting the daemons until every node's FIB holds
every other node's block (read through one rtnetlink socket per namespace: a dump, then
events), CPU of all daemons until then, per process the CPU and time until it listened on
port 179, RSS per node, CPU over a quiet window after convergence, and one node's restart
(SIGTERM, then started again) while every FIB is watched for any route that leaves it.
Results merge into bench/results/mesh.json; bench/RESULTS.md and the chart are regenerated.
"""

from __future__ import annotations

import abc
import argparse
import datetime
import ipaddress
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, when imported

import yaml
from fibwatch import FibState, FibWatch, loss_summary
from machine import machine_info, neighbour_tables
from procstat import cpu_seconds, listens, peak_rss_mb, process_tree, run_ns
from report import MESH_DAEMONS, MESH_JSON, RESULTS_JSON, mesh_cell, save_result, write_report

from labs.harness.lab import Lab, Node, missing_tools

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ASN = 64512
SUBNET = "10.0.0.0/24"
POOL = "192.168.0.0/16"
BGP_PORT = 179
TERM_GRACE = 10.0


def node_ip(i: int) -> str:
    return str(ipaddress.IPv4Network(SUBNET)[i])


def node_block(i: int) -> str:
    return f"192.168.{i}.0/26"


def names(count: int) -> list[str]:
    return [f"n{i}" for i in range(1, count + 1)]


# ------------------------------------------------------------------ configurations


def calico_docs(count: int) -> list[dict[str, Any]]:
    """The cluster's Calico resources: the default mesh, one pool, N nodes with a block each."""
    v3 = "projectcalico.org/v3"
    docs: list[dict[str, Any]] = [
        {"apiVersion": v3, "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": True}},
        {"apiVersion": v3, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
         "spec": {"cidr": POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                  "natOutgoing": True, "nodeSelector": "all()"}},
    ]  # fmt: skip
    for i, name in enumerate(names(count), start=1):
        block = node_block(i)
        docs.append({"apiVersion": v3, "kind": "Node", "metadata": {"name": name},
                     "spec": {"bgp": {"ipv4Address": f"{node_ip(i)}/24"}}})  # fmt: skip
        docs.append({"apiVersion": v3, "kind": "BlockAffinity",
                     "metadata": {"name": f"{name}-{block.replace('/', '-')}"},
                     "spec": {"node": name, "cidr": block, "state": "confirmed"}})  # fmt: skip
    return docs


def bird_symbol(ip: str) -> str:
    return "Mesh_" + ip.replace(".", "_")


def calico_bird_config(me: int, count: int, log_path: Path, log_level: str = "info") -> str:
    """BIRD 2's equivalent of what Calico's confd writes for mesh node `me` of `count`
    (compiled_templates/mesh/ipip-off: bird.cfg with bird_aggr.cfg and bird_ipam.cfg inlined).
    Calico's own BIRD is a 1.6 fork: channel options move into `ipv4 { }` blocks, nothing else
    changes. logSeverityScreen Info gives `debug { states }`; warning gives no debug."""
    ip, block = node_ip(me), node_block(me)
    debug = "  debug { states };\n" if log_level in ("info", "debug") else ""
    log_classes = "all" if debug else "{ warning, error, fatal, bug }"
    peers = []
    for other in range(1, count + 1):
        if other == me:
            continue
        peer = node_ip(other)
        # Calico makes the mesh one-directional: the peer with the greater IP *string* listens.
        passive = "  passive on; # Mesh is unidirectional, peer will connect to us.\n" if (
            peer > ip
        ) else ""  # fmt: skip
        peers.append(f"""protocol bgp {bird_symbol(peer)} from bgp_template {{
  neighbor {peer} as {ASN};
  source address {ip};  # The local address we use for the TCP connection
  ttl security off;
  multihop;
  ipv4 {{
    import filter {{
      if (defined(bgp_local_pref)&&(bgp_local_pref > 2147482623)) then
        preference = 200;
      accept;
    }};
    export filter {{
      if (defined(source) && source = RTS_BGP && defined(bgp_local_pref)) then {{
        krt_metric = 2147483647 - bgp_local_pref;
      }} else {{
        if (!defined(krt_metric)) then {{ krt_metric = 1024; }}
        bgp_local_pref = 2147483647 - krt_metric;
      }}
      calico_export_to_bgp_peers(true);
      reject;
    }};  # Only want to export routes for workloads.
  }};
{passive}}}
""")
    return f"""# Calico's mesh bird.cfg for {ip} (bench/mesh_bench.py), in BIRD 2 syntax.
log "{log_path}" {log_classes};
function apply_communities ()
{{
}}
# bird_aggr.cfg: this host's block; export the block, nothing beneath it.
protocol static {{
  ipv4;
  route {block} blackhole;
}}
function calico_aggr ()
{{
      # Block {block} is confirmed
      if ( net = {block} ) then {{ accept; }}
      if ( net ~ {block} && krt_metric < 1024 ) then {{ accept; }}
      if ( net ~ {block} ) then {{ reject; }}
}}
# bird_ipam.cfg
function reject_local_routes () {{
  # Don't export local routes learned via BPF as they should never leave the node.
  if (defined(ifname)) then {{
     if (ifname ~ "bpf*.cali") then {{
        reject;
     }}
  }}
}}
function calico_export_to_bgp_peers(bool internal_peer) {{
  if (internal_peer) then {{
    if (defined(ifname)) then {{
      if ((ifname ~ "*.cali") || (ifname ~ "*.calico") || (ifname ~ "tunl0")) then {{
        reject;
      }}
    }}
  }}
  reject_local_routes();
  apply_communities();
  calico_aggr();
  if (net ~ {POOL}) then {{ accept; }}
}}
filter calico_kernel_programming {{
  if (defined(source) && (source = RTS_BGP) && !defined(krt_metric)) then {{
      krt_metric = 1024;
      if (defined(bgp_local_pref)) then {{
          krt_metric = 2147483647 - bgp_local_pref;
      }}
      if (krt_metric < 1024) then {{
          preference = 200;
      }}
  }}
  if (net ~ {POOL}) then {{ accept; }}
  accept;
}}
router id {ip};
# Configure synchronization between routing tables and kernel.
protocol kernel {{
  learn;             # Learn all alien routes from the kernel
  persist;           # Don't remove routes on bird shutdown
  scan time 2;       # Scan kernel routing table every 2 seconds
  graceful restart;  # Turn on graceful restart to reduce potential flaps
  merge paths on;    # Allow export multipath routes (ECMP)
  ipv4 {{ import all; export filter calico_kernel_programming; }};
}}
# Watch interface up/down events.
protocol device {{
{debug}  scan time 2;    # Scan interfaces every 2 seconds
}}
protocol direct {{
{debug}  ipv4;
  interface -"cali*", -"kube-ipvs*", "*";
}}
# Template for all BGP clients
template bgp bgp_template {{
{debug}  description "Connection to BGP peer";
  local as {ASN};
  graceful restart;  # See comment in kernel section about graceful restart.
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
  ipv4 {{ gateway recursive; add paths on; }};
}}
# ------------- Node-to-node mesh -------------
""" + "".join(peers)


# ------------------------------------------------------------------ daemons in the nodes


class MeshDaemon(abc.ABC):
    """One node's daemon (a single process): start without waiting, Established sessions,
    stop. Its process is this script's child, so its CPU can be read even after it exits."""

    name = ""

    def __init__(self, node: Node, index: int, count: int, log_level: str) -> None:
        self.node = node
        self.index = index
        self.count = count
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.netns_inode = os.stat(f"/run/netns/{node.netns}").st_ino
        self.prepare()

    @abc.abstractmethod
    def prepare(self) -> None:
        """Write what the daemon reads (before the clock starts)."""

    @abc.abstractmethod
    def argv(self) -> list[str]: ...

    @abc.abstractmethod
    def log_path(self) -> Path: ...

    @abc.abstractmethod
    def established(self) -> int:
        """How many of its BGP sessions are Established now."""

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = self.node.popen(self.argv(), log_path=self.log_path(), cwd=ROOT,
                                    env={"PYTHONPATH": str(ROOT)})  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def in_namespace(self) -> bool:
        """Whether the process has entered its node's namespace (`ip netns exec` runs first)."""
        try:
            return os.stat(f"/proc/{self.pid}/ns/net").st_ino == self.netns_inode
        except OSError:
            return False

    def listening(self) -> bool:
        return self.in_namespace() and listens(self.pid, BGP_PORT)

    def cpu(self) -> float:
        """CPU seconds so far, from the scheduler's nanosecond counts of its threads: utime +
        stime come in 10 ms clock ticks, too coarse for 50 BIRDs using 20 ms each."""
        return run_ns(self.pid) / 1e9 if self.running() else 0.0

    def signal_stop(self, sig: int = signal.SIGTERM) -> None:
        if self.running():
            os.killpg(self.pid, sig)

    def reap(self) -> float | None:
        """If the process has exited: reap it and return the CPU seconds it used in all
        (from wait4's rusage); None while it runs. Popen's own poll() would lose the rusage."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return None
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: its CPU is lost, count none
            self.proc.poll()
            return 0.0
        if pid == 0:
            return None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return float(usage.ru_utime + usage.ru_stime)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.node.name}: {self.name} exited with {self.proc.returncode}; "
                f"see {self.log_path()}"
            )


class BgpdDaemon(MeshDaemon):
    name = "bgpd"

    def prepare(self) -> None:
        self.datastore = self.node.lab.workdir / "calico.yaml"  # written once for all nodes
        self.socket = self.node.lab.rundir / f"{self.node.name}.sock"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "bgpd.cli.bgpd_main", "--node", self.node.name,
            "--datastore", f"file://{self.datastore}", "--control-socket", str(self.socket),
            "--log-level", self.log_level,
        ]  # fmt: skip

    def log_path(self) -> Path:
        return self.node.workdir / "bgpd.log"

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)  # a stale socket would answer nothing
        super().start()

    def established(self) -> int:
        from bgpd.cli.client import ClientError, ControlClient

        try:
            with ControlClient(str(self.socket), timeout=5) as client:
                status = client.request("status")
        except ClientError:
            return 0
        return sum(1 for p in status["peers"] if p["bgp_state"] == "Established")


class BirdDaemon(MeshDaemon):
    name = "bird"

    def prepare(self) -> None:
        self.config = self.node.workdir / "bird.conf"
        self.socket = self.node.lab.rundir / f"{self.node.name}-bird.ctl"
        self.config.write_text(
            calico_bird_config(
                self.index, self.count, self.node.workdir / "bird.log", self.log_level
            )
        )

    def argv(self) -> list[str]:
        # -R: graceful restart recovery after a start, as calico-node runs BIRD.
        return ["bird", "-R", "-f", "-c", str(self.config), "-s", str(self.socket),
                "-P", str(self.node.lab.rundir / f"{self.node.name}-bird.pid")]  # fmt: skip

    def log_path(self) -> Path:
        return self.node.workdir / "bird.out"

    def established(self) -> int:
        out = self.node.run(
            ["birdc", "-s", str(self.socket), "show", "protocols"], check=False, timeout=30
        ).stdout
        return sum(
            1
            for line in out.splitlines()
            if line.startswith("Mesh_") and line.split()[-1] == "Established"
        )


DAEMON_CLASSES: dict[str, type[MeshDaemon]] = {"bgpd": BgpdDaemon, "bird": BirdDaemon}


# ------------------------------------------------------------------ one run


def summary(values: list[float]) -> tuple[float | None, float | None]:
    """(median, max), or (None, None) for no values."""
    if not values:
        return None, None
    return statistics.median(values), max(values)


def per_session_ms(cpu: float | None, startup: float | None, count: int) -> dict[str, Any]:
    """CPU over the N(N-1) session ends, with and without the processes' start-up CPU."""
    sessions = count * (count - 1)
    if cpu is None or sessions == 0:
        return {"cpu_per_session_ms": None, "cpu_per_session_after_startup_ms": None}
    after = None if startup is None else max(0.0, cpu - startup) * 1000 / sessions
    return {"cpu_per_session_ms": cpu * 1000 / sessions, "cpu_per_session_after_startup_ms": after}


class MeshRun:
    def __init__(self, lab: Lab, daemon: str, count: int, log_level: str) -> None:
        self.lab = lab
        self.count = count
        switch = lab.add_switch("sw", SUBNET, "fd00:1::/64")
        self.nodes: dict[str, Node] = {}
        for name in names(count):
            node = lab.add_node(name)
            switch.attach(node)
            self.nodes[name] = node
        if daemon == "bgpd":
            datastore = lab.workdir / "calico.yaml"
            datastore.write_text(yaml.safe_dump_all(calico_docs(count), sort_keys=False))
        cls = DAEMON_CLASSES[daemon]
        self.daemons = {
            name: cls(node, i, count, log_level)
            for i, (name, node) in enumerate(self.nodes.items(), start=1)
        }
        if daemon == "bird":
            first = next(iter(self.daemons.values()))
            assert isinstance(first, BirdDaemon)
            check = first.node.run(["bird", "-p", "-c", str(first.config)], check=False)
            if check.returncode != 0:
                raise RuntimeError(f"BIRD rejects the Calico config: {check.stderr.strip()}")
        self.blocks = {name: node_block(i) for i, name in enumerate(self.nodes, start=1)}
        wanted = {n: {b for o, b in self.blocks.items() if o != n} for n in self.nodes}
        self.state = FibState(wanted)
        self.watch = FibWatch({n: node.netns for n, node in self.nodes.items()}, self.state)

    def pids(self) -> list[int]:
        return process_tree([d.pid for d in self.daemons.values() if d.running()])

    def cpu(self) -> float:
        return sum(d.cpu() for d in self.daemons.values())

    def pump_until(self, done: Callable[[], bool], deadline: float, every: float = 0.02) -> bool:
        """Apply route events until `done()` holds (True) or the deadline passes (False)."""
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.watch.pump(min(every, max(0.0, deadline - time.monotonic())))
        return True

    def pause(self, seconds: float) -> None:
        self.pump_until(lambda: False, time.monotonic() + seconds, every=0.2)

    def converge(self, limit: float) -> dict[str, Any]:
        result: dict[str, Any] = {"nodes": self.count, "sessions": self.count * (self.count - 1)}
        own0 = time.process_time()
        start = time.monotonic()
        for d in self.daemons.values():
            d.start()
        result["launch_s"] = time.monotonic() - start
        pending = dict(self.daemons)
        startup_s: dict[str, float] = {}
        startup_cpu: dict[str, float] = {}
        converged_at: float | None = None
        next_look = 0.0

        def step() -> bool:
            nonlocal converged_at, next_look
            now = time.monotonic()
            if pending and now >= next_look:  # /proc reads for the processes not listening yet
                next_look = now + 0.05
                for name, d in list(pending.items()):
                    d.check_alive()
                    if d.listening():
                        startup_cpu[name] = d.cpu()
                        startup_s[name] = time.monotonic() - d.started_at
                        del pending[name]
            if converged_at is None and not self.state.missing:
                converged_at = time.monotonic()
            return converged_at is not None and not pending

        self.pump_until(step, start + limit)
        result["cpu_total_s"] = self.cpu()
        result["cpu_total_ticks_s"] = cpu_seconds(self.pids())  # utime + stime, a cross-check
        result["converge_s"] = None if converged_at is None else converged_at - start
        if converged_at is None:
            result["timeout_s"] = limit
        result["fib_held"] = self.state.held_count
        result["fib_wanted"] = self.state.wanted_count
        result["listening"] = len(startup_s)
        result["startup_cpu_p50_s"], result["startup_cpu_max_s"] = summary([*startup_cpu.values()])
        result["startup_p50_s"], result["startup_max_s"] = summary([*startup_s.values()])
        all_listen = len(startup_cpu) == self.count
        result["startup_cpu_sum_s"] = sum(startup_cpu.values()) if all_listen else None
        result.update(
            per_session_ms(
                result["cpu_total_s"] if converged_at is not None else None,
                result["startup_cpu_sum_s"],
                self.count,
            )
        )
        result["bench_cpu_s"] = time.process_time() - own0
        result["netlink_overflows"] = self.watch.overflows
        return result

    def idle(self, settle: float, window: float) -> dict[str, Any]:
        """CPU per node over `window` seconds, `settle` seconds after convergence; RSS."""
        self.pause(settle)
        before = {name: d.cpu() for name, d in self.daemons.items()}
        began = time.monotonic()
        self.pause(window)
        took = time.monotonic() - began
        pct = [100 * (d.cpu() - before[n]) / took for n, d in self.daemons.items()]
        rss = [peak_rss_mb([d.pid], "VmRSS:") for d in self.daemons.values()]
        hwm = [peak_rss_mb([d.pid]) for d in self.daemons.values()]
        out: dict[str, Any] = {"idle_window_s": took}
        out["idle_pct_mean"] = statistics.fmean(pct) if pct else None
        out["idle_pct_max"] = max(pct) if pct else None
        out["rss_p50_mb"], out["rss_max_mb"] = summary(rss)
        out["hwm_max_mb"] = max(hwm) if hwm else None
        out["rss_total_mb"] = sum(rss)
        return out

    def restart(self, name: str, limit: float, watch_after: float) -> dict[str, Any]:
        """Stop one node's daemon (SIGTERM; SIGKILL after a grace time) and start it again,
        watching every FIB throughout; re-converged once it has all its sessions and every
        FIB holds everything again; then `watch_after` seconds more for late losses."""
        d = self.daemons[name]
        out: dict[str, Any] = {"node": name, "method": "SIGTERM, then started again"}
        cpu0 = self.cpu()
        self.state.track_losses()
        start = time.monotonic()
        deadline = start + limit
        d.signal_stop()
        used: list[float] = []

        def exited() -> bool:
            cpu = d.reap()
            if cpu is not None:
                used.append(cpu)
            return bool(used)

        if not self.pump_until(exited, start + TERM_GRACE, every=0.01):
            d.signal_stop(signal.SIGKILL)
            self.pump_until(exited, time.monotonic() + 10, every=0.01)
            out["killed"] = True
        out["stop_s"] = time.monotonic() - start
        d.start()
        want = self.count - 1
        sessions_at: float | None = None
        next_look = 0.0

        def back() -> bool:
            nonlocal sessions_at, next_look
            now = time.monotonic()
            if sessions_at is None and now >= next_look:
                next_look = now + 0.25
                d.check_alive()
                if d.established() >= want:
                    sessions_at = time.monotonic()
            return sessions_at is not None and not self.state.missing

        ok = self.pump_until(back, deadline)
        out["sessions_s"] = None if sessions_at is None else sessions_at - start
        out["reconverge_s"] = time.monotonic() - start if ok else None
        if not ok:
            out["timeout_s"] = limit
        self.pump_until(lambda: False, time.monotonic() + watch_after, every=0.05)
        out["watched_after_s"] = watch_after
        out["cpu_s"] = self.cpu() + sum(used) - cpu0
        out.update(loss_summary(self.state.losses, time.monotonic(), self.blocks[name]))
        out["overflows"] = self.watch.overflows
        return out

    def close(self) -> None:
        self.watch.close()


def run_one(
    daemon: str,
    count: int,
    args: argparse.Namespace,
    log: Callable[[str], None],
) -> dict[str, Any]:
    workdir = None if args.keep is None else args.keep / f"mesh-{count}-{daemon}"
    with Lab(workdir) as lab:
        began = time.monotonic()
        run = MeshRun(lab, daemon, count, args.log_level)
        log(f"  lab of {count} nodes in {time.monotonic() - began:.1f} s")
        try:
            result = run.converge(args.limit)
            if result["converge_s"] is None:
                log(f"  not converged after {args.limit:.0f} s")
                return result
            log(f"  converged after {result['converge_s']:.2f} s")
            result.update(run.idle(args.settle, args.idle))
            if not args.no_restart:
                name = f"n{(count + 1) // 2}"
                try:
                    result["restart"] = run.restart(name, args.limit, args.watch_after)
                except Exception as exc:  # the measured part above still counts
                    result["restart"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            return result
        finally:
            run.close()


# ------------------------------------------------------------------ command line


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nodes", default="25,50,100", help="comma-separated mesh sizes")
    p.add_argument("--daemons", default=",".join(MESH_DAEMONS), help="comma-separated subset")
    p.add_argument("--limit", type=float, default=300.0, help="seconds to converge, per run")
    p.add_argument("--idle", type=float, default=30.0, help="idle window after convergence (s)")
    p.add_argument("--settle", type=float, default=5.0, help="pause before the idle window (s)")
    p.add_argument("--no-restart", action="store_true", help="skip the one-node restart")
    p.add_argument(
        "--watch-after", type=float, default=10.0,
        help="after re-convergence, go on watching the FIBs this long (s)",
    )  # fmt: skip
    p.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning"),
        help="bgpd's --log-level; BIRD: debug/info give Calico's `debug { states }`",
    )  # fmt: skip
    p.add_argument("--keep", type=Path, help="keep each lab's configs and logs here")
    p.add_argument("--results", type=Path, default=MESH_JSON, help="JSON file to merge into")
    p.add_argument("--rr-results", type=Path, default=RESULTS_JSON, help="for the report")
    p.add_argument("--report-to", type=Path, default=BENCH, help="where RESULTS.md goes")
    p.add_argument("--no-report", action="store_true", help="print results, keep RESULTS.md")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.nodes.split(",")]
    if any(n < 2 or n > 250 for n in sizes):
        p.error("mesh sizes must be 2-250 (one /24, one 192.168.N.0/26 block per node)")
    daemons = args.daemons.split(",")
    bad = [d for d in daemons if d not in DAEMON_CLASSES]
    if bad:
        p.error(f"unknown daemons {', '.join(bad)}; known: {', '.join(DAEMON_CLASSES)}")
    missing = {"bird": missing_tools("bird", "birdc")}
    machine = machine_info()
    with neighbour_tables():
        for count in sizes:
            for daemon in daemons:
                if missing.get(daemon):
                    print(f"mesh-{count}/{daemon}: skipped, missing {missing[daemon]}")
                    continue
                print(f"mesh-{count}/{daemon} (limit {args.limit:.0f} s)", flush=True)
                load = os.getloadavg()[0]
                try:
                    result = run_one(daemon, count, args, lambda t: print(t, flush=True))
                except Exception as exc:  # one failure must not end the run
                    result = {"nodes": count, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                result["machine"] = machine
                result["load"] = round(load, 2)
                result["log_level"] = args.log_level
                print("  " + " | ".join(mesh_cell(result)), flush=True)
                if result.get("error"):
                    print(f"  error: {result['error'][:500]}", flush=True)
                save_result(f"mesh-{count}/{daemon}", result, args.results)
                if not args.no_report:
                    write_report(
                        args.rr_results, args.results, args.report_to / "RESULTS.md",
                        args.report_to / "rr_results.png",
                    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
