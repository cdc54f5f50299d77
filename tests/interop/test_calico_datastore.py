"""Calico's layout on the real stores: the snapshot source (list, watch, debounce, bad
values, compaction, outages, failover), `apply` against the conformance inputs (keys and
JSON shapes as reference/calico.md gives them), bgpctl's datastore commands with concurrent
writers, and the status reporter's lease."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bgpd.status.nodestatus import node_status_key
from bgpd.status.records import DaemonStatus, PeerStatus
from bgpd.status.reporter import StatusReporter
from calico import keys, resources
from calico.file import read_documents
from calico.snapshot import Snapshot
from calico.store.kv import KVStore, open_kv
from calico.watch import CalicoSource, open_calico_source
from labs.conformance.scenarios import CORPUS
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember, free_port
from labs.harness.needs import require

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def run(coro: Awaitable[T], timeout: float = 90) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec,
    }


BASE = [
    doc("BGPConfiguration", "default", {"asNumber": 64512, "nodeToNodeMeshEnabled": True}),
    doc("Node", "node1", {"bgp": {"ipv4Address": "10.0.0.1/24"}}, labels={"rack": "a"}),
    doc("Node", "node2", {"bgp": {"ipv4Address": "10.0.0.2/24"}}),
    doc("IPPool", "pool", {"cidr": "192.168.0.0/16"}),
    doc("BlockAffinity", "a1", {"node": "node1", "cidr": "192.168.1.0/26"}),
    doc("BlockAffinity", "a2", {"node": "node2", "cidr": "192.168.2.0/26"}),
]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdMember]:
    if ETCD is None:
        pytest.skip(MISSING)
    member = EtcdMember(tmp_path_factory.mktemp("etcd")).start()
    yield member
    member.stop()


@pytest.fixture
def fresh_etcd(tmp_path: Path) -> Iterator[EtcdMember]:
    """An etcd of this test's own (outage tests stop it)."""
    if ETCD is None:
        pytest.skip(MISSING)
    member = EtcdMember(tmp_path).start()
    yield member
    member.stop()


