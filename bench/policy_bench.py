"""felix's policy dataplane at scale: 1000 endpoints, 100 policies.

    python3 bench/policy_bench.py [--endpoints 1000] [--policies 100] [--changes 20]

Three figures:

1. compile: the pure part, from resources to the nftables ruleset text (index, compile,
   render), and what one label change costs there (index update, compile, diff);
2. full apply: `nft -f` of the whole table in a fresh network namespace (root);
3. label change end to end: felix runs as a daemon in that namespace against an etcd on its
   loopback; the bench writes one WorkloadEndpoint with a new label and times until
   `nft monitor` (in the namespace) shows the endpoint's address entering the selector's set
   (the kernel holds the new rules). Repeated `--changes` times; median and worst.

The workload: 20 namespaces of 50 pods, each with app (one of 25), tier (web/api/db) and a
named port; 100 policies, namespaced and global, with selector, namespace-selector, port,
named-port, ICMP and nets rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calico.model import parse_resource  # noqa: E402
from felix.dataplane.nft_compile import Compiler, compile_ruleset, diff, render  # noqa: E402
from felix.policy.endpoints import from_workload  # noqa: E402
from felix.policy.index import PolicyIndex  # noqa: E402
from felix.workload import WorkloadEndpoint  # noqa: E402

NODE = "bench"
V3 = "projectcalico.org/v3"
APPS = 25
TIERS = ("web", "api", "db")


def wep_doc(i: int, app: int | None = None) -> dict[str, Any]:
    ns = f"ns{i % 20}"
    pod = f"pod{i}"
    a = i % APPS if app is None else app
    return {
        "kind": "WorkloadEndpoint",
        "apiVersion": V3,
        "metadata": {
            "name": f"{NODE}-k8s-{pod}-eth0",
            "namespace": ns,
            "labels": {
                "app": f"app{a}",
                "tier": TIERS[i % 3],
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s",
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": NODE,
            "pod": pod,
            "endpoint": "eth0",
            "containerID": f"c{i}",
            "interfaceName": f"cali{i:011x}",
            "ipNetworks": [f"10.{48 + i // 65536}.{i // 256 % 256}.{i % 256}/32"],
            "profiles": [f"kns.{ns}", f"ksa.{ns}.default"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    }


def policy_docs(n: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in range(n):
        app, peer, ns = p % APPS, (p * 7 + 3) % APPS, f"ns{p % 20}"
        ingress: list[dict[str, Any]] = [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": f"app == 'app{peer}'"},
                "destination": {"ports": [80, 443, "9000:9100"]},
            },
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}},
        ]
        egress: list[dict[str, Any]] = [
            {"action": "Allow", "destination": {"nets": [f"172.16.{p}.0/24"]}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
            {"action": "Deny"},
        ]
        if p % 4 == 0:
            docs.append(
                {
                    "kind": "GlobalNetworkPolicy",
                    "apiVersion": V3,
                    "metadata": {"name": f"g{p}"},
                    "spec": {
                        "order": p,
                        "selector": f"tier == '{TIERS[p % 3]}' && app == 'app{app}'",
                        "namespaceSelector": "has(projectcalico.org/name)",
                        "ingress": ingress,
                        "egress": egress,
                    },
                }
            )
        else:
            ingress.append(
                {
                    "action": "Allow",
                    "source": {
                        "namespaceSelector": f"projectcalico.org/name == 'ns{(p + 1) % 20}'"
                    },
                }
            )
            docs.append(
                {
                    "kind": "NetworkPolicy",
                    "apiVersion": V3,
                    "metadata": {"name": f"p{p}", "namespace": ns},
                    "spec": {
                        "order": p,
                        "selector": f"app == 'app{app}'",
                        "ingress": ingress,
                        "egress": egress,
                    },
                }
            )
    return docs


def profile_docs() -> list[dict[str, Any]]:
    out = []
    for n in range(20):
        out.append(
            {
                "kind": "Profile",
                "apiVersion": V3,
                "metadata": {"name": f"kns.ns{n}"},
                "spec": {
                    "ingress": [{"action": "Allow"}],
                    "egress": [{"action": "Allow"}],
                    "labelsToApply": {"pcns.projectcalico.org/name": f"ns{n}"},
                },
            }
        )
        out.append(
            {
                "kind": "Profile",
                "apiVersion": V3,
                "metadata": {"name": f"ksa.ns{n}.default"},
                "spec": {},
            }
        )
    return out


def build_index(endpoints: int, policies: int) -> PolicyIndex:
    index = PolicyIndex(NODE)
    for d in profile_docs():
        r = parse_resource(d)
        index.set_profile(r)  # type: ignore[arg-type]
    for d in policy_docs(policies):
        index.set_policy(parse_resource(d))  # type: ignore[arg-type]
    for i in range(endpoints):
        index.set_endpoint(from_workload(WorkloadEndpoint.from_json(json.dumps(wep_doc(i)))))
    return index


def best(fn: Any, repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def pure_figures(args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    t_index, index = best(lambda: build_index(args.endpoints, args.policies), 2)
    t_compile, rs = best(lambda: compile_ruleset(index))
    t_render, text = best(lambda: render(rs))
    compiler = Compiler()  # as felix keeps one
    rs = compiler.compile(index)
    # One label change: endpoint 0 moves to another app.
    changes = []
    for k in range(5):
        t = time.perf_counter()
        wep = WorkloadEndpoint.from_json(json.dumps(wep_doc(0, app=(k + 1) % APPS)))
        index.set_endpoint(from_workload(wep))
        new = compiler.compile(index)
        d = diff(rs, new)
        changes.append(time.perf_counter() - t)
        rs = new
    figures = {
        "index": t_index,
        "compile": t_compile,
        "render": t_render,
        "change": statistics.median(changes),
        "rules": sum(len(c.rules) for c in rs.chains.values()),
        "chains": len(rs.chains),
        "sets": len(rs.sets),
        "bytes": len(text),
        "diff_lines": d.count("\n"),
    }
    return text, figures


def netns(name: str, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *cmd], text=True, capture_output=True, check=True, **kw
    )


def full_apply(ns: str, text: str) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        netns(ns, "nft", "-f", "-", input=text)
        times.append(time.perf_counter() - t)
    return min(times)


async def label_changes(ns: str, workdir: Path, args: argparse.Namespace) -> list[float]:
    port = 23790
    etcd = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "etcd",
            "--data-dir",
            str(workdir / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{port}",
            "--listen-peer-urls",
            "http://127.0.0.1:23800",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    felix = monitor = None
    # etcd listens on the namespace's loopback, so the writer runs in the namespace too.
    writer = workdir / "writer.py"
    writer.write_text(WRITER)
    try:
        for _ in range(100):
            r = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "python3",
                    "-c",
                    f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                ],
                capture_output=True,
            )
            if r.returncode == 0:
                break
            time.sleep(0.1)
        url = f"etcd://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        docs = [
            *profile_docs(),
            *policy_docs(args.policies),
            *(wep_doc(i) for i in range(args.endpoints)),
        ]
        (workdir / "docs.json").write_text(json.dumps(docs))
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                str(writer),
                url,
                "load",
                str(workdir / "docs.json"),
            ],
            check=True,
            env=env,
        )
        log = open(workdir / "felix.log", "w")  # noqa: SIM115
        felix = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-m",
                "felix.driver",
                "--node",
                NODE,
                "--datastore",
                url,
                "--resync",
                "30",
                "--log-level",
                "info",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        deadline = time.monotonic() + 120
        while "felix.started" not in (workdir / "felix.log").read_text():
            if time.monotonic() > deadline or felix.poll() is not None:
                raise RuntimeError(
                    "felix did not start: " + (workdir / "felix.log").read_text()[-2000:]
                )
            time.sleep(0.1)
        results = []
        put_latency: list[float] = []
        monitor = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, "nft", "monitor", stdout=asyncio.subprocess.PIPE
        )
        await asyncio.sleep(0.5)
        assert monitor.stdout is not None
        for k in range(args.changes):
            app = (k + 2) % APPS  # endpoint 1 starts as app1: every change is a change
            i = 1
            address = wep_doc(i)["spec"]["ipNetworks"][0].split("/")[0]
            doc = wep_doc(i, app=app)
            writer_proc = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                str(writer),
                url,
                "put-timed",
                json.dumps(doc),
                env=env,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await writer_proc.communicate()
            # CLOCK_MONOTONIC before the write and once etcd acknowledged it (it is in the
            # datastore: the clock starts there).
            asked, written_at = (float(x) for x in out.decode().split()[-2:])
            put_latency.append(written_at - asked)
            while True:
                line = (await asyncio.wait_for(monitor.stdout.readline(), 10)).decode()
                if "add element inet felix" in line and address in line:
                    seen = time.monotonic()
                    break
            results.append(seen - written_at)
            await asyncio.sleep(0.3)  # let felix finish its pass (endpoint statuses) first
        applied = [
            json.loads(line)
            for line in (workdir / "felix.log").read_text().splitlines()
            if "felix.policy_applied" in line
        ][-args.changes :]
        if applied:
            compile_ms = statistics.median(d["compile_ms"] for d in applied)
            apply_ms = statistics.median(d["apply_ms"] for d in applied)
            print(
                f"  inside felix (median): compile {compile_ms:.1f} ms, nft transaction "
                f"{apply_ms:.1f} ms; the etcd write itself "
                f"{statistics.median(put_latency) * 1000:.1f} ms"
            )
        return results
    finally:
        for p in (felix, etcd):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if monitor is not None and monitor.returncode is None:
            monitor.kill()
            await monitor.wait()


WRITER = r"""
import asyncio, json, sys, time
from calico import resources
from calico.store.kv import open_kv

