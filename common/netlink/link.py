"""The kernel's interfaces, their addresses and neighbour entries as plain values. Pure.

felix reads these to find its workload and tunnel devices, and writes them to make the
tunnel devices Calico's Felix makes: `tunl0` (IPIP) and `vxlan.calico` (VXLAN, with the
static ARP and FDB entries for each remote VTEP).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.netlink.route import AF_BRIDGE, AF_INET, AF_INET6

IFF_UP = 0x1
IFF_RUNNING = 0x40  # operationally up: the kernel's IF_OPER_UP or IF_OPER_UNKNOWN
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254

# Device kinds (IFLA_INFO_KIND) felix creates.
KIND_IPIP = "ipip"
KIND_VXLAN = "vxlan"


@dataclass(frozen=True, slots=True)
class Vxlan:
    """A VXLAN device's settings (IFLA_INFO_DATA): `local` is the packed source address of
    the encapsulated packets, `link` the ifindex of the device they leave through."""

    vni: int
    port: int = 4789
    local: bytes = b""
    link: int = 0
    learning: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """One interface: `kind` is its driver ("veth", "ipip", "vxlan"; "" for a physical or
    loopback device), `mac` its hardware address (empty if it has none). `up` is the
    administrative state (IFF_UP), `running` the operational one (IFF_RUNNING: a veth is
    running only while its peer is up)."""

    index: int
    name: str
    kind: str = ""
    up: bool = False
    mtu: int = 0
    mac: bytes = b""
    vxlan: Vxlan | None = None
    running: bool = False


@dataclass(frozen=True, slots=True)
class Address:
    """An address on an interface: `address` packed, of `family`."""

    index: int
    family: int
    address: bytes
    prefixlen: int
    scope: int = RT_SCOPE_UNIVERSE

    def __post_init__(self) -> None:
        if len(self.address) != {AF_INET: 4, AF_INET6: 16}.get(self.family):
            raise ValueError(f"address {self.address.hex()} is not of family {self.family}")


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A neighbour table entry on interface `ifindex`: an ARP/NDP entry (`family` AF_INET or
    AF_INET6: `dst` is reached at hardware address `lladdr`) or an FDB entry (AF_BRIDGE,
    `flags` NTF_SELF: frames to `lladdr` are sent on to `dst`, a VXLAN device's remote VTEP)."""

    family: int
    ifindex: int
    lladdr: bytes
    dst: bytes
    state: int = NUD_PERMANENT
    flags: int = 0

    @property
    def is_fdb(self) -> bool:
        return self.family == AF_BRIDGE


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """"aa:bb:cc:dd:ee:ff" (or with dashes) -> 6 octets; ValueError otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)
