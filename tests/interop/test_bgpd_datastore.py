"""bgpd driven by a datastore. Two bgpd nodes in namespaces share one SQLite file:
`bgpctl apply` of a BGPPeer brings their session up live, a block affinity applied later is
advertised, and `bgpctl status --all-nodes` shows both nodes' reports. Then a three-node mesh
on etcd (run in the lab) and on the embedded store: an affinity or a BGPPeer applied with
bgpctl reaches every node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
V4 = {"node1": "10.0.12.1", "node2": "10.0.12.2"}
BLOCK = "192.168.10.0/26"


def bgpctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def apply(url: str, tmp: Path, docs: list[dict[str, Any]]) -> None:
    f = tmp / f"apply-{time.monotonic_ns()}.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    r = bgpctl(url, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr


def peer(name: str, node: str, address: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"node": node, "peerIP": address, "asNumber": 64512},
    }


def test_bgpd_follows_the_sqlite_datastore(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    a, b = lab.add_node("n1"), lab.add_node("n2")
    lab.link(a, b, V4["node1"] + "/24", V4["node2"] + "/24")
    docs = resources(
        node="node1", ipv4=V4["node1"] + "/24", mesh=False,
        other_nodes={"node2": (V4["node2"] + "/24", None)}, pools=["192.168.0.0/16"],
    )
    apply(url, tmp_path, docs)
    nodes = {
        name: Bgpd(node, name, [], datastore=url, extra_args=("--no-fib",)).start()
        for name, node in (("node1", a), ("node2", b))
    }
    assert all(n.status()["peers"] == [] for n in nodes.values())

    # A BGPPeer each way, written while both daemons run: picked up live.
    apply(url, tmp_path, [peer("n1-to-n2", "node1", V4["node2"]),
                          peer("n2-to-n1", "node2", V4["node1"])])
    for name, other in (("node1", "node2"), ("node2", "node1")):
        wait_for(lambda n=name, o=other: nodes[n].peer_state(V4[o]) is not None, 10,
                 message=f"{name} configured a session to {other}")
    for name, other in (("node1", "node2"), ("node2", "node1")):
        nodes[name].wait_established(V4[other])

    # A block affinity for node1: node1 originates it, node2 learns it.
    apply(url, tmp_path, [{
        "apiVersion": "projectcalico.org/v3",
        "kind": "BlockAffinity",
        "metadata": {"name": "node1-block"},
        "spec": {"node": "node1", "cidr": BLOCK, "state": "confirmed"},
    }])
    wait_for(lambda: any(r["prefix"] == BLOCK for r in nodes["node2"].routes()), 15,
             message=f"node2 learned {BLOCK} from node1")

    # Both nodes report their status to the datastore.
    def reports() -> set[str]:
        r = bgpctl(url, "status", "--all-nodes", "--json")
        return {n["node"] for n in json.loads(r.stdout)} if r.returncode == 0 else set()

    wait_for(lambda: reports() == {"node1", "node2"}, 20, message="both nodes reported")
    # A report is written every few seconds: the first may predate the sessions.
    text = wait_for(
        lambda: (t := bgpctl(url, "status", "--all-nodes").stdout).count("Established") >= 2
        and t,
        20,
        message="both nodes report their session Established",
    )
    assert "node specific" in text
    # A stopped node withdraws its report.
    nodes["node2"].stop()
    wait_for(lambda: reports() == {"node1"}, 20, message="node2's report withdrawn")


def node_bgpctl(node: Node, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """bgpctl from inside a lab namespace (where an in-lab etcd is reachable)."""
    return node.run([sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, *args],
                    check=False)


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_three_node_mesh_converges_on_applied_changes(
    lab: Lab, tmp_path: Path, backend: str
) -> None:
    switch = lab.add_switch("sw")
    names = ("node1", "node2", "node3")
    ends = {n: switch.attach(lab.add_node(n[-1] + "n")) for n in names}
    ctl = lab.add_node("ctl")
    ctl_end = switch.attach(ctl)
    if backend == "etcd":
        if ETCD is None:
            pytest.skip(MISSING)
        member = EtcdMember(tmp_path, host=str(ctl_end.v4), node=ctl).start()
        url = f"etcd://{member.endpoint}"
    else:
        url = f"sqlite://{tmp_path}/calico.db"
    ips = {n: str(e.v4) for n, e in ends.items()}
    tor = str(ctl_end.v4)
    docs = resources(
        node="node1", ipv4=ips["node1"] + "/24", mesh=True,
        other_nodes={n: (ips[n] + "/24", None) for n in names[1:]}, pools=["192.168.0.0/16"],
    )
    f = tmp_path / "base.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    r = node_bgpctl(ctl, url, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    daemons = {
        n: Bgpd(e.node, n, [], datastore=url, extra_args=("--no-fib",)).start()
        for n, e in ends.items()
    }
    for n, d in daemons.items():
        d.wait_established(*(ips[o] for o in names if o != n))

    def apply_doc(d: dict[str, Any]) -> None:
        path = tmp_path / f"doc-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(d))
        res = node_bgpctl(ctl, url, "apply", "-f", str(path))
        assert res.returncode == 0, res.stderr

    started = time.monotonic()
    apply_doc({
        "apiVersion": "projectcalico.org/v3", "kind": "BlockAffinity",
        "metadata": {"name": "node3-block"},
        "spec": {"node": "node3", "cidr": BLOCK, "state": "confirmed"},
    })
    for n in ("node1", "node2"):
        wait_for(lambda n=n: any(r["prefix"] == BLOCK for r in daemons[n].routes()), 10,
                 message=f"{n} learned node3's block {BLOCK}")
    # For the record (-s), not asserted: bgpctl's own start-up is part of it.
    print(f"{backend}: block affinity on every node {time.monotonic() - started:.2f}s after apply")
    # A global BGPPeer (towards an address nobody answers): every node configures it.
    apply_doc({
        "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "tor"},
        "spec": {"peerIP": tor, "asNumber": 65000},
    })
    for n, d in daemons.items():
        wait_for(lambda d=d: d.peer_state(tor) is not None, 10,
                 message=f"{n} configured the global peer")
    # Mesh sessions were not touched by either change.
    for n, d in daemons.items():
        assert all(p["bgp_state"] == "Established" for p in d.status()["peers"]
                   if p["address"] in ips.values()), n
