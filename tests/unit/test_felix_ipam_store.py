"""IPAM through the real embedded store (a temp SQLite file): the compare-and-swap loop,
lost races between allocators sharing the file, and release."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest

from calico.ipam import ASSIGNMENT_PREFIX, Handle, IpamConfig, handle_key
from calico.model import IPAMBlock
from calico.store.kv import KVStore
from calico.store.sqlite import SqliteKV
from felix.ipam.allocator import AssignRequest, ReleaseIP
from felix.ipam.store import IpamStore
from felix.ipam.view import POOLS_PREFIX

POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "p"},
    "spec": {"cidr": "10.0.0.0/22", "blockSize": 28},
}


async def _seed(kv: KVStore, pool: dict[str, object] = POOL) -> None:
    await kv.put(POOLS_PREFIX + "p", json.dumps(pool).encode())


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_assign_and_release_through_sqlite(tmp_path: Path) -> None:
    async def main() -> None:
        kv = SqliteKV(str(tmp_path / "ipam.db"))
        await _seed(kv)
        ipam = IpamStore(kv)
        ips = await ipam.auto_assign(AssignRequest("node1", "h1", num=3, attrs={"node": "node1"}))
        assert len(set(ips)) == 3
        assert await ipam.addresses_of("h1") == ips
        listing = await kv.list(ASSIGNMENT_PREFIX)
        (block,) = [IPAMBlock.from_ipam(json.loads(i.value)) for i in listing.items]
        assert block.host == "node1"
        assert sorted(await ipam.release_by_handle("h1")) == sorted(ips)
        assert await kv.get(handle_key("h1")) is None
        assert await ipam.release_by_handle("h1") == []
        (ip,) = await ipam.auto_assign(AssignRequest("node1", "h2"))
        assert await ipam.release_ips([ReleaseIP(ip), ReleaseIP("10.0.3.255")]) == ["10.0.3.255"]
        await kv.close()

    run(main())


def test_config_is_checked_like_calicos(tmp_path: Path) -> None:
    async def main() -> None:
        kv = SqliteKV(str(tmp_path / "ipam.db"))
        ipam = IpamStore(kv)
        assert await ipam.config() == IpamConfig()
        with pytest.raises(Exception, match="strict_affinity"):
            await ipam.set_config(IpamConfig(strict_affinity=False, auto_allocate_blocks=False))
        with pytest.raises(Exception, match="strict_affinity"):
            await ipam.set_config(IpamConfig(max_blocks_per_host=3))
        await ipam.set_config(IpamConfig(True, True, 3))
        assert await ipam.config() == IpamConfig(True, True, 3)
        await kv.close()

    run(main())


@pytest.mark.parametrize(
    ("hosts", "pool", "count"),
    [
        # One host, two allocators: they race for each block's claim and every address.
        (("node1", "node1"), {"cidr": "10.0.0.0/22", "blockSize": 28}, 40),
        # Two hosts, one block in the pool: one loses the claim, drops its stale affinity
        # and borrows from the winner's block.
        (("node1", "node2"), {"cidr": "10.0.0.0/26", "blockSize": 26}, 30),
    ],
)
def test_lost_race_two_allocators_one_store(
    tmp_path: Path, hosts: tuple[str, str], pool: dict[str, object], count: int
) -> None:
    """Two allocators with their own connections to one file, interleaved: both finish,
    both lose some compare-and-swaps, no address is handed out twice, and every block and
    handle agrees with what was returned."""

    async def main() -> None:
        path = str(tmp_path / "ipam.db")
        kvs = [SqliteKV(path), SqliteKV(path)]
        await _seed(kvs[0], {**POOL, "spec": pool})
        stores = [IpamStore(kv) for kv in kvs]

        async def worker(i: int) -> list[str]:
            out: list[str] = []
            for n in range(count):
                req = AssignRequest(hosts[i], f"w{i}-{n}", attrs={"node": hosts[i]})
                out.extend(await stores[i].auto_assign(req))
            return out

        a, b = await asyncio.gather(worker(0), worker(1))
        assert len(a) == len(b) == count
        assert not set(a) & set(b) and len(set(a) | set(b)) == 2 * count
        assert sum(s.conflicts for s in stores) > 0  # they really raced
        # The store agrees: each address is allocated once, to the handle that got it.
        owner: dict[str, str] = {}
        for item in (await kvs[0].list(ASSIGNMENT_PREFIX)).items:
            block = IPAMBlock.from_ipam(json.loads(item.value)).block
            net = ipaddress.ip_network(block.cidr)
            for ordinal, index in enumerate(block.allocations):
                if index is not None:
                    handle = block.attributes[index].handle_id
                    assert handle is not None
                    owner[str(net.network_address + ordinal)] = handle
        assert len(owner) == 2 * count
        for i, ips in enumerate((a, b)):
            for n, ip in enumerate(ips):
                assert owner[ip] == f"w{i}-{n}"
                raw = await kvs[0].get(handle_key(f"w{i}-{n}"))
                assert raw is not None and Handle.from_json(raw.value).total == 1
        for kv in kvs:
            await kv.close()

    run(main())


class _Interloper(SqliteKV):
    """A connection whose next transaction is preceded by someone else's whole assignment:
    a lost race on demand."""

    other: IpamStore | None = None

    async def txn(self, compares, ops):  # type: ignore[no-untyped-def]
        other, self.other = self.other, None
        if other is not None:
            await other.auto_assign(AssignRequest("node1", "other", attrs={"node": "node1"}))
        return await super().txn(compares, ops)


def test_a_forced_lost_race_is_retried_on_fresh_data(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "ipam.db")
        rival_kv = SqliteKV(path)
        await _seed(rival_kv)
        rival = IpamStore(rival_kv)
        first = await rival.auto_assign(AssignRequest("node1", "first"))
        kv = _Interloper(path)
        ipam = IpamStore(kv)
        kv.other = rival
        (mine,) = await ipam.auto_assign(AssignRequest("node1", "mine"))
        assert ipam.conflicts == 1
        assert await rival.addresses_of("other") != [mine]
        assert mine not in first
        await kv.close()
        await rival_kv.close()

    run(main())
