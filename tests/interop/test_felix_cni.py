"""felix-cni driven exactly as a container runtime drives it (CNI_* environment, the network
configuration on stdin, a netns path, result or error JSON on stdout) against real
namespaces and a SQLite datastore: ADD/CHECK/DEL, what ADD builds in the pod and on the
host, idempotent DEL (also after the namespace is gone), error JSON for bad configurations
and missing namespaces, and no leftovers when ADD fails part-way; and kubelet's call
patterns: a late DEL for a pod's old sandbox after the new one's ADD, an ADD retried,
CHECK across a felix restart, DEL after the namespace is gone, a DEL naming another pod's
interface, and a DEL after the IPAM configuration changed."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from calico.ipam import handle_key
from felix.workload import PREFIX, WorkloadEndpoint, host_veth_name
from labs.harness.felix_node import NETWORK, Felix, conf, container_id, run_cni
from labs.harness.lab import Lab, Node

POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "pods"},
    "spec": {"cidr": "10.244.0.0/24", "blockSize": 28},
}


def kv_call(url: str, method: str, *args: object) -> object:
    from calico.store.kv import open_kv

    async def main() -> object:
        async with open_kv(url) as kv:
            result = await getattr(kv, method)(*args)
            return result

    return asyncio.run(main())


def seed(url: str) -> None:
    kv_call(
        url, "put", "/calico/resources/v3/projectcalico.org/ippools/pods", json.dumps(POOL).encode()
    )


def test_add_check_del_like_a_runtime(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    seed(url)
    host, pod = lab.add_node("host"), lab.add_node("pod")
    host.run(["ip", "addr", "add", "10.9.9.1/32", "dev", "lo"])  # a source for pings
    netns = f"/var/run/netns/{pod.netns}"
    cid = container_id("pod")
    cfg = conf(url, "node1")

    code, version, _ = run_cni(host, "VERSION", '{"cniVersion":"1.0.0"}', netns="", container="")
    assert code == 0 and version is not None and "1.0.0" in version["supportedVersions"]

    code, result, err = run_cni(host, "ADD", cfg, netns=netns, container=cid)
    assert code == 0 and result is not None, err
    address = result["ips"][0]["address"]
    ip = address.split("/")[0]
    host_if = "cali" + cid[:11]
    assert result["interfaces"][0] == {"name": host_if, "mac": "ee:ee:ee:ee:ee:ee"}
    assert result["interfaces"][1]["sandbox"] == netns
    # In the pod: the address, the link-local gateway with a permanent neighbour entry.
    assert pod.run(["ip", "-4", "-o", "addr", "show", "eth0"]).stdout.count(address) == 1
    routes = pod.run(["ip", "-4", "route"]).stdout
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "169.254.1.1 dev eth0" in pod.run(["ip", "neigh", "show", "nud", "permanent"]).stdout
    # On the host: the cali end up with proxy ARP, and the /32 to it, proto boot.
    assert host.run(["cat", f"/proc/sys/net/ipv4/conf/{host_if}/proxy_arp"]).stdout.strip() == "1"
    assert f"{ip} dev {host_if} scope link" in host.run(["ip", "-4", "route"]).stdout
    assert f"{ip}/32" in host.route_prefixes(4, proto="boot")
    assert host.ping(ip)  # through the veth, the pod answering via its gateway entry

    check_cfg = {**cfg, "prevResult": result}
    code, out, err = run_cni(host, "CHECK", check_cfg, netns=netns, container=cid)
    assert code == 0 and out is None, err

    # The pod's route removed behind our back: CHECK says so.
    pod.run(["ip", "route", "del", "default"])
    code, out, _ = run_cni(host, "CHECK", check_cfg, netns=netns, container=cid)
    assert code == 1 and out is not None and out["code"] == 101 and "default route" in out["msg"]

    code, out, err = run_cni(host, "DEL", check_cfg, netns=netns, container=cid)
    assert code == 0, err
    assert host_if not in host.run(["ip", "link"]).stdout
    assert "eth0" not in pod.run(["ip", "link"]).stdout
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{cid}")) is None
    # DEL again, and DEL once the namespace is gone: both fine.
    code, _, err = run_cni(host, "DEL", cfg, netns=netns, container=cid)
    assert code == 0, err
    code, _, err = run_cni(host, "DEL", cfg, netns="/var/run/netns/gone", container=cid)
    assert code == 0, err


def test_errors_are_cni_error_json(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    seed(url)
    host = lab.add_node("host")
    cid = container_id("x")
    cases = [
        ({**conf(url, "node1"), "cniVersion": "0.1.0"}, {}, 1),
        ("{oops", {}, 6),
        ({**conf(url, "node1"), "ipam": {"type": "host-local"}}, {}, 2),
        ({**conf(url, "node1"), "datastore": "mysql://x"}, {}, 7),
        (conf(url, "node1"), {"CNI_COMMAND": "NOPE"}, 4),
    ]
    for stdin, env, want in cases:
        code, out, _ = run_cni(
            host, "ADD", stdin, netns="/var/run/netns/none", container=cid, extra_env=env
        )
        assert code == 1 and out is not None and out["code"] == want, (stdin, env, out)
        assert out["msg"] and out["cniVersion"]
    code, out, _ = run_cni(
        host, "ADD", conf(url, "node1"), netns="/var/run/netns/none", container=cid
    )
    assert code == 1 and out is not None and out["code"] == 3  # no such namespace
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{cid}")) is None  # address given back


def test_a_failed_add_leaves_nothing_behind(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    seed(url)
    host, pod = lab.add_node("host"), lab.add_node("pod")
    # Something already holds the interface name the runtime asks for.
    pod.run(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0"])
    cid = container_id("pod")
    code, out, _ = run_cni(
        host, "ADD", conf(url, "node1"), netns=f"/var/run/netns/{pod.netns}", container=cid
    )
    assert code == 1 and out is not None and out["code"] == 5 and "eth0" in out["details"]
    assert "cali" not in host.run(["ip", "link"]).stdout
    assert "tmp" not in pod.run(["ip", "link"]).stdout
    assert not [r for r in host.routes(4) if str(r.get("dev", "")).startswith("cali")]
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{cid}")) is None


NODE = {
    "kind": "Node",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "node1"},
    "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}},
}
WEB = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"


def link(node: Node, ifname: str) -> dict[str, Any] | None:
    """`ip -j -d link show dev IFNAME`, None when there is no such interface."""
    r = node.run(["ip", "-j", "link", "show", "dev", ifname], check=False)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None  # type: ignore[no-any-return]


def web_endpoint(url: str) -> WorkloadEndpoint | None:
    item = kv_call(url, "get", f"{PREFIX}default/node1-k8s-web-eth0")
    return None if item is None else WorkloadEndpoint.from_json(item.value)  # type: ignore[attr-defined]


def drop_netns(node: Node) -> None:
    """What the runtime does to a sandbox it is done with."""
    subprocess.run(["ip", "netns", "del", node.netns], check=True, capture_output=True)


def test_kubelet_call_patterns(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    seed(url)
    kv_call(
        url, "put", "/calico/resources/v3/projectcalico.org/nodes/node1", json.dumps(NODE).encode()
    )
    host = lab.add_node("host")
    host.run(["ip", "addr", "add", "10.9.9.1/32", "dev", "lo"])  # a source for pings
    felix = Felix(host, "node1", url, resync=1.0).start()
    sba, sbb = lab.add_node("sba"), lab.add_node("sbb")
    a, b = container_id("web-a"), container_id("web-b")
    veth = host_veth_name(b, "default", "web")
    cfg = conf(url, "node1")

    def cni(
        command: str, cid: str, netns: str, stdin: dict[str, Any] | None = None, args: str = WEB
    ) -> tuple[int, dict[str, Any] | None, str]:
        return run_cni(host, command, stdin or cfg, netns=netns, container=cid, args=args)

    # ADD sandbox A of pod default/web, then sandbox B of the same pod into another netns.
    code, res_a, err = cni("ADD", a, f"/var/run/netns/{sba.netns}")
    assert code == 0 and res_a is not None, err
    code, res_b, err = cni("ADD", b, f"/var/run/netns/{sbb.netns}")
    assert code == 0 and res_b is not None, err
    ip_a, ip_b = (r["ips"][0]["address"].split("/")[0] for r in (res_a, res_b))
    assert ip_a != ip_b
    before = link(host, veth)
    assert before is not None and before["ifalias"] == b  # the host end carries its owner
    assert link(sbb, "eth0")["ifalias"] == b  # type: ignore[index]
    # The runtime removes A's namespace; kubelet's late DEL for A follows.
    drop_netns(sba)
    code, _, err = cni("DEL", a, f"/var/run/netns/{sba.netns}")
    assert code == 0, err
    after = link(host, veth)
    assert after is not None and after["ifindex"] == before["ifindex"] and after["ifalias"] == b
    assert f"{ip_b} dev {veth}" in host.run(["ip", "-4", "route"]).stdout
    wep = web_endpoint(url)
    assert wep is not None and wep.container_id == b
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{a}")) is None  # A's address released
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{b}")) is not None
    check_b = {**cfg, "prevResult": res_b}
    code, out, err = cni("CHECK", b, f"/var/run/netns/{sbb.netns}", check_b)
    assert code == 0 and out is None, (out, err)
    assert host.ping(ip_b)

    # The runtime retries B's ADD (it lost the answer): the same result, nothing rebuilt.
    code, again, err = cni("ADD", b, f"/var/run/netns/{sbb.netns}")
    assert code == 0 and again == res_b, (again, err)
    assert link(host, veth)["ifindex"] == before["ifindex"]  # type: ignore[index]

    # felix restarts (its first pass sweeps routes no endpoint explains): CHECK still holds.
    felix.stop()
    felix = Felix(host, "node1", url, resync=1.0).start()
    code, out, err = cni("CHECK", b, f"/var/run/netns/{sbb.netns}", check_b)
    assert code == 0 and out is None, (out, err)
    assert host.ping(ip_b)

    # A DEL naming another pod's namespace and interface takes nothing of that pod's.
    sbo = lab.add_node("sbo")
    other = container_id("other")
    other_args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=other"
    code, res_o, err = cni("ADD", other, f"/var/run/netns/{sbo.netns}", args=other_args)
    assert code == 0 and res_o is not None, err
    code, _, err = cni("DEL", container_id("stray"), f"/var/run/netns/{sbo.netns}")
    assert code == 0, err
    assert link(sbo, "eth0") is not None
    code, out, err = cni(
        "CHECK", other, f"/var/run/netns/{sbo.netns}", {**cfg, "prevResult": res_o}, other_args
    )
    assert code == 0 and out is None, (out, err)

    # B's namespace goes, then B's DEL, with an IPAM type this plugin does not build in
    # (the configuration changed since the ADD): everything of B's goes.
    drop_netns(sbb)
    changed = {**cfg, "ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}}
    code, _, err = cni("DEL", b, f"/var/run/netns/{sbb.netns}", changed)
    assert code == 0, err
    assert link(host, veth) is None
    assert web_endpoint(url) is None
    assert kv_call(url, "get", handle_key(f"{NETWORK}.{b}")) is None
    assert ip_b not in host.run(["ip", "-4", "route"]).stdout
    # And again: nothing left, still fine.
    code, _, err = cni("DEL", b, f"/var/run/netns/{sbb.netns}", changed)
    assert code == 0, err
    assert felix.proc is not None and felix.proc.poll() is None
