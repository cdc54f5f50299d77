"""rtnetlink route messages built and read with `struct`, no netlink library.

Pure: bytes in, bytes out. The hot path (one RTM_NEWROUTE per best-path change, many per
`sendmsg`) packs each message with a single precompiled `Struct`, which is what lets a Python
process hand the kernel ~10^5 routes per second; pyroute2 builds ~1.4k messages per second.
bgpd sends its BGP routes and blackholes this way, felix its workload device routes.
Layouts follow <linux/netlink.h> and <linux/rtnetlink.h>, host byte order.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

from common.netlink.route import (
    AF_INET,
    AF_INET6,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
    RouteType,
)

# nlmsg_type
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

# nlmsg_flags
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # in an NLMSG_ERROR: the request's payload is left out
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR: extended-ack attributes follow

NLMSGERR_ATTR_MSG = 1

# route attributes
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15

IFLA_IFNAME = 3

RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_UNSPEC = 0
RTN_UNICAST = 1

NEWROUTE_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
# A route we do not hold yet: never overwrite another protocol's route (a connected subnet,
# Felix's workload route) that happens to have the same prefix, metric and table.
ADDROUTE_FLAGS = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTM = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")  # rtattr: len, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_HEAD_FMT = "=IHHIIBBBBBBBBIHHI"  # nlmsghdr + rtmsg + RTA_TABLE, the start of every route message
_HEAD = struct.Struct(_HEAD_FMT)

_ADDR_LEN = {AF_INET: 4, AF_INET6: 16}


class NetlinkDecodeError(ValueError):
    """The kernel's reply did not parse (truncated or inconsistent lengths)."""


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One route from a dump, with the protocol that installed it."""

    protocol: int
    route: KernelRoute


# -- encoding -------------------------------------------------------------------------------


def _single_struct(alen: int, with_metric: bool, with_oif: bool) -> struct.Struct:
    fmt = f"{_HEAD_FMT}HH{alen}s"
    if with_metric:
        fmt += "HHI"
    fmt += f"HH{alen}s"
    if with_oif:
        fmt += "HHI"
    return struct.Struct(fmt)


# One layout per shape of the common message (a unicast route via one gateway), indexed by
# 4 * IPv6 + 2 * has-metric + has-oif, so the hot path is one index and one pack call.
_SINGLE = [_single_struct(a, m, o) for a in (4, 16) for m in (False, True) for o in (False, True)]


def _rtm_table(table: int) -> int:
    # rtm_table is one octet; bigger ids travel only in RTA_TABLE, as iproute2 does.
    return table if table < 256 else RT_TABLE_UNSPEC


def encode_newroute(
    route: KernelRoute, seq: int, protocol: int, ack: bool = True, exclusive: bool = False
) -> bytes:
    """RTM_NEWROUTE with NLM_F_CREATE|NLM_F_REPLACE: installs or overwrites the route;
    with `exclusive`, NLM_F_CREATE|NLM_F_EXCL: installs it only where no route is (EEXIST).

    Attributes in this order: RTA_TABLE, RTA_DST, RTA_PRIORITY, then RTA_GATEWAY + RTA_OIF
    or RTA_MULTIPATH.
    """
    flags = ADDROUTE_FLAGS if exclusive else NEWROUTE_FLAGS
    if ack:
        flags |= NLM_F_ACK
    nhs = route.nexthops
    if len(nhs) == 1 and nhs[0].gateway:
        nh = nhs[0]
        metric = route.metric
        oif = nh.ifindex
        table = route.table
        rtm_table = table if table < 256 else RT_TABLE_UNSPEC
        rtm_flags = RTNH_F_ONLINK if nh.onlink else 0
        alen = len(route.dst)
        st = _SINGLE[(alen == 16) * 4 + (metric is not None) * 2 + (oif != 0)]
        # fmt: off
        if metric is None:
            if oif:
                return st.pack(
                    st.size, RTM_NEWROUTE, flags, seq, 0,
                    route.family, route.dst_len, 0, 0, rtm_table, protocol,
                    RT_SCOPE_UNIVERSE, RTN_UNICAST, rtm_flags,
                    8, RTA_TABLE, table, 4 + alen, RTA_DST, route.dst,
                    4 + alen, RTA_GATEWAY, nh.gateway, 8, RTA_OIF, oif,
                )
            return st.pack(
                st.size, RTM_NEWROUTE, flags, seq, 0,
                route.family, route.dst_len, 0, 0, rtm_table, protocol,
                RT_SCOPE_UNIVERSE, RTN_UNICAST, rtm_flags,
                8, RTA_TABLE, table, 4 + alen, RTA_DST, route.dst,
                4 + alen, RTA_GATEWAY, nh.gateway,
            )
        if oif:
            return st.pack(
                st.size, RTM_NEWROUTE, flags, seq, 0,
                route.family, route.dst_len, 0, 0, rtm_table, protocol,
                RT_SCOPE_UNIVERSE, RTN_UNICAST, rtm_flags,
                8, RTA_TABLE, table, 4 + alen, RTA_DST, route.dst, 8, RTA_PRIORITY, metric,
                4 + alen, RTA_GATEWAY, nh.gateway, 8, RTA_OIF, oif,
            )
        return st.pack(
            st.size, RTM_NEWROUTE, flags, seq, 0,
            route.family, route.dst_len, 0, 0, rtm_table, protocol,
            RT_SCOPE_UNIVERSE, RTN_UNICAST, rtm_flags,
            8, RTA_TABLE, table, 4 + alen, RTA_DST, route.dst, 8, RTA_PRIORITY, metric,
            4 + alen, RTA_GATEWAY, nh.gateway,
        )
        # fmt: on
    return _encode_generic(route, seq, protocol, flags)


def _encode_generic(route: KernelRoute, seq: int, protocol: int, flags: int) -> bytes:
    attrs = [_attr(RTA_DST, route.dst)]
    if route.metric is not None:
        attrs.append(_attr(RTA_PRIORITY, _U32.pack(route.metric)))
    scope = RT_SCOPE_UNIVERSE
    rtm_flags = 0
    nhs = route.nexthops
    if len(nhs) == 1:
        nh = nhs[0]
        if nh.gateway:
            attrs.append(_attr(RTA_GATEWAY, nh.gateway))
        else:
            scope = RT_SCOPE_LINK  # a device route: the destination is on the link
        if nh.ifindex:
            attrs.append(_attr(RTA_OIF, _U32.pack(nh.ifindex)))
        if nh.onlink:
            rtm_flags = RTNH_F_ONLINK
    elif nhs:
        legs = []
        for nh in nhs:
            gw = _attr(RTA_GATEWAY, nh.gateway) if nh.gateway else b""
            legs.append(
                _RTNH.pack(8 + len(gw), RTNH_F_ONLINK if nh.onlink else 0, 0, nh.ifindex) + gw
            )
        attrs.append(_attr(RTA_MULTIPATH, b"".join(legs)))
    return _message(RTM_NEWROUTE, flags, seq, route, protocol, scope, route.type, rtm_flags, attrs)


def encode_delroute(route: KernelRoute, seq: int, protocol: int, ack: bool = True) -> bytes:
    """RTM_DELROUTE for the route's key. The protocol and metric (when known) narrow the match
    so we never remove a route that some other protocol owns for the same prefix; a device
    route also names its interface (felix removes the route to a stale pod's `cali*` while
    the one to its replacement stays)."""
    attrs = [_attr(RTA_DST, route.dst)]
    if route.metric is not None:
        attrs.append(_attr(RTA_PRIORITY, _U32.pack(route.metric)))
    nhs = route.nexthops
    if len(nhs) == 1 and not nhs[0].gateway and nhs[0].ifindex:
        attrs.append(_attr(RTA_OIF, _U32.pack(nhs[0].ifindex)))
    flags = NLM_F_REQUEST | NLM_F_ACK if ack else NLM_F_REQUEST
    return _message(RTM_DELROUTE, flags, seq, route, protocol, RT_SCOPE_NOWHERE, 0, 0, attrs)


def encode_op(op: RouteOp, seq: int, protocol: int, ack: bool = True) -> bytes:
    """The op's message; `protocol` unless the op names its own."""
    if op.protocol is not None:
        protocol = op.protocol
    if op.kind is OpKind.DELETE:
        return encode_delroute(op.route, seq, protocol, ack)
    return encode_newroute(op.route, seq, protocol, ack, op.kind is OpKind.ADD)


