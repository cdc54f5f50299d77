"""Which learned routes this node programs into the kernel, per IP pool: confd's
`filter calico_kernel_programming` (reference/calico.md 4.3, the HEAD form driven by
BGPConfiguration.programClusterRoutes) as values. Pure.

* VXLAN pools: never; Felix programs VXLAN routes.
* IPIP pools (IPv4 only): with programClusterRoutes Enabled or EnabledIPIPOnly, via
  `tunl0 onlink` (CrossSubnet: only when the BGP next hop is outside this node's subnet);
  otherwise Felix programs them.
* Unencapsulated pools: with Enabled or EnabledNoEncapOnly (the default), directly;
  otherwise Felix does.
* A route outside every pool: directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.policy.calico import IPV4, PoolSpec
from calico.model import ENCAP_NEVER

ENABLED = "Enabled"
ENABLED_IPIP_ONLY = "EnabledIPIPOnly"
ENABLED_NO_ENCAP_ONLY = "EnabledNoEncapOnly"
DISABLED = "Disabled"
DEFAULT_PROGRAM_CLUSTER_ROUTES = ENABLED_NO_ENCAP_ONLY

TUNNEL_DEVICE = "tunl0"


def felix_programs_ipip(program_cluster_routes: str | None) -> bool:
    """Whether Felix, not the BGP daemon, programs IPIP pools' routes (via tunl0)."""
    return (program_cluster_routes or DEFAULT_PROGRAM_CLUSTER_ROUTES) not in (
        ENABLED,
        ENABLED_IPIP_ONLY,
    )

# Actions, as `bgpd plan` prints them.
PROGRAM = "program"
LEAVE_TO_FELIX = "felix"


@dataclass(frozen=True, slots=True)
class KernelRule:
    """The kernel programming of routes inside one pool."""

    cidr: str
    family: str
    action: str
    # Set when routes go via this tunnel device with `onlink` (IPIP).
    tunnel: str | None = None
    # CrossSubnet: no tunnel for a next hop inside this network (the node's own subnet).
    direct_within: str | None = None
    reason: str = ""

    @property
    def programmed(self) -> bool:
        return self.action == PROGRAM

    def tunnel_for(self, next_hop: str | None) -> str | None:
        """The device a programmed route with BGP next hop `next_hop` goes through; None:
        the ordinary route via the next hop."""
        if self.tunnel is None:
            return None
        if self.direct_within is not None and next_hop is not None:
            nh = ipaddress.ip_address(next_hop)
            if nh in ipaddress.ip_network(self.direct_within, strict=False):
                return None
        return self.tunnel


def kernel_rules(
    pools: Iterable[PoolSpec],
    program_cluster_routes: str | None,
    node_ipv4_network: str | None,
) -> tuple[KernelRule, ...]:
    mode = program_cluster_routes or DEFAULT_PROGRAM_CLUSTER_ROUTES
    ipip_by_bird = mode in (ENABLED, ENABLED_IPIP_ONLY)
    plain_by_bird = mode in (ENABLED, ENABLED_NO_ENCAP_ONLY)
    rules: list[KernelRule] = []
    for pool in pools:
        if pool.vxlan_mode != ENCAP_NEVER:
            rules.append(
                KernelRule(pool.cidr, pool.family, LEAVE_TO_FELIX, reason="VXLAN: Felix programs")
            )
        elif pool.family == IPV4 and pool.ipip_mode != ENCAP_NEVER:
            if not ipip_by_bird:
                rules.append(
                    KernelRule(
                        pool.cidr, pool.family, LEAVE_TO_FELIX,
                        reason=f"IPIP with programClusterRoutes {mode}: Felix programs",
                    )
                )
                continue
            cross = pool.ipip_mode == "CrossSubnet"
            rules.append(
                KernelRule(
                    pool.cidr, pool.family, PROGRAM, tunnel=TUNNEL_DEVICE,
                    direct_within=node_ipv4_network if cross else None,
                    reason=f"IPIP {pool.ipip_mode}",
                )
            )
        elif plain_by_bird:
            rules.append(KernelRule(pool.cidr, pool.family, PROGRAM, reason="no encapsulation"))
        else:
            rules.append(
                KernelRule(
                    pool.cidr, pool.family, LEAVE_TO_FELIX,
                    reason=f"no encapsulation with programClusterRoutes {mode}: Felix programs",
                )
            )
    return tuple(rules)


__all__ = [
    "DEFAULT_PROGRAM_CLUSTER_ROUTES",
    "LEAVE_TO_FELIX",
    "PROGRAM",
    "TUNNEL_DEVICE",
    "KernelRule",
    "kernel_rules",
]
