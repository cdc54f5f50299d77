"""What the policy model does to one packet, and why (`felix policy explain`). Pure.

A packet from SRC to DST passes the egress policy of SRC's endpoint (where SRC is a
workload) and then the ingress policy of DST's (where DST is one), each evaluated as Felix
programs it (felix/rules/endpoints.go): tier by tier, the policies that select the
endpoint in order, the first rule that matches decides (Allow, Deny; Pass skips to the
next tier; Log records and goes on); a tier whose policies select the endpoint but match
nothing denies (unless the Tier's defaultAction is Pass); after the tiers (or with none),
the endpoint's profiles, and a drop when no profile allows. Rules match addresses the way
the dataplane does: a selector is the set of its members' addresses.

The nftables ruleset is rendered from the same compiled rules; the lab tests check both
against real packets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from calico.policy import ALLOW, DENY, EGRESS, INGRESS, LOG, PASS, PROTOCOL_NUMBERS, Port
from felix.policy.endpoints import Endpoint
from felix.policy.index import PolicyIndex, canonical, named_port_numbers
from felix.policy.rules import ALL, CompiledRule, Side

ICMP, ICMPV6 = 1, 58
EPHEMERAL_PORT = 40000  # the source port explain assumes unless told


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    dst: str
    protocol: int = ICMP
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = 8  # echo request
    icmp_code: int | None = 0

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.src).version

    def describe(self) -> str:
        names = {v: k for k, v in PROTOCOL_NUMBERS.items()}
        proto = names.get(self.protocol, str(self.protocol))
        if self.protocol in (ICMP, ICMPV6):
            detail = f" type {self.icmp_type}" if self.icmp_type is not None else ""
            detail += f" code {self.icmp_code}" if self.icmp_code is not None else ""
            return f"{proto}{detail} {self.src} -> {self.dst}"
        return f"{proto} {self.src}:{self.src_port} -> {self.dst}:{self.dst_port}"


def parse_packet(src: str, dst: str, spec: str | None) -> Packet:
    """A packet from `spec`: "tcp/6379", "udp/53", "sctp/9", "icmp", "icmp/8/0",
    "icmpv6/128", a protocol number; None is a ping. Raises ValueError."""
    v6 = ipaddress.ip_address(src).version == 6
    if ipaddress.ip_address(dst).version != ipaddress.ip_address(src).version:
        raise ValueError(f"{src} and {dst} are not of one IP version")
    ping = ICMPV6 if v6 else ICMP
    if spec is None:
        return Packet(src, dst, ping, icmp_type=128 if v6 else 8, icmp_code=0)
    parts = spec.strip().lower().split("/")
    name = parts[0]
    numbers = {k.lower(): v for k, v in PROTOCOL_NUMBERS.items()}
    if name.isdigit():
        proto = int(name)
    elif name in numbers:
        proto = numbers[name]
    else:
        raise ValueError(f"{spec!r}: the protocol is tcp, udp, sctp, icmp, icmpv6 or a number")
    try:
        rest = [int(p) for p in parts[1:]]
    except ValueError:
        raise ValueError(f"{spec!r}: ports and ICMP type/code are numbers") from None
    if proto in (ICMP, ICMPV6):
        if len(rest) > 2:
            raise ValueError(f"{spec!r}: icmp[/TYPE[/CODE]]")
        icmp_type = rest[0] if rest else (128 if proto == ICMPV6 else 8)
        code = rest[1] if len(rest) > 1 else 0
        return Packet(src, dst, proto, icmp_type=icmp_type, icmp_code=code)
    if proto in (6, 17, 132):
        if len(rest) != 1 or not 0 < rest[0] < 65536:
            raise ValueError(f"{spec!r}: give the destination port, e.g. tcp/6379")
        return Packet(src, dst, proto, EPHEMERAL_PORT, rest[0], None, None)
    if rest:
        raise ValueError(f"{spec!r}: protocol {proto} has no ports")
    return Packet(src, dst, proto, icmp_type=None, icmp_code=None)


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one direction's evaluation ended."""

    direction: str
    endpoint: str
    verdict: str  # ALLOW or DENY
    by: str  # "GlobalNetworkPolicy default.x", "Profile kns.default", "end of tier ..."
    rule: int | None = None  # the rule's index in its list, when a rule decided
    logged: tuple[str, ...] = ()
    trail: tuple[str, ...] = ()  # what was passed over on the way (Pass, no match)


