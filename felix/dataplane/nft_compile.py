"""The policy model as one nftables table, `inet felix`, and the transaction that turns one
ruleset into another. Pure: a `Ruleset` is built from a PolicyIndex and rendered as text
for `nft -f`.

Layout (Calico's iptables/nftables chains, felix/rules/, in one table):

    forward   (hook forward)   ct established,related accept; invalid from/to cali* drop;
                               from cali* -> from-wl-dispatch; to cali* -> to-wl-dispatch
    input     (hook input)     ct established,related accept; from cali* -> wl-to-host
    wl-to-host                 ICMPv6 ND/MLD accepted; egress policy (from-wl-dispatch); then
                               the DefaultEndpointToHostAction (Drop unless configured)
    postrouting (hook nat srcnat)  from a natOutgoing pool to outside every pool: masquerade
    from-wl-dispatch / to-wl-dispatch   iifname/oifname vmap @from-wl / @to-wl: `goto` the
                               endpoint's chain; an unknown cali* interface is dropped
    fw-<iface> / tw-<iface>    one per endpoint and direction (its counter), going to
    ep-<hash>                  the rules of all endpoints alike: per tier, jump to each
                               policy that selects them (pi-/po- chains), return on the
                               accept mark, drop at the end of the tier unless passed; then
                               the profiles (pri-/pro-), drop if none accepted
    pi-<policy> / po-<policy>  a policy's ingress / egress rules; Allow sets the accept mark
                               and returns, Pass the pass mark, Deny drops, Log logs
    s4-/s6-<hash>              the addresses a selector matches (members of IP sets change
                               by set element updates, never by rewriting a rule)
    n4-/n6-<hash>              (address . protocol . port) of a named port

Host-to-workload traffic is not policed (Calico returns it from its OUTPUT chain too).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from calico.policy import ALLOW, DENY, EGRESS, INGRESS, PASS
from felix.policy.endpoints import Endpoint
from felix.policy.index import NamedPortKey, PolicyIndex, Settings, TierPolicies, canonical
from felix.policy.rules import ALL, CompiledPolicy, CompiledProfile, CompiledRule, Side

FAMILY = "inet"
TABLE = "felix"
# Calico's default mark bits (IptablesMarkMask 0xffff0000: accept, then pass).
MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
_CLEAR_BOTH = 0xFFFFFFFF & ~(MARK_ACCEPT | MARK_PASS)
_CLEAR_PASS = 0xFFFFFFFF & ~MARK_PASS
WORKLOAD_GLOB = "cali*"
ICMPV6_ALLOWED = (130, 131, 132, 133, 135, 136)  # Calico's ICMPv6Filter (ND, MLD, RS)

_NAME_OK = re.compile(r"[^A-Za-z0-9_.\-]")
_SET_REF = re.compile(r"@([sn][46]-[0-9a-f]+)")


@dataclass(frozen=True, slots=True)
class NftSet:
    type: str
    elements: tuple[str, ...] = ()
    flags: str = "interval"


@dataclass(frozen=True, slots=True)
class NftMap:
    type: str
    elements: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NftChain:
    rules: tuple[str, ...] = ()
    base: str | None = None  # "type filter hook forward priority filter; policy accept;"


@dataclass(frozen=True, slots=True)
class Ruleset:
    sets: Mapping[str, NftSet]
    maps: Mapping[str, NftMap]
    chains: Mapping[str, NftChain]


# --- names ----------------------------------------------------------------------------------


def _digest(text: str, n: int = 12) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def _ident(prefix: str, text: str) -> str:
    """A chain name nft's scanner reads as one identifier; a hash keeps it unique when
    characters had to be replaced or the name cut."""
    safe = _NAME_OK.sub("_", text)
    if safe != text or len(safe) > 180:
        safe = f"{safe[:160]}-{_digest(text, 8)}"
    return f"{prefix}{safe}"


@functools.lru_cache(maxsize=65536)
def selector_set(skey: str, version: int) -> str:
    return f"s{version}-{_digest(skey)}"


@functools.lru_cache(maxsize=65536)
def named_port_set(npk: NamedPortKey, version: int) -> str:
    return f"n{version}-{_digest(f'{npk[0]}|{npk[1]}|{npk[2]}')}"


def policy_chain(policy: CompiledPolicy, direction: str) -> str:
    pid = policy.id
    text = f"{pid.short_kind}.{pid.namespace}.{pid.name}" if pid.namespace else f"gnp.{pid.name}"
    return _ident("pi-" if direction == INGRESS else "po-", text)


def profile_chain(name: str, direction: str) -> str:
    return _ident("pri-" if direction == INGRESS else "pro-", name)


def endpoint_chain(interface: str, direction: str) -> str:
    return _ident("tw-" if direction == INGRESS else "fw-", interface)


def group_chain(chain: NftChain) -> str:
    """The name of an endpoint chain's body, shared by every endpoint whose tiers,
    policies and profiles are the same: named by what it holds."""
    return "ep-" + _digest("\n".join(chain.rules))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "'") + '"'


def _hex(mark: int) -> str:
    return f"0x{mark:08x}"


# --- rules ----------------------------------------------------------------------------------


def _nets_of(nets: tuple[str, ...], version: int) -> list[str]:
    return [n for n in nets if ipaddress.ip_network(n).version == version]


def _anon(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _ports(ports: Iterable[object]) -> str:
    out = []
    for p in ports:
        first, last = p.first, p.last  # type: ignore[attr-defined]
        out.append(str(first) if first == last else f"{first}-{last}")
    return _anon(out)


def _family_specific(rule: CompiledRule) -> bool:
    sides = (rule.source, rule.destination)
    return (
        rule.ip_version is not None
        or rule.icmp is not None
        or rule.not_icmp is not None
        or rule.protocol in (1, 58)
        or any(
            s.selector
            or s.not_selector
            or s.nets
            or s.not_nets
            or s.named_ports
            or s.not_named_ports
            for s in sides
        )
    )


def _side_matches(
    side: Side, version: int, addr: str, port: str, protocol: int | None
) -> tuple[list[str], list[str]] | None:
    """(conjunctive matches, alternatives for the positive ports) of one rule side in one
    IP version; None when the side cannot match packets of that version (its nets are
    all of the other one)."""
    fam = "ip" if version == 4 else "ip6"
    parts: list[str] = []
    if side.selector is not None:
        parts.append(f"{fam} {addr} @{selector_set(canonical(side.selector), version)}")
    if side.not_selector is not None:
        parts.append(f"{fam} {addr} != @{selector_set(canonical(side.not_selector), version)}")
    if side.nets:
        nets = _nets_of(side.nets, version)
        if not nets:
            return None
        parts.append(f"{fam} {addr} {_anon(nets)}")
    if side.not_nets:
        nets = _nets_of(side.not_nets, version)
        if not nets:
            return None
        parts.append(f"{fam} {addr} != {_anon(nets)}")
    if side.not_ports:
        parts.append(f"th {port} != {_ports(side.not_ports)}")
    base = canonical(side.selector if side.selector is not None else ALL)
    for name in side.not_named_ports:
        npk = (base, name, protocol)
        parts.append(f"{fam} {addr} . meta l4proto . th {port} != @{named_port_set(npk, version)}")
    alternatives: list[str] = []
    if side.ports:
        alternatives.append(f"th {port} {_ports(side.ports)}")
    for name in side.named_ports:
        npk = (base, name, protocol)
        np_set = named_port_set(npk, version)
        alternatives.append(f"{fam} {addr} . meta l4proto . th {port} @{np_set}")
    return parts, alternatives or [""]


def _icmp(version: int, icmp_type: int | None, code: int | None, negated: bool) -> str:
    kw = "icmp" if version == 4 else "icmpv6"
    if not negated:
        out = f"{kw} type {icmp_type}" if icmp_type is not None else ""
        return f"{out} {kw} code {code}".strip() if code is not None else out
    if code is None:
        return f"{kw} type != {icmp_type}"
    return f"{kw} type . {kw} code != {{ {icmp_type} . {code} }}"


def _verdict(rule: CompiledRule, settings: Settings, owner: str) -> str:
    if rule.action == ALLOW:
        return f"counter meta mark set meta mark | {_hex(MARK_ACCEPT)} return"
    if rule.action == PASS:
        return f"counter meta mark set meta mark | {_hex(MARK_PASS)} return"
    if rule.action == DENY:
        return "counter " + _deny(settings)
    prefix = settings.log_prefix
    return f"counter log prefix {_quote(log_prefix(prefix, owner)[:120] + ': ')}"


def log_prefix(template: str, owner: str) -> str:
    """Calico's LogPrefix with its %k (kind), %n (name), %p (namespace/name), %t (tier)
    substitutions; `owner` is "<kind>|<tier>|<namespace/name>|<name>"."""
    kind, tier, qualified, name = [*owner.split("|"), "", "", "", ""][:4]
    return re.sub(
        "%[tknp]",
        lambda m: {"%k": kind, "%n": name, "%p": qualified, "%t": tier}[m.group(0)],
        template,
    )


def _deny(settings: Settings) -> str:
    return "reject with icmpx admin-prohibited" if settings.deny_action == "Reject" else "drop"


def render_rule(
    rule: CompiledRule, versions: tuple[int, ...], settings: Settings, owner: str = ""
) -> list[str]:
    """The nft rules of one Calico rule. A rule without addresses or ICMP fields is one
    rule for both IP versions; others one per version they can match; numeric and named
    ports are alternatives (one nft rule each)."""
    out: list[str] = []
    specific = _family_specific(rule)
    for version in versions if specific else (0,):
        if rule.ip_version is not None and rule.ip_version != version:
            continue
        if (version == 6 and rule.protocol == 1) or (version == 4 and rule.protocol == 58):
            continue  # ICMP never matches IPv6 packets, nor ICMPv6 IPv4 ones
        parts: list[str] = [f"meta nfproto ipv{version}"] if specific else []
        if rule.protocol is not None:
            parts.append(f"meta l4proto {rule.protocol}")
        if rule.not_protocol is not None:
            parts.append(f"meta l4proto != {rule.not_protocol}")
        if rule.icmp is not None:
            parts.append(_icmp(version, rule.icmp.type, rule.icmp.code, False))
        if rule.not_icmp is not None:
            parts.append(_icmp(version, rule.not_icmp.type, rule.not_icmp.code, True))
        v = version or 4
        src = _side_matches(rule.source, v, "saddr", "sport", rule.protocol)
        dst = _side_matches(rule.destination, v, "daddr", "dport", rule.protocol)
        if src is None or dst is None:
            continue
        verdict = _verdict(rule, settings, owner)
        comment = f"comment {_quote(f'rule {rule.index}')}"
        for s_alt in src[1]:
            for d_alt in dst[1]:
                words = [*parts, *src[0], s_alt, *dst[0], d_alt, verdict, comment]
                out.append(" ".join(w for w in words if w))
    return out


# --- chains ---------------------------------------------------------------------------------


def _policy_owner(p: CompiledPolicy) -> str:
    kind = "np" if p.id.namespace else "gnp"
    return f"{kind}|{p.tier}|{p.id}|{p.id.name}"


def _rules_chain(
    rules: tuple[CompiledRule, ...], versions: tuple[int, ...], settings: Settings, owner: str
) -> NftChain:
    lines: list[str] = []
    for rule in rules:
        lines.extend(render_rule(rule, versions, settings, owner))
    return NftChain(tuple(lines))


_ChainKey = tuple[str, tuple[tuple[str, str, tuple[str, ...]], ...], tuple[str, ...], str]


def _endpoint_chain(key: _ChainKey) -> NftChain:
    """An endpoint's chain for one direction: it depends only on the tiers and policies
    that select the endpoint and its profiles, so endpoints alike share one rendering."""
    direction, tiers, profiles, deny = key
    lines = [f"meta mark set meta mark & {_hex(_CLEAR_BOTH)}"]
    not_passed = f"meta mark & {_hex(MARK_PASS)} == 0"
    accepted = f"meta mark & {_hex(MARK_ACCEPT)} != 0 return"
    for tier, default_action, policies in tiers:
        lines.append(
            f"meta mark set meta mark & {_hex(_CLEAR_PASS)} comment {_quote(f'tier {tier}')}"
        )
        for chain_and_label in policies:
            chain, label = chain_and_label.split(" ", 1)
            lines.append(f"{not_passed} counter jump {chain} comment {_quote(label)}")
            lines.append(accepted)
        if default_action != PASS:
            lines.append(f"{not_passed} counter {deny} comment {_quote(f'end of tier {tier}')}")
    for name in profiles:
        lines.append(
            f"counter jump {profile_chain(name, direction)} comment {_quote(f'Profile {name}')}"
        )
        lines.append(accepted)
    lines.append(f"counter {deny} comment {_quote('no profile accepted')}")
    return NftChain(tuple(lines))


@dataclass(slots=True)
class _Rendered:
    source: object  # the compiled policy or profile the chain was rendered from
    chain: NftChain
    sets: frozenset[str]  # the sets its rules refer to


@dataclass(frozen=True, slots=True)
class _EndpointRendering:
    endpoint: Endpoint
    tiers: tuple[TierPolicies, ...]
    profile_epoch: int  # the index's profile epoch it was rendered at
    name: str
    chain: NftChain
    rule_chains: Mapping[str, NftChain]  # the policy and profile chains it jumps to
    sets: frozenset[str]  # the sets those refer to
    entry: tuple[str, str]  # its dispatch map entry


class Compiler:
    """Renders a PolicyIndex as a Ruleset. Keeps what it rendered (policy chains by the
    policy they came from, endpoint chains by what they jump to, set elements by the
    index's generation of each set), so after one change only what that change touched
    is rendered again; the result is always what a fresh Compiler would produce."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str], _Rendered] = {}
        self._endpoint_chains: dict[_ChainKey, tuple[str, NftChain]] = {}
        self._sets: dict[tuple[str | NamedPortKey, int], tuple[int, NftSet]] = {}
        self._names: dict[tuple[object, str], str] = {}
        self._settings: tuple[Settings, tuple[int, ...]] | None = None
        self._per_ep: dict[tuple[str, str], _EndpointRendering] = {}

    def _policy_name(self, p: CompiledPolicy, direction: str) -> str:
        key = (p.id, direction)
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = f"{policy_chain(p, direction)} {p.id.kind} {p.id}"
        return name

    def _rules_chain(
        self,
        name: str,
        source: object,
        rules: tuple[CompiledRule, ...],
        versions: tuple[int, ...],
        settings: Settings,
        owner: str,
    ) -> _Rendered:
        key = (name, "")
        hit = self._rules.get(key)
        if hit is not None and hit.source is source:
            return hit
        chain = _rules_chain(rules, versions, settings, owner)
        refs = frozenset(m for r in chain.rules for m in _SET_REF.findall(r))
        done = self._rules[key] = _Rendered(source, chain, refs)
        return done

    def _render_endpoint(
        self,
        ep: Endpoint,
        direction: str,
        tiers: tuple[TierPolicies, ...],
        profiles: tuple[CompiledProfile, ...],
        versions: tuple[int, ...],
        settings: Settings,
        deny: str,
        epoch: int,
    ) -> _EndpointRendering:
        rules: list[tuple[str, _Rendered]] = []
        for tier in tiers:
            for p in tier.policies:
                name = policy_chain(p, direction)
                rules.append(
                    (
                        name,
                        self._rules_chain(
                            name, p, p.rules(direction) or (), versions, settings, _policy_owner(p)
                        ),
                    )
                )
        for profile in profiles:
            name = profile_chain(profile.name, direction)
            rules.append(
                (
                    name,
                    self._rules_chain(
                        name,
                        profile,
                        profile.rules(direction),
                        versions,
                        settings,
                        f"pro||{profile.name}|{profile.name}",
                    ),
                )
            )
        key: _ChainKey = (
            direction,
            tuple(
                (
                    t.name,
                    t.default_action,
                    tuple(self._policy_name(p, direction) for p in t.policies),
                )
                for t in tiers
            ),
            ep.profiles,
            deny,
        )
        group = self._endpoint_chains.get(key)
        if group is None:
            chain = _endpoint_chain(key)
            group = self._endpoint_chains[key] = (group_chain(chain), chain)
        name = endpoint_chain(ep.interface, direction)
        jump = NftChain((f"counter goto {group[0]} comment {_quote('endpoint')}",))
        return _EndpointRendering(
            ep,
            tiers,
            epoch,
            name,
            jump,
            {**{n: done.chain for n, done in rules}, group[0]: group[1]},
            frozenset().union(*(done.sets for _, done in rules)),
            (_quote(ep.interface), f"goto {name}"),
        )

    def compile(self, index: PolicyIndex) -> Ruleset:
        settings = index.settings()
        versions = index.ip_versions()
        if self._settings != (settings, versions):
            self.__init__()  # type: ignore[misc]  # every rendering depends on them
            self._settings = (settings, versions)
        deny = _deny(settings)
        sets: dict[str, NftSet] = {}
        chains: dict[str, NftChain] = {}
        used_sets: set[str] = set()
        from_wl: list[tuple[str, str]] = []
        to_wl: list[tuple[str, str]] = []
        per_ep: dict[tuple[str, str], _EndpointRendering] = {}
        epoch = index.profile_epoch
        previous = self._per_ep
        for ep in index.local_endpoints():
            for direction, entries in ((INGRESS, to_wl), (EGRESS, from_wl)):
                tiers = index.policies_for(ep.key, direction)
                hit = previous.get((ep.key, direction))
                if (
                    hit is None
                    or hit.endpoint is not ep
                    or hit.tiers is not tiers
                    or hit.profile_epoch != epoch
                ):
                    profiles = tuple(index.profile(prof) for prof in ep.profiles)
                    hit = self._render_endpoint(
                        ep, direction, tiers, profiles, versions, settings, deny, epoch
                    )
                per_ep[(ep.key, direction)] = hit
                chains.update(hit.rule_chains)
                if not hit.sets <= used_sets:
                    used_sets |= hit.sets
                chains[hit.name] = hit.chain
                entries.append(hit.entry)
        self._per_ep = per_ep
        for stale in [k for k in self._rules if k[0] not in chains]:
            del self._rules[stale]
        if len(self._endpoint_chains) > 4 * max(1, len(chains)):
            self._endpoint_chains.clear()  # forget renderings no endpoint uses any more
        maps = {
            "from-wl": NftMap("ifname : verdict", tuple(sorted(from_wl))),
            "to-wl": NftMap("ifname : verdict", tuple(sorted(to_wl))),
        }
        kept: set[tuple[str | NamedPortKey, int]] = set()
        for skey in index.selector_keys():
            for v in versions:
                name = selector_set(skey, v)
                if name in used_sets:
                    sets[name] = self._set(index, (skey, v))
                    kept.add((skey, v))
        for npk in index.named_port_keys():
            for v in versions:
                name = named_port_set(npk, v)
                if name in used_sets:
                    sets[name] = self._set(index, (npk, v))
                    kept.add((npk, v))
        for stale_set in self._sets.keys() - kept:
            del self._sets[stale_set]
        chains.update(_static_chains(index, settings, versions, sets))
        return Ruleset(sets, maps, chains)

    def _set(self, index: PolicyIndex, key: tuple[str | NamedPortKey, int]) -> NftSet:
        what, v = key
        generation = index.generation[what]
        hit = self._sets.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        addr = "ipv4_addr" if v == 4 else "ipv6_addr"
        if isinstance(what, str):
            made = NftSet(addr, tuple(index.set_networks(what, v)))
        else:
            elements = index.named_port_elements(what, v)
            made = NftSet(
                f"{addr} . inet_proto . inet_service",
                tuple(f"{n} . {proto} . {port}" for n, proto, port in elements),
            )
        self._sets[key] = (generation, made)
        return made


def compile_ruleset(index: PolicyIndex) -> Ruleset:
    """The whole table for the index's current state."""
    return Compiler().compile(index)


def _static_chains(
    index: PolicyIndex, settings: Settings, versions: tuple[int, ...], sets: dict[str, NftSet]
) -> dict[str, NftChain]:
    wl = _quote(WORKLOAD_GLOB)
    chains = {
        "forward": NftChain(
            (
                "ct state established,related accept",
                f"iifname {wl} ct state invalid drop",
                f"oifname {wl} ct state invalid drop",
                f"iifname {wl} jump from-wl-dispatch",
                f"oifname {wl} jump to-wl-dispatch",
            ),
            "type filter hook forward priority filter; policy accept;",
        ),
        "input": NftChain(
            (
                "ct state established,related accept",
                f"iifname {wl} ct state invalid drop",
                f"iifname {wl} goto wl-to-host",
            ),
            "type filter hook input priority filter; policy accept;",
        ),
        "from-wl-dispatch": NftChain(
            ("iifname vmap @from-wl", f"counter drop comment {_quote('unknown interface')}")
        ),
        "to-wl-dispatch": NftChain(
            ("oifname vmap @to-wl", f"counter drop comment {_quote('unknown interface')}")
        ),
    }
    to_host: list[str] = []
    if 6 in versions:
        types = ", ".join(str(t) for t in ICMPV6_ALLOWED)
        to_host.append(f"icmpv6 type {{ {types} }} accept")
    to_host.append("jump from-wl-dispatch")
    action = {"Drop": "drop", "Accept": "accept", "Return": "return"}[
        settings.endpoint_to_host_action
    ]
    to_host.append(f"counter {action} comment {_quote('DefaultEndpointToHostAction')}")
    chains["wl-to-host"] = NftChain(tuple(to_host))

    # natOutgoing (Calico's cali-nat-outgoing): from a masquerading pool to outside all.
    nat: list[str] = []
    for v in versions:
        fam, addr = ("ip", "ipv4_addr") if v == 4 else ("ip6", "ipv6_addr")
        pools = [p for p in index.pools.values() if p.version == v]
        all_nets = _collapse(p.cidr for p in pools)
        masq = _collapse(p.cidr for p in pools if p.nat_outgoing)
        sets[f"pools{v}"] = NftSet(addr, tuple(all_nets))
        sets[f"masq{v}"] = NftSet(addr, tuple(masq))
        if masq:
            to = settings.nat_outgoing_address
            if to is not None and ipaddress.ip_address(to).version == v:
                action = f"snat {fam} to {to}"
            else:
                action = "masquerade"
            nat.append(f"{fam} saddr @masq{v} {fam} daddr != @pools{v} counter {action}")
    chains["postrouting"] = NftChain(
        tuple(nat), "type nat hook postrouting priority srcnat; policy accept;"
    )
    return chains


def _collapse(cidrs: Iterable[str]) -> list[str]:
    nets = sorted(
        {ipaddress.ip_network(c) for c in cidrs}, key=lambda n: (n.network_address, n.prefixlen)
    )
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for n in nets:
        if out and n.subnet_of(out[-1]):  # type: ignore[arg-type]
            continue
        out.append(n)
    return [str(n) for n in out]


# --- text -----------------------------------------------------------------------------------


def _set_decl(name: str, s: NftSet) -> str:
    flags = f" flags {s.flags};" if s.flags else ""
    elements = f" elements = {{ {', '.join(s.elements)} }};" if s.elements else ""
    return f"\tset {name} {{ type {s.type};{flags}{elements} }}"


def _map_decl(name: str, m: NftMap) -> str:
    elements = ", ".join(f"{k} : {v}" for k, v in m.elements)
    body = f" elements = {{ {elements} }};" if elements else ""
    return f"\tmap {name} {{ type {m.type};{body} }}"


def render(ruleset: Ruleset) -> str:
    """One transaction that replaces the whole table (creating it if absent): what felix
    applies at start and after someone changed its table."""
    t = f"{FAMILY} {TABLE}"
    lines = [f"table {t} {{}}", f"delete table {t}", f"table {t} {{"]
    for name in sorted(ruleset.sets):
        lines.append(_set_decl(name, ruleset.sets[name]))
    for name in sorted(ruleset.maps):
        lines.append(_map_decl(name, ruleset.maps[name]))
    for name in sorted(ruleset.chains):
        chain = ruleset.chains[name]
        lines.append(f"\tchain {name} {{")
        if chain.base:
            lines.append(f"\t\t{chain.base}")
        lines.extend(f"\t\t{r}" for r in chain.rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def diff(old: Ruleset, new: Ruleset) -> str:
    """One transaction that turns table `old` into `new` (empty when they are equal):
    new sets and chains first, then element changes, rewritten chains (flush and add),
    map entries, and last the chains and sets nothing refers to any more."""
    t = f"{FAMILY} {TABLE}"
    out: list[str] = []
    for name in sorted(new.sets.keys() - old.sets.keys()):
        s = new.sets[name]
        flags = f" flags {s.flags};" if s.flags else ""
        out.append(f"add set {t} {name} {{ type {s.type};{flags} }}")
        if s.elements:
            out.append(f"add element {t} {name} {{ {', '.join(s.elements)} }}")
    for name in sorted(new.chains.keys() - old.chains.keys()):
        base = new.chains[name].base
        out.append(f"add chain {t} {name}" + (f" {{ {base} }}" if base else ""))
    for name in sorted(new.sets.keys() & old.sets.keys()):
        a, b = old.sets[name], new.sets[name]
        if a is b or a == b:
            continue
        if a.type != b.type or a.flags != b.flags:
            raise ValueError(f"set {name} changed type")  # names hash what they hold
        gone = sorted(set(a.elements) - set(b.elements))
        added = sorted(set(b.elements) - set(a.elements))
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(gone)} }}")
        if added:
            out.append(f"add element {t} {name} {{ {', '.join(added)} }}")
    for name in sorted(new.chains):
        chain = new.chains[name]
        before = old.chains.get(name)
        if before is not None and (before is chain or before.rules == chain.rules):
            continue
        if before is not None:
            if before.base != chain.base:
                raise ValueError(f"chain {name} changed hook")
            out.append(f"flush chain {t} {name}")
        out.extend(f"add rule {t} {name} {r}" for r in chain.rules)
    for name in sorted(new.maps.keys() | old.maps.keys()):
        a_map, b_map = old.maps.get(name), new.maps.get(name)
        if a_map == b_map:
            continue
        if a_map is None:
            assert b_map is not None
            out.append(f"add map {t} {name} {{ type {b_map.type}; }}")
        a_el = dict(a_map.elements) if a_map else {}
        b_el = dict(b_map.elements) if b_map else {}
        gone_keys = sorted(k for k in a_el if a_el[k] != b_el.get(k))
        add_keys = sorted(k for k in b_el if a_el.get(k) != b_el[k])
        if gone_keys:
            out.append(f"delete element {t} {name} {{ {', '.join(gone_keys)} }}")
        if add_keys:
            items = ", ".join(f"{k} : {b_el[k]}" for k in add_keys)
            out.append(f"add element {t} {name} {{ {items} }}")
        if b_map is None:
            out.append(f"delete map {t} {name}")
    removed = sorted(old.chains.keys() - new.chains.keys())
    for name in removed:
        out.append(f"flush chain {t} {name}")
    for name in removed:
        out.append(f"delete chain {t} {name}")
    for name in sorted(old.sets.keys() - new.sets.keys()):
        out.append(f"delete set {t} {name}")
    return "".join(line + "\n" for line in out)
