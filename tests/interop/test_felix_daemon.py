"""The felix daemon in a node's namespace against a SQLite datastore: routes of endpoints
deleted while it was down are cleaned up at start, a removed workload route comes back, its
status sits under a lease that goes when it stops, and an IPIP pool gets the node a tunnel
address (released again when the pool stops asking for IPIP)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from calico.ipam import handle_key
from felix.status import status_key
from felix.workload import PREFIX
from labs.harness.felix_node import Felix, add_pod
from labs.harness.lab import Lab
from labs.harness.wait import wait_for

RES = "/calico/resources/v3/projectcalico.org/"


def pool(ipip: str) -> dict[str, Any]:
    return {
        "kind": "IPPool",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "pods"},
        "spec": {"cidr": "10.244.0.0/24", "blockSize": 28, "ipipMode": ipip},
    }


NODE = {
    "kind": "Node",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "node1"},
    "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}},
}


def kv(url: str, method: str, *args: object) -> Any:
    from calico.store.kv import open_kv

    async def main() -> Any:
        async with open_kv(url) as store:
            return await getattr(store, method)(*args)

    return asyncio.run(main())


def put(url: str, key: str, doc: dict[str, Any]) -> None:
    kv(url, "put", key, json.dumps(doc).encode())


def node_spec(url: str) -> dict[str, Any]:
    item = kv(url, "get", RES + "nodes/node1")
    return json.loads(item.value)["spec"]  # type: ignore[no-any-return]


def cali_routes(node: Any) -> dict[str, str]:
    return {
        str(r["dst"]): str(r["dev"])
        for r in node.routes(4)
        if str(r.get("dev", "")).startswith("cali")
    }


def test_felix_routes_status_and_tunnel_address(lab: Lab, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/calico.db"
    put(url, RES + "ippools/pods", pool("Always"))
    put(url, RES + "nodes/node1", NODE)
    host = lab.add_node("host")

    # Two pods while felix is down; one's endpoint then vanishes (deleted behind our back).
    keep = add_pod(lab, host, "node1", url, "keep")
    stale = add_pod(lab, host, "node1", url, "stale")
    routes = cali_routes(host)
    assert {keep.address, stale.address} <= set(routes)
    (stale_key,) = [i.key for i in kv(url, "list", PREFIX).items if b"stale" in i.value]
    kv(url, "delete", stale_key)

    felix = Felix(host, "node1", url, resync=1.0).start()
    wait_for(
        lambda: stale.address not in cali_routes(host),
        20,
        message="felix removed the stale endpoint's route at start",
    )
    assert keep.address in cali_routes(host)

    # A workload route deleted by hand comes back.
    host.run(["ip", "route", "del", f"{keep.address}/32"])
    wait_for(lambda: keep.address in cali_routes(host), 20, message="felix restored the route")
    assert f"{keep.address}/32" in host.route_prefixes(4, proto="boot")

    # Status under a lease.
    item = wait_for(lambda: kv(url, "get", status_key("node1")), 20, message="status written")
    assert item.lease != 0
    status = json.loads(item.value)
    assert set(status) == {"time", "uptime", "first_update"}

    # The IPIP pool gets the node a tunnel address, recorded in its Node.
    tunnel = wait_for(
        lambda: node_spec(url)["bgp"].get("ipv4IPIPTunnelAddr"),
        20,
        message="tunnel address in the Node",
    )
    assert tunnel.startswith("10.244.0.")
    assert kv(url, "get", handle_key("ipip-tunnel-addr-node1")) is not None
    if os.path.exists("/sys/module/ipip"):
        wait_for(
            lambda: tunnel in host.run(["ip", "-4", "addr", "show", "tunl0"]).stdout,
            20,
            message="tunnel address on tunl0",
        )
    # No more IPIP: the address is given back and the Node forgets it.
    put(url, RES + "ippools/pods", pool("Never"))
    wait_for(
        lambda: "ipv4IPIPTunnelAddr" not in node_spec(url)["bgp"],
        20,
        message="tunnel address released",
    )
    assert kv(url, "get", handle_key("ipip-tunnel-addr-node1")) is None

    # A clean stop revokes the status lease.
    felix.stop()
    assert kv(url, "get", status_key("node1")) is None