@dataclass(frozen=True, slots=True)
class Explanation:
    packet: Packet
    decisions: tuple[Decision, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return all(d.verdict == ALLOW for d in self.decisions)


def _in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: tuple[str, ...]) -> bool:
    return any(address in ipaddress.ip_network(n) for n in nets)


def _port_in(port: int | None, ports: tuple[Port, ...]) -> bool:
    return port is not None and any(p.first <= port <= p.last for p in ports)


class _Matcher:
    def __init__(self, index: PolicyIndex) -> None:
        self.index = index

    def _owners(self, address: str) -> list[str]:
        ip = ipaddress.ip_address(address)
        return [k for k, ep in self.index.endpoints.items() if _in(ip, ep.nets)]

    def _in_selector(self, address: str, s_key: str) -> bool:
        members = self.index.members.get(s_key, set())
        return any(k in members for k in self._owners(address))

    def _in_named(
        self,
        address: str,
        s_key: str,
        name: str,
        proto: int | None,
        pkt_proto: int,
        port: int | None,
    ) -> bool:
        if port is None:
            return False
        members = self.index.members.get(s_key, set())
        for k in self._owners(address):
            if k in members and (pkt_proto, port) in named_port_numbers(
                self.index.endpoints[k], name, proto
            ):
                return True
        return False

    def side(
        self, side: Side, rule: CompiledRule, address: str, port: int | None, pkt: Packet
    ) -> bool:
        ip = ipaddress.ip_address(address)
        if side.selector is not None and not self._in_selector(address, canonical(side.selector)):
            return False
        if side.not_selector is not None and self._in_selector(
            address, canonical(side.not_selector)
        ):
            return False
        if side.nets and not _in(ip, side.nets):
            return False
        if side.not_nets and _in(ip, side.not_nets):
            return False
        base = canonical(side.selector if side.selector is not None else ALL)
        if side.has_ports:
            ok = _port_in(port, side.ports) or any(
                self._in_named(address, base, n, rule.protocol, pkt.protocol, port)
                for n in side.named_ports
            )
            if not ok:
                return False
        if _port_in(port, side.not_ports):
            return False
        return not any(
            self._in_named(address, base, n, rule.protocol, pkt.protocol, port)
            for n in side.not_named_ports
        )

    def rule(self, rule: CompiledRule, pkt: Packet) -> bool:
        if rule.ip_version is not None and rule.ip_version != pkt.version:
            return False
        if rule.protocol is not None and rule.protocol != pkt.protocol:
            return False
        if rule.not_protocol is not None and rule.not_protocol == pkt.protocol:
            return False
        if rule.icmp is not None and not _icmp_matches(rule.icmp.type, rule.icmp.code, pkt):
            return False
        if rule.not_icmp is not None and _icmp_matches(rule.not_icmp.type, rule.not_icmp.code, pkt):
            return False
        ports = pkt.protocol in (6, 17, 132)
        return self.side(
            rule.source, rule, pkt.src, pkt.src_port if ports else None, pkt
        ) and self.side(rule.destination, rule, pkt.dst, pkt.dst_port if ports else None, pkt)


def _icmp_matches(icmp_type: int | None, code: int | None, pkt: Packet) -> bool:
    if pkt.protocol not in (ICMP, ICMPV6):
        return False
    if icmp_type is not None and pkt.icmp_type != icmp_type:
        return False
    return code is None or pkt.icmp_code == code


def _kind_name(policy_kind: str, pid: str) -> str:
    return f"{policy_kind} {pid}"


