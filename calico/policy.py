"""Calico's policy resources as typed values: NetworkPolicy, GlobalNetworkPolicy, Profile,
Tier, NetworkSet and GlobalNetworkSet (FelixConfiguration, read for routes and policy
alike, is calico.model's).

Pure data with Calico's v3 field names (snake_case); `calico.model` reads them from their
stored JSON (with Calico's defaults and validation, naming the field at fault) and
`calico.codec` writes them back. What the fields mean for packets is felix's business
(felix/policy/); nothing here evaluates anything.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

# Rule actions (v3 spelling).
ALLOW = "Allow"
DENY = "Deny"
LOG = "Log"
PASS = "Pass"
ACTIONS = (ALLOW, DENY, LOG, PASS)

INGRESS = "Ingress"
EGRESS = "Egress"

DEFAULT_TIER = "default"
# Orders of the tiers Calico creates itself (api/pkg/apis/projectcalico/v3/tier.go); a
# cluster without a Tier resource for them still has them at these orders.
WELL_KNOWN_TIER_ORDERS: Mapping[str, float] = types.MappingProxyType(
    {
        "adminnetworkpolicy": 1_000.0,
        DEFAULT_TIER: 1_000_000.0,
        "baselineadminnetworkpolicy": 10_000_000.0,
    }
)

# numorstring.Protocol: the names Calico accepts (any case on input) and their numbers.
PROTOCOL_NUMBERS: Mapping[str, int] = types.MappingProxyType(
    {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
)
PORT_PROTOCOLS = frozenset({6, 17, 132})  # the protocols whose rules may name ports

_EMPTY: Mapping[str, str] = types.MappingProxyType({})


def _no_labels() -> Mapping[str, str]:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class Protocol:
    """A rule's protocol as written: a known name (canonical case) or a number."""

    number: int
    name: str = ""  # "" when written as a number

    def __str__(self) -> str:
        return self.name or str(self.number)

    @property
    def supports_ports(self) -> bool:
        return self.number in PORT_PROTOCOLS


@dataclass(frozen=True, slots=True)
class Port:
    """numorstring.Port: one port, a range "first:last", or a named port."""

    first: int = 0
    last: int = 0
    name: str = ""

    @property
    def is_named(self) -> bool:
        return bool(self.name)

    def __str__(self) -> str:
        if self.name:
            return self.name
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"

    def to_json(self) -> int | str:
        return self.first if not self.name and self.first == self.last else str(self)


@dataclass(frozen=True, slots=True)
class ICMPMatch:
    type: int | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ServiceAccountMatch:
    names: tuple[str, ...] = ()
    selector: str = ""


@dataclass(frozen=True, slots=True)
class EntityRule:
    """A rule's source or destination."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: str = ""
    not_selector: str = ""
    namespace_selector: str = ""
    ports: tuple[Port, ...] = ()
    not_ports: tuple[Port, ...] = ()
    service_accounts: ServiceAccountMatch | None = None

    @property
    def empty(self) -> bool:
        return self == _EMPTY_ENTITY


_EMPTY_ENTITY = EntityRule()


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    ip_version: int | None = None
    protocol: Protocol | None = None
    not_protocol: Protocol | None = None
    icmp: ICMPMatch | None = None
    not_icmp: ICMPMatch | None = None
    source: EntityRule = _EMPTY_ENTITY
    destination: EntityRule = _EMPTY_ENTITY
    annotations: Mapping[str, str] = field(default_factory=_no_labels, hash=False)


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """A namespaced policy. `types` is always filled in (Calico defaults it on write from
    which rule lists are present)."""

    kind: ClassVar[str] = "NetworkPolicy"

    name: str
    namespace: str = "default"
    tier: str = DEFAULT_TIER
    order: float | None = None
    selector: str = ""
    service_account_selector: str = ""
    types: tuple[str, ...] = (INGRESS,)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class GlobalNetworkPolicy:
    """A cluster-wide policy. do_not_track, pre_dnat and apply_on_forward concern host
    endpoints only (Calico never renders such policies for workloads)."""

    kind: ClassVar[str] = "GlobalNetworkPolicy"

    name: str
    tier: str = DEFAULT_TIER
    order: float | None = None
    selector: str = ""
    namespace_selector: str = ""
    service_account_selector: str = ""
    types: tuple[str, ...] = (INGRESS,)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False

    @property
    def namespace(self) -> None:
        return None


Policy = NetworkPolicy | GlobalNetworkPolicy


@dataclass(frozen=True, slots=True)
class Profile:
    """Rules applied after every tier passed (or none had a policy for the endpoint), and
    labels every endpoint that names the profile inherits (`kns.<namespace>` profiles carry
    the namespace's labels as `pcns.<label>`)."""

    kind: ClassVar[str] = "Profile"

    name: str
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    labels_to_apply: Mapping[str, str] = field(default_factory=_no_labels, hash=False)


@dataclass(frozen=True, slots=True)
class Tier:
    kind: ClassVar[str] = "Tier"

    name: str
    order: float | None = None
    default_action: str = DENY  # what the end of the tier does: Deny, or Pass to the next


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """Addresses with labels, matched by the selectors of the policies of its namespace."""

    kind: ClassVar[str] = "NetworkSet"

    name: str
    namespace: str = "default"
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    nets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GlobalNetworkSet:
    kind: ClassVar[str] = "GlobalNetworkSet"

    name: str
    labels: Mapping[str, str] = field(default_factory=_no_labels, hash=False)
    nets: tuple[str, ...] = ()

    @property
    def namespace(self) -> None:
        return None


# FelixConfiguration's policy settings (calico.model.FelixConfiguration holds them).
ENDPOINT_TO_HOST_ACTIONS = ("Drop", "Accept", "Return")
DENY_ACTIONS = ("Drop", "Reject")
