"""The planner: Calico resources in, this node's BGP sessions and what it originates out.

`compute(snapshot, node, env)` gives a `PeeringPlan`; `diff(old, new)` gives the
`PeerChange`s that take the speaker from one plan to the next. Pure: no I/O, no clock.
"""

from bgpd.plan.diff import (
    BfdChange,
    PeerAdded,
    PeerChange,
    PeerChanged,
    PeerRemoved,
    bfd_changes,
    diff,
)
from bgpd.plan.errors import PlanError
from bgpd.plan.originate import CommunityRule, Origination, StaticRoute
from bgpd.plan.peering import (
    GLOBAL,
    LOCAL_WORKLOAD,
    MESH,
    NODE_SPECIFIC,
    BfdSpec,
    PeeringPlan,
    PeerSpec,
    compute,
    hash_router_id,
)

__all__ = [
    "GLOBAL",
    "LOCAL_WORKLOAD",
    "MESH",
    "NODE_SPECIFIC",
    "BfdChange",
    "BfdSpec",
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
    "bfd_changes",
    "compute",
    "diff",
    "hash_router_id",
]
