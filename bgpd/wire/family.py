"""Address families and the compact prefix form used everywhere in the hot path.

A prefix travels through the daemon as its NLRI wire bytes: one length octet followed by
the significant address octets (RFC 4271 4.3). Those bytes are hashable, compact, and an
UPDATE's NLRI field is just their concatenation, so encoding is a join and decoding a slice.
When ADD-PATH is negotiated for a family in a direction, an NLRI *item* is the 4-octet path
identifier followed by that prefix form; `strip_path_id` recovers the prefix.
"""

from __future__ import annotations

import enum
import ipaddress
import types
from collections.abc import Mapping
from dataclasses import dataclass


class Family(enum.Enum):
    """(AFI, SAFI) pairs we speak; what else is known of each is in `FAMILIES`."""

    IPV4_UNICAST = (1, 1)
    IPV6_UNICAST = (2, 1)

    @property
    def afi(self) -> int:
        return self.value[0]

    @property
    def safi(self) -> int:
        return self.value[1]

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self]

    @property
    def addr_len(self) -> int:
        """Octets in one address of the family."""
        return FAMILIES[self].addr_len

    @property
    def max_len(self) -> int:
        return FAMILIES[self].max_len

    @classmethod
    def lookup(cls, afi: int, safi: int) -> Family | None:
        return _BY_PAIR.get((afi, safi))

    @classmethod
    def of_version(cls, version: int) -> Family:
        """The unicast family of IP version 4 or 6."""
        return _BY_VERSION[version]

    @classmethod
    def of_label(cls, label: str) -> Family:
        """The family Calico's words name: "ipv4" or "ipv6"."""
        return _BY_LABEL[label]

    def __str__(self) -> str:
        return FAMILIES[self].text


@dataclass(frozen=True, slots=True)
class FamilySpec:
    """Everything that differs between the families we speak, in one place (BIRD's
    `bgp_af_table`): code elsewhere looks it up instead of branching on a family."""

    family: Family
    label: str  # Calico's and the control API's word: "ipv4"
    text: str  # BIRD's and the log's: "ipv4-unicast"
    version: int  # IP version
    addr_len: int  # octets in an address
    max_len: int  # bits in an address
    kernel_af: int  # Linux AF_INET / AF_INET6 for netlink


FAMILIES: Mapping[Family, FamilySpec] = types.MappingProxyType(
    {
        Family.IPV4_UNICAST: FamilySpec(Family.IPV4_UNICAST, "ipv4", "ipv4-unicast", 4, 4, 32, 2),
        Family.IPV6_UNICAST: FamilySpec(
            Family.IPV6_UNICAST, "ipv6", "ipv6-unicast", 6, 16, 128, 10
        ),
    }
)
_BY_PAIR = {f.value: f for f in Family}
_BY_VERSION = {s.version: f for f, s in FAMILIES.items()}
_BY_LABEL = {s.label: f for f, s in FAMILIES.items()}

AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1


def prefix_to_nlri(prefix: str) -> tuple[Family, bytes]:
    """'10.0.0.0/24' -> (IPV4_UNICAST, b'\\x18\\x0a\\x00\\x00'). Host bits are masked off."""
    net = ipaddress.ip_network(prefix, strict=False)
    family = Family.of_version(net.version)
    plen = net.prefixlen
    return family, bytes([plen]) + net.network_address.packed[: (plen + 7) // 8]


def nlri_to_prefix(family: Family, nlri: bytes) -> str:
    """Inverse of prefix_to_nlri; nlri must be a well-formed prefix form (no path id)."""
    plen = nlri[0]
    addr = nlri[1:].ljust(family.addr_len, b"\0")
    ip = ipaddress.ip_address(addr)
    return f"{ip}/{plen}"


def nlri_network(family: Family, nlri: bytes) -> tuple[int, int]:
    """(network address as int, prefix length): for containment checks without objects."""
    plen = nlri[0]
    return int.from_bytes(nlri[1:].ljust(family.addr_len, b"\0"), "big"), plen


def strip_path_id(item: bytes, add_path: bool) -> bytes:
    """The prefix form of an NLRI item, dropping a leading ADD-PATH identifier if present."""
    return item[4:] if add_path else item


def address_to_bytes(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def bytes_to_address(packed: bytes) -> str:
    """4 or 16 octets -> text; a 32-octet IPv6 next hop (global + link-local) shows the global."""
    if len(packed) == 32:
        packed = packed[:16]
    return str(ipaddress.ip_address(packed))
