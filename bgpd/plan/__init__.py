"""The planner: Calico resources in, this node's BGP sessions and export rules out.

`compute(snapshot, node, env)` gives a `PeeringPlan`; `diff(old, new)` gives the
`PeerChange`s that take the speaker from one plan to the next. Pure: no I/O, no clock.
"""

from bgpd.plan.diff import PeerAdded, PeerChange, PeerChanged, PeerRemoved, diff
from bgpd.plan.errors import PlanError
from bgpd.plan.export import (
    AffineBlock,
    CommunityRule,
    ExportPolicy,
    Origination,
    PoolSpec,
    StaticRoute,
)
from bgpd.plan.peering import (
    GLOBAL,
    MESH,
    NODE_SPECIFIC,
    PeeringPlan,
    PeerSpec,
    compute,
    hash_router_id,
)

__all__ = [
    "GLOBAL",
    "MESH",
    "NODE_SPECIFIC",
    "AffineBlock",
    "CommunityRule",
    "ExportPolicy",
    "Origination",
    "PeerAdded",
    "PeerChange",
    "PeerChanged",
    "PeerRemoved",
    "PeerSpec",
    "PeeringPlan",
    "PlanError",
    "PoolSpec",
    "StaticRoute",
    "compute",
    "diff",
    "hash_router_id",
]
