"""Kernel programming per pool (calico_kernel_programming) as values; the golden files are
checked in test_conformance_mesh; these pin the rules and the CrossSubnet next-hop test."""

from __future__ import annotations

import pytest

from bgpd.plan.kernel_rules import LEAVE_TO_FELIX, PROGRAM, kernel_rules
from bgpd.policy.calico import PoolSpec


def pool(cidr: str, ipip: str = "Never", vxlan: str = "Never") -> PoolSpec:
    family = "ipv6" if ":" in cidr else "ipv4"
    return PoolSpec(cidr, cidr, family, ipip, vxlan, False, False, False)


POOLS = (
    pool("192.168.0.0/16", ipip="Always"),
    pool("172.16.0.0/16", ipip="CrossSubnet"),
    pool("172.17.0.0/16"),
    pool("172.18.0.0/16", vxlan="Always"),
    pool("fd10::/64"),
)


@pytest.mark.parametrize(
    ("mode", "want"),
    [
        (None, [LEAVE_TO_FELIX, LEAVE_TO_FELIX, PROGRAM, LEAVE_TO_FELIX, PROGRAM]),
        ("Enabled", [PROGRAM, PROGRAM, PROGRAM, LEAVE_TO_FELIX, PROGRAM]),
        ("EnabledIPIPOnly", [PROGRAM, PROGRAM, LEAVE_TO_FELIX, LEAVE_TO_FELIX, LEAVE_TO_FELIX]),
        ("EnabledNoEncapOnly", [LEAVE_TO_FELIX, LEAVE_TO_FELIX, PROGRAM, LEAVE_TO_FELIX, PROGRAM]),
        ("Disabled", [LEAVE_TO_FELIX] * 5),
    ],
)
def test_actions_per_program_cluster_routes(mode: str | None, want: list[str]) -> None:
    assert [r.action for r in kernel_rules(POOLS, mode, "10.0.0.0/24")] == want


def test_ipip_tunnels_and_cross_subnet() -> None:
    always, cross, plain, _vx, v6 = kernel_rules(POOLS, "Enabled", "10.0.0.0/24")
    assert always.tunnel_for("10.9.9.9") == "tunl0" and always.tunnel_for("10.0.0.5") == "tunl0"
    # CrossSubnet: direct inside the node's own subnet, tunnelled outside it.
    assert cross.tunnel_for("10.0.0.5") is None
    assert cross.tunnel_for("10.0.1.5") == "tunl0"
    assert plain.tunnel_for("10.0.1.5") is None and v6.tunnel is None
