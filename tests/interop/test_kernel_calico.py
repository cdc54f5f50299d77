"""bgpd as the routing half of Calico nodes, in network namespaces: each node has "pods"
behind cali* veths with the /32 device routes Felix would program. bgpd learns them from the
kernel, advertises blocks and borrowed /32s per Calico's export policy, installs what the
other nodes advertise (blackholes for its own blocks), and keeps forwarding across restarts.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from labs.harness.bgpd_node import RTPROT_PYBGPD, Bgpd, resources
from labs.harness.lab import Lab, Node
from labs.harness.wait import wait_for

AS = 64512
POOL = "192.168.0.0/16"
BLOCKS = {"n1": "192.168.1.0/26", "n2": "192.168.2.0/26", "n3": "192.168.3.0/26"}
GATEWAY = "169.254.1.1"  # what Calico gives every pod as its default gateway


@dataclass
class Cluster:
    lab: Lab
    nodes: dict[str, Node]
    ips: dict[str, str]
    bgpd: dict[str, Bgpd]

    def start(self, name: str) -> Bgpd:
        b = self.bgpd[name]
        if b.socket.exists():
            b.socket.unlink()  # a stale socket would look like a started daemon
        return b.start()

    def kernel(self, name: str) -> dict[str, dict[str, object]]:
        return self.bgpd[name].kernel_routes(4)


def cluster(lab: Lab, names: tuple[str, ...] = ("n1", "n2", "n3")) -> Cluster:
    switch = lab.add_switch("sw")
    nodes: dict[str, Node] = {}
    ips: dict[str, str] = {}
    for name in names:
        node = lab.add_node(name)
        end = switch.attach(node)
        node.sysctl(**{"net.ipv4.ip_forward": 1})
        nodes[name] = node
        assert end.v4 is not None
        ips[name] = end.v4.split("/")[0]
    daemons = {}
    for name in names:
        docs = resources(
            node=name,
            ipv4=f"{ips[name]}/24",
            asn=AS,
            other_nodes={o: (f"{ips[o]}/24", None) for o in names if o != name},
            pools=[POOL],
            blocks=[BLOCKS[name]],
        )
        daemons[name] = Bgpd(nodes[name], name, docs)
    return Cluster(lab, nodes, ips, daemons)


def add_pod(lab: Lab, node: Node, pod_name: str, ip: str, ifname: str) -> Node:
    """A workload as Calico wires it: a veth named cali*, the pod's /32 on its eth0, a
    link-local default gateway answered by proxy ARP, and Felix's device route."""
    pod = lab.add_node(pod_name)
    lab.veth(node, ifname, pod, "eth0")
    pod.run(["ip", "addr", "add", f"{ip}/32", "dev", "eth0"])
    pod.run(["ip", "route", "add", GATEWAY, "dev", "eth0", "scope", "link"])
    pod.run(["ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0"])
    # Felix relies on proxy ARP and the host's default route; these nodes have no default
    # route, so the pod is told the gateway's MAC directly.
    mac = json.loads(node.run(["ip", "-j", "link", "show", "dev", ifname]).stdout)[0]["address"]
    pod.run(["ip", "neigh", "replace", GATEWAY, "lladdr", mac, "dev", "eth0", "nud", "permanent"])
    node.run(["ip", "route", "add", f"{ip}/32", "dev", ifname])
    return pod


def explain(b: Bgpd, prefix: str) -> dict[str, object]:
    return json.loads(b.bgpctl("explain", prefix, "--json").stdout)  # type: ignore[no-any-return]


@pytest.mark.interop
def test_pods_and_a_borrowed_ip_across_three_nodes(lab: Lab) -> None:
    c = cluster(lab)
    pod1 = add_pod(lab, c.nodes["n1"], "p1", "192.168.1.5", "cali1000000000a")
    pod2 = add_pod(lab, c.nodes["n2"], "p2", "192.168.2.5", "cali2000000000a")
    # A borrowed IP: a pod on n2 with an address from n1's block.
    borrowed = add_pod(lab, c.nodes["n2"], "p2b", "192.168.1.9", "cali2000000000b")
    pod3 = add_pod(lab, c.nodes["n3"], "p3", "192.168.3.5", "cali3000000000a")
    for name in c.nodes:
        c.start(name)
    for name in c.nodes:
        others = [c.ips[o] for o in c.nodes if o != name]
        c.bgpd[name].wait_established(*others, timeout=60)

    # Blocks and the borrowed /32 everywhere else; our own block as a blackhole.
    def converged() -> bool:
        k1, k3 = c.kernel("n1"), c.kernel("n3")
        return (
            BLOCKS["n2"] in k1
            and BLOCKS["n3"] in k1
            and "192.168.1.9/32" in k1
            and "192.168.1.9/32" in k3
            and BLOCKS["n1"] in k3
            and BLOCKS["n2"] in k3
        )

    wait_for(converged, 60, message="blocks and the borrowed /32 in every FIB")
    k1, k3 = c.kernel("n1"), c.kernel("n3")
    assert k1["192.168.1.9/32"]["gateway"] == c.ips["n2"]
    assert k3["192.168.1.9/32"]["gateway"] == c.ips["n2"]
    assert k3[BLOCKS["n1"]]["gateway"] == c.ips["n1"]
    assert k1[BLOCKS["n1"]]["type"] == "blackhole"
    # Workload /32s inside a node's own block stay at home: only the aggregate travels.
    assert "192.168.2.5/32" not in k1 and "192.168.1.5/32" not in k3

    for src, dst in (
        (pod1, "192.168.2.5"),
        (pod2, "192.168.1.5"),
        (pod3, "192.168.1.5"),
        (pod1, "192.168.1.9"),
        (pod3, "192.168.1.9"),
        (borrowed, "192.168.3.5"),
    ):
        wait_for(lambda s=src, d=dst: s.ping(d), 20, message=f"{src.name} -> {dst}")

    # bgpctl: why n1 does not advertise its workload /32, and does advertise the block.
    b1 = c.bgpd["n1"]
    e = explain(b1, "192.168.1.5/32")
    assert [x["from_peer"] for x in e["candidates"]] == ["kernel"]  # type: ignore[index]
    assert all(not x["exported"] for x in e["exports"])  # type: ignore[index,attr-defined]
    assert "more specific than a confirmed local block" in str(e["exports"])
    e = explain(b1, "192.168.1.9/32")
    assert e["in_fib"] is True
    e = explain(c.bgpd["n2"], "192.168.1.9/32")
    assert all(x["exported"] for x in e["exports"])  # type: ignore[index,attr-defined]
    assert "inside an IP pool" in str(e["exports"])
    text = b1.bgpctl("explain", BLOCKS["n2"]).stdout
    assert "FIB: yes" in text and "split horizon" in text
    exported = b1.bgpctl("show", "route", "export", f"Mesh_{c.ips['n3'].replace('.', '_')}")
    assert BLOCKS["n1"] in exported.stdout and "192.168.1.5/32" not in exported.stdout

    # The pod goes away: Felix deletes its route, and the /32 leaves the other FIBs.
    c.nodes["n2"].run(["ip", "route", "del", "192.168.1.9/32", "dev", "cali2000000000b"])
    wait_for(lambda: "192.168.1.9/32" not in c.kernel("n3"), 30, message="withdrawn /32")
    wait_for(lambda: "192.168.1.9/32" not in c.kernel("n1"), 30, message="withdrawn /32 on n1")
    # n1's block blackhole is still there; n1 now answers for .9 itself (unreachable).
    assert c.kernel("n1")[BLOCKS["n1"]]["type"] == "blackhole"


