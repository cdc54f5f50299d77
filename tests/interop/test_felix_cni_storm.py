"""An ADD/DEL storm as kubelets make it: 200 pods over three nodes that share one SQLite
datastore, several felix-cni invocations at once on each node, each pod's calls in order
(as the runtime serialises one sandbox's) and different pods' calls overlapping. Mixed in:
pods whose sandbox is replaced (ADD of the new one, the old namespace removed, then the old
sandbox's late DEL), ADDs retried, CHECKs, and DELs after the namespace is gone. A quarter
of the pods are left running.

Afterwards the datastore, the kernel and the pods agree exactly: every running pod has one
WorkloadEndpoint naming its live sandbox, one handle holding one address, that address
allocated once in the blocks, its marked veth pair and its /32 on its node; nothing else is
left anywhere: no handle, allocation or WEP of a deleted pod or replaced sandbox, no cali*
or temporary interface, no workload route, no pod-side interface in a namespace whose pod
is gone."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import resource
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.ipam import ASSIGNMENT_PREFIX, HANDLE_PREFIX, Block, Handle
from calico.store.kv import open_kv
from felix.workload import PREFIX, WorkloadEndpoint, host_veth_name
from labs.harness.felix_node import NETWORK, conf, container_id, run_cni
from labs.harness.lab import Lab, Node

NODES = ("node1", "node2", "node3")
PODS = 200
PER_NODE = 4  # invocations at once on each node (kubelet runs pod workers in parallel)
SEED = 18
# 16 blocks of 16: each node needs several, and they are claimed while the others claim.
POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "pods"},
    "spec": {"cidr": "10.244.0.0/24", "blockSize": 28, "nodeSelector": "all()"},
}
KINDS = ("replace",) * 10 + ("retry",) * 10 + ("gone",) * 10 + ("check",) * 10


@dataclass
class Pod:
    name: str
    node: str
    kind: str
    survives: bool
    sandboxes: list[tuple[str, Node]] = field(default_factory=list)  # (container ID, netns)
    result: dict[str, Any] | None = None
    dropped: set[str] = field(default_factory=set)  # namespaces the "runtime" removed

    @property
    def args(self) -> str:
        return f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={self.name}"

    @property
    def live(self) -> tuple[str, Node]:
        return self.sandboxes[-1]

    @property
    def address(self) -> str:
        assert self.result is not None
        return str(self.result["ips"][0]["address"])


def plan() -> list[Pod]:
    rng = random.Random(SEED)
    kinds = list(KINDS) + ["plain"] * (PODS - len(KINDS))
    rng.shuffle(kinds)
    return [
        Pod(f"p{i}", NODES[i % len(NODES)], kind, survives=i % 4 == 0)
        for i, kind in enumerate(kinds)
    ]


def list_store(url: str) -> dict[str, bytes]:
    async def main() -> dict[str, bytes]:
        async with open_kv(url) as kv:
            listing = await kv.list("/calico/")
        return {i.key: i.value for i in listing.items}

    return asyncio.run(main())


def links(node: Node) -> list[dict[str, Any]]:
    return json.loads(node.run(["ip", "-j", "link", "show"]).stdout or "[]")  # type: ignore[no-any-return]


class Storm:
    def __init__(self, lab: Lab, hosts: dict[str, Node], url: str, tmp_path: Path) -> None:
        self.lab = lab
        self.hosts = hosts
        self.url = url
        self.lock = threading.Lock()
        self.calls = 0
        # Byte-compiled modules, as an installed plugin has (this machine may have
        # PYTHONDONTWRITEBYTECODE set); kept out of the source tree.
        self.env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp_path / "pyc")}

    def netns(self, name: str) -> Node:
        with self.lock:
            return self.lab.add_node(name)

    def drop(self, pod: Pod, netns: Node) -> None:
        """The runtime removing a sandbox's namespace."""
        subprocess.run(["ip", "netns", "del", netns.netns], check=True, capture_output=True)
        pod.dropped.add(netns.netns)

    def cni(
        self, pod: Pod, command: str, cid: str, netns: Node, stdin: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        with self.lock:
            self.calls += 1
        code, out, err = run_cni(
            self.hosts[pod.node],
            command,
            stdin or conf(self.url, pod.node),
            netns=f"/var/run/netns/{netns.netns}",
            container=cid,
            args=pod.args,
            extra_env=self.env,
        )
        assert code == 0, f"{command} {pod.name} ({pod.kind}) {cid} on {pod.node}: {out} {err}"
        return out

    def lifecycle(self, pod: Pod) -> None:
        first = (container_id(pod.name), self.netns(pod.name))
        pod.sandboxes.append(first)
        pod.result = self.cni(pod, "ADD", *first)
        if pod.kind == "retry":
            again = self.cni(pod, "ADD", *first)
            assert again == pod.result, f"retried ADD of {pod.name}: {again} vs {pod.result}"
        elif pod.kind == "check":
            self.cni(pod, "CHECK", *first, {**conf(self.url, pod.node), "prevResult": pod.result})
        elif pod.kind == "replace":
            second = (container_id(pod.name + "-b"), self.netns(pod.name + "b"))
            pod.sandboxes.append(second)
            pod.result = self.cni(pod, "ADD", *second)
            self.drop(pod, first[1])
            self.cni(pod, "DEL", *first)  # kubelet's late DEL for the old sandbox
        if pod.survives:
            return
        cid, netns = pod.live
        if pod.kind == "gone":
            self.drop(pod, netns)
        self.cni(pod, "DEL", cid, netns)

    def run(self, pods: list[Pod]) -> None:
        pools = {n: ThreadPoolExecutor(PER_NODE, thread_name_prefix=n) for n in NODES}
        try:
            futures = [pools[p.node].submit(self.lifecycle, p) for p in pods]
            errors = [e for f in futures if (e := f.exception()) is not None]
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True)
        assert not errors, f"{len(errors)} pods failed; first: {errors[0]}"


