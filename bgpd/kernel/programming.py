"""How a best route goes into the FIB, per IP pool (confd's calico_kernel_programming), pure.

The plan's `KernelRule`s (bgpd/plan/kernel_rules.py) say per pool whether bgpd or Felix
programs cluster routes, and whether via `tunl0 onlink` (IPIP). `Programming` compiles them
into integer ranges so the per-route lookup in the FIB path costs a few comparisons, and
answers with a `Treatment`: install (directly or via a tunnel) or leave it, with the reason
`bgpctl explain` shows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bgpd.kernel.fib import AF_INET, AF_INET6

OUTSIDE_POOLS = "outside every IP pool"


class RuleLike(Protocol):
    """What is read of a plan `KernelRule`."""

    @property
    def cidr(self) -> str: ...
    @property
    def programmed(self) -> bool: ...
    @property
    def tunnel(self) -> str | None: ...
    @property
    def direct_within(self) -> str | None: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Treatment:
    """`install` False: not ours to program (`reason` says who does). `tunnel`: the device
    the route goes through with `onlink`, the BGP next hop as gateway."""

    install: bool
    tunnel: str | None = None
    reason: str = ""


DIRECT = Treatment(True, None, OUTSIDE_POOLS)


@dataclass(frozen=True, slots=True)
class _Compiled:
    af: int
    addr: int
    plen: int
    treatment: Treatment
    # CrossSubnet: next hops inside this (af, net, plen) go direct.
    direct: tuple[int, int, int] | None


def _net(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr, strict=False)
    return (AF_INET if net.version == 4 else AF_INET6, int(net.network_address), net.prefixlen)


def _inside(af: int, addr: int, plen: int, o_af: int, o_addr: int, o_plen: int) -> bool:
    if af != o_af or plen < o_plen:
        return False
    shift = (32 if af == AF_INET else 128) - o_plen
    return (addr >> shift) == (o_addr >> shift)


class Programming:
    """The compiled kernel rules of one plan."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[RuleLike] = ()) -> None:
        compiled = []
        for rule in rules:
            af, addr, plen = _net(rule.cidr)
            treatment = Treatment(rule.programmed, rule.tunnel, rule.reason)
            direct = _net(rule.direct_within) if rule.direct_within else None
            compiled.append(_Compiled(af, addr, plen, treatment, direct))
        # Most specific pool first: the first match decides.
        compiled.sort(key=lambda c: -c.plen)
        self._rules = tuple(compiled)

    def treatment(self, af: int, dst: bytes, plen: int, next_hop: bytes = b"") -> Treatment:
        """How to program a route to dst/plen whose BGP next hop is `next_hop` (packed)."""
        if not self._rules:
            return DIRECT
        addr = int.from_bytes(dst, "big")
        for rule in self._rules:
            if not _inside(af, addr, plen, rule.af, rule.addr, rule.plen):
                continue
            t = rule.treatment
            if t.tunnel is not None and rule.direct is not None and next_hop:
                d_af, d_addr, d_plen = rule.direct
                nh_af = AF_INET if len(next_hop) == 4 else AF_INET6
                nh = int.from_bytes(next_hop, "big")
                if _inside(nh_af, nh, 32 if nh_af == AF_INET else 128, d_af, d_addr, d_plen):
                    return Treatment(True, None, f"{t.reason}: next hop in this node's subnet")
            return t
        return DIRECT
