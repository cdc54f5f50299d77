"""Releasing IPAM addresses and handles, pure: Calico's ReleaseIPs and ReleaseByHandle
(libcalico-go lib/ipam) as steps planned against an `IpamView`.

A `Step` is one transaction of `Write`s, each guarded by the revision its key was read at
(0: the key must be absent). The caller applies it (calico/ipam_txn.py over a KVStore); a
lost race writes nothing and the caller plans again from a fresh view. Freeing an address
changes its block and its handle in the same transaction, so a handle's counts always
match its blocks. Shared by felix's allocator and bgpctl's `ipam release`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calico.ipam import block_key, handle_key
from calico.ipam_view import IpamView

WINDOWS_RESERVED_HANDLE = "windows-reserved-ipam-handle"
"""The handle Calico's Windows IPAM reserves addresses with; such addresses are in use."""


class IpamError(Exception):
    """An assignment or release that cannot be done."""


class ReleaseRefused(IpamError):
    """A release whose handle or sequence number does not match the allocation."""


@dataclass(frozen=True, slots=True)
class Write:
    """Put `value` at `key` (delete when None) if the key's mod revision is still
    `revision` (0: the key must be absent)."""

    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class Step:
    """One transaction. `final`: once it applies, the operation is complete. `addresses`:
    what it assigns or releases (as plain IPs)."""

    writes: tuple[Write, ...]
    reason: str
    final: bool = False
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseIP:
    ip: str
    handle_id: str | None = None
    sequence_number: int | None = None


def release_from_block(
    view: IpamView, cidr: str, ordinals: Sequence[int], reason: str, final: bool
) -> Step:
    """Free `ordinals` of block `cidr`, decrement their handles, and delete the block when it
    is left empty with no affinity; one transaction."""
    current = view.blocks[cidr]
    blk = current.value
    per_handle: dict[str, int] = {}
    for o in ordinals:
        h = blk.handle_of(o)
        if h:
            per_handle[h] = per_handle.get(h, 0) + 1
    new = blk.release(tuple(ordinals))
    writes: list[Write] = []
    if new.empty and new.affinity is None:
        writes.append(Write(block_key(cidr), None, current.revision))
    else:
        writes.append(Write(block_key(cidr), new.to_json(), current.revision))
    for h, count in sorted(per_handle.items()):
        stored = view.handles.get(h)
        if stored is None:
            continue
        updated = stored.value.add(cidr, -count)
        writes.append(
            Write(handle_key(h), None if updated is None else updated.to_json(), stored.revision)
        )
    return Step(
        tuple(writes), reason, final=final, addresses=tuple(blk.address(o) for o in ordinals)
    )


def plan_release_handle(view: IpamView, handle_id: str) -> Step:
    """The next step of ReleaseByHandle: free one block's addresses of the handle. Final
    (with no writes) once nothing holds the handle."""
    stored = view.handles.get(handle_id)
    if stored is None:
        return Step((), f"handle {handle_id} holds nothing", final=True)
    cidrs = sorted(stored.value.blocks)
    for i, cidr in enumerate(cidrs):
        current = view.blocks.get(cidr)
        ordinals = current.value.ordinals_of_handle(handle_id) if current else []
        if not ordinals:
            # The handle counts a block that no longer holds it: correct the handle.
            fixed = stored.value.add(cidr, -stored.value.blocks[cidr])
            value = None if fixed is None else fixed.to_json()
            return Step(
                (Write(handle_key(handle_id), value, stored.revision),),
                f"handle {handle_id}: drop {cidr}, which holds none of it",
                final=fixed is None,
            )
        return release_from_block(
            view, cidr, ordinals, f"release {handle_id} from {cidr}", final=i == len(cidrs) - 1
        )
    return Step(
        (Write(handle_key(handle_id), None, stored.revision),),
        f"delete empty handle {handle_id}",
        final=True,
    )


def plan_release_ips(view: IpamView, releases: Sequence[ReleaseIP]) -> tuple[Step, tuple[str, ...]]:
    """The next step of ReleaseIPs, and the addresses that were already free. Refused
    (ReleaseRefused) when a given handle or sequence number does not match."""
    by_block: dict[str, list[int]] = {}
    unallocated: list[str] = []
    for rel in releases:
        cidr = next(
            (c for c, b in view.blocks.items() if b.value.ordinal(rel.ip) is not None), None
        )
        if cidr is None:
            unallocated.append(rel.ip)
            continue
        blk = view.blocks[cidr].value
        ordinal = blk.ordinal(rel.ip)
        assert ordinal is not None
        if blk.allocations[ordinal] is None:
            unallocated.append(rel.ip)
            continue
        if rel.handle_id is not None and blk.handle_of(ordinal) != rel.handle_id:
            holder = blk.handle_of(ordinal)
            raise ReleaseRefused(f"{rel.ip} is held by {holder}, not {rel.handle_id}")
        if rel.sequence_number is not None:
            seq = blk.seq_for_allocation.get(str(ordinal))
            if seq != rel.sequence_number:
                raise ReleaseRefused(
                    f"{rel.ip}: sequence number {rel.sequence_number} does not match {seq}"
                )
        by_block.setdefault(cidr, []).append(ordinal)
    if not by_block:
        return Step((), "nothing to release", final=True), tuple(unallocated)
    cidrs = sorted(by_block)
    step = release_from_block(
        view, cidrs[0], by_block[cidrs[0]], f"release from {cidrs[0]}", final=len(cidrs) == 1
    )
    return step, tuple(unallocated)


def plan_delete_handle(view: IpamView, handle_id: str, revision: int) -> Step:
    """Delete a handle that no block refers to, only if it is still the record read at
    `revision` (calicoctl's deleteHandle for a leaked handle). ReleaseRefused if a block
    now holds addresses under it; an empty step if it is gone or changed."""
    stored = view.handles.get(handle_id)
    if stored is None or stored.revision != revision:
        return Step((), f"handle {handle_id} is gone or changed", final=True)
    holders = sorted(c for c, b in view.blocks.items() if b.value.ordinals_of_handle(handle_id))
    if holders:
        raise ReleaseRefused(f"handle {handle_id} holds addresses in {', '.join(holders)}")
    return Step(
        (Write(handle_key(handle_id), None, revision),),
        f"delete leaked handle {handle_id}",
        final=True,
    )


def handle_addresses(view: IpamView, handle_id: str) -> list[str]:
    """IPsByHandle."""
    stored = view.handles.get(handle_id)
    out: list[str] = []
    for cidr in sorted(stored.value.blocks) if stored else ():
        current = view.blocks.get(cidr)
        if current is not None:
            blk = current.value
            out.extend(blk.address(o) for o in blk.ordinals_of_handle(handle_id))
    return out
