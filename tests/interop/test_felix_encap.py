"""Encapsulation as Calico's Felix programs it, against the real kernel in namespaces:

* common.netlink's link, address, neighbour and onlink-route messages, sent to the kernel
  and read back with `ip` / `bridge` (a veth stands in where a tunnel device would be);
  tunnel devices themselves (ipip, vxlan with VNI 4096 and port 4789) where the kernel has
  the modules;
* felix programming an IPIP pool's cluster routes (`via <node IP> dev tunl0 onlink`, proto
  80, its own blocks as blackholes, the tunnel address on tunl0) while bgpd leaves that pool
  to it (programClusterRoutes' defaults), and the handover when the configuration gives
  the pool to bgpd;
* felix with a VXLAN pool: the VTEP address and vxlan.calico.

This kernel may lack the ipip and vxlan modules: then a veth named tunl0 shows the routes
felix programs (no traffic crosses it) and the data-plane checks skip, saying so.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.netlink.driver import KernelRoutes
from common.netlink.link import NTF_SELF, Address, Neighbour, Vxlan, parse_mac
from common.netlink.linkmsg import (
    encode_dellink,
    encode_delneigh,
    encode_newaddr,
    encode_newlink,
    encode_newneigh,
    encode_setlink,
)
from common.netlink.route import (
    AF_BRIDGE,
    AF_INET,
    RTPROT_BOOT,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
)
from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.felix_node import Felix, Pod, add_pod
from labs.harness.lab import Lab, LabError, Node
from labs.harness.wait import wait_for

pytestmark = pytest.mark.interop

RTPROT_FELIX = 80
MAC = "66:0a:1b:2c:3d:4e"
HAS_IPIP = os.path.exists("/sys/module/ipip")
HAS_VXLAN = os.path.exists("/sys/module/vxlan")
NO_IPIP = "ipip module absent in this kernel (no tunl0): routes checked, IPIP data plane not"
NO_VXLAN = "vxlan module absent in this kernel: vxlan.calico cannot be made; data plane not run"


def ip(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def jq(node: Node, *args: str) -> Any:
    out = node.run(list(args)).stdout.strip()
    return json.loads(out) if out else []


def test_link_address_neighbour_and_onlink_messages_against_the_kernel(lab: Lab) -> None:
    node = lab.add_node("k")
    node.run(["ip", "link", "add", "vtest0", "type", "veth", "peer", "name", "vtest1"])
    mac = parse_mac(MAC)

    async def body() -> dict[str, Any]:
        async with KernelRoutes(RTPROT_BOOT, netns=node.netns) as kr:
            links = {link.name: link for link in await kr.link_list()}
            v0 = links["vtest0"]
            assert (v0.kind, v0.up, len(v0.mac)) == ("veth", False, 6)
            addr = Address(v0.index, AF_INET, ip("10.66.0.1"), 24)
            arp = Neighbour(AF_INET, v0.index, mac, ip("10.66.0.9"))
            fdb = Neighbour(AF_BRIDGE, v0.index, mac, ip("10.66.0.9"), flags=NTF_SELF)
            failed = await kr.execute([
                lambda seq: encode_setlink(v0.index, seq, up=True),
                lambda seq: encode_newaddr(addr, seq),
                lambda seq: encode_newaddr(addr, seq),  # again: a replace, no error
                lambda seq: encode_newneigh(arp, seq),
                lambda seq: encode_newneigh(fdb, seq),
            ])  # fmt: skip
            assert failed == []
            onlink = KernelRoute(AF_INET, ip("10.67.0.0"), 26,
                                 (Nexthop(ip("10.66.0.77"), v0.index, onlink=True),))  # fmt: skip
            assert await kr.apply([RouteOp(OpKind.REPLACE, onlink, RTPROT_FELIX)]) == []
            seen = {
                "up": {link.name: link.up for link in await kr.link_list()}["vtest0"],
                "addresses": [a for a in await kr.addresses(AF_INET) if a.index == v0.index],
                "arp": await kr.neighbours(AF_INET, v0.index),
            }
            shown = {
                "neigh": jq(node, "ip", "-j", "neigh", "show", "dev", "vtest0"),
                "fdb": jq(node, "bridge", "-j", "fdb", "show", "dev", "vtest0"),
                "route": jq(node, "ip", "-j", "route", "show", "proto", str(RTPROT_FELIX)),
            }
            assert await kr.execute([lambda seq: encode_delneigh(arp, seq)]) == []
            seen["after"] = jq(node, "ip", "-j", "neigh", "show", "dev", "vtest0")
            return {**seen, **shown, "addr": addr, "arp_want": arp}

    got = run(body())
    assert got["up"] is True
    assert got["addresses"] == [got["addr"]]
    assert got["arp"] == [got["arp_want"]]
    assert [(n["dst"], n["lladdr"], n["state"]) for n in got["neigh"]] == [
        ("10.66.0.9", MAC, ["PERMANENT"])
    ]
    assert any(f["mac"] == MAC and "self" in f["flags"] and f["state"] == "permanent"
               for f in got["fdb"]), got["fdb"]  # fmt: skip
    (route,) = got["route"]
    assert (route["dst"], route["gateway"]) == ("10.67.0.0/26", "10.66.0.77")
    assert route["dev"] == "vtest0"
    assert "onlink" in route["flags"]
    assert got["after"] == []


def test_tunnel_devices_where_the_kernel_has_them(lab: Lab) -> None:
    node = lab.add_node("t")
    node.run(["ip", "link", "add", "vtest0", "type", "veth", "peer", "name", "vtest1"])
    node.run(["ip", "addr", "add", "10.66.0.1/24", "dev", "vtest0"])

    async def body() -> tuple[list[tuple[int, int, str]], dict[str, Any]]:
        async with KernelRoutes(RTPROT_BOOT, netns=node.netns) as kr:
            parent = {link.name: link for link in await kr.link_list()}["vtest0"].index
            vx = Vxlan(4096, 4789, ip("10.66.0.1"), parent, learning=False)
            failed = await kr.execute([
                lambda seq: encode_newlink("tunl0", "ipip", seq),
                lambda seq: encode_newlink("vxlan.calico", "vxlan", seq, mac=parse_mac(MAC),
                                           vxlan=vx),
            ])  # fmt: skip
            links = {link.name: link for link in await kr.link_list()}
            return failed, links

    failed, links = run(body())
    by_index = {i: (err, msg) for i, err, msg in failed}
    if HAS_IPIP:
        # Loading the module made tunl0 in every namespace: EEXIST, or made now.
        assert 0 not in by_index or by_index[0][0] == errno.EEXIST
        assert links["tunl0"].kind == "ipip"
    else:
        assert by_index[0] == (errno.EOPNOTSUPP, "Unknown device type")
    if not HAS_VXLAN:
        assert by_index[1] == (errno.EOPNOTSUPP, "Unknown device type")
        pytest.skip(NO_VXLAN)
    assert 1 not in by_index
    link = links["vxlan.calico"]
    assert link.vxlan == Vxlan(4096, 4789, ip("10.66.0.1"), links["vtest0"].index, False)
    assert link.mac == parse_mac(MAC)
    (shown,) = jq(node, "ip", "-d", "-j", "link", "show", "vxlan.calico")
    data = shown["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["learning"]) == (
        4096, 4789, "10.66.0.1", False
    )  # fmt: skip
    run(_delete(node, link.index))


async def _delete(node: Node, index: int) -> None:
    async with KernelRoutes(RTPROT_BOOT, netns=node.netns) as kr:
        assert await kr.execute([lambda seq: encode_dellink(index, seq)]) == []


# --- felix and bgpd on two nodes -----------------------------------------------------------

POOL = "10.244.0.0/24"


def pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "pods"},
        "spec": {"cidr": POOL, "blockSize": 28, "natOutgoing": False, **spec},
    }


def apply(node: Node, url: str, tmp: Path, docs: list[dict[str, Any]]) -> None:
    f = tmp / "docs.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    argv = [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, "apply", "-f", str(f)]
    r = node.run(argv, check=False)
    assert r.returncode == 0, r.stderr


def node_spec(node: Node, url: str, name: str) -> dict[str, Any]:
    code = (
        "import asyncio, json, sys\n"
        "from calico.store.kv import open_kv\n"
        "async def main():\n"
        "    async with open_kv(sys.argv[1]) as kv:\n"
        "        item = await kv.get(sys.argv[2])\n"
        "        print(item.value.decode() if item else '{}')\n"
        "asyncio.run(main())\n"
    )
    key = f"/calico/resources/v3/projectcalico.org/nodes/{name}"
    doc = json.loads(node.run([sys.executable, "-c", code, url, key]).stdout)
    return doc.get("spec", {})  # type: ignore[no-any-return]


def block_of(address: str) -> str:
    return str(ipaddress.ip_network(f"{address}/28", strict=False))


def two_nodes(lab: Lab, tmp: Path, **pool_spec: Any) -> tuple[dict[str, Node], dict[str, str], str]:
    switch = lab.add_switch("sw")
    hosts = {n: lab.add_node(n) for n in ("n1", "n2")}
    ips = {n: (switch.attach(h).v4 or "").split("/")[0] for n, h in hosts.items()}
    url = f"sqlite://{tmp}/calico.db"
    others = {"n2": (f"{ips['n2']}/24", None)}
    docs = resources(node="n1", ipv4=f"{ips['n1']}/24", other_nodes=others, pools=[])
    apply(hosts["n1"], url, tmp, [*docs, pool(**pool_spec)])
    return hosts, ips, url


def felix_routes(node: Node) -> dict[str, dict[str, Any]]:
    return {str(r["dst"]): r for r in node.routes(4, proto=RTPROT_FELIX)}


def test_felix_programs_ipip_cluster_routes_and_bgpd_leaves_them(lab: Lab, tmp_path: Path) -> None:
    hosts, ips, url = two_nodes(lab, tmp_path, ipipMode="Always")
    if not HAS_IPIP:
        # A veth named tunl0 stands in: felix finds its device and programs through it.
        for h in hosts.values():
            h.run(["ip", "link", "add", "tunl0", "type", "veth", "peer", "name", "tunl0p"])
    bgpds = {n: Bgpd(h, n, [], datastore=url).start() for n, h in hosts.items()}
    felixes = {n: Felix(h, n, url, resync=1.0).start() for n, h in hosts.items()}
    bgpds["n1"].wait_established(ips["n2"], timeout=60)
    pods: dict[str, Pod] = {n: add_pod(lab, hosts[n], n, url, f"p{n}") for n in hosts}
    b1, b2 = block_of(pods["n1"].address), block_of(pods["n2"].address)

    def programmed() -> bool:
        r = felix_routes(hosts["n1"])
        return b2 in r and b1 in r

    wait_for(programmed, 30, message="felix's IPIP routes on n1")
    r = felix_routes(hosts["n1"])
    assert (r[b2]["gateway"], r[b2]["dev"]) == (ips["n2"], "tunl0")
    assert "onlink" in r[b2]["flags"]
    assert r[b1]["type"] == "blackhole"
    tunnel = node_spec(hosts["n1"], url, "n1")["bgp"]["ipv4IPIPTunnelAddr"]
    wait_for(lambda: tunnel in hosts["n1"].addresses(4), 20, message="tunnel address on tunl0")
    # bgpd learned n2's block by BGP, leaves it (and its own blackhole) to felix, and did
    # not take felix's route for a route of its own.
    wait_for(lambda: "Loc-RIB: present" in bgpds["n1"].bgpctl("explain", b2).stdout, 30,
             message="n2's block in n1's RIB")  # fmt: skip
    e = bgpds["n1"].bgpctl("explain", b2).stdout
    assert "FIB: no: not installed: IPIP with programClusterRoutes EnabledNoEncapOnly" in e
    candidates = json.loads(bgpds["n1"].bgpctl("explain", b2, "--json").stdout)["candidates"]
    mesh = "Mesh_" + ips["n2"].replace(".", "_")
    assert [c["from_peer"] for c in candidates] == [mesh], candidates
    assert not bgpds["n1"].kernel_prefixes(4) & {b1, b2}

    # Handover: the pool goes to bgpd (BGPConfiguration Enabled), felix lets go of it.
    docs = resources(node="n1", ipv4=f"{ips['n1']}/24",
                     other_nodes={"n2": (f"{ips['n2']}/24", None)}, pools=[])  # fmt: skip
    docs[0]["spec"]["programClusterRoutes"] = "Enabled"
    docs.append({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                 "metadata": {"name": "default"},
                 "spec": {"programClusterRoutes": "EnabledNoEncapOnly"}})  # fmt: skip
    apply(hosts["n1"], url, tmp_path, docs)
    wait_for(lambda: not felix_routes(hosts["n1"]), 30, message="felix let go of the pool")
    wait_for(lambda: {b1, b2} <= bgpds["n1"].kernel_prefixes(4), 30,
             message="bgpd programs the pool")  # fmt: skip
    k = bgpds["n1"].kernel_routes(4)
    assert (k[b2]["dev"], k[b2]["gateway"], k[b1]["type"]) == ("tunl0", ips["n2"], "blackhole")
    assert all(f.proc is not None and f.proc.poll() is None for f in felixes.values())
    if not HAS_IPIP:
        pytest.skip(NO_IPIP)
    wait_for(lambda: pods["n1"].netns.ping(pods["n2"].address), 30, message="pod to pod by IPIP")


def test_felix_with_a_vxlan_pool(lab: Lab, tmp_path: Path) -> None:
    hosts, ips, url = two_nodes(lab, tmp_path, vxlanMode="Always")
    felixes = {n: Felix(h, n, url, resync=1.0).start() for n, h in hosts.items()}
    spec = wait_for(lambda: node_spec(hosts["n1"], url, "n1").get("ipv4VXLANTunnelAddr") and
                    node_spec(hosts["n1"], url, "n1"), 30,
                    message="VXLAN tunnel address in the Node")  # fmt: skip
    assert ipaddress.ip_address(spec["ipv4VXLANTunnelAddr"]) in ipaddress.ip_network(POOL)
    assert "ipv4IPIPTunnelAddr" not in spec.get("bgp", {})
    pods = {n: add_pod(lab, hosts[n], n, url, f"p{n}") for n in hosts}
    log = felixes["n1"].log_path
    if not HAS_VXLAN:
        wait_for(lambda: "Unknown device type" in log.read_text(errors="replace"), 30,
                 message="felix reports the kernel's refusal")  # fmt: skip
        text = log.read_text(errors="replace")
        assert "create vxlan.calico (vni 4096, port 4789" in text
        # Its blocks' routes wait for the device; nothing half-made is left behind.
        assert "device vxlan.calico missing" in text
        try:
            hosts["n1"].run(["ip", "link", "show", "vxlan.calico"])
            raise AssertionError("vxlan.calico exists without the vxlan module")
        except LabError:
            pass
        pytest.skip(NO_VXLAN)
    n2 = node_spec(hosts["n1"], url, "n2")
    b2 = block_of(pods["n2"].address)
    wait_for(lambda: b2 in {str(r["dst"]) for r in hosts["n1"].routes(4, proto="boot")}, 30,
             message="VXLAN route on n1")  # fmt: skip
    (route,) = [r for r in hosts["n1"].routes(4, proto="boot") if r["dst"] == b2]
    assert (route["dev"], route["gateway"]) == ("vxlan.calico", n2["ipv4VXLANTunnelAddr"])
    neigh = jq(hosts["n1"], "ip", "-j", "neigh", "show", "dev", "vxlan.calico")
    assert any(n["dst"] == n2["ipv4VXLANTunnelAddr"] for n in neigh), neigh
    fdb = jq(hosts["n1"], "bridge", "-j", "fdb", "show", "dev", "vxlan.calico")
    assert any(f.get("dst") == ips["n2"] for f in fdb), fdb
    wait_for(lambda: pods["n1"].netns.ping(pods["n2"].address), 30, message="pod to pod by VXLAN")
