"""The RIB: Adj-RIB-In per peer, the decision process, the Loc-RIB and the Adj-RIB-Out by
update group; which routes go where, and as what, is bgpd/policy's, through the hooks here
(`ImportPolicy`, `OutboundPolicies`). Sans-I/O: calls take decoded messages and return
changes or bytes; the speaker does the rest.

Flow: `Rib.apply_update()` / `originate()` return `BestChange`s; the speaker stages them in
`AdjRibOut` (whose groups `flush()` UPDATE bytes once per group) and hands them to the kernel.
"""

from bgpd.rib.adj_in import AdjRibIn
from bgpd.rib.adj_out import (
    AdjRibOut,
    GroupFlush,
    GroupKey,
    OutboundPolicies,
    OutboundPolicy,
    UpdateGroup,
)
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.decision import BestPathReason, Selection, compare, select
from bgpd.rib.rib import ImportPolicy, PeerCounts, Rib
from bgpd.rib.route import (
    KERNEL,
    LOCAL,
    Identity,
    LocalSource,
    Path,
    PeerInfo,
    PrefixCheck,
    Route,
    Source,
)
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
    "Identity",
    "ImportPolicy",
    "LocRib",
    "LocalSource",
    "OutboundPolicies",
    "OutboundPolicy",
    "Path",
    "PeerCounts",
    "PeerInfo",
    "PrefixCheck",
    "Rib",
    "Route",
    "Selection",
    "Source",
    "UpdateGroup",
    "compare",
    "select",
]
