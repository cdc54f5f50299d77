"""Route policy: one home for what may go in and out, and as what.

`policy.Policy` joins the rules and answers `evaluate(route, direction, peer)`; it is the
RIB's import hook and makes each update group's export policy. `reflection` holds the
protocol's own export rules (RFC 4271 split horizon, RFC 4456 reflection, RFC 1997
communities), `imports` the import normalisation and loop checks, `calico` Calico's export
rules for this node's blocks and pools, `bgpfilter` Calico's BGPFilters (as BIRD runs what
confd renders of them), compiled. Pure.
"""

from bgpd.policy.bgpfilter import FilterChain
from bgpd.policy.calico import AffineBlock, ExportDecision, ExportPolicy, ExportRule, PoolSpec
from bgpd.policy.policy import Direction, GroupExport, PeerContext, Policy, RoutePriority, Verdict
from bgpd.policy.reflection import export_attrs, may_export, may_export_to, reflect

__all__ = [
    "AffineBlock",
    "Direction",
    "ExportDecision",
    "ExportPolicy",
    "ExportRule",
    "FilterChain",
    "GroupExport",
    "PeerContext",
    "Policy",
    "PoolSpec",
    "RoutePriority",
    "Verdict",
    "export_attrs",
    "may_export",
    "may_export_to",
    "reflect",
]
