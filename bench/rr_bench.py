"""Route-reflector benchmark: bgpd, BIRD, FRR, GoBGP and a byte-forwarding floor side by side.

    sudo python3 bench/rr_bench.py [--scenarios 100x1000,1000x4,...] [--daemons bgpd,bird,...]
                                   [--quick | --storm] [--limit 300] [--no-report]

Per scenario and daemon: a fresh lab of two network namespaces joined by one veth pair, the
reflector (10.0.0.1/16) in one, every client address (10.0.0.2 on) as a secondary address in
the other, where bench/rr_loadgen.py drives M clients x N IPv4 prefixes plus one monitoring
client; in the storm scenarios each client announces as soon as its own session is up (see
rr_scenarios.py). Results merge into bench/results/rr.json (one record per scenario and
daemon, each with the machine, kernel, versions and date of its run) and bench/RESULTS.md +
bench/rr_results.png are regenerated from it (report.py). See bench/README.md.
"""

from __future__ import annotations

import abc
import argparse
import dataclasses
import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, when imported

import yaml
from export_bench import bgp_filter_resource
from machine import machine_info, neighbour_tables
from report import (
    DAEMONS,
    MESH_JSON,
    RESULTS_JSON,
    cell,
    detail,
    save_result,
    storm_cell,
    storm_detail,
    write_report,
)
from rr_scenarios import ALL, QUICK, SCENARIOS, STORM_RUN, Scenario

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
ASN = 64512
RR_ADDRESS = "10.0.0.1"
SUBNET = ipaddress.IPv4Network("10.0.0.0/16")
PREFIX_BASE = "100.64.0.0"  # client routes: 100.64.0.0/10, an IP pool for bgpd's export rules
CHURN_BASE = "100.127.0.0"
POOL = "100.64.0.0/10"
CLUSTER_ID = "224.0.0.1"


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

    def withheld(self, first: int, count: int, plen: int) -> int:
        """How many of the `count` consecutive /`plen` prefixes from `first` (an address as an
        integer) this reflector's policy keeps from the monitor."""
        return 0

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


class BgpdFilterReflector(BgpdReflector):
    """bgpd with a 100-rule BGPFilter on the route-reflector clients' BGPPeer: what export
    policy costs end to end (issue 15: within 1.5x of plain `bgpd` in the same run). The
    rules (bench/export_bench.py) decide few routes; the rest go on to Calico's rules."""

    name = "bgpd-filter"
    rules = 100

    def docs(self) -> list[dict[str, Any]]:
        docs = super().docs()
        for doc in docs:
            if doc["kind"] == "BGPPeer":
                doc["spec"]["filters"] = ["bench"]
        return [*docs, bgp_filter_resource(self.rules)]

    def withheld(self, first: int, count: int, plen: int) -> int:
        # The rules' meaning as Calico's BIRD filter reads it, first match decides, worked
        # out here apart from bgpd so that the monitor's target does not rest on bgpd's engine.
        # A rule's CIDR with its length range is a prefix set, `net ~ [cidr{lo,hi}]`; Equal
        # is the set of the CIDR alone; NotIn and NotEqual match outside their set.
        rules = []
        for rule in bgp_filter_resource(self.rules)["spec"]["exportV4"]:
            net = ipaddress.IPv4Network(rule["cidr"])
            op = rule["matchOperator"]
            lengths = rule.get("prefixLength", {})
            lo = max(net.prefixlen, lengths.get("min", 0))
            hi = lengths.get("max", 32)
            if op in ("Equal", "NotEqual"):
                lo = hi = net.prefixlen
            rules.append((rule["action"] == "Reject", op.startswith("Not"),
                          int(net.network_address), int(net.netmask), lo, hi))  # fmt: skip
        step = 1 << (32 - plen)
        out = 0
        for k in range(count):
            addr = first + k * step
            for reject, negate, net, netmask, lo, hi in rules:
                if ((addr & netmask == net) and lo <= plen <= hi) != negate:
                    out += reject
                    break
        return out


REFLECTORS: dict[str, type[Reflector]] = {
    r.name: r
    for r in (
        FloorReflector,
        BgpdReflector,
        BgpdFilterReflector,
        BirdReflector,
        FrrReflector,
        GobgpReflector,
    )
}