def check_store(url: str, alive: list[Pod], everyone: list[Pod]) -> None:
    store = list_store(url)
    weps = {k: WorkloadEndpoint.from_json(v) for k, v in store.items() if k.startswith(PREFIX)}
    want = {f"{PREFIX}default/{p.node}-k8s-{p.name}-eth0": p for p in alive}
    assert set(weps) == set(want), "WEPs of deleted pods left, or running pods' missing"
    for key, wep in weps.items():
        pod = want[key]
        assert wep.container_id == pod.live[0], f"{pod.name}'s WEP names {wep.container_id}"
        assert wep.ip_networks == (pod.address,) and wep.node == pod.node
    handles = {
        k[len(HANDLE_PREFIX) :]: Handle.from_json(v)
        for k, v in store.items()
        if k.startswith(HANDLE_PREFIX)
    }
    live_handles = {f"{NETWORK}.{p.live[0]}": p for p in alive}
    stale = set(handles) - set(live_handles)
    assert not stale, f"{len(stale)} handles leaked, e.g. {sorted(stale)[:3]}"
    assert set(handles) == set(live_handles)
    owner: dict[str, str] = {}
    for key, value in store.items():
        if not key.startswith(ASSIGNMENT_PREFIX):
            continue
        block = Block.from_json(value)
        assert len(set(block.unallocated)) == len(block.unallocated)
        for ordinal, index in enumerate(block.allocations):
            if index is None:
                assert ordinal in block.unallocated, f"{block.cidr}/{ordinal} neither used nor free"
                continue
            assert ordinal not in block.unallocated, f"{block.cidr}/{ordinal} used and free"
            address = block.address(ordinal)
            assert address not in owner, f"{address} allocated twice"
            handle = block.attributes[index].handle_id
            assert handle is not None
            owner[address] = handle
    expected = {str(ipaddress.ip_interface(p.address).ip): h for h, p in live_handles.items()}
    leaked = set(owner) - set(expected)
    assert not leaked, f"{len(leaked)} addresses leaked, e.g. {sorted(leaked)[:3]}"
    assert owner == expected
    for handle_id, handle in handles.items():
        assert handle.total == 1, f"{handle_id} holds {handle.blocks}"
    addresses = [p.address for p in alive]
    assert len(set(addresses)) == len(addresses)
    assert len(everyone) == PODS


def check_kernel(hosts: dict[str, Node], alive: list[Pod], everyone: list[Pod]) -> None:
    for name, host in hosts.items():
        mine = {host_veth_name("", "default", p.name): p for p in alive if p.node == name}
        found = {
            str(link["ifname"]): link
            for link in links(host)
            if str(link["ifname"]).startswith(("cali", "tmp"))
        }
        assert set(found) == set(mine), (
            f"{name}: veths {sorted(set(found) - set(mine))} orphaned, "
            f"{sorted(set(mine) - set(found))} missing"
        )
        for ifname, pod in mine.items():
            assert found[ifname].get("ifalias") == pod.live[0], f"{ifname} not {pod.name}'s"
        routes = {
            str(r["dst"]): str(r["dev"])
            for r in host.routes(4)
            if str(r.get("dev", "")).startswith("cali")
        }
        want = {p.address.split("/")[0]: ifname for ifname, p in mine.items()}
        assert routes == want, f"{name}: workload routes {routes} vs {want}"
    for pod in everyone:
        for cid, netns in pod.sandboxes:
            if netns.netns in pod.dropped:
                continue
            eth0 = [link for link in links(netns) if link["ifname"] == "eth0"]
            if pod.survives and (cid, netns) == pod.live:
                assert len(eth0) == 1 and eth0[0].get("ifalias") == cid, pod.name
                addrs = netns.run(["ip", "-4", "-o", "addr", "show", "eth0"]).stdout
                assert pod.address in addrs, f"{pod.name}: {addrs}"
            else:
                assert not eth0, f"{pod.name}'s {netns.netns} still has eth0"


def test_add_del_storm(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    asyncio.run(_seed(url))
    hosts = {n: lab.add_node(n.replace("node", "n")) for n in NODES}
    pods = plan()
    storm = Storm(lab, hosts, url, tmp_path)
    started, cpu = time.monotonic(), _children_cpu()
    storm.run(pods)
    elapsed, cpu = time.monotonic() - started, _children_cpu() - cpu
    alive = [p for p in pods if p.survives]
    check_store(url, alive, pods)
    check_kernel(hosts, alive, pods)
    # For the record (not asserted): how long the storm took on this machine.
    print(
        f"storm: {storm.calls} invocations, {len(alive)} pods left, {elapsed:.1f} s, "
        f"{cpu:.1f} CPU-s in processes ({cpu / storm.calls:.2f} per invocation)"
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _seed(url: str) -> None:
    async with open_kv(url) as kv:
        await kv.put(
            "/calico/resources/v3/projectcalico.org/ippools/pods", json.dumps(POOL).encode()
        )
