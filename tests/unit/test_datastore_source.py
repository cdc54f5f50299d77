"""SnapshotSource for file:// URLs: load, a new Snapshot after each change, a bad edit
logged and skipped (the last good state stays), and open_source's dispatch."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from calico.errors import ResourceError
from calico.filewatch import FileSource
from calico.source import UnsupportedDatastore, file_path, open_source

NODE = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec: {{bgp: {{ipv4Address: 10.0.0.{n}/24}}}}
"""


def nodes(*ns: int) -> str:
    return "---\n".join(NODE.format(name=f"n{n}", n=n) for n in ns)


def replace_file(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_file_urls() -> None:
    assert file_path("file:///etc/bgpd/cluster.yaml") == "/etc/bgpd/cluster.yaml"
    assert file_path("cluster.yaml") == "cluster.yaml"
    assert file_path("etcd://127.0.0.1:2379") is None
    assert isinstance(open_source("file:///x.yaml"), FileSource)
    with pytest.raises(UnsupportedDatastore, match="unsupported datastore 'zk://x'"):
        open_source("zk://x")


def test_changes_bad_edits_and_close(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(nodes(1))

    async def scenario() -> list[list[str]]:
        source = FileSource(str(path), interval=0.05, debounce=0.05)
        first = await source.load()
        seen: list[list[str]] = [sorted(first.nodes)]
        updates = source.updates()

        async def next_update() -> list[str]:
            snap = await asyncio.wait_for(updates.__anext__(), 10)
            return sorted(snap.nodes)

        replace_file(path, nodes(1, 2))
        seen.append(await next_update())
        # A broken file is skipped; the next good one comes through.
        replace_file(path, "kind: [unclosed\n")
        pending = asyncio.ensure_future(next_update())
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "a bad file must not yield a snapshot"
        replace_file(path, nodes(1, 2, 3))
        seen.append(await pending)
        # Rewriting the same content is no change.
        replace_file(path, nodes(1, 2, 3))
        pending = asyncio.ensure_future(next_update())
        done, _ = await asyncio.wait({pending}, timeout=0.5)
        assert not done, "unchanged content must not yield"
        await source.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 5)
        return seen

    assert asyncio.run(scenario()) == [["n1"], ["n1", "n2"], ["n1", "n2", "n3"]]


def test_load_of_a_bad_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("kind: [unclosed\n")
    with pytest.raises(ResourceError, match=r"cluster\.yaml"):
        asyncio.run(FileSource(str(path)).load())


def test_a_node_s_state_keeps_only_its_own_workload_endpoints() -> None:
    """bgpd peers with local workloads only: another node's pods change no Snapshot."""
    from calico import keys
    from calico.codec import encode
    from calico.model import WorkloadEndpoint
    from calico.store.kv import EventType, KeyValue, WatchEvent
    from calico.watch import SnapshotState, watched_prefixes

    assert keys.kind_prefix("WorkloadEndpoint") in watched_prefixes("n1")
    mine = WorkloadEndpoint("w1", "ns", "n1", ip_networks=("10.0.0.1/32",))
    theirs = WorkloadEndpoint("w2", "ns", "n2", ip_networks=("10.0.0.2/32",))
    items = [KeyValue(*encode(w), 1, 1, 1) for w in (mine, theirs)]
    state = SnapshotState(node="n1")
    assert state.reset(items, 1) == []
    before = state.snapshot()
    assert before.workloads_of("n1") == (mine,) and not before.workloads_of("n2")
    key, value = encode(theirs)
    state.apply([WatchEvent(EventType.PUT, key, value, 2)])
    assert state.snapshot().by_kind == before.by_kind
    everyone = SnapshotState()
    everyone.reset(items, 1)
    assert len(everyone.snapshot().workload_endpoints) == 2
