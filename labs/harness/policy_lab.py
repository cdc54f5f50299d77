"""A two-node cluster for policy labs: nodes n1 and n2 on one segment, each with felix; an
outside host `ext` beside them (in no pool); pods made by felix-cni, each running the
probe agent (servers on a few ports, probes from inside the pod on request). Pods reach
pods of the other node over static /32 routes (BGP is not what these labs test).

Two pools: `masq` (natOutgoing) and `plain`. The datastore is a SQLite file every
namespace sees; resources are written in-process through calico.resources (what
`bgpctl apply` runs), and a change counts as in force once both felixes have logged
`felix.synced` at its revision or later.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico import keys, resources
from calico.store.kv import open_kv
from labs.harness.felix_node import Felix, Pod, container_id, run_cni
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

AGENT = Path(__file__).with_name("probe_agent.py")
TCP_PORTS = (80, 443, 5432, 6379, 8080)
UDP_PORTS = (53,)
MASQ_POOL = "10.65.0.0/24"
PLAIN_POOL = "10.66.0.0/24"
V3 = "projectcalico.org/v3"
_SYNCED = re.compile(r'felix\.synced.*?"?revision"?[=:]\s*(\d+)')


def doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}


class Agent:
    """The control side of one pod's probe agent."""

    def __init__(self, pod: Pod, path: Path) -> None:
        self.pod = pod
        self.path = path

    def call(self, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.path))
            s.sendall(json.dumps(request).encode() + b"\n")
            answer: dict[str, Any] = json.loads(s.makefile().readline())
            return answer


@dataclass(frozen=True, slots=True)
class Probe:
    """`src` sends `kind` ("tcp", "udp", "ping") to `dst` (a pod name or "ext")."""

    src: str
    dst: str
    kind: str = "tcp"
    port: int = 0

    def __str__(self) -> str:
        what = self.kind if self.kind == "ping" else f"{self.kind}/{self.port}"
        return f"{self.src}->{self.dst} {what}"


