"""Route-reflector benchmark: bgpd, BIRD, FRR, GoBGP and a byte-forwarding floor side by side.

    sudo python3 bench/rr_bench.py [--scenarios 100x1000,1000x4,...] [--daemons bgpd,bird,...]
                                   [--quick] [--limit 300] [--no-report]

Per scenario and daemon: a fresh lab of two network namespaces joined by one veth pair, the
reflector (10.0.0.1/16) in one, every client address (10.0.0.2 on) as a secondary address in
the other, where bench/rr_loadgen.py drives M clients x N IPv4 prefixes plus one monitoring
client. Results merge into bench/results/rr.json (one record per scenario and daemon, each with
the machine, kernel, versions and date of its run) and bench/RESULTS.md + bench/rr_results.png
are regenerated from it. See bench/README.md.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labs.harness.lab import Lab, Node, missing_tools, stop_process
from labs.harness.peers import (
    FRR_DIR,
    BirdPeer,
    FrrPeer,
    GobgpPeer,
    Neighbor,
    Peer,
)
from labs.harness.wait import wait_for

ROOT = Path(__file__).resolve().parent.parent

BENCH = ROOT / "bench"
RESULTS_JSON = BENCH / "results" / "rr.json"
RESULTS_MD = BENCH / "RESULTS.md"
CHART = BENCH / "rr_results.png"

ASN = 64512
RR_ADDRESS = "10.0.0.1"
SUBNET = ipaddress.IPv4Network("10.0.0.0/16")
PREFIX_BASE = "100.64.0.0"  # client routes: 100.64.0.0/10, an IP pool for bgpd's export rules
CHURN_BASE = "100.127.0.0"
POOL = "100.64.0.0/10"
CLUSTER_ID = "224.0.0.1"
DAEMONS = ("floor", "bgpd", "bird", "frr", "gobgp")
NEIGH_SYSCTLS = {
    "net.ipv4.neigh.default.gc_thresh1": 16384,
    "net.ipv4.neigh.default.gc_thresh2": 32768,
    "net.ipv4.neigh.default.gc_thresh3": 65536,
}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    clients: int
    prefixes: int
    prefix_len: int
    churn_seconds: float = 0.0
    churn_rate: int = 100


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("100x1000", 100, 1000, 32),
        Scenario("10x10000", 10, 10000, 32),
        Scenario("1000x4", 1000, 4, 26),
        Scenario("2000x4", 2000, 4, 26),
        Scenario("5000x4", 5000, 4, 26),
        Scenario("churn", 100, 100, 32, churn_seconds=60),
    )
}
QUICK = {
    s.name: s
    for s in (
        Scenario("20x200", 20, 200, 32),
        Scenario("200x4", 200, 4, 26),
        Scenario("churn-quick", 20, 20, 32, churn_seconds=5),
    )
}


def client_addresses(count: int) -> list[str]:
    """Client addresses from 10.0.0.2 on; the last one is the monitor's."""
    return [str(SUBNET[2 + i]) for i in range(count + 1)]


# ------------------------------------------------------------------ reflectors under test


class Reflector(abc.ABC):
    """One daemon under test in the reflector's namespace."""

    name = ""

    def __init__(self, node: Node, addresses: list[str]) -> None:
        self.node = node
        self.addresses = addresses

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def pids(self) -> list[int]: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    def listening(self) -> bool:
        out = self.node.run(["ss", "-Hltn", "sport = :179"], check=False).stdout
        return "LISTEN" in out


class FloorReflector(Reflector):
    name = "floor"

    def start(self) -> None:
        argv = [sys.executable, str(BENCH / "rr_floor.py"), RR_ADDRESS, "179", str(ASN), RR_ADDRESS]
        self.proc = self.node.popen(argv, label="floor")

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        stop_process(self.proc)


