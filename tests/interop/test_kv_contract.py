"""One contract, two stores: the same tests run against a real etcd on loopback and the
embedded SQLite file (CRUD, ranged list, watch order and resume, CAS conflicts, leases,
compaction), plus several processes racing compare-and-swap updates on one key."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from calico.errors import Compacted, Conflict, LeaseNotFound
from calico.store.kv import Compare, Delete, EventType, Put, WatchEvent, mutate, open_kv
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdMember]:
    if ETCD is None:
        pytest.skip(MISSING)
    member = EtcdMember(tmp_path_factory.mktemp("etcd")).start()
    yield member
    member.stop()


@pytest.fixture(params=["sqlite", "etcd"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    member: EtcdMember = request.getfixturevalue("etcd")
    return f"etcd://{member.endpoint}"


@pytest.fixture
def prefix() -> str:
    # etcd is shared by a module's tests: each test works under its own prefix.
    return f"/t/{uuid.uuid4().hex[:8]}/"


async def collect(
    it: AsyncIterator[WatchEvent], count: int, timeout: float = 10
) -> list[WatchEvent]:
    out: list[WatchEvent] = []

    async def take() -> None:
        async for ev in it:
            out.append(ev)
            if len(out) >= count:
                return

    await asyncio.wait_for(take(), timeout)
    return out


def test_crud_and_revisions(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            k = prefix + "a"
            assert await kv.get(k) is None
            r1 = await kv.create(k, b"1")
            got = await kv.get(k)
            assert got is not None
            assert (got.value, got.create_revision, got.mod_revision, got.version) == (
                b"1", r1, r1, 1
            )
            r2 = await kv.update(k, b"2", r1)
            assert r2 > r1
            got = await kv.get(k)
            assert got is not None and (got.value, got.version, got.create_revision) == (
                b"2", 2, r1
            )
            r3 = await kv.delete(k, r2)
            assert r3 > r2
            assert await kv.get(k) is None
            # Deleting what is not there changes nothing, and is no error without a revision.
            assert await kv.delete(k) == r3 or await kv.get(k) is None

    run(go())


def test_cas_conflicts(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            k = prefix + "block"
            r1 = await kv.create(k, b"v1")
            with pytest.raises(Conflict):
                await kv.create(k, b"again")
            r2 = await kv.update(k, b"v2", r1)
            with pytest.raises(Conflict):
                await kv.update(k, b"stale", r1)  # written over what someone else wrote
            with pytest.raises(Conflict):
                await kv.delete(k, r1)
            got = await kv.get(k)
            assert got is not None and got.value == b"v2" and got.mod_revision == r2
            # A multi-key transaction is all or nothing.
            other = prefix + "handle"
            result = await kv.txn(
                [Compare(k, r2), Compare(other, 0)], [Put(k, b"v3"), Put(other, b"h")]
            )
            assert result.succeeded
            result = await kv.txn([Compare(k, r2), Compare(other, 0)], [Delete(k)])
            assert not result.succeeded
            assert (await kv.get(k)) is not None

    run(go())


def test_ranged_list_is_sorted_and_bounded(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            for name in ("b", "a", "c/d", "c/e"):
                await kv.put(prefix + "x/" + name, name.encode())
            await kv.put(prefix + "x", b"not under x/")
            await kv.put(prefix + "y/z", b"other")
            listing = await kv.list(prefix + "x/")
            assert [i.key for i in listing.items] == [
                prefix + "x/" + n for n in ("a", "b", "c/d", "c/e")
            ]
            both = await kv.list(prefix + "y/", prefix + "x/c/")
            assert [i.key for i in both.items] == [
                prefix + "x/c/d", prefix + "x/c/e", prefix + "y/z"
            ]
            assert listing.revision <= both.revision
            assert both.revision >= max(i.mod_revision for i in both.items)

    run(go())


def test_watch_order_and_resume(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            start = (await kv.list(prefix)).revision + 1
            w = kv.watch(prefix, start)
            task = asyncio.ensure_future(collect(w, 4))
            await asyncio.sleep(0.3)  # let the watch be established (etcd: from `start` anyway)
            r1 = await kv.put(prefix + "a", b"1")
            r2 = await kv.put(prefix + "b", b"2")
            await kv.put("/elsewhere/" + prefix, b"unwatched")
            r3 = await kv.put(prefix + "a", b"3")
            r4 = await kv.delete(prefix + "b")
            events = await task
            await w.aclose()  # type: ignore[attr-defined]
            assert [(e.type, e.key, e.value, e.mod_revision) for e in events] == [
                (EventType.PUT, prefix + "a", b"1", r1),
                (EventType.PUT, prefix + "b", b"2", r2),
                (EventType.PUT, prefix + "a", b"3", r3),
                (EventType.DELETE, prefix + "b", b"", r4),
            ]
            # Resuming from a revision replays exactly what followed it.
            again = kv.watch(prefix, r2 + 1)
            replay = await collect(again, 2)
            await again.aclose()  # type: ignore[attr-defined]
            assert [e.mod_revision for e in replay] == [r3, r4]

    run(go())


def test_compacted_watch_raises(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            r1 = await kv.put(prefix + "a", b"1")
            await kv.put(prefix + "a", b"2")
            r3 = await kv.put(prefix + "a", b"3")
            await kv.compact(r3)
            w = kv.watch(prefix, r1)
            with pytest.raises(Compacted):
                await collect(w, 1)
            # From the compaction point on, history is still there.
            w2 = kv.watch(prefix, r3)
            assert [e.value for e in await collect(w2, 1)] == [b"3"]
            await w2.aclose()  # type: ignore[attr-defined]

    run(go())


def test_lease_expiry_deletes_keys_and_is_watched(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv:
            lease = await kv.grant(1)
            kept = await kv.grant(30)
            await kv.put(prefix + "status", b"alive", lease=lease)
            r = await kv.put(prefix + "kept", b"k", lease=kept)
            assert await kv.keepalive(kept) == 30
            w = kv.watch(prefix, r + 1)
            events = await collect(w, 1, timeout=15)  # etcd checks expiry every ~0.5 s
            await w.aclose()  # type: ignore[attr-defined]
            assert (events[0].type, events[0].key) == (EventType.DELETE, prefix + "status")
            assert await kv.get(prefix + "status") is None
            with pytest.raises(LeaseNotFound):
                await kv.keepalive(lease)
            with pytest.raises(LeaseNotFound):
                await kv.put(prefix + "late", b"x", lease=lease)
            assert await kv.get(prefix + "kept") is not None
            await kv.revoke(kept)
            assert await kv.get(prefix + "kept") is None

    run(go())


def test_mutate_retries_over_a_concurrent_writer(url: str, prefix: str) -> None:
    async def go() -> None:
        async with open_kv(url) as kv, open_kv(url) as rival:
            k = prefix + "counter"
            await kv.put(k, b"0")
            interfered = False

            def bump(current: Any) -> bytes:
                return str(int(current.value) + 1).encode()

            # The rival writes between our read and our write, once.
            original_get = kv.get

            async def get_then_interfere(key: str) -> Any:
                nonlocal interfered
                got = await original_get(key)
                if not interfered:
                    interfered = True
                    await mutate(rival, k, bump)
                return got

            kv.get = get_then_interfere  # type: ignore[method-assign]
            await mutate(kv, k, bump)
            final = await original_get(k)
            assert final is not None and final.value == b"2"

    run(go())


WRITER = r"""
import asyncio, json, sys
from calico.store.kv import open_kv, mutate

