"""`show memory` for the BIRD socket: what the routing tables, the interned attributes and
the sessions hold, estimated from a sample of objects (sizes times counts: measuring every
object of a large table would hold the event loop), and the process's resident size."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import fields
from itertools import islice

from bgpd.control.birdsock.view import MemoryUsage
from bgpd.rib.rib import Rib
from bgpd.rib.route import Route
from bgpd.wire.family import Family

SAMPLE = 64


def _attrs_size(attrs: object) -> int:
    size = sys.getsizeof(attrs)
    for f in fields(attrs):  # type: ignore[arg-type]
        value = getattr(attrs, f.name)
        if isinstance(value, (tuple, bytes)):
            size += sys.getsizeof(value)
            if isinstance(value, tuple):
                size += sum(sys.getsizeof(v) for v in value if isinstance(v, (tuple, bytes)))
    return size


def estimate(rib: Rib, buffered: Iterable[int]) -> MemoryUsage:
    """`buffered`: bytes queued for each session (BIRD counts socket buffers in Protocols)."""
    tables = 0
    attr_sizes: dict[int, int] = {}
    for family in Family:
        table = rib.loc.table(family)
        tables += sys.getsizeof(table)
        count = len(table)
        sample = list(islice(table.values(), SAMPLE))
        if not sample:
            continue
        per = 0
        for entry in sample:
            # A prefix of one path holds its route; of more, a destination (rib/table.py).
            if isinstance(entry, Route):
                routes: list[Route] = [entry]
                per += sys.getsizeof(entry.prefix)
            else:
                routes = entry.paths
                per += sys.getsizeof(entry) + sys.getsizeof(routes) + sys.getsizeof(entry.prefix)
                per += sys.getsizeof(entry.multipath)
            for route in routes:
                per += sys.getsizeof(route)
                attr_sizes.setdefault(id(route.attrs), _attrs_size(route.attrs))
        tables += per * count // len(sample)
    attrs = 0
    if attr_sizes:
        attrs = sum(attr_sizes.values()) * len(rib.attr_cache) // len(attr_sizes)
    return MemoryUsage(
        routing_tables=tables,
        route_attributes=attrs,
        protocols=sum(buffered),
        total=resident_bytes(),
    )


def resident_bytes() -> int:
    """The process's resident set size (Linux /proc/self/statm), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
