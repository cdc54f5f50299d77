"""Calico's IPAM algorithm (libcalico-go lib/ipam; reference/calico.md section 6), pure.

Each `plan_*` function reads an `IpamView` (what the store holds, with each key's revision)
and returns the next `Step`: one transaction of compare-and-swap writes, plus what it
achieves. The caller (store.py) applies the step; if any compare fails, or the step is not
the last one, it reads a fresh view and plans again. Multi-write operations are therefore a
sequence of steps whose intermediate states are ones the planner recognises and carries on
from, wherever they came from (another felix, a crash half-way, Calico itself):

    claim a block:  affinity {"state":"pending"}  ->  create the block (affine to us)
                    ->  affinity {"state":"confirmed"}  ->  assign from it
    lost claim:     our pending affinity, but the block is someone else's -> delete ours

A block is only ever changed by a CAS on its own revision, so two allocators cannot hand out
one address twice: the loser's write fails and it plans again from the winner's block.
Where Calico writes the block and then the handle separately, a step writes both in one
transaction, so a handle's counts always match its blocks.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from calico import selector
from calico.ipam import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    AFFINITY_PENDING_DELETION,
    DEFAULT_MAX_BLOCKS_PER_HOST,
    Affinity,
    Block,
    Handle,
    IpamConfig,
    affinity_key,
    block_key,
    handle_key,
    parse_claim_time,
)
from calico.ipam_release import (
    IpamError,
    ReleaseIP,
    ReleaseRefused,
    Step,
    Write,
    handle_addresses,
    plan_release_handle,
    plan_release_ips,
    release_from_block,
)
from calico.ipam_view import IpamView, Versioned
from calico.model import IPPool

# Shared with bgpctl (calico/ipam_release.py, calico/ipam_view.py); felix's names for them.
__all__ = [
    "IpamError",
    "IpamView",
    "ReleaseIP",
    "ReleaseRefused",
    "Step",
    "Versioned",
    "Write",
    "handle_addresses",
    "plan_release_handle",
    "plan_release_ips",
    "release_from_block",
]

USE_WORKLOAD = "Workload"
USE_TUNNEL = "Tunnel"
# An empty block another host claimed longer ago than this may be taken over.
EMPTY_BLOCK_MIN_RECLAIM_AGE = 60.0


class NoPools(IpamError):
    pass


class NoFreeAddresses(IpamError):
    pass


@dataclass(frozen=True, slots=True)
class AssignRequest:
    host: str
    handle_id: str
    num: int = 1
    version: int = 4
    use: str = USE_WORKLOAD
    attrs: Mapping[str, str] = field(default_factory=dict)
    pools: tuple[str, ...] = ()  # pool CIDRs asked for by name; selectors are then ignored
    max_blocks: int = 0


# --- pools and the block search order -----------------------------------------------------


def select_pools(
    pools: Sequence[IPPool],
    node_labels: Mapping[str, str],
    version: int,
    use: str,
    requested: Sequence[str] = (),
) -> list[IPPool]:
    """determinePools: enabled pools of the version; the requested ones as they are, else
    those in Automatic mode whose nodeSelector matches the node; then by allowedUses."""
    enabled = [p for p in pools if p.version == version and not p.disabled]
    if requested:
        wanted = {str(ipaddress.ip_network(c, strict=False)) for c in requested}
        chosen = [p for p in enabled if p.cidr in wanted]
    else:
        chosen = [
            p
            for p in enabled
            if p.assignment_mode == "Automatic"
            and selector.parse(p.node_selector).matches(node_labels)
        ]
    return [p for p in chosen if use in p.allowed_uses]


def fnv32(data: bytes) -> int:
    """FNV-1 (Go's hash/fnv New32), which Calico seeds the block order with."""
    h = 0x811C9DC5
    for byte in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= byte
    return h


def block_order_start(pool: IPPool, host: str) -> int:
    """The host's first block index in `pool`: seeded by FNV32(host) as in Calico's
    randomBlockGenerator, so a host always starts at the same place and hosts spread out.
    (Calico draws from Go's math/rand; this draws from Python's, so the start index is not
    the same number as Calico's, only the same kind of number.)"""
    return random.Random(fnv32(host.encode())).randrange(_num_blocks(pool))


def _num_blocks(pool: IPPool) -> int:
    net = ipaddress.ip_network(pool.cidr)
    return 1 << (pool.block_size - net.prefixlen)


def _block_at(pool: IPPool, index: int) -> str:
    net = ipaddress.ip_network(pool.cidr)
    bits = net.max_prefixlen - pool.block_size
    base = net.network_address + (index << bits)
    return f"{base}/{pool.block_size}"


def _block_index(pool: IPPool, cidr: str) -> int | None:
    net, pnet = ipaddress.ip_network(cidr), ipaddress.ip_network(pool.cidr)
    if net.version != pnet.version or net.prefixlen != pool.block_size:
        return None
    if not net.subnet_of(pnet):  # type: ignore[arg-type]
        return None
    bits = pnet.max_prefixlen - pool.block_size
    return (int(net.network_address) - int(pnet.network_address)) >> bits


def block_order(pool: IPPool, host: str) -> Iterator[str]:
    """Every block CIDR of `pool` in the host's search order (from its start, wrapping)."""
    n, start = _num_blocks(pool), block_order_start(pool, host)
    for i in range(n):
        yield _block_at(pool, (start + i) % n)


def existing_in_order(pool: IPPool, host: str, cidrs: Sequence[str]) -> list[str]:
    """The given block CIDRs that belong to `pool`, sorted in the host's search order
    (what walking block_order and skipping missing blocks gives, without the walk)."""
    n, start = _num_blocks(pool), block_order_start(pool, host)
    keyed = []
    for cidr in cidrs:
        index = _block_index(pool, cidr)
        if index is not None:
            keyed.append(((index - start) % n, cidr))
    return [cidr for _, cidr in sorted(keyed)]


def first_missing_in_order(pool: IPPool, host: str, present: set[str]) -> Iterator[str]:
    """Block CIDRs of `pool` with no block yet, in the host's search order. A block of
    another size (the pool's blockSize was changed) rules out every candidate it overlaps."""
    odd = [
        n
        for n in (ipaddress.ip_network(c) for c in present)
        if n.prefixlen != pool.block_size and n.version == pool.version
    ]
    for cidr in block_order(pool, host):
        if cidr in present:
            continue
        if odd and any(ipaddress.ip_network(cidr).overlaps(n) for n in odd):
            continue
        yield cidr


def _in_pools(cidr: str, pools: Sequence[IPPool]) -> bool:
    net = ipaddress.ip_network(cidr)
    for p in pools:
        pnet = ipaddress.ip_network(p.cidr)
        if net.version == pnet.version and net.subnet_of(pnet):  # type: ignore[arg-type]
            return True
    return False


def block_limit(config: IpamConfig, per_request: int) -> int:
    limits = [x for x in (config.max_blocks_per_host, per_request) if x > 0]
    return min(limits) if limits else DEFAULT_MAX_BLOCKS_PER_HOST


# --- assignment -----------------------------------------------------------------------------


def _put(key: str, value: bytes | None, revision: int) -> Write:
    return Write(key, value, revision)


def _assign_step(view: IpamView, req: AssignRequest, cidr: str, reason: str) -> Step:
    current = view.blocks[cidr]
    block, ordinals = current.value.assign(req.num, req.handle_id, req.attrs)
    writes = [_put(block_key(cidr), block.to_json(), current.revision)]
    handle = view.handles.get(req.handle_id)
    base = handle.value if handle is not None else Handle()
    new_handle = base.add(block.cidr, len(ordinals))
    assert new_handle is not None
    writes.append(
        _put(handle_key(req.handle_id), new_handle.to_json(), handle.revision if handle else 0)
    )
    addresses = tuple(block.address(o) for o in ordinals)
    return Step(tuple(writes), reason, final=len(ordinals) == req.num, addresses=addresses)


def _affinity_state_step(
    host: str, cidr: str, current: Versioned[Affinity] | None, state: str, reason: str
) -> Step:
    value = Affinity(state, extra=current.value.extra if current else {}).to_json()
    revision = current.revision if current else 0
    return Step((_put(affinity_key(host, cidr), value, revision),), reason)


def _release_affinity_step(
    view: IpamView, host: str, cidr: str, reason: str, *, require_empty: bool = False
) -> Step | None:
    """Drop `host`'s affinity for `cidr`: the block goes if it is empty, otherwise it only
    loses its affinity; one transaction (Calico passes through pendingDeletion because its
    writes are one key at a time). None when require_empty and the block holds addresses."""
    aff = view.affinities.get((host, cidr))
    current = view.blocks.get(cidr)
    writes: list[Write] = []
    if current is not None and current.value.host == host:
        if current.value.empty:
            writes.append(_put(block_key(cidr), None, current.revision))
        elif require_empty:
            return None
        else:
            writes.append(
                _put(block_key(cidr), current.value.with_affinity(None).to_json(), current.revision)
            )
    if aff is not None:
        writes.append(_put(affinity_key(host, cidr), None, aff.revision))
    return Step(tuple(writes), reason, final=True)


def plan_assign(view: IpamView, req: AssignRequest, now: float) -> Step:
    """The next step towards assigning `req.num` addresses (Calico's autoAssign)."""
    if req.num <= 0:
        raise ValueError("nothing to assign")
    host = req.host
    pools = select_pools(view.pools, view.node_labels, req.version, req.use, req.pools)
    if not pools:
        raise NoPools(
            f"no configured Calico pools for node {host} (use {req.use}, IPv{req.version})"
        )

    mine = sorted(
        (cidr, aff)
        for (h, cidr), aff in view.affinities.items()
        if h == host and ipaddress.ip_network(cidr).version == req.version
    )
    # Empty blocks of pools that no longer select this node (by nodeSelector; a pool asked
    # for by name or kept for another use still counts as selecting) are given back.
    version_pools = [p for p in view.pools if p.version == req.version]
    selecting = [
        p
        for p in version_pools
        if not p.disabled and selector.parse(p.node_selector).matches(view.node_labels)
    ]
    for cidr, _aff in mine:
        blk = view.blocks.get(cidr)
        if (
            _in_pools(cidr, version_pools)
            and not _in_pools(cidr, selecting)
            and (blk is None or (blk.value.empty and blk.value.host == host))
        ):
            step = _release_affinity_step(
                view,
                host,
                cidr,
                f"release {cidr}: its pool no longer selects {host}",
                require_empty=True,
            )
            if step is not None:
                return step

    owned = 0
    for cidr, aff in mine:
        if not _in_pools(cidr, pools):
            continue
        state = aff.value.state
        blk = view.blocks.get(cidr)
        if state == AFFINITY_PENDING_DELETION:
            step = _release_affinity_step(view, host, cidr, f"finish releasing {cidr}")
            assert step is not None
            return step
        owned += 1
        if blk is None:
            if state != AFFINITY_PENDING:
                return _affinity_state_step(
                    host, cidr, aff, AFFINITY_PENDING, f"recreate missing block {cidr}: pending"
                )
            new = Block.new(cidr, host, now)
            return Step((_put(block_key(cidr), new.to_json(), 0),), f"claim {cidr}: create block")
        if blk.value.affinity != f"host:{host}":
            return Step(
                (_put(affinity_key(host, cidr), None, aff.revision),),
                f"{cidr} belongs to {blk.value.affinity}: drop our stale affinity",
            )
        if state != AFFINITY_CONFIRMED:
            return _affinity_state_step(
                host, cidr, aff, AFFINITY_CONFIRMED, f"claim {cidr}: confirm affinity"
            )
        if blk.value.free > 0:
            return _assign_step(view, req, cidr, f"assign from affine block {cidr}")

    limit = block_limit(view.config, req.max_blocks)
    if view.config.auto_allocate_blocks and owned < limit:
        step = _find_block_to_claim(view, pools, host, now)
        if step is not None:
            return step

    if view.config.strict_affinity:
        if owned >= limit:
            raise NoFreeAddresses(
                f"host {host} has its limit of {limit} blocks, and they are full "
                "(strict affinity enabled)"
            )
        raise NoFreeAddresses("no more free affine blocks and strict affinity enabled")
    for pool in pools:
        candidates = [c for c, b in view.blocks.items() if b.value.free > 0]
        for cidr in existing_in_order(pool, host, candidates):
            owner = view.blocks[cidr].value.affinity
            return _assign_step(view, req, cidr, f"borrow from {cidr} ({owner})")
    if owned >= limit:
        raise NoFreeAddresses(f"host {host} has its limit of {limit} blocks, and they are full")
    raise NoFreeAddresses(f"no free addresses in the pools for {host}")


def _find_block_to_claim(
    view: IpamView, pools: Sequence[IPPool], host: str, now: float
) -> Step | None:
    """findUsableBlock plus the first claim step: the first subnet in the host's order with
    no block yet (or one affine to us whose affinity key is missing); else reclaim an empty
    block another host claimed over a minute ago."""
    present = set(view.blocks)
    empty_elsewhere: list[str] = []
    for pool in pools:
        for cidr in existing_in_order(pool, host, list(present)):
            blk = view.blocks[cidr].value
            if blk.host == host and blk.free > 0 and (host, cidr) not in view.affinities:
                return _affinity_state_step(
                    host, cidr, None, AFFINITY_PENDING, f"claim {cidr} (ours, no affinity): pending"
                )
            if blk.host not in (None, host) and blk.empty:
                empty_elsewhere.append(cidr)
        for cidr in first_missing_in_order(pool, host, present):
            return _affinity_state_step(
                host,
                cidr,
                view.affinities.get((host, cidr)),
                AFFINITY_PENDING,
                f"claim {cidr}: pending affinity",
            )
    for cidr in empty_elsewhere:
        blk = view.blocks[cidr].value
        claimed = parse_claim_time(blk.affinity_claim_time) if blk.affinity_claim_time else None
        if claimed is not None and now - claimed < EMPTY_BLOCK_MIN_RECLAIM_AGE:
            continue
        other = blk.host
        assert other is not None
        step = _release_affinity_step(
            view, other, cidr, f"reclaim empty block {cidr} from {other}", require_empty=True
        )
        if step is not None:
            return Step(step.writes, step.reason)
    return None


# --- release --------------------------------------------------------------------------------


def plan_release_affinity(
    view: IpamView, host: str, cidr: str, *, require_empty: bool = False
) -> Step:
    """ReleaseAffinity: `host` gives up block `cidr` (deleted if empty, else unowned)."""
    step = _release_affinity_step(
        view, host, cidr, f"release {host}'s affinity for {cidr}", require_empty=require_empty
    )
    if step is None:
        raise IpamError(f"block {cidr} is not empty")
    return step


def plan_release_host(view: IpamView, host: str) -> Step:
    """ReleaseHostAffinities, one block per step (node removal)."""
    for h, cidr in sorted(view.affinities):
        if h == host:
            return Step(plan_release_affinity(view, host, cidr).writes, f"release {cidr} of {host}")
    return Step((), f"{host} has no blocks", final=True)