def encode_route_dump(family: int, seq: int, protocol: int = 0, table: int = 0) -> bytes:
    """RTM_GETROUTE dump of one family. With NETLINK_GET_STRICT_CHK on the socket the kernel
    filters by protocol (and table when non-zero); without it the filters are ignored, so
    readers filter again."""
    attrs = [_attr(RTA_TABLE, _U32.pack(table))] if table else []
    body = _RTM.pack(family, 0, 0, 0, _rtm_table(table), protocol, 0, 0, 0) + b"".join(attrs)
    return _HDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def encode_noop(seq: int) -> bytes:
    """An NLMSG_NOOP that asks for an ACK: sent after a batch sent without per-message ACKs,
    its ACK marks the point where every earlier message has been answered."""
    return _HDR.pack(16, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, seq, 0)


def encode_getlink(name: str, seq: int) -> bytes:
    """RTM_GETLINK for one interface by name; the reply's ifinfomsg carries its index."""
    raw = name.encode() + b"\0"
    body = _IFINFO.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, raw)
    return _HDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST, seq, 0) + body


def encode_link_dump(seq: int) -> bytes:
    """RTM_GETLINK dump of every interface."""
    body = _IFINFO.pack(0, 0, 0, 0, 0)
    return _HDR.pack(16 + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (rtattr/nlattr): length, type, payload, padding to 4."""
    n = 4 + len(payload)
    return _RTA.pack(n, kind) + payload + b"\0" * (-n % 4)


_attr = attr


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    """An nlmsghdr (port id 0: the kernel) in front of `body`."""
    return _HDR.pack(16 + len(body), msg_type, flags, seq, 0) + body


def _message(
    msg_type: int,
    flags: int,
    seq: int,
    route: KernelRoute,
    protocol: int,
    scope: int,
    rtm_type: int,
    rtm_flags: int,
    attrs: list[bytes],
) -> bytes:
    tail = b"".join(attrs)
    # fmt: off
    head = _HEAD.pack(
        36 + len(tail), msg_type, flags, seq, 0,
        route.family, route.dst_len, 0, 0, _rtm_table(route.table), protocol,
        scope, rtm_type, rtm_flags,
        8, RTA_TABLE, route.table,
    )
    # fmt: on
    return head + tail


# -- decoding -------------------------------------------------------------------------------


def split_messages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """One datagram from the kernel -> [(nlmsg_type, nlmsg_flags, nlmsg_seq, body)]."""
    out = []
    off = 0
    end = len(data)
    while off + 16 <= end:
        length, mtype, flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            raise NetlinkDecodeError(f"netlink message length {length} at {off} of {end}")
        out.append((mtype, flags, seq, data[off + 16 : off + length]))
        off += (length + 3) & ~3
    return out


def decode_error(body: bytes, flags: int) -> tuple[int, str]:
    """An NLMSG_ERROR body -> (errno, extended-ack message). errno 0 is a plain ACK."""
    if len(body) < 20:
        raise NetlinkDecodeError("short NLMSG_ERROR")
    (err,) = _I32.unpack_from(body, 0)
    message = ""
    if flags & NLM_F_ACK_TLVS:
        off = 20 if flags & NLM_F_CAPPED else 4 + ((_U32.unpack_from(body, 4)[0] + 3) & ~3)
        for kind, payload in _attrs(body, off):
            if kind == NLMSGERR_ATTR_MSG:
                message = payload.rstrip(b"\0").decode(errors="replace")
    return -err, message


def decode_link_index(body: bytes) -> int:
    """The ifi_index of an RTM_NEWLINK body."""
    if len(body) < _IFINFO.size:
        raise NetlinkDecodeError("short ifinfomsg")
    return int(_IFINFO.unpack_from(body, 0)[2])


def decode_link(body: bytes) -> tuple[int, str]:
    """An RTM_NEWLINK/RTM_DELLINK body -> (ifindex, name); the name is empty if absent."""
    index = decode_link_index(body)
    for kind, payload in _attrs(body, _IFINFO.size):
        if kind == IFLA_IFNAME:
            return index, payload.split(b"\0", 1)[0].decode(errors="replace")
    return index, ""


def decode_route(body: bytes, protocol: int | None = None) -> RouteEntry | None:
    """An RTM_NEWROUTE body from a dump -> RouteEntry, or None for route kinds we never
    install (local, broadcast, unreachable, ...), families other than IPv4/IPv6, and, when
    `protocol` is given, routes of other protocols."""
    end = len(body)
    if end < 12:
        raise NetlinkDecodeError("short rtmsg")
    family, dst_len, _src, _tos, rtm_table, rtm_protocol, _scope, rtm_type, rtm_flags = (
        _RTM.unpack_from(body, 0)
    )
    alen = _ADDR_LEN.get(family)
    if alen is None or rtm_type not in _ROUTE_TYPES:
        return None
    if protocol is not None and rtm_protocol != protocol:
        return None
    dst = bytes(alen)
    gateway = b""
    oif = 0
    metric = 0
    table = rtm_table
    legs: list[Nexthop] = []
    off = 12
    unpack_rta = _RTA.unpack_from
    unpack_u32 = _U32.unpack_from
    while off + 4 <= end:
        length, kind = unpack_rta(body, off)
        if length < 4 or off + length > end:
            raise NetlinkDecodeError(f"bad rtattr length {length}")
        if kind == RTA_DST:
            dst = body[off + 4 : off + length]
        elif kind == RTA_GATEWAY:
            gateway = body[off + 4 : off + length]
        elif length >= 8 and kind in (RTA_OIF, RTA_PRIORITY, RTA_TABLE):
            (value,) = unpack_u32(body, off + 4)
            if kind == RTA_OIF:
                oif = value
            elif kind == RTA_PRIORITY:
                metric = value
            else:
                table = value
        elif kind == RTA_MULTIPATH:
            legs = _decode_multipath(body[off + 4 : off + length])
        off += (length + 3) & ~3
    rtype = _ROUTE_TYPES[rtm_type]
    if rtype is RouteType.BLACKHOLE:
        nexthops: tuple[Nexthop, ...] = ()
    elif legs:
        nexthops = tuple(legs)
    elif gateway or oif:
        nexthops = (Nexthop(gateway, oif, bool(rtm_flags & RTNH_F_ONLINK)),)
    else:
        return None  # a nexthop-object route (RTA_NH_ID): not one of ours
    try:
        route = KernelRoute(family, dst, dst_len, nexthops, rtype, table, metric)
    except ValueError:
        return None  # e.g. an IPv4 route via an IPv6 nexthop (RTA_VIA): never one of ours
    return RouteEntry(rtm_protocol, route)


_ROUTE_TYPES = {t.value: t for t in RouteType}


def _decode_multipath(data: bytes) -> list[Nexthop]:
    legs = []
    off = 0
    while off + 8 <= len(data):
        length, flags, _hops, ifindex = _RTNH.unpack_from(data, off)
        if length < 8 or off + length > len(data):
            raise NetlinkDecodeError("bad rtnexthop length")
        gateway = b""
        for kind, payload in _attrs(data[off : off + length], 8):
            if kind == RTA_GATEWAY:
                gateway = payload
        legs.append(Nexthop(gateway, ifindex, bool(flags & RTNH_F_ONLINK)))
        off += (length + 3) & ~3
    return legs


def parse_attrs(data: bytes, off: int = 0) -> list[tuple[int, bytes]]:
    """The attributes from `off` to the end as (type, payload); the NESTED and BYTEORDER
    bits are dropped from the type. Raises NetlinkDecodeError on a bad length."""
    out = []
    end = len(data)
    while off + 4 <= end:
        length, kind = _RTA.unpack_from(data, off)
        if length < 4 or off + length > end:
            raise NetlinkDecodeError(f"bad rtattr length {length}")
        out.append((kind & 0x3FFF, data[off + 4 : off + length]))  # drop NESTED/BYTEORDER bits
        off += (length + 3) & ~3
    return out


_attrs = parse_attrs


# --- a socket filter for the route monitor -------------------------------------------------

_BPF_LDB_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_TYPE_LOW, _TYPE_HIGH = (4, 5) if sys.byteorder == "little" else (5, 4)
_RTM_PROTOCOL_AT = 16 + 5  # nlmsghdr, then rtmsg's family, dst/src len, tos, table


def drop_protocol_filter(protocol: int) -> bytes:
    """A classic BPF program (struct sock_filter[]) that drops route notifications of
    `protocol` in the kernel and lets everything else through: our own route changes then
    cost the monitor no wake-up, no syscall and no decode."""

    def op(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    return b"".join(
        (
            op(_BPF_LDB_ABS, 0, 0, _TYPE_LOW),
            op(_BPF_JEQ_K, 1, 0, RTM_NEWROUTE),
            op(_BPF_JEQ_K, 0, 5, RTM_DELROUTE),
            op(_BPF_LDB_ABS, 0, 0, _TYPE_HIGH),
            op(_BPF_JEQ_K, 0, 3, 0),
            op(_BPF_LDB_ABS, 0, 0, _RTM_PROTOCOL_AT),
            op(_BPF_JEQ_K, 0, 1, protocol),
            op(_BPF_RET_K, 0, 0, 0),  # drop
            op(_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # keep all of it
        )
    )
