"""Applying IPAM steps to a key-value store (calico.store.kv): each `Step` is one
transaction whose every write is guarded by the revision its key was read at, and
`run_steps` reads a view, plans a step, applies it and plans again until a final step
applies. A lost race is a failed compare: nothing was written, so the loop just re-reads.

Calico retries a contended write up to 100 times (`datastoreRetries`); so do we, counting
only lost races (a release across blocks takes a few steps even without contention). After
a lost race the loop waits a random pause that grows with the races lost (`backoff`):
writers that retry at once keep colliding on the same next free address (in a CNI ADD storm
one assign lost 100 races). Shared by felix's IpamStore and bgpctl's `ipam release`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from calico.ipam_release import IpamError, Step
from calico.ipam_view import IpamView
from calico.store.kv import Compare, Delete, KVStore, Op, Put

DATASTORE_RETRIES = 100
MAX_STEPS = 1000
BACKOFF_FIRST = 0.001  # the longest pause after the first lost race, doubling up to
BACKOFF_MAX = 0.05


def backoff(lost: int) -> float:
    """Seconds to wait after the `lost`-th lost race of one operation (random, so that the
    writers that collided do not collide again)."""
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(lost - 1, 6)))


class Contended(IpamError):
    """Lost the compare-and-swap race more often than the retries allow."""


async def apply_step(kv: KVStore, step: Step) -> bool:
    """One step as one transaction; False when a compare failed (nothing was written)."""
    compares = [Compare(w.key, w.revision) for w in step.writes]
    ops: list[Op] = [Delete(w.key) if w.value is None else Put(w.key, w.value) for w in step.writes]
    result = await kv.txn(compares, ops)
    return result.succeeded


async def run_steps(
    read: Callable[[], Awaitable[IpamView]],
    plan: Callable[[IpamView], Step],
    what: str,
    *,
    apply: Callable[[Step], Awaitable[bool]],
    pause: Callable[[float], Awaitable[None]],
    retries: int = DATASTORE_RETRIES,
) -> list[Step]:
    """Plan and apply until a final step applies (or a step has nothing to write); the
    steps that applied. `plan` may raise (an IpamError the caller reports); `apply` is
    `apply_step` bound to a store, or a wrapper that logs and counts; `pause` is the
    store's (KVStore.pause)."""
    applied: list[Step] = []
    lost = 0
    for _ in range(MAX_STEPS):
        view = await read()
        step = plan(view)
        if not step.writes:
            return applied
        if await apply(step):
            applied.append(step)
            if step.final:
                return applied
        else:
            lost += 1
            if lost > retries:
                raise Contended(f"{what}: still contended after {retries} retries")
            await pause(backoff(lost))
    raise Contended(f"{what}: no progress after {MAX_STEPS} steps")
