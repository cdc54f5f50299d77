"""What a route costs in the RIB: bytes, counted by tracemalloc (deterministic), for a route
reflector of `bench/mem_profile.py` (clients in one update group, each announcing its own
/32s): Adj-RIB-In, Loc-RIB and Adj-RIB-Out together, attributes interned.

Per route held: the Route (80 bytes), its prefix bytes (38), a slot in its peer's Adj-RIB-In
dict, in the Loc-RIB dict and in the group's Adj-RIB-Out dict (about 30-55 each, by how full
each dict happens to be). Issue 17 measured 479 bytes at 10 x 10000, a Destination with its
list and multipath tuple (216) on top of those; the bound leaves room for dict growth
steps, not for another object per route."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

import pytest

from bgpd.rib.route import Route
from bgpd.wire.family import Family

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import mem_profile

CLIENTS, PREFIXES = 5, 4000
ROUTES = CLIENTS * PREFIXES


@pytest.mark.parametrize(("add_path", "bound"), [(False, 300), (True, 400)])
def test_bytes_per_route_of_a_reflector(tmp_path: Path, add_path: bool, bound: int) -> None:
    """Under ADD-PATH send (Calico's `add paths on`) the group keys its table by path id +
    prefix and keeps each prefix's item in a second dict: about 120 bytes more per route
    (345 against 224 measured; a list per prefix made it 410)."""
    updates = [mem_profile.client_updates(i, PREFIXES, add_path) for i in range(CLIENTS)]
    rr = mem_profile.Reflector.make(CLIENTS, tmp_path / "calico.yaml", add_path)
    rr.establish()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i, messages in enumerate(updates):
            rr.announce(i, messages)
        rr.settle()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(d.size_diff for d in after.compare_to(before, "filename"))
    speaker = rr.speaker
    v4 = Family.IPV4_UNICAST
    assert speaker.rib.loc_rib_size(v4) == ROUTES  # every route is there
    group = next(iter(speaker.adj_out.groups.values()))
    assert len(group) == ROUTES
    assert all(isinstance(e, Route) for e in speaker.rib.loc.table(v4).values())
    per_route = held / ROUTES
    assert per_route < bound, f"{per_route:.0f} bytes per route"