def ping_stats(log: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", log)
    assert m, log[-2000:]
    return int(m.group(1)), int(m.group(2))


@pytest.mark.interop
def test_restart_loses_no_ping_and_leaves_no_stale_route(lab: Lab) -> None:
    c = cluster(lab, ("n1", "n2"))
    pod1 = add_pod(lab, c.nodes["n1"], "p1", "192.168.1.5", "cali1000000000a")
    add_pod(lab, c.nodes["n2"], "p2", "192.168.2.5", "cali2000000000a")
    add_pod(lab, c.nodes["n2"], "p2b", "192.168.1.9", "cali2000000000b")
    for name in c.nodes:
        c.start(name)
    c.bgpd["n1"].wait_established(c.ips["n2"], timeout=60)
    wait_for(
        lambda: (
            BLOCKS["n2"] in c.kernel("n1")
            and BLOCKS["n1"] in c.kernel("n2")
            and "192.168.1.9/32" in c.kernel("n1")
        ),
        60,
        message="routes exchanged",
    )
    wait_for(lambda: pod1.ping("192.168.2.5"), 20, message="pods reach each other")

    log = c.nodes["n1"].workdir / "ping.log"
    ping = pod1.popen(["ping", "-n", "-q", "-i", "0.01", "192.168.2.5"], log_path=log)

    def watch(name: str, prefix: str, seconds: float) -> None:
        """The route must be there at every poll for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert prefix in c.kernel(name), f"{prefix} left {name}'s FIB"

    try:
        # 1. bgpd on n1 restarts; meanwhile the borrowed pod on n2 goes away.
        c.bgpd["n1"].stop()
        watch("n1", BLOCKS["n2"], 1.0)
        watch("n2", BLOCKS["n1"], 1.0)  # n2 keeps n1's routes (graceful restart helper)
        c.nodes["n2"].run(["ip", "route", "del", "192.168.1.9/32", "dev", "cali2000000000b"])
        c.start("n1")
        c.bgpd["n1"].wait_established(c.ips["n2"], timeout=60)
        # The withdrawn /32 adopted from the old run goes once n2's End-of-RIB arrived.
        deadline = time.monotonic() + 60
        while "192.168.1.9/32" in c.kernel("n1"):
            assert BLOCKS["n2"] in c.kernel("n1"), "block route lost during the restart"
            assert time.monotonic() < deadline, "stale /32 still in n1's FIB"
        assert "graceful restart converged" in c.bgpd["n1"].log_path.read_text()
        # 2. The peer restarts instead: n1 is the helper and keeps n2's routes.
        c.bgpd["n2"].stop()
        watch("n1", BLOCKS["n2"], 1.0)
        c.start("n2")
        c.bgpd["n2"].wait_established(c.ips["n1"], timeout=60)
        wait_for(
            lambda: "graceful restart converged" in c.bgpd["n2"].log_path.read_text(),
            60,
            message="n2 converged after its restart",
        )
        watch("n1", BLOCKS["n2"], 1.0)
        watch("n2", BLOCKS["n1"], 1.0)
    finally:
        ping.send_signal(signal.SIGINT)
        try:
            ping.wait(10)
        except subprocess.TimeoutExpired:
            ping.kill()
    sent, received = ping_stats(log.read_text())
    assert sent > 100
    assert received == sent, f"{sent - received} of {sent} pings lost"
    # No stale route of ours remains on either node.
    assert set(c.kernel("n1")) == {BLOCKS["n1"], BLOCKS["n2"]}
    assert set(c.kernel("n2")) == {BLOCKS["n1"], BLOCKS["n2"]}
    assert all(
        r.get("protocol") in (None, RTPROT_PYBGPD, "201")
        for r in c.nodes["n1"].routes(4, proto=RTPROT_PYBGPD)
    )