class BgpdReflector(Reflector):
    name = "bgpd"
    extra_args: tuple[str, ...] = ()
    # Set by --profile: run bgpd under py-spy, writing collapsed stacks here.
    profile_out: Path | None = None

    def docs(self) -> list[dict[str, Any]]:
        def node(name: str, ip: str, rr: bool) -> dict[str, Any]:
            bgp: dict[str, Any] = {"ipv4Address": f"{ip}/16"}
            meta: dict[str, Any] = {"name": name}
            if rr:
                bgp["routeReflectorClusterID"] = CLUSTER_ID
                meta["labels"] = {"route-reflector": "true"}
            return {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": meta,
                    "spec": {"bgp": bgp}}  # fmt: skip

        v3 = "projectcalico.org/v3"
        return [
            {"apiVersion": v3, "kind": "BGPConfiguration", "metadata": {"name": "default"},
             "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": False}},
            node("rr", RR_ADDRESS, True),
            *(node(f"client{i}", a, False) for i, a in enumerate(self.addresses)),
            {"apiVersion": v3, "kind": "BGPPeer", "metadata": {"name": "rr-clients"},
             "spec": {"nodeSelector": "has(route-reflector)",
                      "peerSelector": "!has(route-reflector)"}},
            {"apiVersion": v3, "kind": "IPPool", "metadata": {"name": "bench"},
             "spec": {"cidr": POOL}},
        ]  # fmt: skip

    def start(self) -> None:
        workdir = self.node.workdir / "bgpd"
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "calico.yaml"
        config.write_text(yaml.safe_dump_all(self.docs(), sort_keys=False))
        argv = [
            sys.executable, "-m", "bgpd.cli.bgpd_main", "--node", "rr",
            "--datastore", f"file://{config}", "--control-socket",
            str(self.node.lab.rundir / "bgpd.sock"), "--no-fib", "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip
        self.proc = self.node.popen(
            argv, log_path=workdir / "common.log", cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
        )

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        stop_process(self.proc)


def _indexed(peer_class: type[Peer]) -> type[Peer]:
    """The harness's peer class with a dict for `neighbor(address)`: its linear search made
    writing a 5000-neighbour configuration take minutes. The bench gives every neighbour
    its settings explicitly, so no peer-wide defaults need applying."""

    class Indexed(peer_class):  # type: ignore[valid-type,misc]
        def neighbor(self, address: str | None = None) -> Neighbor:
            if address is None:
                return super().neighbor(address)
            index = self.__dict__.get("_by_address")
            if index is None:
                index = self._by_address = {n.address: n for n in self.neighbors}
            found = index.get(address)
            return found if found is not None else super().neighbor(address)

    Indexed.__name__ = peer_class.__name__
    return Indexed


class PeerReflector(Reflector):
    """BIRD, FRR or GoBGP through the lab harness's peer classes (`labs.harness.peers`)."""

    peer_class: type[Peer]

    def start(self) -> None:
        neighbors = [
            Neighbor(a, ASN, passive=True, rr_client=True, password=None, hold_time=None)
            for a in self.addresses
        ]
        cls = _indexed(self.peer_class)
        self.peer = cls(self.node, RR_ADDRESS, ASN, neighbors, name=self.name)
        self.peer.start()

    def pids(self) -> list[int]:
        return [self.peer.bgp_pid]  # the BGP process (FRR: bgpd, not zebra)

    def stop(self) -> None:
        self.peer.stop()


class BirdReflector(PeerReflector):
    name = "bird"
    peer_class = BirdPeer  # no kernel protocol: kernel=False


class FrrReflector(PeerReflector):
    name = "frr"
    peer_class = FrrPeer  # bgpd -n (--no_kernel) without kernel=True


class GobgpReflector(PeerReflector):
    name = "gobgp"
    peer_class = GobgpPeer


REFLECTORS: dict[str, type[Reflector]] = {
    r.name: r for r in (FloorReflector, BgpdReflector, BirdReflector, FrrReflector, GobgpReflector)
}


# ------------------------------------------------------------------ one run


@contextlib.contextmanager
def neighbour_tables() -> Iterator[None]:
    """The kernel's neighbour limits are global: raise them for the run, restore afterwards."""
    old = {}
    for key, value in NEIGH_SYSCTLS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        old[key] = path.read_text().strip()
        if int(old[key]) < value:
            path.write_text(str(value))
    try:
        yield
    finally:
        for key, value in old.items():
            (Path("/proc/sys") / key.replace(".", "/")).write_text(value)


def add_addresses(node: Node, ifname: str, addresses: list[str]) -> None:
    batch = "".join(f"addr add {a}/16 dev {ifname}\n" for a in addresses)
    node.run(["ip", "-batch", "-"], input=batch, timeout=300)


def run_one(
    scenario: Scenario,
    daemon: str,
    limit: float,
    log: Callable[[str], None],
    keep: Path | None = None,
) -> dict[str, Any]:
    addresses = client_addresses(scenario.clients)
    workdir = None if keep is None else keep / f"{scenario.name}-{daemon}"
    with Lab(workdir) as lab:
        rr = lab.add_node("rr")
        load = lab.add_node("load")
        lab.veth(rr, "eth0", load, "eth0")
        rr.add_address("eth0", f"{RR_ADDRESS}/16")
        add_addresses(load, "eth0", addresses)
        for node in (rr, load):
            node.sysctl(**{"net.core.somaxconn": 65535, "net.ipv4.tcp_max_syn_backlog": 65535})
        reflector = REFLECTORS[daemon](rr, addresses)
        started = time.monotonic()
        reflector.start()
        wait_for(reflector.listening, timeout=600, interval=0.2, message=f"{daemon} listening")
        log(f"  {daemon} listening after {time.monotonic() - started:.1f} s")
        spy = None
        if isinstance(reflector, BgpdReflector) and reflector.profile_out is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "-r", "200", "-f", "raw",
                 "-o", str(reflector.profile_out), "-p", str(reflector.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        cfg = {
            "reflector": RR_ADDRESS,
            "port": 179,
            "asn": ASN,
            "clients": addresses[:-1],
            "monitor": addresses[-1],
            "prefixes": scenario.prefixes,
            "prefix_len": scenario.prefix_len,
            "prefix_base": PREFIX_BASE,
            "churn_base": CHURN_BASE,
            "churn_seconds": scenario.churn_seconds,
            "churn_rate": scenario.churn_rate,
            "time_limit": limit,
            "pids": reflector.pids(),
        }
        cfg_path = lab.workdir / "loadgen.json"
        out_path = lab.workdir / "result.json"
        cfg_path.write_text(json.dumps(cfg))
        argv = [sys.executable, str(BENCH / "rr_loadgen.py"), str(cfg_path), str(out_path)]
        proc = load.run(argv, check=False, timeout=3 * limit + scenario.churn_seconds + 600)
        if proc.returncode != 0 or not out_path.exists():
            result: dict[str, Any] = {"error": f"load generator failed: {proc.stderr[-2000:]}"}
        else:
            result = json.loads(out_path.read_text())
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        alive = all(Path(f"/proc/{p}").exists() for p in reflector.pids())
        if not alive:
            result["error"] = result.get("error") or f"{daemon} exited"
        reflector.stop()
    return result


# ------------------------------------------------------------------ machine and versions


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cpu = next(
        (line.split(":", 1)[1].strip()
         for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    from bgpd import __version__

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            "bgpd": f"pybgpd {__version__}",
            "bird": _first_line(["bird", "--version"]),
            "frr": _first_line([str(FRR_DIR / "bgpd"), "--version"]),
            "gobgp": _first_line(["gobgpd", "--version"]),
            "floor": f"bench/rr_floor.py (Python {platform.python_version()})",
        },
    }


# ------------------------------------------------------------------ report


def load_results(path: Path = RESULTS_JSON) -> dict[str, Any]:
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {}


def save_result(key: str, record: dict[str, Any], path: Path = RESULTS_JSON) -> None:
    results = load_results(path)
    results[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=True))


def cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    if r.get("error") and r.get("elapsed_s") is None and "timeout_s" not in r:
        return f"error: {r['error'][:60]}"
    rss = f"{r['rss_mb']:.0f} MB" if r.get("rss_mb") is not None else "?"
    cpu = f"{r['cpu_s']:.2f} CPU-s" if r.get("cpu_s") is not None else "?"
    if r.get("elapsed_s") is None:
        held, want = r.get("routes_held", 0), r.get("routes_wanted", 1)
        text = (
            f"not done after {r.get('timeout_s', 0):.0f} s ({100 * held / want:.0f}%), {cpu}, {rss}"
        )
    else:
        text = f"{r['elapsed_s']:.2f} s, {cpu}, {rss}"
    if "churn" in r:
        c = r["churn"]
        if "p50_ms" in c:
            text += f"; churn p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms"
            if c["arrived"] < c["announced"]:
                text += f" ({c['arrived']}/{c['announced']} arrived)"
    if r.get("drops"):
        text += f"; {r['drops']} sessions dropped"
    return text


def detail(r: dict[str, Any] | None) -> str:
    if r is None or r.get("setup_s") is None:
        return "-"
    first = r.get("first_route_s")
    return (
        f"set-up {r['setup_s']:.2f} s, first route {first:.3f} s"
        if first is not None
        else (f"set-up {r['setup_s']:.2f} s")
    )


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def targets(results: dict[str, Any]) -> list[str]:
    """Issue 8's targets as "met"/"NOT met" lines (or "not measured")."""

    def val(s: str, d: str, field: str) -> float | None:
        r = results.get(f"{s}/{d}")
        return None if r is None else r.get(field)

    def check(label: str, a: float | None, op: str, b: float | None, shown: str) -> str:
        if a is None or b is None:
            return f"{label}: not measured"
        ok = a <= b if op == "<=" else a < b
        return f"{label}: {'met' if ok else 'NOT met'} ({shown})"

    out = []
    for s in ("100x1000", "1000x4"):
        e, be = val(s, "bgpd", "elapsed_s"), val(s, "bird", "elapsed_s")
        c, fc = val(s, "bgpd", "cpu_s"), val(s, "frr", "cpu_s")
        m = val(s, "bgpd", "rss_mb")
        out.append(check(f"{s} elapsed <= BIRD/2", e, "<=", be and be / 2, f"{e} s vs {be} s"))
        out.append(check(f"{s} CPU < 2x FRR", c, "<", fc and 2 * fc, f"{c} vs {fc} CPU-s"))
        out.append(check(f"{s} RSS < 150 MB", m, "<", 150.0 if m else None, f"{m} MB"))
    e, be = val("10x10000", "bgpd", "elapsed_s"), val("10x10000", "bird", "elapsed_s")
    out.append(check("10x10000 elapsed <= 1.5x BIRD", e, "<=", be and be * 1.5, f"{e} vs {be} s"))
    for s in ("2000x4", "5000x4"):
        e, fe = val(s, "bgpd", "elapsed_s"), val(s, "frr", "elapsed_s")
        m, fm = val(s, "bgpd", "rss_mb"), val(s, "frr", "rss_mb")
        out.append(check(f"{s} faster than FRR", e, "<", fe, f"{e} vs {fe} s"))
        out.append(check(f"{s} RSS < FRR/4", m, "<", fm and fm / 4, f"{m} vs {fm} MB"))
        drops = val(s, "bgpd", "drops")
        out.append(check(f"{s} no session dropped", drops, "<=", 0 if drops is not None else None,
                         f"{drops} dropped"))  # fmt: skip
    for s in SCENARIOS:
        e, fl = val(s, "bgpd", "elapsed_s"), val(s, "floor", "elapsed_s")
        if s != "churn":
            out.append(check(f"{s} within 10x floor", e, "<=", fl and fl * 10, f"{e} vs {fl} s"))
    churn = (results.get("churn/bgpd") or {}).get("churn") or {}
    p99 = churn.get("p99_ms")
    out.append(check("churn p99 < 50 ms", p99, "<", 50.0 if p99 is not None else None,
                     f"{p99} ms"))  # fmt: skip
    return [_round(line) for line in out]


def _round(line: str) -> str:
    """Long floats in the check lines to 3 significant digits."""
    import re

    return re.sub(r"\d+\.\d{3,}", lambda m: f"{float(m.group()):.3g}", line)


def render(results: dict[str, Any]) -> None:
    scenarios = [s for s in [*SCENARIOS, *QUICK] if any(k.startswith(f"{s}/") for k in results)]
    daemons = [d for d in DAEMONS if any(k.endswith(f"/{d}") for k in results)]
    lines = [
        "# Route-reflector benchmark results",
        "",
        "Generated by `bench/rr_bench.py` (see bench/README.md) from `bench/results/rr.json`;",
        "each cell is elapsed (first announcement until the monitor holds all M x N routes), the",
        "daemon's CPU seconds in that time, and its peak RSS (VmHWM; FRR: its bgpd process).",
        "The machine may be shared with other jobs (figures vary by +-30% between runs); each",
        "run below names its 1-minute load average at the start where it was recorded.",
        "",
        "| scenario | " + " | ".join(daemons) + " | bgpd/BIRD elapsed | bgpd/FRR elapsed "
        "| bgpd/FRR CPU | bgpd/FRR RSS |",
        "|---" * (len(daemons) + 5) + "|",
    ]
    for s in scenarios:
        row = [cell(results.get(f"{s}/{d}")) for d in daemons]

        def get(d: str, field: str, s: str = s) -> float | None:
            r = results.get(f"{s}/{d}")
            return None if r is None else r.get(field)

        lines.append(
            f"| {s} | " + " | ".join(row) + " | "
            + " | ".join((
                ratio(get("bgpd", "elapsed_s"), get("bird", "elapsed_s")),
                ratio(get("bgpd", "elapsed_s"), get("frr", "elapsed_s")),
                ratio(get("bgpd", "cpu_s"), get("frr", "cpu_s")),
                ratio(get("bgpd", "rss_mb"), get("frr", "rss_mb")),
            )) + " |"
        )  # fmt: skip
    lines += ["", "Session set-up (all M+1 sessions Established) and first-route time:", ""]
    lines.append("| scenario | " + " | ".join(daemons) + " |")
    lines.append("|---" * (len(daemons) + 1) + "|")
    for s in scenarios:
        lines.append(
            f"| {s} | " + " | ".join(detail(results.get(f"{s}/{d}")) for d in daemons) + " |"
        )
    lines += ["", "Issue 8's targets for bgpd, checked on these records:", ""]
    lines += [f"- {text}" for text in targets(results)]
    lines += ["", f"![elapsed per scenario]({CHART.name})", "", "## Runs", ""]
    runs: dict[str, list[tuple[str, str]]] = {}
    for key, r in sorted(results.items()):
        m = r.get("machine", {})
        desc = (
            f"{m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gb')} GB, kernel "
            f"{m.get('kernel')}, Python {m.get('python')}; "
            + ", ".join(f"{k}: {v}" for k, v in m.get("versions", {}).items())
        )
        load = f" (load average {r['load']} at its start)" if "load" in r else ""
        runs.setdefault(desc, []).append((r.get("date", "?"), key + load))
    for desc, dated in runs.items():
        lines.append(f"- {desc}")
        for date, key in sorted(dated):
            lines.append(f"  - {date.replace('T', ' ')}: {key}")
    RESULTS_MD.write_text("\n".join(lines) + "\n")
    chart(results, scenarios, daemons)


def chart(results: dict[str, Any], scenarios: list[str], daemons: list[str]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install .[bench]): no chart", file=sys.stderr)
        return
    scenarios = [s for s in scenarios if not s.startswith("churn")]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / max(1, len(daemons))
    for i, d in enumerate(daemons):
        values = []
        for s in scenarios:
            r = results.get(f"{s}/{d}") or {}
            values.append(r.get("elapsed_s") or r.get("timeout_s") or 0)
        xs = [k + i * width for k in range(len(scenarios))]
        bars = ax.bar(xs, values, width, label=d)
        for bar, s in zip(bars, scenarios, strict=True):
            r = results.get(f"{s}/{d}") or {}
            if r.get("elapsed_s") is None and r.get("timeout_s"):
                bar.set_hatch("//")
    ax.set_yscale("log")
    ax.set_ylabel("seconds until the monitor holds all routes (log; hatched: not done)")
    ax.set_xticks([k + width * (len(daemons) - 1) / 2 for k in range(len(scenarios))])
    ax.set_xticklabels(scenarios)
    ax.legend()
    ax.set_title("iBGP route reflection: M clients x N prefixes")
    fig.tight_layout()
    fig.savefig(CHART, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ command line


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", help="comma-separated: " + ", ".join([*SCENARIOS, *QUICK]))
    p.add_argument("--daemons", default=",".join(DAEMONS), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="small scenarios, 60 s limit")
    p.add_argument("--limit", type=float, default=300.0, help="seconds per daemon and scenario")
    p.add_argument("--gobgp-limit", type=float, help="a shorter limit for GoBGP")
    p.add_argument("--churn-seconds", type=float, help="override the churn duration")
    p.add_argument(
        "--keep", type=Path, help="keep each lab's configs and logs under this directory"
    )
    p.add_argument("--results", type=Path, default=RESULTS_JSON, help="JSON file to merge into")
    p.add_argument(
        "--profile", type=Path, help="run bgpd under py-spy; collapsed stacks into this directory"
    )
    p.add_argument("--no-report", action="store_true", help="print results, keep RESULTS.md")
    p.add_argument("--report-only", action="store_true", help="regenerate RESULTS.md and exit")
    args = p.parse_args()
    if args.report_only:
        render(load_results(args.results))
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    table = {**SCENARIOS, **QUICK}
    names = (
        args.scenarios.split(",") if args.scenarios else list(QUICK if args.quick else SCENARIOS)
    )
    limit = 60.0 if args.quick and args.limit == 300.0 else args.limit
    daemons = args.daemons.split(",")
    missing = {
        "bird": missing_tools("bird", "birdc"),
        "frr": missing_tools(str(FRR_DIR / "bgpd"), str(FRR_DIR / "zebra"), "vtysh"),
        "gobgp": missing_tools("gobgpd", "gobgp"),
    }
    machine = machine_info()
    with neighbour_tables():
        for name in names:
            scenario = table[name]
            if args.churn_seconds and scenario.churn_seconds:
                scenario = dataclasses.replace(scenario, churn_seconds=args.churn_seconds)
            for daemon in daemons:
                if missing.get(daemon):
                    print(f"{name}/{daemon}: skipped, missing {missing[daemon]}")
                    continue
                this_limit = args.gobgp_limit if daemon == "gobgp" and args.gobgp_limit else limit
                if args.profile is not None:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    BgpdReflector.profile_out = args.profile / f"{name}.txt"
                print(f"{name}/{daemon} (limit {this_limit:.0f} s)", flush=True)
                load = os.getloadavg()[0]
                try:
                    result = run_one(
                        scenario, daemon, this_limit, lambda t: print(t, flush=True), args.keep
                    )
                except Exception as exc:  # one daemon's failure must not end the run
                    result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                result["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                result["machine"] = machine
                result["load"] = round(load, 2)
                print("  " + cell(result) + " | " + detail(result), flush=True)
                if result.get("error"):
                    print(f"  error: {result['error'][:500]}", flush=True)
                save_result(f"{name}/{daemon}", result, args.results)
                if not args.no_report:
                    render(load_results(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
