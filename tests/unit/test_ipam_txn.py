"""calico.ipam_txn's step loop: a lost race waits a random, growing pause before the loop
plans again, and gives up as Calico does after `retries` lost races."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from calico.ipam_release import Step, Write
from calico.ipam_txn import BACKOFF_FIRST, BACKOFF_MAX, Contended, backoff, run_steps


def test_backoff_grows_with_the_races_lost_up_to_its_bound() -> None:
    for lost in range(1, 12):
        bound = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (lost - 1))
        waits = [backoff(lost) for _ in range(200)]
        assert all(0 <= w <= bound for w in waits)
        assert max(waits) > bound / 2  # random over the whole range, not a constant
    assert backoff(50) <= BACKOFF_MAX


def _run(outcomes: list[bool], retries: int) -> tuple[list[Step], list[float]]:
    step = Step((Write("k", b"v", 0),), "test", final=True)
    pauses: list[float] = []
    results = iter(outcomes)

    async def read() -> Any:
        return object()  # the plan below does not look at it

    async def apply(_step: Step) -> bool:
        return next(results)

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    applied = asyncio.run(
        run_steps(read, lambda _v: step, "test", apply=apply, pause=pause, retries=retries)
    )
    return applied, pauses


def test_each_lost_race_pauses_before_planning_again() -> None:
    applied, pauses = _run([False, False, False, True], retries=5)
    assert len(applied) == 1
    assert len(pauses) == 3
    assert all(0 <= p <= min(BACKOFF_MAX, BACKOFF_FIRST * 2**i) for i, p in enumerate(pauses))


def test_more_lost_races_than_retries_is_contended() -> None:
    with pytest.raises(Contended):
        _run([False] * 4, retries=3)
