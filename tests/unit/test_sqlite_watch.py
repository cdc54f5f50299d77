"""The embedded store's watches share one revision poller that backs off while nothing
changes (issue 17: an idle daemon with a sqlite datastore read the revision ten times a
second per watched prefix, each read a thread hop)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from calico.store.kv import EventType, WatchEvent
from calico.store.sqlite import MAX_POLL_INTERVAL, SqliteKV, next_poll_interval


def test_the_poll_interval_doubles_while_idle_and_drops_back_on_a_change() -> None:
    base, cap = 0.1, 1.0
    waits = [base]
    for _ in range(6):
        waits.append(next_poll_interval(waits[-1], False, base, cap))
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert next_poll_interval(1.0, True, base, cap) == base
    assert next_poll_interval(0.1, False, 0.5, 0.2) == 0.5  # a cap below the base: the base
    assert MAX_POLL_INTERVAL == 1.0


def test_watches_share_one_poller_and_all_see_their_changes(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[WatchEvent], list[WatchEvent], int]:
        kv = SqliteKV(str(tmp_path / "store.db"), poll_interval=0.01, max_poll_interval=0.05)
        start = await kv.revision() + 1
        watches = [kv.watch(p, start) for p in ("/a/", "/b/", "/c/")]
        nexts = [asyncio.ensure_future(w.__anext__()) for w in watches]
        while len(kv._waiters) < 3:  # every watch has read the log and waits
            await asyncio.sleep(0.01)
        pollers = kv._poller
        assert pollers is not None  # one task reads the revision for all three
        await kv.put("/a/x", b"1")
        await kv.put("/b/y", b"2")
        a = await asyncio.wait_for(nexts[0], 10)
        b = await asyncio.wait_for(nexts[1], 10)
        assert not nexts[2].done()  # nothing under /c/
        await kv.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(nexts[2], 10)  # closing ends a waiting watch
        return [a], [b], len(kv._waiters)

    a, b, waiting = asyncio.run(scenario())
    assert [(e.type, e.key, e.value) for e in a] == [(EventType.PUT, "/a/x", b"1")]
    assert [(e.type, e.key, e.value) for e in b] == [(EventType.PUT, "/b/y", b"2")]
    assert waiting == 0
