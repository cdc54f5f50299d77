"""The whole path of a packet, as in a Calico cluster: three nodes on one segment, each with
bgpd and felix, and one datastore for all: a SQLite file (every namespace sees the same
filesystem) or an etcd on a fourth node of the segment. Pods are network namespaces
plumbed by felix-cni. Every pod pings every other across the BGP-learned block routes;
filling node1's blocks makes its next pod borrow an address from another node's block,
and it is still reachable from everywhere (a /32 learned from felix's route and advertised
by bgpd beats the owner's block); deleting the pods removes their routes and releases
their addresses."""

from __future__ import annotations

import ipaddress
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from labs.harness.bgpd_node import Bgpd, bgpctl_apply, resources
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember
from labs.harness.felix_node import Felix, Pod, add_pod, del_pod
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

# Four /31 blocks: one per node once each has a pod, and one spare for the first node to
# fill, after which it can only borrow.
POOL = "10.244.0.0/29"
BLOCK_SIZE = 31
NAMES = ("node1", "node2", "node3")


def ipam_blocks(node: Node, url: str) -> dict[str, dict[str, Any]]:
    """Every /calico/ipam/v2/ key and its value, read from `node`."""
    code = (
        "import asyncio, json, sys\n"
        "from calico.store.kv import open_kv\n"
        "async def main():\n"
        "    async with open_kv(sys.argv[1]) as kv:\n"
        "        items = (await kv.list('/calico/ipam/v2/')).items\n"
        "        print(json.dumps({i.key: json.loads(i.value) for i in items}))\n"
        "asyncio.run(main())\n"
    )
    return json.loads(node.run([sys.executable, "-c", code, url]).stdout)  # type: ignore[no-any-return]


def block_owner(store: dict[str, Any], address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    for key, value in store.items():
        if "/assignment/" in key and ip in ipaddress.ip_network(value["cidr"]):
            return str(value["affinity"])
    return None


def all_ping(pods: list[Pod]) -> None:
    for a, b in itertools.permutations(pods, 2):
        wait_for(
            lambda a=a, b=b: a.netns.ping(b.address),
            30,
            message=f"{a.name} ({a.host}) pings {b.name} {b.address} ({b.host})",
        )


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_pods_on_different_nodes_talk(lab: Lab, tmp_path: Path, backend: str) -> None:
    switch = lab.add_switch("sw")
    hosts: dict[str, Node] = {}
    ips: dict[str, str] = {}
    for name in NAMES:
        node = lab.add_node(name.replace("node", "n"))
        hosts[name] = node
        ips[name] = switch.attach(node).v4 or ""
    if backend == "sqlite":
        url = f"sqlite://{tmp_path}/calico.db"  # every namespace sees the same file
    else:
        if ETCD is None:
            pytest.skip(MISSING)
        db = lab.add_node("db")
        address = switch.attach(db).v4 or ""
        member = EtcdMember(tmp_path, host=address, node=db).start()
        url = f"etcd://{member.endpoint}"
    docs = resources(
        node="node1",
        ipv4=f"{ips['node1']}/24",
        other_nodes={n: (f"{ips[n]}/24", None) for n in NAMES[1:]},
        pools=[],
    )
    docs.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pods"},
            "spec": {
                "cidr": POOL,
                "blockSize": BLOCK_SIZE,
                "ipipMode": "Never",
                "natOutgoing": False,
                "nodeSelector": "all()",
            },
        }
    )
    bgpctl_apply(hosts["node1"], url, tmp_path, docs)
    bgpds = {n: Bgpd(hosts[n], n, [], datastore=url).start() for n in NAMES}
    felixes = {n: Felix(hosts[n], n, url).start() for n in NAMES}
    for n in NAMES:
        bgpds[n].wait_established(*(ips[o] for o in NAMES if o != n), timeout=60)

    # One pod per node: each node claims a block; bgpd advertises it; pods talk.
    pods = [add_pod(lab, hosts[n], n, url, f"pod{i}") for i, n in enumerate(NAMES, 1)]
    store = ipam_blocks(hosts["node1"], url)
    for pod in pods:
        assert block_owner(store, pod.address) == f"host:{pod.host}"
        host = hosts[pod.host]
        # The CNI plugin's (and felix's) device route, proto boot, to the cali* interface.
        assert f"{pod.address}/32" in host.route_prefixes(4, proto="boot")
    all_ping(pods)

    # Fill node1: its block, then the spare one, then it must borrow.
    more = [add_pod(lab, hosts["node1"], "node1", url, f"pod{i}") for i in range(4, 8)]
    store = ipam_blocks(hosts["node1"], url)
    owners = [block_owner(store, p.address) for p in more]
    assert owners[:3] == ["host:node1"] * 3, owners
    borrowed = more[-1]
    assert owners[-1] in ("host:node2", "host:node3"), owners
    lender = owners[-1].split(":")[1]
    # The lender learns the borrowed /32 from node1 (it beats its own block's blackhole).
    wait_for(
        lambda: f"{borrowed.address}/32" in bgpds[lender].kernel_prefixes(4),
        30,
        message=f"{lender} learned {borrowed.address}/32 from node1",
    )
    pods += more
    all_ping(pods)

    # Delete every pod: routes go, addresses are released, the borrowed /32 is withdrawn.
    for pod in pods:
        del_pod(hosts[pod.host], url, pod)
    for n in NAMES:
        wait_for(
            lambda n=n: (
                not any(str(r.get("dev", "")).startswith("cali") for r in hosts[n].routes(4))
            ),
            20,
            message=f"{n} has no workload routes",
        )
    wait_for(
        lambda: f"{borrowed.address}/32" not in bgpds[lender].kernel_prefixes(4),
        30,
        message=f"{lender} withdrew {borrowed.address}/32",
    )
    store = ipam_blocks(hosts["node1"], url)
    assert not [k for k in store if "/handle/" in k], store
    for key, value in store.items():
        if "/assignment/" in key:
            assert all(a is None for a in value["allocations"]), value
    assert all(f.proc is not None and f.proc.poll() is None for f in felixes.values())