async def main():
    url, op, arg = sys.argv[1:4]
    async with open_kv(url) as kv:
        if op == "load":
            for d in json.load(open(arg)):
                await resources.apply(kv, d)
        else:
            doc = json.loads(arg)
            from calico.codec import dumps
            from calico import keys
            meta = doc["metadata"]
            key = keys.resource_key("WorkloadEndpoint", meta["name"], meta["namespace"])
            t = time.monotonic()
            await kv.put(key, dumps(doc))
            print(t, time.monotonic())

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    text, f = pure_figures(args)
    print(
        f"ruleset: {f['chains']:.0f} chains, {f['rules']:.0f} rules, {f['sets']:.0f} sets, "
        f"{f['bytes'] / 1e6:.2f} MB of nft text"
    )
    print(
        f"pure: index {f['index'] * 1000:.0f} ms, compile {f['compile'] * 1000:.0f} ms, "
        f"render {f['render'] * 1000:.0f} ms; one label change {f['change'] * 1000:.1f} ms "
        f"(a {f['diff_lines']:.0f}-line transaction)"
    )
    if os.geteuid() != 0 or shutil.which("nft") is None:
        print("not root or no nft: kernel figures skipped")
        return
    ns = f"pyb-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        netns(ns, "ip", "link", "set", "lo", "up")
        t_apply = full_apply(ns, text)
        print(
            f"full apply (nft -f, whole table): {t_apply * 1000:.0f} ms; "
            f"compile + render + apply: {(f['compile'] + f['render'] + t_apply) * 1000:.0f} ms"
        )
        netns(ns, "nft", "delete", "table", "inet", "felix")
        if shutil.which("etcd") is None:
            print("no etcd: label-change figure skipped")
            return
        with tempfile.TemporaryDirectory(prefix="pyb-bench-") as tmp:
            lat = asyncio.run(label_changes(ns, Path(tmp), args))
        print(
            f"label change, in the datastore to in the kernel ({len(lat)} changes): median "
            f"{statistics.median(lat) * 1000:.1f} ms, worst {max(lat) * 1000:.1f} ms"
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns])


if __name__ == "__main__":
    main()
