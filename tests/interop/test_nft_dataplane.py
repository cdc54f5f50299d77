"""The compiler's transactions against the kernel's nftables, without felix: after a run of
model changes applied incrementally (diff after diff), the kernel's table is exactly what
applying the final ruleset whole gives, in a second namespace; a bad transaction changes
nothing (nft -f is atomic); another table is never touched; and `nft monitor` tells felix's
own transactions from other processes' changes."""

from __future__ import annotations

import asyncio
import difflib
import json
import random
import re
import shutil
import sys
from typing import Any

import pytest

from felix.dataplane.nft_compile import Compiler, diff, render
from felix.dataplane.nft_driver import Nft, NftError, PolicyDataplane
from felix.policy.feed import Feed
from felix.policy.index import PolicyIndex
from felix.workload import new_endpoint
from labs.harness.lab import Lab, Node

pytestmark = pytest.mark.skipif(
    shutil.which("nft") is None,
    reason="nft not installed (Debian package nftables; scripts/setup.sh installs it)",
)
RES = "/calico/resources/v3/projectcalico.org/"


def listing(node: Node) -> str:
    """The table's sets, maps, chains and rules (in each chain's order), one per line and
    sorted: nft lists objects in the order they were made, and counters and handles
    differ between two namespaces."""
    doc = json.loads(node.run(["nft", "-j", "list", "table", "inet", "felix"]).stdout)
    lines: list[str] = []
    position: dict[str, int] = {}
    for item in doc["nftables"]:
        ((kind, body),) = item.items()
        if kind in ("metainfo", "table"):
            continue
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind in ("set", "map") and "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        if kind == "rule":
            n = position[body["chain"]] = position.get(body["chain"], -1) + 1
            text = re.sub(r'"counter": \{[^}]*\}', '"counter"', json.dumps(body, sort_keys=True))
            lines.append(f"rule {body['chain']} {n:04d} {text}")
        else:
            lines.append(f"{kind} {json.dumps(body, sort_keys=True)}")
    return "\n".join(sorted(lines))


def put(
    feed: Feed, kind: str, plural: str, name: str, spec: dict[str, Any], ns: str | None = None
) -> None:
    meta: dict[str, Any] = {"name": name}
    key = f"{RES}{plural}/{ns}/{name}" if ns else f"{RES}{plural}/{name}"
    if ns:
        meta["namespace"] = ns
    doc = {"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": meta, "spec": spec}
    feed.put(key, json.dumps(doc).encode())


def test_incremental_transactions_equal_a_whole_table(lab: Lab) -> None:
    a, b = lab.add_node("a"), lab.add_node("b")
    a.run(["nft", "add table ip keep; add chain ip keep c; add rule ip keep c counter accept"])
    index = PolicyIndex("n1")
    feed = Feed(index)
    compiler = Compiler()
    rng = random.Random(3)
    put(feed, "IPPool", "ippools", "p", {"cidr": "10.0.0.0/16", "natOutgoing": True})
    applied = compiler.compile(index)
    a.run(["nft", "-f", "-"], input=render(applied))
    for step in range(40):
        i = rng.randrange(8)
        role = rng.choice(["db", "web", "cache"])
        if rng.random() < 0.6:
            wep = new_endpoint(
                node=rng.choice(["n1", "n2"]),
                container_id=f"c{i}",
                endpoint="eth0",
                interface_name=f"cali{i:011d}",
                ip_networks=[f"10.0.0.{i + 1}/32"],
                mac="",
                network="k8s-pod-network",
                k8s_namespace="default",
                k8s_pod=f"pod{i}",
                labels={"role": role},
            )
            feed.put(wep.key, wep.to_json())
        elif rng.random() < 0.5:
            put(
                feed,
                "NetworkPolicy",
                "networkpolicies",
                f"p{i % 3}",
                {
                    "selector": f"role == '{role}'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {"selector": f"role != '{role}'"},
                            "destination": {"ports": [80 + i, "http"]},
                        }
                    ],
                },
                ns="default",
            )
        else:
            feed.delete(f"{RES}networkpolicies/default/p{i % 3}")
        new = compiler.compile(index)
        transaction = diff(applied, new)
        if transaction:
            a.run(["nft", "-f", "-"], input=transaction)
        applied = new
        if step % 10 == 9:
            b.run(["nft", "-f", "-"], input=render(applied))
            got, want = listing(a), listing(b)
            assert got == want, f"step {step}:\n" + "\n".join(
                difflib.unified_diff(want.splitlines(), got.splitlines(), "whole", "incremental")
            )
    # A transaction the kernel refuses leaves the table as it was.
    before = listing(a)
    bad = diff(applied, applied) + "add rule inet felix forward jump no-such-chain\n"
    assert a.run(["nft", "-f", "-"], input=bad, check=False).returncode != 0
    assert listing(a) == before
    assert "accept" in a.run(["nft", "list", "table", "ip", "keep"]).stdout


