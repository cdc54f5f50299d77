"""The IPAM planner on Calico's semantics (reference/calico.md section 6), driven purely: an
in-memory key -> (value, revision) map stands in for the store, with the same
compare-and-swap rule, so every step the planner takes can be looked at."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from calico.ipam import (
    CONFIG_KEY,
    Affinity,
    Block,
    Handle,
    IpamConfig,
    affinity_key,
    block_key,
    handle_key,
    parse_affinity_key,
    parse_block_key,
)
from calico.model import BlockAffinity, IPAMBlock
from felix.ipam.allocator import (
    EMPTY_BLOCK_MIN_RECLAIM_AGE,
    AssignRequest,
    IpamView,
    NoFreeAddresses,
    NoPools,
    ReleaseIP,
    ReleaseRefused,
    Step,
    block_order,
    existing_in_order,
    fnv32,
    plan_assign,
    plan_release_affinity,
    plan_release_handle,
    plan_release_ips,
    select_pools,
)
from felix.ipam.view import NODES_PREFIX, POOLS_PREFIX, build_view

NOW = 1_714_557_600.0


def pool_doc(name: str, cidr: str, **spec: object) -> bytes:
    return json.dumps(
        {
            "kind": "IPPool",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec},
        }
    ).encode()


def node_doc(name: str, labels: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "kind": "Node",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
        }
    ).encode()


@dataclass
class Mem:
    """Keys with etcd-like mod revisions; `apply` is a transaction with CAS compares."""

    data: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    revision: int = 1
    steps: list[Step] = field(default_factory=list)

    def put(self, key: str, value: bytes) -> None:
        self.revision += 1
        self.data[key] = (value, self.revision)

    def view(self, host: str | None = None) -> IpamView:
        return build_view(((k, v, r) for k, (v, r) in self.data.items()), host=host)

    def apply(self, step: Step) -> bool:
        for w in step.writes:
            if self.data.get(w.key, (b"", 0))[1] != w.revision:
                return False
        self.revision += 1
        for w in step.writes:
            if w.value is None:
                self.data.pop(w.key, None)
            else:
                self.data[w.key] = (w.value, self.revision)
        self.steps.append(step)
        return True

    def assign(self, req: AssignRequest, now: float = NOW) -> list[str]:
        got: list[str] = []
        for _ in range(50):
            step = plan_assign(self.view(req.host), _remaining(req, len(got)), now)
            assert self.apply(step), step
            got.extend(step.addresses)
            if len(got) == req.num:
                return got
        raise AssertionError("no progress")

    def release_handle(self, handle: str) -> list[str]:
        out: list[str] = []
        for _ in range(50):
            step = plan_release_handle(self.view(), handle)
            if not step.writes:
                return out
            assert self.apply(step)
            out.extend(step.addresses)
            if step.final:
                return out
        raise AssertionError("no progress")

    def block(self, cidr: str) -> Block:
        return Block.from_json(self.data[block_key(cidr)][0])

    def affinity(self, host: str, cidr: str) -> Affinity | None:
        item = self.data.get(affinity_key(host, cidr))
        return None if item is None else Affinity.from_json(item[0])

    def host_blocks(self, host: str) -> list[str]:
        return sorted(
            c for k in self.data if (a := parse_affinity_key(k)) and a[0] == host for c in [a[1]]
        )


def _remaining(req: AssignRequest, done: int) -> AssignRequest:
    from dataclasses import replace

    return replace(req, num=req.num - done)


def store(*pools: bytes, config: IpamConfig | None = None) -> Mem:
    mem = Mem()
    for i, p in enumerate(pools or (pool_doc("p", "10.0.0.0/24", blockSize=28),)):
        mem.put(f"{POOLS_PREFIX}p{i}", p)
    if config is not None:
        mem.put(CONFIG_KEY, config.to_json())
    return mem


def req(host: str = "node1", handle: str = "h1", **kw: object) -> AssignRequest:
    return AssignRequest(host=host, handle_id=handle, attrs={"node": host}, **kw)  # type: ignore[arg-type]


# --- records ---------------------------------------------------------------------------------

CALICO_BLOCK = (
    '{"cidr":"192.168.221.64/30","affinity":"host:node1",'
    '"affinity_claim_time":"2024-05-01T10:00:00Z","allocations":[0,1,null,null],'
    '"unallocated":[2,3],"attributes":[{"handle_id":"ipip-tunnel-addr-node1",'
    '"secondary":{"node":"node1","type":"ipipTunnelAddress"}},'
    '{"handle_id":"k8s-pod-network.4f3c2b1a9e","secondary":{"namespace":"default",'
    '"node":"node1","pod":"nginx-7d9f","timestamp":"2024-05-01 10:00:05.1 +0000 UTC"}}],'
    '"sequenceNumber":1714557605100000002,"sequenceNumberForAllocation":'
    '{"0":1714557600000000000,"1":1714557605100000001},"deleted":false}'
)


def test_calico_block_round_trips_byte_for_byte() -> None:
    block = Block.from_json(CALICO_BLOCK)
    assert block.to_json() == CALICO_BLOCK.encode()
    assert block.host == "node1" and block.free == 2
    assert block.handle_of(1) == "k8s-pod-network.4f3c2b1a9e"


def test_unknown_fields_survive_a_rewrite() -> None:
    raw = json.loads(CALICO_BLOCK)
    raw["futureField"] = {"x": 1}
    raw["attributes"][0]["releasedAt"] = "2026-01-01T00:00:00Z"
    block = Block.from_json(json.dumps(raw))
    again = json.loads(block.assign(1, "h", {"node": "n"})[0].to_json())
    assert again["futureField"] == {"x": 1}
    assert again["attributes"][0]["releasedAt"] == "2026-01-01T00:00:00Z"


def test_shapes_of_affinity_handle_and_config() -> None:
    assert Affinity("confirmed").to_json() == b'{"state":"confirmed","deleted":false}'
    assert Affinity.from_json(b'""').state == "confirmed"  # implicitly confirmed
    assert Affinity.from_json(b"{}").state == "confirmed"
    handle = Handle.from_json(b'{"block":{"192.168.221.64/26":1},"deleted":false}')
    assert handle.to_json() == b'{"block":{"192.168.221.64/26":1},"deleted":false}'
    assert handle.add("192.168.221.64/26", -1) is None
    config = IpamConfig.from_json(b'{"strict_affinity":true,"maxBlocksPerHost":4}')
    assert config == IpamConfig(True, True, 4)
    assert IpamConfig().to_json() == b'{"auto_allocate_blocks":true}'


def test_keys_are_calicos() -> None:
    assert (
        block_key("192.168.221.64/26") == "/calico/ipam/v2/assignment/ipv4/block/192.168.221.64-26"
    )
    assert affinity_key("node1", "fd00:1:2::/122") == (
        "/calico/ipam/v2/host/node1/ipv6/block/fd00:1:2::-122"
    )
    assert handle_key("k8s-pod-network.abc") == "/calico/ipam/v2/handle/k8s-pod-network.abc"
    assert parse_block_key(block_key("fd00:1:2::/122")) == "fd00:1:2::/122"
    assert parse_affinity_key(affinity_key("n-1", "10.0.0.0/26")) == ("n-1", "10.0.0.0/26")


def test_written_blocks_read_back_through_the_shared_model() -> None:
    mem = store()
    mem.assign(req(num=3))
    (cidr,) = mem.host_blocks("node1")
    raw_block = mem.data[block_key(cidr)][0]
    model = IPAMBlock.from_ipam(json.loads(raw_block))
    assert model.host == "node1" and model.cidr == cidr
    assert model.block.allocations[:3] == (0, 0, 0) and len(model.block.unallocated) == 13
    assert model.block.attributes[0].handle_id == "h1"
    aff = BlockAffinity.from_ipam(
        "node1", cidr, json.loads(mem.data[affinity_key("node1", cidr)][0])
    )
    assert aff.state == "confirmed" and aff.node == "node1"


# --- claims and order -------------------------------------------------------------------------


def test_two_phase_claim_then_assign_from_the_head() -> None:
    mem = store()
    assert mem.assign(req()) == [mem.block(mem.host_blocks("node1")[0]).address(0)]
    reasons = [s.reason.split(":")[-1].strip() for s in mem.steps]
    assert reasons == ["pending affinity", "create block", "confirm affinity", reasons[-1]]
    assert mem.steps[-1].reason.startswith("assign from affine block")
    cidr = mem.host_blocks("node1")[0]
    block = mem.block(cidr)
    assert block.affinity == "host:node1" and block.affinity_claim_time == "2024-05-01T10:00:00Z"
    assert mem.affinity("node1", cidr) == Affinity("confirmed")
    # .0, .1, .2 ... in ordinal order; the network address is usable.
    got = mem.assign(req(handle="h2", num=2))
    net = ipaddress.ip_network(cidr)
    assert got == [str(net.network_address + 1), str(net.network_address + 2)]
    handle = Handle.from_json(mem.data[handle_key("h2")][0])
    assert dict(handle.blocks) == {cidr: 2}


def test_block_order_is_seeded_by_host_and_wraps() -> None:
    from calico.model import IPPool

    pool = IPPool(name="p", cidr="10.0.0.0/24", block_size=28)
    a, b = list(block_order(pool, "node1")), list(block_order(pool, "node2"))
    assert sorted(a) == sorted(b) and len(set(a)) == 16
    assert a == list(block_order(pool, "node1"))
    assert a[0] != b[0]
    start = int(ipaddress.ip_network(a[0]).network_address)
    assert all(
        int(ipaddress.ip_network(c).network_address)
        == 0x0A000000 + ((start - 0x0A000000) + 16 * i) % 256
        for i, c in enumerate(a)
    )
    assert existing_in_order(pool, "node1", list(reversed(a[:5]))) == a[:5]
    assert fnv32(b"") == 0x811C9DC5 and fnv32(b"a") == 0x050C5D7E  # Go's fnv.New32


def test_each_host_claims_its_own_block_first() -> None:
    mem = store()
    mem.assign(req("node1"))
    mem.assign(req("node2", "h2"))
    (b1,), (b2,) = mem.host_blocks("node1"), mem.host_blocks("node2")
    assert b1 != b2
    from calico.model import IPPool

    pool = IPPool(name="p", cidr="10.0.0.0/24", block_size=28)
    assert b1 == next(block_order(pool, "node1"))


def test_full_block_leads_to_a_second_claim() -> None:
    mem = store()
    ips = mem.assign(req(num=20))
    assert len(set(ips)) == 20
    assert len(mem.host_blocks("node1")) == 2


def test_lost_block_claim_drops_the_stale_affinity() -> None:
    mem = store(pool_doc("p", "10.0.0.0/28", blockSize=28))  # one block only
    # node2 has written its pending affinity, then node1 claims the block first.
    mem.put(affinity_key("node2", "10.0.0.0/28"), Affinity("pending").to_json())
    mem.assign(req("node1"))
    view = mem.view("node2")
    step = plan_assign(view, req("node2", "h2"), NOW)
    assert step.reason.endswith("drop our stale affinity")
    assert step.writes[0].value is None
    assert mem.apply(step)
    # Now it borrows from node1's block (strict affinity is off).
    assert mem.assign(req("node2", "h2")) == ["10.0.0.1"]
    assert mem.host_blocks("node2") == []
    assert mem.block("10.0.0.0/28").attributes[-1].secondary == {"node": "node2"}


def test_missing_block_of_an_affinity_is_recreated() -> None:
    mem = store()
    mem.put(affinity_key("node1", "10.0.0.32/28"), Affinity("confirmed").to_json())
    assert mem.assign(req()) == ["10.0.0.32"]
    assert [s.reason for s in mem.steps][:2] == [
        "recreate missing block 10.0.0.32/28: pending",
        "claim 10.0.0.32/28: create block",
    ]


def test_no_borrowing_with_strict_affinity() -> None:
    mem = store(pool_doc("p", "10.0.0.0/28", blockSize=28), config=IpamConfig(strict_affinity=True))
    mem.assign(req("node1"))
    with pytest.raises(NoFreeAddresses, match="strict affinity"):
        plan_assign(mem.view("node2"), req("node2", "h2"), NOW)


def test_max_blocks_per_host_stops_claims_not_fills() -> None:
    mem = store(config=IpamConfig(strict_affinity=True, max_blocks_per_host=1))
    assert len(mem.assign(req(num=16))) == 16
    with pytest.raises(NoFreeAddresses, match="limit of 1 blocks"):
        plan_assign(mem.view("node1"), req(handle="h2"), NOW)
    # Without strictness (per-request limit) it borrows instead.
    mem2 = store()
    mem2.assign(req("node2", "x", num=3))
    mem2.assign(req(num=16, max_blocks=1))
    assert mem2.assign(req(handle="h2", max_blocks=1))[0].startswith("10.0.0.")
    assert len(mem2.host_blocks("node1")) == 1


def test_no_auto_allocation_means_borrow_only() -> None:
    mem = store()
    mem.assign(req("node2", "x"))
    mem.put(CONFIG_KEY, b'{"strict_affinity":false,"auto_allocate_blocks":false}')
    mem.assign(req("node1"))
    assert mem.host_blocks("node1") == []


# --- pools -----------------------------------------------------------------------------------


def test_pool_selection() -> None:
    mem = store(
        pool_doc("rack1", "10.1.0.0/24", nodeSelector="rack == 'r1'"),
        pool_doc("off", "10.2.0.0/24", disabled=True),
        pool_doc("tunnels", "10.3.0.0/24", allowedUses=["Tunnel"]),
        pool_doc("v6", "fd00::/112", blockSize=122),
    )
    mem.put(NODES_PREFIX + "node1", node_doc("node1", {"rack": "r1"}))
    view = mem.view("node1")
    names = lambda v, use, ver=4: [p.name for p in select_pools(view.pools, v, ver, use)]  # noqa: E731
    assert names({"rack": "r1"}, "Workload") == ["rack1"]
    assert names({"rack": "r2"}, "Workload") == []
    assert names({}, "Tunnel") == ["tunnels"]
    assert names({}, "Workload", 6) == ["v6"]
    assert mem.assign(req())[0].startswith("10.1.0.")
    with pytest.raises(NoPools):
        plan_assign(mem.view("node9"), req("node9"), NOW)
    assert mem.assign(req(handle="v6", version=6))[0].startswith("fd00::")


def test_empty_block_of_a_pool_that_stopped_selecting_us_is_released() -> None:
    mem = store(pool_doc("a", "10.1.0.0/24", nodeSelector="all()", blockSize=28))
    mem.put(NODES_PREFIX + "node1", node_doc("node1", {}))
    mem.assign(req())
    mem.release_handle("h1")
    (old,) = mem.host_blocks("node1")
    mem.put(f"{POOLS_PREFIX}p0", pool_doc("a", "10.1.0.0/24", nodeSelector="has(x)", blockSize=28))
    mem.put(f"{POOLS_PREFIX}p1", pool_doc("b", "10.2.0.0/24", blockSize=28))
    assert mem.assign(req(handle="h2"))[0].startswith("10.2.0.")
    assert old not in mem.host_blocks("node1")
    assert block_key(old) not in mem.data


# --- release ---------------------------------------------------------------------------------


def test_release_by_handle_is_fifo_and_keeps_the_affine_block() -> None:
    mem = store()
    first = mem.assign(req(num=2))
    mem.assign(req(handle="h2"))
    assert sorted(mem.release_handle("h1")) == sorted(first)
    assert handle_key("h1") not in mem.data
    cidr = mem.host_blocks("node1")[0]
    block = mem.block(cidr)
    assert block.unallocated[-2:] == (0, 1)  # released ordinals go to the tail
    assert len(block.attributes) == 1 and block.allocations[2] == 0  # compacted
    assert "0" not in block.seq_for_allocation
    mem.release_handle("h2")
    assert mem.block(cidr).empty  # an empty affine block stays
    assert mem.release_handle("h2") == []  # idempotent


def test_release_checks_sequence_number_and_handle() -> None:
    mem = store()
    (ip,) = mem.assign(req())
    cidr = mem.host_blocks("node1")[0]
    seq = mem.block(cidr).seq_for_allocation["0"]
    view = mem.view()
    with pytest.raises(ReleaseRefused, match="sequence number"):
        plan_release_ips(view, [ReleaseIP(ip, sequence_number=seq + 1)])
    with pytest.raises(ReleaseRefused, match="held by h1"):
        plan_release_ips(view, [ReleaseIP(ip, handle_id="other")])
    step, free = plan_release_ips(view, [ReleaseIP(ip, "h1", seq), ReleaseIP("10.0.0.250")])
    assert free == ("10.0.0.250",) and step.addresses == (ip,)
    assert mem.apply(step)
    assert handle_key("h1") not in mem.data


def test_borrowed_address_released_from_unowned_block_deletes_it() -> None:
    mem = store(pool_doc("p", "10.0.0.0/28", blockSize=28))
    mem.assign(req("node1", "a"))
    mem.assign(req("node2", "b"))  # borrowed from node1's only block
    mem.apply(plan_release_affinity(mem.view(), "node1", "10.0.0.0/28"))
    assert mem.block("10.0.0.0/28").affinity is None  # not empty: only unowned
    mem.release_handle("a")
    mem.release_handle("b")
    assert block_key("10.0.0.0/28") not in mem.data  # empty and unowned: gone


def test_reclaim_of_empty_blocks_older_than_a_minute() -> None:
    mem = store(pool_doc("p", "10.0.0.0/28", blockSize=28), config=IpamConfig(strict_affinity=True))
    mem.assign(req("node1", "a"), now=NOW)
    mem.release_handle("a")
    with pytest.raises(NoFreeAddresses):
        plan_assign(mem.view("node2"), req("node2", "b"), NOW + EMPTY_BLOCK_MIN_RECLAIM_AGE - 1)
    later = NOW + EMPTY_BLOCK_MIN_RECLAIM_AGE + 1
    step = plan_assign(mem.view("node2"), req("node2", "b"), later)
    assert step.reason.startswith("reclaim empty block 10.0.0.0/28 from node1")
    assert mem.assign(req("node2", "b"), now=later) == ["10.0.0.0"]
    assert mem.host_blocks("node1") == [] and mem.host_blocks("node2") == ["10.0.0.0/28"]


def test_release_affinity_refuses_a_busy_block_when_asked() -> None:
    mem = store()
    mem.assign(req())
    cidr = mem.host_blocks("node1")[0]
    with pytest.raises(Exception, match="not empty"):
        plan_release_affinity(mem.view(), "node1", cidr, require_empty=True)


def test_a_lost_write_changes_nothing() -> None:
    mem = store()
    mem.assign(req())
    stale = mem.view("node1")
    mem.assign(req(handle="h2"))
    step = plan_assign(stale, req(handle="h3"), NOW)
    assert not mem.apply(step)  # the block moved on: CAS fails
    assert mem.assign(req(handle="h3")) == [mem.block(mem.host_blocks("node1")[0]).address(2)]


def test_blocks_of_an_old_block_size_are_not_overlapped() -> None:
    mem = store(pool_doc("p", "10.0.0.0/27", blockSize=28))
    mem.assign(req("node2", "x"))  # one /28 taken
    mem.put(f"{POOLS_PREFIX}p0", pool_doc("p", "10.0.0.0/27", blockSize=29))
    got = mem.assign(req("node1", num=8))
    (other,) = [c for c in mem.host_blocks("node2")]
    assert not any(ipaddress.ip_address(ip) in ipaddress.ip_network(other) for ip in got)


def test_view_reuses_only_unchanged_blocks() -> None:
    mem = store()
    mem.assign(req())
    cache: dict[str, Any] = {}
    items = lambda: ((k, v, r) for k, (v, r) in mem.data.items())  # noqa: E731
    first = build_view(items(), block_cache=cache)
    (cidr,) = first.blocks
    again = build_view(items(), block_cache=cache)
    assert again.blocks[cidr] is first.blocks[cidr]  # same revision: not re-read
    mem.assign(req(handle="h2"))
    changed = build_view(items(), block_cache=cache)
    assert changed.blocks[cidr].value.free == first.blocks[cidr].value.free - 1
    mem.release_handle("h1")
    mem.release_handle("h2")
    mem.apply(plan_release_affinity(mem.view(), "node1", cidr))
    assert build_view(items(), block_cache=cache).blocks == {} and cache == {}


def test_manual_pools_are_used_only_when_asked_for() -> None:
    from calico.model import IPPool

    pools = (
        IPPool("auto", "10.1.0.0/24"),
        IPPool("manual", "10.2.0.0/24", assignment_mode="Manual"),
    )
    assert [p.name for p in select_pools(pools, {}, 4, "Workload")] == ["auto"]
    assert [p.name for p in select_pools(pools, {}, 4, "Workload", ["10.2.0.0/24"])] == [
        "manual"
    ]
