"""felix-cni driven exactly as a container runtime drives it (CNI_* environment, the network
configuration on stdin, a netns path, result or error JSON on stdout) against real
namespaces and a SQLite datastore: ADD/CHECK/DEL, what ADD builds in the pod and on the
host, idempotent DEL (also after the namespace is gone), error JSON for bad configurations
and missing namespaces, and no leftovers when ADD fails part-way."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from calico.ipam import handle_key
from labs.harness.felix_node import NETWORK, conf, container_id, run_cni
from labs.harness.lab import Lab

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
