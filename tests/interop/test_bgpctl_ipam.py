"""bgpctl ipam show / check / release over a real store (the SQLite file, a real etcd) whose
addresses felix-cni allocated for pods in network namespaces, as a container runtime drives
it. What bgpctl shows agrees with the stored blocks and handles; a pod whose
WorkloadEndpoint went away without its IPAM release (a crashed DEL) is found leaked, as is a
handle nothing refers to; `release --ip` refuses a running pod's address with a clear
message and changes nothing; `release --from-report` frees the leak and the handle, the
check comes out clean, and felix hands the freed address to the next pod."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from calico.ipam import Block, Handle, handle_key
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember
from labs.harness.felix_node import add_pod
from labs.harness.lab import Lab, Node

pytestmark = pytest.mark.interop

POOL = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "IPPool",
    "metadata": {"name": "pods"},
    # Two /30 blocks: node1 fills one, node2 claims the other, node1's fifth pod borrows.
    "spec": {"cidr": "10.66.0.0/29", "blockSize": 30, "ipipMode": "Never"},
}


def kv(node: Node, url: str, code: str, *args: str) -> Any:
    """Run `code` (an async body with `kv` open) in `node`, where the store is reachable;
    what it prints, as JSON."""
    script = (
        "import asyncio, json, sys\n"
        "from calico.store.kv import open_kv\n"
        "async def main():\n"
        "    async with open_kv(sys.argv[1]) as kv:\n"
        + "".join(f"        {line}\n" for line in code.splitlines())
        + "asyncio.run(main())\n"
    )
    out = node.run([sys.executable, "-c", script, url, *args]).stdout
    return json.loads(out) if out.strip() else None


def stored(node: Node, url: str) -> tuple[dict[str, Block], dict[str, Handle]]:
    items = kv(
        node,
        url,
        "items = (await kv.list('/calico/ipam/v2/assignment/', '/calico/ipam/v2/handle/')).items\n"
        "print(json.dumps({i.key: i.value.decode() for i in items}))",
    )
    blocks = {k: Block.from_json(v) for k, v in items.items() if "/assignment/" in k}
    handles = {
        k.rsplit("/", 1)[1]: Handle.from_json(v) for k, v in items.items() if "/handle/" in k
    }
    return {b.cidr: b for b in blocks.values()}, handles


def bgpctl(node: Node, url: str, *args: str) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, *args]
    r = node.run(argv, check=False, timeout=120)
    return r.returncode, r.stdout, r.stderr


def table(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ][1:]


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_show_check_release_against_felix_pods(lab: Lab, tmp_path: Path, backend: str) -> None:
    switch = lab.add_switch("sw")
    host1, host2 = lab.add_node("h1"), lab.add_node("h2")
    switch.attach(host1)
    switch.attach(host2)
    if backend == "sqlite":
        url = f"sqlite://{tmp_path}/calico.db"
    else:
        if ETCD is None:
            pytest.skip(MISSING)
        db = lab.add_node("db")
        member = EtcdMember(tmp_path, host=switch.attach(db).v4 or "", node=db).start()
        url = f"etcd://{member.endpoint}"
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(json.dumps(POOL))
    assert bgpctl(host1, url, "apply", "-f", str(pool_file))[0] == 0

    pods = {f"pod{i}": add_pod(lab, host1, "node1", url, f"pod{i}") for i in range(4)}
    pods["far"] = add_pod(lab, host2, "node2", url, "far")
    pods["pod4"] = add_pod(lab, host1, "node1", url, "pod4")

    # show: the numbers are the stored blocks'.
    blocks, handles = stored(host1, url)
    code, out, err = bgpctl(host1, url, "ipam", "show", "--show-blocks")
    assert code == 0, err
    used = {cidr: len(b.allocations) - b.free for cidr, b in blocks.items()}
    assert sorted(used.values()) == [2, 4]
    rows = table(out)
    assert rows[0] == ["IP Pool", "10.66.0.0/29", "8", "6 (75%)", "2 (25%)"]
    assert {r[1]: int(r[3].split()[0]) for r in rows[1:]} == used
    code, out, _ = bgpctl(host1, url, "ipam", "show", "--show-borrowed")
    (borrowed,) = table(out)
    assert borrowed[:2] == [pods["pod4"].address, "node1"] and borrowed[3] == "node2"
    code, out, _ = bgpctl(host1, url, "ipam", "show", "--ip", pods["pod1"].address)
    handle = next(
        b.handle_of(o)
        for b in blocks.values()
        if (o := b.ordinal(pods["pod1"].address)) is not None
    )
    assert out.splitlines()[:2] == [f"IP {pods['pod1'].address} is in use", f"Handle ID: {handle}"]
    assert "  pod: pod1" in out.splitlines()

    code, out, _ = bgpctl(host1, url, "ipam", "check")
    assert code == 0 and out.splitlines()[-1] == "Check complete; found 0 problems.", out
    assert "Found 6 workload IPs." in out and "IPAM blocks record 6 allocations." in out

    # A DEL that crashed after removing pod2's WorkloadEndpoint, and a handle left behind.
    leaked = pods["pod2"].address
    ghost = Handle({"10.66.0.0/30": 1})
    kv(
        host1,
        url,
        "for i in (await kv.list(sys.argv[2])).items:\n"
        "    if '-pod2-' in i.key:\n"
        "        await kv.delete(i.key)\n"
        "await kv.put(sys.argv[3], sys.argv[4].encode())",
        "/calico/resources/v3/projectcalico.org/workloadendpoints/",
        handle_key("k8s-pod-network.ghost"),
        ghost.to_json().decode(),
    )
    report = tmp_path / "report.json"
    code, out, _ = bgpctl(host1, url, "ipam", "check", "--show-problem-ips", "-o", str(report))
    lines = out.splitlines()
    assert any(line.startswith(f"  {leaked} leaked; attrs Main:") for line in lines), out
    assert "Found 1 IPs that are allocated in IPAM but not actually in use." in lines
    assert "Found 1 handles with no matching IPs (and 6 handles with matches)." in lines
    assert lines[-1] == "Check complete; found 2 problems."

    # A running pod's address is refused, and nothing changes.
    running = pods["pod1"].address
    code, out, err = bgpctl(host1, url, "ipam", "release", "--ip", running)
    assert code == 1 and out == ""
    assert err.startswith(f"bgpctl: IP address {running} is in use by Workload(default/")
    assert "not releasing it" in err
    assert stored(host1, url) == (
        blocks,
        {**handles, "k8s-pod-network.ghost": ghost},
    )

    code, out, err = bgpctl(host1, url, "ipam", "release", "--from-report", str(report), "--force")
    assert code == 0, err
    assert (
        "Released 1 IPs successfully" in out and "Released 1 handles; 0 skipped; 0 errors." in out
    )
    after, after_handles = stored(host1, url)
    assert "k8s-pod-network.ghost" not in after_handles and len(after_handles) == len(handles) - 1
    assert all(
        leaked != b.address(o)
        for b in after.values()
        for o, i in enumerate(b.allocations)
        if i is not None
    )
    code, out, _ = bgpctl(host1, url, "ipam", "check")
    assert out.splitlines()[-1] == "Check complete; found 0 problems.", out
    code, out, _ = bgpctl(host1, url, "ipam", "show")
    assert table(out)[0][3] == "5 (62%)"

    # felix gives the freed address to the next pod on node1 (its block's only free slot).
    again = add_pod(lab, host1, "node1", url, "pod5")
    assert ipaddress.ip_address(again.address) == ipaddress.ip_address(leaked)