# ------------------------------------------------------------------ one run


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
            "mode": scenario.mode,
            "burst": scenario.burst,
            "stagger_s": scenario.stagger_s,
            "client_log": str(lab.workdir / "clients.json"),
            "time_limit": limit,
            "pids": reflector.pids(),
            "withheld": reflector.withheld(
                int(ipaddress.IPv4Address(PREFIX_BASE)),
                scenario.clients * scenario.prefixes,
                scenario.prefix_len,
            ),
        }
        cfg_path = lab.workdir / "loadgen.json"
        out_path = lab.workdir / "result.json"
        cfg_path.write_text(json.dumps(cfg))
        argv = [sys.executable, str(BENCH / "rr_loadgen.py"), str(cfg_path), str(out_path)]
        timeout = 3 * limit + scenario.churn_seconds + scenario.stagger_s + 600
        proc = load.run(argv, check=False, timeout=timeout)
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


# ------------------------------------------------------------------ command line


def report_paths(args: argparse.Namespace) -> dict[str, Path]:
    where = args.report_to
    return {
        "rr_path": args.results,
        "mesh_path": args.mesh_results,
        "md_path": where / "RESULTS.md",
        "chart_path": where / "rr_results.png",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", help="comma-separated: " + ", ".join(ALL))
    p.add_argument("--daemons", default=",".join(DAEMONS), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="small scenarios, 60 s limit")
    p.add_argument(
        "--storm", action="store_true",
        help="the storm scenarios and their settled counterparts: " + ",".join(STORM_RUN),
    )  # fmt: skip
    p.add_argument("--limit", type=float, default=300.0, help="seconds per daemon and scenario")
    p.add_argument("--gobgp-limit", type=float, help="a shorter limit for GoBGP")
    p.add_argument("--churn-seconds", type=float, help="override the churn duration")
    p.add_argument(
        "--keep", type=Path, help="keep each lab's configs and logs under this directory"
    )
    p.add_argument("--results", type=Path, default=RESULTS_JSON, help="JSON file to merge into")
    p.add_argument(
        "--mesh-results", type=Path, default=MESH_JSON, help="mesh_bench's JSON, for the report"
    )
    p.add_argument(
        "--report-to", type=Path, default=BENCH, help="directory for RESULTS.md and the chart"
    )
    p.add_argument(
        "--profile", type=Path, help="run bgpd under py-spy; collapsed stacks into this directory"
    )
    p.add_argument("--no-report", action="store_true", help="print results, keep RESULTS.md")
    p.add_argument("--report-only", action="store_true", help="regenerate RESULTS.md and exit")
    args = p.parse_args()
    if args.report_only:
        write_report(**report_paths(args))
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.scenarios:
        names = args.scenarios.split(",")
    elif args.storm:
        names = list(STORM_RUN)
    else:
        names = list(QUICK if args.quick else SCENARIOS)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        p.error(f"unknown scenarios {', '.join(unknown)}; known: {', '.join(ALL)}")
    limit = 60.0 if args.quick and args.limit == 300.0 else args.limit
    daemons = args.daemons.split(",")
    bad = [d for d in daemons if d not in REFLECTORS]
    if bad:
        p.error(f"unknown daemons {', '.join(bad)}; known: {', '.join(REFLECTORS)}")
    missing = {
        "bird": missing_tools("bird", "birdc"),
        "frr": missing_tools(str(FRR_DIR / "bgpd"), str(FRR_DIR / "zebra"), "vtysh"),
        "gobgp": missing_tools("gobgpd", "gobgp"),
    }
    machine = machine_info()
    with neighbour_tables():
        for name in names:
            scenario = ALL[name]
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
                if scenario.storm:
                    print("  " + storm_cell(result) + " | " + storm_detail(result), flush=True)
                else:
                    print("  " + cell(result) + " | " + detail(result), flush=True)
                if result.get("error"):
                    print(f"  error: {result['error'][:500]}", flush=True)
                save_result(f"{name}/{daemon}", result, args.results)
                if not args.no_report:
                    write_report(**report_paths(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