def evaluate(index: PolicyIndex, ep: Endpoint, direction: str, pkt: Packet) -> Decision:
    """The verdict of `ep`'s policy in `direction` (INGRESS: packets to it)."""
    m = _Matcher(index)
    logged: list[str] = []
    trail: list[str] = []

    def decided(verdict: str, by: str, rule: int | None = None) -> Decision:
        return Decision(direction, ep.name, verdict, by, rule, tuple(logged), tuple(trail))

    for tier in index.policies_for(ep.key, direction):
        passed = False
        for policy in tier.policies:
            where = _kind_name(policy.id.kind, str(policy.id))
            for rule in policy.rules(direction) or ():
                if not m.rule(rule, pkt):
                    continue
                if rule.action == LOG:
                    logged.append(f"{where} rule {rule.index}")
                    continue
                if rule.action == PASS:
                    trail.append(f"{where} rule {rule.index} passed to the next tier")
                    passed = True
                    break
                return decided(ALLOW if rule.action == ALLOW else DENY, where, rule.index)
            else:
                trail.append(f"{where}: no rule matched")
                continue
            break
        if not passed:
            if tier.default_action == PASS:
                trail.append(f"end of tier {tier.name}: default action Pass")
                continue
            return decided(DENY, f"end of tier {tier.name} (no policy allowed or passed)")
    for name in ep.profiles:
        profile = index.profile(name)
        where = f"Profile {name}" + ("" if name in index.profiles else " (missing: deny all)")
        for rule in profile.rules(direction):
            if not m.rule(rule, pkt):
                continue
            if rule.action == LOG:
                logged.append(f"{where} rule {rule.index}")
                continue
            if rule.action == ALLOW:
                return decided(ALLOW, where, rule.index)
            if rule.action == DENY:
                return decided(DENY, where, rule.index)
            break  # Pass in a profile: on to the next profile
        trail.append(f"{where}: no rule allowed")
    return decided(DENY, "no profile allowed (drop)")


def owner(index: PolicyIndex, address: str) -> Endpoint | None:
    """The workload endpoint holding `address` (the lexically last if two claim it)."""
    ip = ipaddress.ip_address(address)
    found = [ep for ep in index.endpoints.values() if ep.workload and _in(ip, ep.nets)]
    return max(found, key=lambda e: e.key) if found else None


def find_endpoint(index: PolicyIndex, text: str) -> Endpoint | None:
    """An endpoint by address, WEP name, "namespace/name", pod name or interface."""
    try:
        return owner(index, str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    weps = [ep for ep in index.endpoints.values() if ep.workload]
    for test in (
        lambda e: e.name == text,
        lambda e: f"{e.namespace}/{e.name}" == text,
        lambda e: e.workload_id == text,
        lambda e: e.workload_id.split("/", 1)[-1] == text,
        lambda e: e.interface == text,
    ):
        hits = [e for e in weps if test(e)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(f"{text!r} names {len(hits)} endpoints; give namespace/name")
    return None


def explain(index: PolicyIndex, pkt: Packet) -> Explanation:
    decisions: list[Decision] = []
    notes: list[str] = []
    src, dst = owner(index, pkt.src), owner(index, pkt.dst)
    if src is None:
        notes.append(f"{pkt.src} is no workload: no egress policy applies")
    else:
        decisions.append(evaluate(index, src, EGRESS, pkt))
    if dst is None:
        notes.append(f"{pkt.dst} is no workload: no ingress policy applies")
    else:
        decisions.append(evaluate(index, dst, INGRESS, pkt))
    ip_src, ip_dst = ipaddress.ip_address(pkt.src), ipaddress.ip_address(pkt.dst)
    pools = [p for p in index.pools.values()]
    in_pool = [p for p in pools if ip_src in ipaddress.ip_network(p.cidr)]
    if in_pool and not any(ip_dst in ipaddress.ip_network(p.cidr) for p in pools):
        if any(p.nat_outgoing for p in in_pool):
            notes.append(f"natOutgoing: leaves the node masqueraded (pool {in_pool[0].name})")
        else:
            notes.append(f"leaves the node with its pod address (pool {in_pool[0].name})")
    return Explanation(pkt, tuple(decisions), tuple(notes))
