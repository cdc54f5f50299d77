"""BGPFilter (reference/calico.md 4.4, Calico's api/pkg/apis/projectcalico/v3/bgpfilter.go):
ordered import and export rule lists per IP family for the BGP peers that name the filter,
and how they are read and checked (as Calico's validation and BIRD's parser would refuse
them). bgpd/policy/bgpfilter.py compiles and applies them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from calico.errors import describe
from calico.reader import Reader, parse_as_number

FILTER_ACCEPT = "Accept"
FILTER_REJECT = "Reject"
FILTER_ACTIONS = (FILTER_ACCEPT, FILTER_REJECT)
MATCH_EQUAL = "Equal"
MATCH_NOT_EQUAL = "NotEqual"
MATCH_IN = "In"
MATCH_NOT_IN = "NotIn"
MATCH_OPERATORS = (MATCH_EQUAL, MATCH_NOT_EQUAL, MATCH_IN, MATCH_NOT_IN)
SOURCE_REMOTE_PEERS = "RemotePeers"
PEER_TYPE_EBGP = "eBGP"
PEER_TYPE_IBGP = "iBGP"
MAX_FILTER_OPERATIONS = 10
MAX_PRIORITY = 2147483646


@dataclass(frozen=True, slots=True)
class FilterOperation:
    """One route change of a BGPFilter rule: exactly one of the three is set.
    `add_community` is "a:b" (standard) or "a:b:c" (large); `prepend_as_path` the AS numbers
    the path starts with afterwards, in that order; `set_priority` the route's priority
    (Calico's ...RoutePriority units: lower is preferred)."""

    add_community: str | None = None
    prepend_as_path: tuple[int, ...] = ()
    set_priority: int | None = None


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One rule of a BGPFilter's rule list (BGPFilterRuleV4 / V6). Every condition that is set
    must hold for the rule to apply; `action` then ends the filter, after `operations`.

    `cidr` is the masked network, with `match_operator`; `prefix_length` narrows an In /
    NotIn match to lengths (min, max), None for the CIDR's own length or the family's
    maximum. `source` RemotePeers: only routes learned from BGP peers. `interface`: a glob
    (`*`) on the route's outgoing interface. `peer_type`: only towards (or from) eBGP or
    iBGP peers. `community`: the route carries this standard ("a:b") or large ("a:b:c")
    community. `as_path_prefix`: the AS path starts with these AS numbers. `priority`: the
    route has this priority."""

    action: str
    cidr: str | None = None
    match_operator: str | None = None
    prefix_length: tuple[int | None, int | None] | None = None
    source: str | None = None
    interface: str | None = None
    peer_type: str | None = None
    community: str | None = None
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[FilterOperation, ...] = ()


@dataclass(frozen=True, slots=True)
class BGPFilter:
    """Ordered import and export rule lists per IP family, applied to the BGP peers whose
    BGPPeer.filters name this filter."""

    kind: ClassVar[str] = "BGPFilter"

    name: str
    export_v4: tuple[FilterRule, ...] = ()
    import_v4: tuple[FilterRule, ...] = ()
    export_v6: tuple[FilterRule, ...] = ()
    import_v6: tuple[FilterRule, ...] = ()

    def rules(self, direction: str, version: int) -> tuple[FilterRule, ...]:
        """The rule list for `direction` ("import" / "export") and IP version 4 or 6."""
        if direction == "import":
            return self.import_v4 if version == 4 else self.import_v6
        if direction == "export":
            return self.export_v4 if version == 4 else self.export_v6
        raise ValueError(f"direction {direction!r} is neither 'import' nor 'export'")


_FILTER_INTERFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}")
_STANDARD_COMMUNITY = re.compile(r"(\d+):(\d+)")
_LARGE_COMMUNITY = re.compile(r"(\d+):(\d+):(\d+)")


def _community(r: Reader, path: str, value: Any) -> str:
    """A BGP community value "a:b" (16-bit parts) or "a:b:c" (32-bit parts), as written."""
    if not isinstance(value, str):
        raise r.error(path, f"expected a community 'a:b' or 'a:b:c', found {describe(value)}")
    if m := _STANDARD_COMMUNITY.fullmatch(value):
        if all(int(p) <= 0xFFFF for p in m.groups()):
            return value
        raise r.error(path, f"{value!r}: a standard community has 16-bit parts (0..65535)")
    if m := _LARGE_COMMUNITY.fullmatch(value):
        if all(int(p) <= 0xFFFFFFFF for p in m.groups()):
            return value
        raise r.error(path, f"{value!r}: a large community has 32-bit parts (0..4294967295)")
    raise r.error(path, f"{value!r} is not a community 'a:b' or 'a:b:c'")


def _as_numbers(r: Reader, d: Mapping[str, Any], key: str) -> tuple[int, ...]:
    out: list[int] = []
    for i, v in enumerate(r.items(d, key)):
        try:
            out.append(parse_as_number(v))
        except ValueError as e:
            raise r.error(f"{r.path(key)}[{i}]", str(e)) from None
    return tuple(out)


def _filter_operation(r: Reader, op: Any) -> FilterOperation:
    if not isinstance(op, Mapping):
        raise r.error(r.prefix, f"expected a mapping, found {describe(op)}")
    given = [k for k in ("addCommunity", "prependASPath", "setPriority") if op.get(k) is not None]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise r.error(
            r.prefix,
            f"exactly one of addCommunity, prependASPath, setPriority must be set, found {found}",
        )
    what = given[0]
    sub = r.sub(what)
    body = r.mapping(op, what)
    if what == "addCommunity":
        if body.get("value") is None:
            raise sub.error(sub.path("value"), "required")
        return FilterOperation(add_community=_community(sub, sub.path("value"), body["value"]))
    if what == "prependASPath":
        prefix = _as_numbers(sub, body, "prefix")
        if not 1 <= len(prefix) <= 10:
            raise sub.error(sub.path("prefix"), f"needs 1 to 10 AS numbers, found {len(prefix)}")
        return FilterOperation(prepend_as_path=prefix)
    value = sub.integer(body, "value", 1, MAX_PRIORITY)
    if value is None:
        raise sub.error(sub.path("value"), "required")
    return FilterOperation(set_priority=value)


def _filter_rule(r: Reader, rule: Any, version: int) -> FilterRule:
    if not isinstance(rule, Mapping):
        raise r.error(r.prefix, f"expected a mapping, found {describe(rule)}")
    action = r.string(rule, "action")
    if action is None:
        raise r.error(r.path("action"), "required")
    if action not in FILTER_ACTIONS:
        raise r.error(r.path("action"), f"{action!r} is not one of 'Accept', 'Reject'")
    cidr: str | None = None
    raw_cidr = rule.get("cidr")
    if raw_cidr is not None and raw_cidr != "":
        if isinstance(raw_cidr, str) and "/" not in raw_cidr:
            raw_cidr = f"{raw_cidr}/{32 if version == 4 else 128}"  # an address: a full mask
        cidr = r.cidr_value(raw_cidr, r.path("cidr"), version)
        try:
            ipaddress.ip_network(str(raw_cidr).strip())
        except ValueError:  # BIRD refuses a prefix with host bits, as Calico's netv4/netv6
            raise r.error(r.path("cidr"), f"{raw_cidr!r} has host bits set (use {cidr})") from None
    operator = r.choice(rule, "matchOperator", MATCH_OPERATORS, "") or None
    if (cidr is None) != (operator is None):
        raise r.error(
            r.path("cidr" if cidr is None else "matchOperator"),
            "cidr and matchOperator must both be set or both be empty",
        )
    prefix_length: tuple[int | None, int | None] | None = None
    raw_length = rule.get("prefixLength")
    if raw_length is not None:
        lr = r.sub("prefixLength")
        if not isinstance(raw_length, Mapping):
            raise lr.error(lr.prefix, f"expected a mapping, found {describe(raw_length)}")
        if cidr is None:
            raise lr.error(lr.prefix, "cidr is required when prefixLength is set")
        top = 32 if version == 4 else 128
        low = lr.integer(raw_length, "min", 0, top)
        high = lr.integer(raw_length, "max", 0, top)
        plen = ipaddress.ip_network(cidr).prefixlen
        lo_eff, hi_eff = max(plen, low or 0), min(top, top if high is None else high)
        if lo_eff > hi_eff:
            raise lr.error(
                lr.prefix,
                f"no prefix length fits {cidr} between {lo_eff} and {hi_eff} "
                "(BIRD refuses such a range)",
            )
        prefix_length = (low, high)
    source = r.choice(rule, "source", (SOURCE_REMOTE_PEERS,), "") or None
    interface = r.string(rule, "interface")
    if interface is not None and interface != "*" and not _FILTER_INTERFACE.fullmatch(interface):
        raise r.error(
            r.path("interface"),
            f"{interface!r} is not an interface name or glob (1-15 of a-z A-Z 0-9 _ . - *)",
        )
    peer_type = r.choice(rule, "peerType", (PEER_TYPE_EBGP, PEER_TYPE_IBGP), "") or None
    community: str | None = None
    raw_communities = rule.get("communities")
    if raw_communities is not None:
        cr = r.sub("communities")
        if not isinstance(raw_communities, Mapping):
            raise cr.error(cr.prefix, f"expected a mapping, found {describe(raw_communities)}")
        values = cr.items(raw_communities, "values")
        if len(values) != 1:
            raise cr.error(cr.path("values"), f"needs exactly one value, found {len(values)}")
        community = _community(cr, f"{cr.path('values')}[0]", values[0])
    operations = tuple(
        _filter_operation(r.sub(f"operations[{i}]"), op)
        for i, op in enumerate(r.items(rule, "operations"))
    )
    if len(operations) > MAX_FILTER_OPERATIONS:
        raise r.error(
            r.path("operations"),
            f"at most {MAX_FILTER_OPERATIONS} operations, found {len(operations)}",
        )
    if operations and action != FILTER_ACCEPT:
        raise r.error(r.path("operations"), "operations may only be used with action Accept")
    return FilterRule(
        action=action,
        cidr=cidr,
        match_operator=operator,
        prefix_length=prefix_length,
        source=source,
        interface=interface,
        peer_type=peer_type,
        community=community,
        as_path_prefix=_as_numbers(r, rule, "asPathPrefix"),
        priority=r.integer(rule, "priority", 1, MAX_PRIORITY),
        operations=operations,
    )


def read_bgp_filter(
    r: Reader, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any]
) -> BGPFilter:
    lists: dict[str, tuple[FilterRule, ...]] = {}
    for key, version in (("exportV4", 4), ("importV4", 4), ("exportV6", 6), ("importV6", 6)):
        lists[key] = tuple(
            _filter_rule(r.sub(f"{key}[{i}]"), rule, version)
            for i, rule in enumerate(r.items(spec, key))
        )
    return BGPFilter(
        name=name,
        export_v4=lists["exportV4"],
        import_v4=lists["importV4"],
        export_v6=lists["exportV6"],
        import_v6=lists["importV6"],
    )