@pytest.fixture(params=["sqlite", "etcd"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/calico.db"
        return
    member: EtcdMember = request.getfixturevalue("etcd")
    u = f"etcd://{member.endpoint}"
    yield u

    async def wipe() -> None:
        async with open_kv(u) as kv:
            listing = await kv.list("/calico/")
            for item in listing.items:
                await kv.delete(item.key)

    run(wipe())


async def apply_all(kv: KVStore, docs: list[dict[str, Any]]) -> None:
    for d in docs:
        await resources.apply(kv, d)


async def next_matching(
    it: AsyncIterator[Snapshot], pred: Callable[[Snapshot], bool], timeout: float = 10
) -> Snapshot:
    async def go() -> Snapshot:
        async for snap in it:
            if pred(snap):
                return snap
        raise AssertionError("updates ended")

    return await asyncio.wait_for(go(), timeout)


def test_load_reads_planner_resources_and_own_affinities(url: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            await apply_all(kv, BASE)
            await kv.put(keys.block_key("192.168.1.0/26"), b'{"cidr":"192.168.1.0/26"}')
        source = open_calico_source(url, node="node1")
        snap = await source.load()
        await source.close()
        assert set(snap.nodes) == {"node1", "node2"}
        assert snap.nodes["node1"].labels == {"rack": "a"}
        assert set(snap.ip_pools) == {"pool"} and snap.ip_pools["pool"].block_size == 26
        assert [a.cidr for a in snap.affinities_of("node1")] == ["192.168.1.0/26"]
        assert snap.affinities_of("node2") == ()  # another node's affinities are not read
        assert not snap.ipam_blocks
        assert snap.revision > 0 and snap.source == url

    run(go())


def test_watch_yields_debounced_changes_and_skips_bad_values(url: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            await apply_all(kv, BASE)
            source = open_calico_source(url, node="node1")
            first = await source.load()
            updates = source.updates()
            waiting = asyncio.ensure_future(
                next_matching(updates, lambda s: "tor" in s.bgp_peers)
            )
            await asyncio.sleep(0.3)
            await resources.apply(
                kv, doc("BGPPeer", "tor", {"peerIP": "10.0.0.254", "asNumber": 65000})
            )
            # A value that fails validation is skipped; it never stops the source.
            await kv.put(keys.resource_key("BGPPeer", "broken"), b'{"spec":{"peerIP":"x"}}')
            await kv.put(keys.resource_key("IPPool", "garbage"), b"{not json")
            snap = await waiting
            assert "broken" not in snap.bgp_peers and "garbage" not in snap.ip_pools
            assert snap.bgp_peers["tor"].as_number == 65000
            assert snap.revision > first.revision
            # Affinity state changes reach the snapshot (pending -> confirmed).
            await resources.apply(
                kv,
                doc("BlockAffinity", "x", {"node": "node1", "cidr": "192.168.9.0/26",
                                           "state": "pending"}),
            )
            snap = await next_matching(updates, lambda s: len(s.affinities_of("node1")) == 2)
            assert {a.state for a in snap.affinities_of("node1")} == {"confirmed", "pending"}
            await kv.delete(keys.affinity_key("node1", "192.168.9.0/26"))
            snap = await next_matching(updates, lambda s: len(s.affinities_of("node1")) == 1)
            await updates.aclose()  # type: ignore[attr-defined]
            await source.close()

    run(go())


def test_compacted_watch_resyncs_from_a_fresh_list(url: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            await apply_all(kv, BASE)
            source = open_calico_source(url, node="node1")
            await source.load()
            # Changes, then compaction, before the source starts watching: its watch from
            # the loaded revision is compacted and it must list afresh.
            await resources.apply(kv, doc("BGPPeer", "p1", {"peerIP": "10.1.1.1"}))
            await resources.delete(kv, doc("Node", "node2", {}))
            rev = (await kv.list("/calico/")).revision
            await kv.compact(rev)
            updates = source.updates()
            snap = await next_matching(updates, lambda s: "p1" in s.bgp_peers)
            assert "node2" not in snap.nodes
            await updates.aclose()  # type: ignore[attr-defined]
            await source.close()

    run(go())


def test_resync_without_changes_yields_nothing(tmp_path: Path) -> None:
    """A resync that finds the same resources is silent, so nothing downstream flaps."""
    url = f"sqlite://{tmp_path}/s.db"

    async def go() -> None:
        async with open_kv(url) as kv:
            await apply_all(kv, BASE)
            source = open_calico_source(url, node="node1")
            assert isinstance(source, CalicoSource)
            snap = await source.load()
            # Unrelated writes (other nodes' affinities, statuses) move the revision only.
            await kv.put(keys.affinity_key("node2", "192.168.7.0/26"), b"")
            await kv.put(node_status_key("node2"), b"{}")
            await kv.compact((await kv.list("/")).revision)
            again = await source._resync()
            assert again is not None and source._changed(again) is None
            assert again.by_kind == snap.by_kind
            await source.close()

    run(go())


def test_etcd_outage_keeps_last_state_and_recovers(fresh_etcd: EtcdMember) -> None:
    url = f"etcd://{fresh_etcd.endpoint}"

    async def go() -> None:
        async with open_kv(url) as kv:
            await apply_all(kv, BASE)
        source = open_calico_source(url, node="node1")
        source.backoff = (0.2, 1.0)
        snap = await source.load()
        updates = source.updates()
        seen: list[Snapshot] = []

        async def follow() -> None:
            async for s in updates:
                seen.append(s)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(fresh_etcd.stop)
        await asyncio.sleep(2.0)  # the source retries meanwhile; nothing is yielded
        assert seen == [] and not task.done()
        await asyncio.to_thread(fresh_etcd.start)
        async with open_kv(url) as kv:
            await resources.apply(kv, doc("BGPPeer", "after", {"peerIP": "10.9.9.9"}))
        deadline = time.monotonic() + 20
        while not any("after" in s.bgp_peers for s in seen):
            assert time.monotonic() < deadline, "no snapshot after etcd came back"
            assert not task.done()
            await asyncio.sleep(0.1)
        assert set(seen[-1].nodes) == set(snap.nodes)
        task.cancel()
        await source.close()

    run(go())


def test_etcd_failover_to_a_live_endpoint(etcd: EtcdMember) -> None:
    dead = f"127.0.0.1:{free_port()}"
    url = f"etcd://{dead},{etcd.endpoint}"

    async def go() -> None:
        async with open_kv(url) as kv:
            await kv.put("/failover/k", b"v")
            got = await kv.get("/failover/k")
            assert got is not None and got.value == b"v"
            await kv.delete("/failover/k")

    run(go())


def test_three_member_cluster_survives_losing_its_member(tmp_path: Path) -> None:
    if ETCD is None:
        pytest.skip(MISSING)
    from labs.harness.etcd_server import cluster

    members = cluster(tmp_path, 3)
    try:
        url = "etcd://" + ",".join(m.endpoint for m in members)

        async def go() -> None:
            async with open_kv(url) as kv:
                await apply_all(kv, BASE)
            source = open_calico_source(url, node="node1")
            source.backoff = (0.2, 1.0)
            await source.load()
            updates = source.updates()
            pending = asyncio.ensure_future(
                next_matching(updates, lambda s: "late" in s.bgp_peers, timeout=30)
            )
            await asyncio.sleep(0.5)
            # Kill the member the source talks to (the first endpoint).
            await asyncio.to_thread(members[0].stop)
            async with open_kv(url) as kv:
                await resources.apply(kv, doc("BGPPeer", "late", {"peerIP": "10.7.7.7"}))
            snap = await pending
            assert "late" in snap.bgp_peers
            await updates.aclose()  # type: ignore[attr-defined]
            await source.close()

        run(go())
    finally:
        for m in members:
            m.stop()


# --- apply: keys and JSON shapes ---------------------------------------------------------


def _conformance_inputs() -> list[Path]:
    if CORPUS is None:
        return []
    return sorted((CORPUS / "mock_data" / "calicoctl").rglob("input.yaml"))


INPUTS = _conformance_inputs()


def test_conformance_inputs_apply_in_calicos_layout(url: str) -> None:
    require(INPUTS, "calico-confd conformance corpus not found")
    async def go() -> None:
        async with open_kv(url) as kv:
            checked = 0
            for path in INPUTS[:12]:
                listing = await kv.list("/calico/")
                for item in listing.items:
                    await kv.delete(item.key)
                docs = [d for d in read_documents(path.read_text()) if d]
                for d in docs:
                    await resources.apply(kv, d)
                stored = {i.key: json.loads(i.value) for i in (await kv.list("/calico/")).items}
                for d in docs:
                    kind, name = d["kind"], d["metadata"]["name"]
                    if kind == "BlockAffinity":
                        key = keys.affinity_key(d["spec"]["node"], d["spec"]["cidr"])
                        assert "-" in key.rsplit("/", 1)[1]
                        assert set(stored[key]) == {"state", "deleted"}
                        continue
                    key = f"/calico/resources/v3/projectcalico.org/{keys.PLURALS[kind]}/{name}"
                    value = stored[key]
                    assert value["kind"] == kind and value["apiVersion"] == "projectcalico.org/v3"
                    assert value["metadata"]["name"] == name
                    assert "resourceVersion" not in value["metadata"]
                    assert value["metadata"]["uid"] and value["metadata"]["creationTimestamp"]
                    # camelCase spec keys, as the user wrote them.
                    for field in d.get("spec") or {}:
                        assert field in value["spec"], (path, kind, name, field)
                    checked += 1
            assert checked > 20

    run(go())


def test_ipam_values_are_snake_case_and_cidr_keys_dashed(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/s.db"

    async def go() -> None:
        async with open_kv(url) as kv:
            await resources.apply(
                kv,
                doc("IPAMBlock", "192-168-221-64-30",
                    {"cidr": "192.168.221.64/30", "affinity": "host:node1",
                     "allocations": [0, None, None, None], "unallocated": [1, 2, 3],
                     "attributes": [{"handle_id": "ipip-tunnel-addr-node1",
                                     "secondary": {"node": "node1"}}]}),
            )
            got = await kv.get("/calico/ipam/v2/assignment/ipv4/block/192.168.221.64-30")
            assert got is not None
            value = json.loads(got.value)
            assert value["attributes"][0]["handle_id"] == "ipip-tunnel-addr-node1"
            assert value["affinity"] == "host:node1" and value["allocations"][0] == 0
            await resources.apply(
                kv, doc("BlockAffinity", "b", {"node": "node1", "cidr": "fd00:1:2::/122"})
            )
            assert await kv.get("/calico/ipam/v2/host/node1/ipv6/block/fd00:1:2::-122")

    run(go())


# --- bgpctl -------------------------------------------------------------------------------


def bgpctl(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, input=stdin,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_bgpctl_apply_get_delete_and_clear_errors(url: str, tmp_path: Path) -> None:
    import yaml

    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump_all(BASE))
    r = bgpctl(url, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr
    assert "Successfully applied 6 resource(s)" in r.stdout
    r = bgpctl(url, "get", "nodes")
    assert r.returncode == 0 and r.stdout.split() == ["NAME", "node1", "node2"]
    r = bgpctl(url, "get", "node", "node1", "-o", "json")
    obj = json.loads(r.stdout)
    assert obj["spec"]["bgp"]["ipv4Address"] == "10.0.0.1/24"
    assert int(obj["metadata"]["resourceVersion"]) > 0
    r = bgpctl(url, "get", "blockaffinities", "-o", "yaml")
    assert "192.168.1.0/26" in r.stdout and "BlockAffinityList" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([
        doc("BGPPeer", "ok", {"peerIP": "10.0.0.9"}),
        doc("BGPPeer", "typo", {"peerIP": "10.0.0.300"}),
    ]))
    r = bgpctl(url, "apply", "-f", str(bad))
    assert r.returncode == 1
    assert "BGPPeer 'typo'" in r.stderr and "spec.peerIP" in r.stderr
    assert bgpctl(url, "get", "bgppeer", "ok").returncode == 1  # nothing was written
    r = bgpctl(url, "get", "nosuchkind")
    assert r.returncode == 2 and "unknown resource type" in r.stderr
    r = bgpctl(url, "delete", "-f", str(f))
    assert r.returncode == 0 and "Successfully deleted 6" in r.stdout
    r = bgpctl(url, "delete", "-f", str(f))
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_bgpctl_concurrent_writers_lose_nothing(url: str, tmp_path: Path) -> None:
    """Writers race to apply: each its own peers, and all of them the same Node with its
    own label merged in by a read-modify-write... via apply's CAS retries."""
    import yaml

    procs = []
    for w in range(3):
        f = tmp_path / f"w{w}.yaml"
        f.write_text(yaml.safe_dump_all([
            doc("BGPPeer", f"w{w}-p{i}", {"peerIP": f"10.{w}.0.{i + 1}"}) for i in range(8)
        ] + [doc("Node", "shared", {"bgp": {"ipv4Address": "10.0.0.50/24"}},
                 labels={"writer": str(w)})]))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, "apply", "-f", str(f)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    r = bgpctl(url, "get", "bgppeers", "-o", "json")
    names = {o["metadata"]["name"] for o in json.loads(r.stdout)["items"]}
    assert names == {f"w{w}-p{i}" for w in range(3) for i in range(8)}
    node = json.loads(bgpctl(url, "get", "node", "shared", "-o", "json").stdout)
    assert node["metadata"]["labels"]["writer"] in {"0", "1", "2"}


# --- status reporting ----------------------------------------------------------------------


def _status(node: str, state: str = "Established") -> DaemonStatus:
    return DaemonStatus(
        router_id="10.0.0.1", asn=64512, node=node, version="0.1.0", started=time.time() - 60,
        peers=[PeerStatus(
            name="Mesh_10_0_0_2", address="10.0.0.2", port=179, type="node-to-node mesh",
            peer_as=64512, local_as=64512, bgp_state=state, since=time.time() - 30, info="",
            routes_received=3, routes_advertised=2, family="ipv4",
        )],
    )


def test_status_reporter_writes_under_a_lease_that_expires(url: str) -> None:
    from bgpd.cli.datastore_cmds import format_all_nodes, node_statuses

    async def go() -> None:
        async with open_kv(url) as kv:
            alive = StatusReporter(open_kv(url), "node1", lambda: _status("node1"), interval=0.3,
                                   ttl=2)
            dying = StatusReporter(open_kv(url), "node2", lambda: _status("node2", "Active"),
                                   interval=0.3, ttl=2)
            alive.start()
            dying.start()
            deadline = time.monotonic() + 10
            while len(await node_statuses(kv)) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            statuses = await node_statuses(kv)
            text = format_all_nodes(statuses, time.time())
            assert "node1: router ID 10.0.0.1, AS 64512" in text
            assert "node-to-node mesh" in text and "Established" in text
            got = {s.node: s for s in statuses}
            assert got["node1"].status.peers[0].routes_received == 3
            # node2 dies: its task stops and its lease is never renewed.
            assert dying._task is not None
            dying._task.cancel()
            deadline = time.monotonic() + 15
            while {s.node for s in await node_statuses(kv)} != {"node1"}:
                assert time.monotonic() < deadline, "a dead node's status did not expire"
                await asyncio.sleep(0.2)
            # A clean stop withdraws at once.
            await alive.stop()
            assert await node_statuses(kv) == []
            await dying.kv.close()

    run(go())


def test_bgpctl_status_all_nodes(url: str) -> None:
    async def go() -> None:
        reporter = StatusReporter(open_kv(url), "node7", lambda: _status("node7"), interval=5)
        await reporter.report()
        await reporter.kv.close()

    run(go())
    r = bgpctl(url, "status", "--all-nodes")
    assert r.returncode == 0, r.stderr
    assert "node7: router ID 10.0.0.1" in r.stdout and "10.0.0.2" in r.stdout
    r = bgpctl(url, "status", "--all-nodes", "--json")
    data = json.loads(r.stdout)
    assert data[0]["node"] == "node7" and data[0]["peers"][0]["routes_advertised"] == 2
