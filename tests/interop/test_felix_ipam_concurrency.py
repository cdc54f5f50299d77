"""No address is handed out twice: several allocator processes (two per host, two hosts)
assign and release thousands of addresses at once through one store, on both backends
(the SQLite file and a real etcd). Afterwards every address the processes hold is held once,
by the handle that got it, and the stored blocks and handles say exactly that."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.ipam import ASSIGNMENT_PREFIX, HANDLE_PREFIX, Block, Handle
from calico.store.kv import open_kv
from labs.harness.etcd_server import ETCD, MISSING, EtcdMember

TESTS = Path(__file__).resolve().parents[1]
PER_PROCESS = 500
PROCESSES = (("node1", "a"), ("node1", "b"), ("node2", "c"), ("node2", "d"))
POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "p"},
    "spec": {"cidr": "10.16.0.0/20", "blockSize": 26},
}


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
        return f"sqlite://{tmp_path}/ipam.db"
    member: EtcdMember = request.getfixturevalue("etcd")
    return f"etcd://{member.endpoint}"


async def _setup(url: str) -> None:
    async with open_kv(url) as kv:
        for item in (await kv.list("/calico/")).items:
            await kv.delete(item.key)
        await kv.put("/calico/resources/v3/projectcalico.org/ippools/p", json.dumps(POOL).encode())


async def _stored(url: str) -> tuple[dict[str, str], dict[str, Handle]]:
    owner: dict[str, str] = {}
    handles: dict[str, Handle] = {}
    async with open_kv(url) as kv:
        listing = await kv.list(ASSIGNMENT_PREFIX, HANDLE_PREFIX)
    for item in listing.items:
        if item.key.startswith(HANDLE_PREFIX):
            handles[item.key[len(HANDLE_PREFIX) :]] = Handle.from_json(item.value)
            continue
        block = Block.from_json(item.value)
        assert len(set(block.unallocated)) == len(block.unallocated)
        for ordinal, index in enumerate(block.allocations):
            if index is None:
                assert ordinal in block.unallocated
                continue
            assert ordinal not in block.unallocated
            handle = block.attributes[index].handle_id
            assert handle is not None
            address = block.address(ordinal)
            assert address not in owner
            owner[address] = handle
    return owner, handles


def test_no_address_is_handed_out_twice(url: str) -> None:
    asyncio.run(_setup(url))
    env = {**os.environ, "PYTHONPATH": f"{TESTS}:{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "interop.ipam_worker", url, host, tag, str(PER_PROCESS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for host, tag in PROCESSES
    ]
    held: dict[str, str] = {}
    conflicts = 0
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-3000:]
        report = json.loads(out)
        conflicts += report["conflicts"]
        held.update(report["held"])
    addresses = list(held.values())
    assert len(set(addresses)) == len(addresses) == len(PROCESSES) * PER_PROCESS * 4 // 5
    assert conflicts > 0  # the processes really did race
    owner, handles = asyncio.run(_stored(url))
    assert owner == {address: handle for handle, address in held.items()}
    assert set(handles) == set(held)
    for handle, address in held.items():
        ip = ipaddress.ip_address(address)
        (cidr,) = handles[handle].blocks
        assert ip in ipaddress.ip_network(cidr) and handles[handle].blocks[cidr] == 1
