"""rtnetlink link, address and neighbour messages built and read with `struct`. Pure.

What felix needs beyond routes: read every interface with its kind and VXLAN settings;
create `tunl0` (kind ipip) and `vxlan.calico` (kind vxlan: VNI, UDP port, source address,
parent device, no learning, the node's VTEP MAC); set a device up; put its tunnel address on
it; and keep the permanent ARP and FDB entries that map each remote VTEP. Layouts follow
<linux/if_link.h>, <linux/if_addr.h> and <linux/neighbour.h>, host byte order except where
the kernel wants network order (IFLA_VXLAN_PORT).
"""

from __future__ import annotations

import struct

from common.netlink.link import IFF_RUNNING, IFF_UP, Address, Link, Neighbour, Vxlan
from common.netlink.route import ADDR_LEN
from common.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RTM_NEWLINK,
    NetlinkDecodeError,
    attr,
    message,
    parse_attrs,
)

RTM_DELLINK = 17
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_VXLAN_ID = 1
IFLA_VXLAN_LINK = 3
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_LOCAL6 = 17

IFA_ADDRESS = 1
IFA_LOCAL = 2

NDA_DST = 1
NDA_LLADDR = 2

_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_U32 = struct.Struct("=I")
_U16_BE = struct.Struct("!H")

RTN_UNICAST = 1

_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_SET = NLM_F_REQUEST | NLM_F_ACK
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE


# -- links ----------------------------------------------------------------------------------


def _vxlan_data(v: Vxlan) -> bytes:
    parts = [attr(IFLA_VXLAN_ID, _U32.pack(v.vni))]
    if v.link:
        parts.append(attr(IFLA_VXLAN_LINK, _U32.pack(v.link)))
    if len(v.local) == 4:
        parts.append(attr(IFLA_VXLAN_LOCAL, v.local))
    elif len(v.local) == 16:
        parts.append(attr(IFLA_VXLAN_LOCAL6, v.local))
    parts.append(attr(IFLA_VXLAN_LEARNING, bytes((int(v.learning),))))
    parts.append(attr(IFLA_VXLAN_PORT, _U16_BE.pack(v.port)))
    return b"".join(parts)


def encode_newlink(
    name: str,
    kind: str,
    seq: int,
    *,
    mac: bytes = b"",
    mtu: int = 0,
    vxlan: Vxlan | None = None,
) -> bytes:
    """RTM_NEWLINK with NLM_F_CREATE|NLM_F_EXCL: a new device `name` of `kind` (`ip link add
    NAME [address MAC] [mtu N] type KIND ...`); EEXIST if the name is taken. `vxlan` gives a
    VXLAN device its settings."""
    if kind == "vxlan" and vxlan is None:
        raise ValueError("a vxlan device needs its settings")
    attrs = [attr(IFLA_IFNAME, name.encode() + b"\0")]
    if mac:
        attrs.append(attr(IFLA_ADDRESS, mac))
    if mtu:
        attrs.append(attr(IFLA_MTU, _U32.pack(mtu)))
    # Nested without NLA_F_NESTED, as iproute2 and pyroute2 send them (the kernel takes both).
    info = attr(IFLA_INFO_KIND, kind.encode() + b"\0")
    if vxlan is not None:
        info += attr(IFLA_INFO_DATA, _vxlan_data(vxlan))
    attrs.append(attr(IFLA_LINKINFO, info))
    body = _IFINFO.pack(0, 0, 0, 0, 0) + b"".join(attrs)
    return message(RTM_NEWLINK, _CREATE, seq, body)


def encode_setlink(index: int, seq: int, *, up: bool | None = None, mtu: int = 0) -> bytes:
    """RTM_NEWLINK on an existing device (`ip link set`): admin up/down through ifi_change,
    so no other flag moves, and optionally its MTU."""
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    attrs = attr(IFLA_MTU, _U32.pack(mtu)) if mtu else b""
    body = _IFINFO.pack(0, 0, index, flags, change) + attrs
    return message(RTM_NEWLINK, _SET, seq, body)


def encode_dellink(index: int, seq: int) -> bytes:
    body = _IFINFO.pack(0, 0, index, 0, 0)
    return message(RTM_DELLINK, _SET, seq, body)


def _decode_vxlan(data: bytes) -> Vxlan:
    vni = port = link = 0
    local = b""
    learning = True
    for kind, payload in parse_attrs(data):
        if kind == IFLA_VXLAN_ID and len(payload) >= 4:
            (vni,) = _U32.unpack_from(payload)
        elif kind == IFLA_VXLAN_LINK and len(payload) >= 4:
            (link,) = _U32.unpack_from(payload)
        elif kind in (IFLA_VXLAN_LOCAL, IFLA_VXLAN_LOCAL6):
            local = payload
        elif kind == IFLA_VXLAN_LEARNING and payload:
            learning = bool(payload[0])
        elif kind == IFLA_VXLAN_PORT and len(payload) >= 2:
            (port,) = _U16_BE.unpack_from(payload)
    return Vxlan(vni, port, local, link, learning)


