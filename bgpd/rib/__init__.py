"""The RIB: Adj-RIB-In per peer, the decision process, the Loc-RIB, export rules and the
Adj-RIB-Out by update group. Sans-I/O: calls take decoded messages and return changes or
bytes; the daemon does the writing.

Flow: `Rib.apply_update()` / `originate()` return `BestChange`s; the daemon stages them in
`AdjRibOut` (whose groups `flush()` UPDATE bytes once per group) and hands them to the kernel.
"""

from bgpd.rib.adj_in import AdjRibIn
from bgpd.rib.adj_out import AdjRibOut, GroupFlush, GroupKey, UpdateGroup
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.decision import BestPathReason, Selection, compare, select
from bgpd.rib.export import export_attrs, may_export, may_export_to, reflect
from bgpd.rib.rib import PeerCounts, Rib
from bgpd.rib.route import KERNEL, LOCAL, LocalSource, Path, PeerInfo, Route, Source
from bgpd.rib.table import BestChange, Destination, LocRib

__all__ = [
    "KERNEL",
    "LOCAL",
    "AdjRibIn",
    "AdjRibOut",
    "AttrCache",
    "BestChange",
    "BestPathReason",
    "Destination",
    "GroupFlush",
    "GroupKey",
    "LocRib",
    "LocalSource",
    "Path",
    "PeerCounts",
    "PeerInfo",
    "Rib",
    "Route",
    "Selection",
    "Source",
    "UpdateGroup",
    "compare",
    "export_attrs",
    "may_export",
    "may_export_to",
    "reflect",
    "select",
]