def test_dataplane_replaces_a_damaged_table(lab: Lab) -> None:
    """PolicyDataplane falls back to a whole-table transaction when an incremental one is
    refused (someone deleted an element it meant to delete)."""
    node = lab.add_node("n")
    index = PolicyIndex("n1")
    feed = Feed(index)
    wep = new_endpoint(
        node="n1",
        container_id="c",
        endpoint="eth0",
        interface_name="calic",
        ip_networks=["10.0.0.1/32"],
        mac="",
        network="k8s-pod-network",
        k8s_namespace="default",
        k8s_pod="pod",
        labels={"role": "db"},
    )
    feed.put(wep.key, wep.to_json())

    class InNode(Nft):
        async def _run(self, *args: str, stdin: str | None = None) -> str:
            proc = await asyncio.create_subprocess_exec(
                *node.exec_argv(["nft", *args]),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
            if proc.returncode:
                raise NftError(err.decode())
            return out.decode()

    async def main() -> None:
        dp = PolicyDataplane(InNode(library=False))
        assert await dp.sync(index) and dp.full_syncs == 1
        # Someone removes the endpoint's dispatch entry; then the endpoint goes, and the
        # transaction that would remove that entry is refused.
        node.run(["nft", 'delete element inet felix to-wl { "calic" }'])
        feed.delete(wep.key)
        assert await dp.sync(index)
        assert dp.full_syncs == 2  # the incremental transaction failed; the table was replaced
        assert "calic" not in node.run(["nft", "list", "table", "inet", "felix"]).stdout
        assert not await dp.sync(index)  # nothing left to do

    asyncio.run(main())


# Run inside a lab node: felix's Nft with libnftables in-process (transactions in worker
# threads) beside `nft monitor`, and changes by another process, marked "foreign-N".
_MONITOR_SCRIPT = r"""
import asyncio, json, subprocess, time
from felix.dataplane.nft_driver import Nft

async def wait_for(seen, what, deadline):
    while not any(what in s for s in seen):
        if time.monotonic() > deadline:
            raise SystemExit(f"nft monitor never reported {what}: {seen}")
        await asyncio.sleep(0.02)

async def main():
    nft = Nft()
    if nft._lib is None:
        print(json.dumps({"library": False}))
        return
    seen = []
    monitor = asyncio.create_task(nft.monitor(seen.append))
    deadline = time.monotonic() + 20
    subprocess.run(["nft", "add table inet felix"], check=True)
    n = 0
    while not seen:  # until nft monitor is listening: a foreign change is reported
        n += 1
        subprocess.run(["nft", f"add chain inet felix foreign-{n}"], check=True)
        await asyncio.sleep(0.05)
        if time.monotonic() > deadline:
            raise SystemExit("nft monitor reported nothing")
    seen.clear()
    for i in range(5):
        await nft.apply(f"add chain inet felix own-{i}\nadd rule inet felix own-{i} counter\n")
    await nft.apply("delete chain inet felix own-0\n")
    subprocess.run(["nft", "add chain inet felix foreign-last"], check=True)
    await wait_for(seen, "foreign-last", deadline)
    monitor.cancel()
    print(json.dumps({"library": True, "seen": seen}))

asyncio.run(main())
"""


def test_monitor_tells_felixs_own_transactions_from_others(lab: Lab) -> None:
    """Only another process's change to table inet felix is foreign. felix's in-process
    transactions commit from worker threads, which the kernel names by thread ID: were
    they taken for someone else's, each would cause a whole-table replacement, which
    would again be taken for someone else's, without end."""
    node = lab.add_node("n")
    out = node.run([sys.executable, "-c", _MONITOR_SCRIPT], timeout=60).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if not result["library"]:
        pytest.skip("libnftables.so.1 cannot be loaded: felix runs nft -f, its own pids")
    (foreign,) = result["seen"]  # in generation order: the own ones came before it
    assert "foreign-last" in foreign and "own-" not in foreign, result