async def main(url, key, n, me):
    async with open_kv(url) as kv:
        def add(current):
            data = json.loads(current.value) if current else {"allocations": []}
            data["allocations"].append(me)
            return json.dumps(data).encode()
        for i in range(n):
            await mutate(kv, key, add, attempts=1000)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""


def test_processes_racing_cas_lose_no_update(url: str, prefix: str, tmp_path: Path) -> None:
    """Several processes append to one IPAM-block-like value with CAS: every append lands."""
    writers, each = 4, 15
    key = prefix + "ipam/v2/assignment/ipv4/block/10.0.0.0-26"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, key, str(each), f"w{i}"],
            cwd=Path(__file__).resolve().parents[2],
            stderr=subprocess.PIPE,
        )
        for i in range(writers)
    ]
    deadline = time.monotonic() + 120
    for p in procs:
        _, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        assert p.returncode == 0, err.decode()

    async def read() -> dict[str, Any]:
        async with open_kv(url) as kv:
            got = await kv.get(key)
            assert got is not None
            return json.loads(got.value)  # type: ignore[no-any-return]

    data = run(read())
    expected = sorted(f"w{i}" for i in range(writers) for _ in range(each))
    assert sorted(data["allocations"]) == expected


def test_sqlite_lease_expiry_on_a_fake_clock(tmp_path: Path) -> None:
    """The embedded store reaps an expired lease on any touch, logging the deletes."""
    from calico.store.sqlite import SqliteStore

    now = [1000.0]
    a = SqliteStore(str(tmp_path / "s.db"), clock=lambda: now[0])
    lease = a.grant(10)
    a.txn([], [Put("/k", b"v", lease)])
    rev = a.revision()
    now[0] += 9
    assert a.get("/k") is not None
    assert a.keepalive(lease) == 10
    now[0] += 9.5
    assert a.get("/k") is not None
    now[0] += 1
    assert a.get("/k") is None
    events, _ = a.events("/", rev + 1)
    assert [(e.type, e.key) for e in events] == [(EventType.DELETE, "/k")]
    a.close()


def test_sqlite_auto_compaction_keeps_recent_history(tmp_path: Path) -> None:
    from calico.store import sqlite as backend

    store = backend.SqliteStore(str(tmp_path / "s.db"))
    for i in range(2100):
        store.txn([], [Put("/k", str(i).encode())])
    rev = store.revision()
    old_keep = backend.KEEP_REVISIONS
    try:
        backend.KEEP_REVISIONS = 500
        for _ in range(1000 - rev % 1000):
            store.txn([], [Put("/k", b"x")])
    finally:
        backend.KEEP_REVISIONS = old_keep
    with pytest.raises(Compacted):
        store.events("/", 2)
    events, _ = store.events("/", store.revision())
    assert len(events) == 1
    store.close()


def test_open_kv_rejects_unknown_urls() -> None:
    from calico.errors import DatastoreError

    for bad in ("file:///x.yaml", "redis://x", "etcd://", "sqlite://"):
        with pytest.raises(DatastoreError):
            open_kv(bad)

