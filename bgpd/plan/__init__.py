"""The planner: Calico resources in, this node's BGP sessions and what it originates out.

`compute(snapshot, node, env)` gives a `PeeringPlan`; `diff(old, new)` gives the
`PeerChange`s that take the speaker from one plan to the next. Pure: no I/O, no clock.
"""

from bgpd.plan.diff import PeerAdded, PeerChange, PeerChanged, PeerRemoved, diff
from bgpd.plan.errors import PlanError
from bgpd.plan.originate import CommunityRule, Origination, StaticRoute
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
    "CommunityRule",
    "Origination",
    "PeerAdded",
    "PeerChange",
    "PeerChanged",
    "PeerRemoved",
    "PeerSpec",
    "PeeringPlan",
    "PlanError",
    "StaticRoute",
    "compute",
    "diff",
    "hash_router_id",
]