def decode_newlink(body: bytes) -> Link:
    """An RTM_NEWLINK body (a dump reply or a notification) -> Link."""
    if len(body) < _IFINFO.size:
        raise NetlinkDecodeError("short ifinfomsg")
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body, 0)
    name = kind = ""
    mtu = 0
    mac = b""
    vxlan: Vxlan | None = None
    for atype, payload in parse_attrs(body, _IFINFO.size):
        if atype == IFLA_IFNAME:
            name = payload.split(b"\0", 1)[0].decode(errors="replace")
        elif atype == IFLA_MTU and len(payload) >= 4:
            (mtu,) = _U32.unpack_from(payload)
        elif atype == IFLA_ADDRESS:
            mac = payload
        elif atype == IFLA_LINKINFO:
            data = b""
            for itype, ipayload in parse_attrs(payload):
                if itype == IFLA_INFO_KIND:
                    kind = ipayload.split(b"\0", 1)[0].decode(errors="replace")
                elif itype == IFLA_INFO_DATA:
                    data = ipayload
            if kind == "vxlan" and data:
                vxlan = _decode_vxlan(data)
    up, running = bool(flags & IFF_UP), bool(flags & IFF_RUNNING)
    return Link(index, name, kind, up, mtu, mac, vxlan, running)


# -- addresses ------------------------------------------------------------------------------


def _addr_body(a: Address) -> bytes:
    head = _IFADDR.pack(a.family, a.prefixlen, 0, a.scope, a.index)
    # IFA_LOCAL is the address itself; IFA_ADDRESS the same on a non-point-to-point link,
    # as `ip addr add` sends it.
    return head + attr(IFA_LOCAL, a.address) + attr(IFA_ADDRESS, a.address)


def encode_newaddr(a: Address, seq: int) -> bytes:
    """RTM_NEWADDR with NLM_F_CREATE|NLM_F_REPLACE (`ip addr replace`): idempotent."""
    return message(RTM_NEWADDR, _REPLACE, seq, _addr_body(a))


def encode_deladdr(a: Address, seq: int) -> bytes:
    return message(RTM_DELADDR, _SET, seq, _addr_body(a))


def encode_addr_dump(family: int, seq: int) -> bytes:
    """RTM_GETADDR dump of one family (0: all)."""
    body = _IFADDR.pack(family, 0, 0, 0, 0)
    return message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def decode_newaddr(body: bytes) -> Address | None:
    """An RTM_NEWADDR body -> Address; None for families other than IPv4/IPv6."""
    if len(body) < _IFADDR.size:
        raise NetlinkDecodeError("short ifaddrmsg")
    family, prefixlen, _flags, scope, index = _IFADDR.unpack_from(body, 0)
    alen = ADDR_LEN.get(family)
    if alen is None:
        return None
    local = address = b""
    for kind, payload in parse_attrs(body, _IFADDR.size):
        if kind == IFA_LOCAL:
            local = payload
        elif kind == IFA_ADDRESS:
            address = payload
    value = local or address  # IPv6 carries only IFA_ADDRESS
    if len(value) != alen:
        return None
    return Address(index, family, value, prefixlen, scope)


# -- neighbours -----------------------------------------------------------------------------


def _neigh_body(n: Neighbour) -> bytes:
    # FDB entries carry no rtm-like type; ARP/NDP entries are unicast.
    ntype = 0 if n.is_fdb else RTN_UNICAST
    head = _NDMSG.pack(n.family, n.ifindex, n.state, n.flags, ntype)
    return head + attr(NDA_DST, n.dst) + attr(NDA_LLADDR, n.lladdr)


def encode_newneigh(n: Neighbour, seq: int) -> bytes:
    """RTM_NEWNEIGH with NLM_F_CREATE|NLM_F_REPLACE (`ip neigh replace ... nud permanent`,
    or `bridge fdb replace MAC dev D dst IP self permanent` for an AF_BRIDGE entry)."""
    return message(RTM_NEWNEIGH, _REPLACE, seq, _neigh_body(n))


def encode_delneigh(n: Neighbour, seq: int) -> bytes:
    return message(RTM_DELNEIGH, _SET, seq, _neigh_body(n))


def encode_neigh_dump(family: int, seq: int) -> bytes:
    """RTM_GETNEIGH dump of one family (AF_BRIDGE: the FDB) over every interface: a strict
    kernel answers a header naming an interface with nothing, so readers filter instead."""
    body = _NDMSG.pack(family, 0, 0, 0, 0)
    return message(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def decode_newneigh(body: bytes) -> Neighbour | None:
    """An RTM_NEWNEIGH body -> Neighbour; None when it lacks an address or a MAC."""
    if len(body) < _NDMSG.size:
        raise NetlinkDecodeError("short ndmsg")
    family, ifindex, state, flags, _type = _NDMSG.unpack_from(body, 0)
    dst = lladdr = b""
    for kind, payload in parse_attrs(body, _NDMSG.size):
        if kind == NDA_DST:
            dst = payload
        elif kind == NDA_LLADDR:
            lladdr = payload
    if not dst or not lladdr:
        return None
    return Neighbour(family, ifindex, lladdr, dst, state, flags)