@dataclass
class PolicyCluster:
    lab: Lab
    url: str
    hosts: dict[str, Node] = field(default_factory=dict)
    host_ips: dict[str, str] = field(default_factory=dict)
    felixes: dict[str, Felix] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    ext: Node | None = None
    ext_ip: str = ""
    ext_agent: Agent | None = None

    # --- datastore ------------------------------------------------------------------------

    def _store(self, work: Any) -> Any:
        async def main() -> Any:
            async with open_kv(self.url) as kv:
                return await work(kv)

        return asyncio.run(main())

    def apply(self, docs: Iterable[dict[str, Any]]) -> int:
        """Write `docs` as `bgpctl apply` does; the store's revision after."""

        async def work(kv: Any) -> int:
            revision = 0
            for d in docs:
                revision = (await resources.apply(kv, d)).revision
            return revision

        revision: int = self._store(work)
        return revision

    def delete_kinds(self, kinds: Sequence[str]) -> int:
        """Delete every resource of `kinds`; the store's revision after."""

        async def work(kv: Any) -> int:
            revision = 0
            for kind in kinds:
                for item in (await kv.list(keys.kind_prefix(kind))).items:
                    revision = await kv.delete(item.key)
            return revision or (await kv.list("/none/")).revision

        revision: int = self._store(work)
        return revision

    def items(self) -> list[tuple[str, bytes]]:
        async def work(kv: Any) -> list[tuple[str, bytes]]:
            return [(i.key, i.value) for i in (await kv.list(keys.RESOURCES)).items]

        found: list[tuple[str, bytes]] = self._store(work)
        return found

    def items_under(self, prefix: str) -> list[tuple[str, bytes]]:
        async def work(kv: Any) -> list[tuple[str, bytes]]:
            return [(i.key, i.value) for i in (await kv.list(prefix)).items]

        found: list[tuple[str, bytes]] = self._store(work)
        return found

    def wep(self, pod: str) -> dict[str, Any]:
        p = self.pods[pod]

        async def work(kv: Any) -> dict[str, Any]:
            for item in (await kv.list(keys.kind_prefix("WorkloadEndpoint"))).items:
                obj = json.loads(item.value)
                if obj["spec"].get("pod") == p.name:
                    return obj  # type: ignore[no-any-return]
            raise KeyError(pod)

        found: dict[str, Any] = self._store(work)
        return found

    def synced(self, revision: int, timeout: float = 30.0) -> None:
        """Wait until every felix has put everything up to `revision` into its kernel."""

        def reached(f: Felix) -> bool:
            f._alive()
            text = f.log_path.read_text(errors="replace")
            found = [int(m) for m in _SYNCED.findall(text)]
            return bool(found) and max(found) >= revision

        for name, f in self.felixes.items():
            wait_for(lambda f=f: reached(f), timeout, message=f"felix {name} synced {revision}")

    # --- pods -----------------------------------------------------------------------------

    def add_pod(
        self,
        host: str,
        name: str,
        *,
        namespace: str = "default",
        labels: dict[str, str] | None = None,
        pool: str = MASQ_POOL,
    ) -> Pod:
        node = self.hosts[host]
        pod = Pod(name, self.lab.add_node(name), host)
        cni_labels = [{"key": k, "value": v} for k, v in sorted((labels or {}).items())]
        conf = {
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "felix-cni",
            "datastore": self.url,
            "nodename": host,
            "ipam": {"type": "calico-ipam", "ipv4_pools": [pool]},
            "args": {"cni": {"labels": cni_labels}},
        }
        code, result, err = run_cni(
            node,
            "ADD",
            conf,
            netns=pod.netns_path,
            container=container_id(name),
            args=f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name}",
        )
        assert code == 0 and result is not None, f"ADD {name}: {result} {err}"
        pod.result = result
        pod.address = result["ips"][0]["address"].split("/")[0]
        route = ["ip", "route", "add", f"{pod.address}/32", "via", self.host_ips[host]]
        for other, other_node in self.hosts.items():
            if other != host:
                other_node.run(route)
        if pool == PLAIN_POOL and self.ext is not None:
            self.ext.run(route)
        self.pods[name] = pod
        self.agents[name] = self._agent(pod.netns, name)
        return pod

    def _agent(self, node: Node, name: str) -> Agent:
        path = self.lab.workdir / f"{name}.agent.sock"
        node.popen(
            [
                sys.executable,
                str(AGENT),
                "--name",
                name,
                "--control",
                str(path),
                "--tcp",
                ",".join(map(str, TCP_PORTS)),
                "--udp",
                ",".join(map(str, UDP_PORTS)),
            ],
            label=f"{name}/agent",
        )
        agent = Agent(Pod(name, node, ""), path)
        wait_for(
            lambda: agent.call({"op": "noop"}) is not None,
            20,
            message=f"agent {name}",
            ignore=(OSError, ValueError),
        )
        return agent

    def address(self, name: str) -> str:
        return self.ext_ip if name == "ext" else self.pods[name].address

    # --- probes ---------------------------------------------------------------------------

    def probe(self, p: Probe, timeout: float = 0.8) -> dict[str, Any]:
        agent = self.ext_agent if p.src == "ext" else self.agents[p.src]
        assert agent is not None
        request: dict[str, Any] = {"op": p.kind, "dst": self.address(p.dst), "timeout": timeout}
        if p.kind != "ping":
            request["port"] = p.port
        return agent.call(request)

    def reach(self, probes: Sequence[Probe], timeout: float = 0.8) -> dict[Probe, bool]:
        """Run the probes at once; which got through."""
        with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
            answers = list(pool.map(lambda p: self.probe(p, timeout), probes))
        return {p: bool(a.get("ok")) for p, a in zip(probes, answers, strict=True)}

    def expect(self, expected: dict[Probe, bool], timeout: float = 20.0) -> None:
        """Wait until every probe gets through exactly when expected."""
        last: dict[Probe, bool] = {}

        def matches() -> bool:
            nonlocal last
            last = self.reach(list(expected))
            return last == expected

        def describe() -> str:
            wrong = [
                f"{p}: {'passed' if last.get(p) else 'blocked'}"
                for p in expected
                if last.get(p) != expected[p]
            ]
            return "traffic as expected; wrong: " + ", ".join(wrong)

        wait_for(matches, timeout, interval=0.1, message=describe)


def build(lab: Lab, tmp: Path, *, pools: Sequence[dict[str, Any]] = ()) -> PolicyCluster:
    """The cluster without pods: segment, two nodes with felix, the outside host."""
    switch = lab.add_switch("sw")
    cluster = PolicyCluster(lab, f"sqlite://{tmp}/calico.db")
    for name in ("n1", "n2"):
        node = lab.add_node(name)
        cluster.hosts[name] = node
        cluster.host_ips[name] = switch.attach(node).v4 or ""
    ext = lab.add_node("ext")
    cluster.ext = ext
    cluster.ext_ip = switch.attach(ext).v4 or ""
    docs = [
        doc("IPPool", "masq", {"cidr": MASQ_POOL, "blockSize": 28, "natOutgoing": True}),
        doc("IPPool", "plain", {"cidr": PLAIN_POOL, "blockSize": 28, "natOutgoing": False}),
        *pools,
    ]
    for name, ip in cluster.host_ips.items():
        docs.append(doc("Node", name, {"bgp": {"ipv4Address": f"{ip}/24"}}))
    cluster.apply(docs)
    for name, node in cluster.hosts.items():
        cluster.felixes[name] = Felix(node, name, cluster.url, resync=5.0).start()
    cluster.ext_agent = cluster._agent(ext, "ext")
    return cluster
