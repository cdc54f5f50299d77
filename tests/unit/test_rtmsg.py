"""common.netlink.rtmsg against pyroute2's encoding of the same messages (the reference)."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from bgpd.kernel.fib import (
    AF_INET,
    AF_INET6,
    RTPROT_PYBGPD,
    KernelRoute,
    Nexthop,
    OpKind,
    RouteOp,
    RouteType,
    route_matches,
)
from common.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    NetlinkDecodeError,
    decode_error,
    decode_link_index,
    decode_route,
    encode_delroute,
    encode_getlink,
    encode_newroute,
    encode_noop,
    encode_op,
    encode_route_dump,
    split_messages,
)

NEW = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
PROTO = RTPROT_PYBGPD


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def net(prefix: str) -> tuple[int, bytes, int]:
    n = ipaddress.ip_network(prefix)
    return (AF_INET if n.version == 4 else AF_INET6), n.network_address.packed, n.prefixlen


def reference(
    msg_type: int,
    flags: int,
    seq: int,
    prefix: str,
    attrs: list[tuple[str, Any]],
    *,
    table: int = 254,
    proto: int = PROTO,
    scope: int = 0,
    rtype: int = 1,
    rtm_flags: int = 0,
) -> bytes:
    """The same message as pyroute2 builds it."""
    family, _, dst_len = net(prefix)
    m = rtmsg()
    m["header"]["type"] = msg_type
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = seq
    m["family"] = family
    m["dst_len"] = dst_len
    m["table"] = table if table < 256 else 0
    m["proto"] = proto
    m["scope"] = scope
    m["type"] = rtype
    m["flags"] = rtm_flags
    m["attrs"] = [("RTA_TABLE", table), ("RTA_DST", prefix.split("/")[0]), *attrs]
    m.encode()
    return bytes(m.data)


def test_ipv4_gateway_oif_metric_onlink_matches_pyroute2() -> None:
    r = KernelRoute(*net("10.1.2.0/24"), (Nexthop(ip("10.0.0.2"), 3, True),), metric=20)
    expected = reference(
        RTM_NEWROUTE,
        NEW,
        7,
        "10.1.2.0/24",
        [("RTA_PRIORITY", 20), ("RTA_GATEWAY", "10.0.0.2"), ("RTA_OIF", 3)],
        rtm_flags=4,
    )
    assert encode_newroute(r, 7, PROTO) == expected


def test_ipv6_gateway_matches_pyroute2() -> None:
    r = KernelRoute(*net("fd10:1::/64"), (Nexthop(ip("fd00::2")),))
    expected = reference(RTM_NEWROUTE, NEW, 1, "fd10:1::/64", [("RTA_GATEWAY", "fd00::2")])
    assert encode_newroute(r, 1, PROTO) == expected


def test_without_ack_only_the_flag_differs() -> None:
    r = KernelRoute(*net("10.1.2.0/24"), (Nexthop(ip("10.0.0.2")),))
    expected = reference(
        RTM_NEWROUTE, NEW & ~NLM_F_ACK, 9, "10.1.2.0/24", [("RTA_GATEWAY", "10.0.0.2")]
    )
    assert encode_newroute(r, 9, PROTO, ack=False) == expected


def test_blackhole_matches_pyroute2() -> None:
    r = KernelRoute(*net("192.168.221.64/26"), type=RouteType.BLACKHOLE, metric=5)
    expected = reference(RTM_NEWROUTE, NEW, 2, "192.168.221.64/26", [("RTA_PRIORITY", 5)], rtype=6)
    assert encode_newroute(r, 2, PROTO) == expected


@pytest.mark.parametrize("prefix,gws", [("10.9.0.0/16", ["10.0.0.2", "10.0.0.3", "10.0.0.4"]),
                                        ("fd10::/48", ["fd00::2", "fd00::3"])])  # fmt: skip
def test_multipath_matches_pyroute2(prefix: str, gws: list[str]) -> None:
    legs = tuple(Nexthop(ip(g), 3 + i, i == 0) for i, g in enumerate(gws))
    r = KernelRoute(*net(prefix), legs)
    mp = [
        {"attrs": [("RTA_GATEWAY", g)], "oif": 3 + i, "flags": 4 if i == 0 else 0, "hops": 0}
        for i, g in enumerate(gws)
    ]
    expected = reference(RTM_NEWROUTE, NEW, 3, prefix, [("RTA_MULTIPATH", mp)])
    assert encode_newroute(r, 3, PROTO) == expected


def test_device_route_is_link_scope() -> None:
    r = KernelRoute(*net("10.2.0.0/24"), (Nexthop(b"", 4),))
    expected = reference(RTM_NEWROUTE, NEW, 4, "10.2.0.0/24", [("RTA_OIF", 4)], scope=253)
    assert encode_newroute(r, 4, PROTO) == expected


def test_big_table_id_travels_in_rta_table_only() -> None:
    r = KernelRoute(*net("10.3.0.0/24"), (Nexthop(ip("10.0.0.2")),), table=1000)
    expected = reference(
        RTM_NEWROUTE, NEW, 5, "10.3.0.0/24", [("RTA_GATEWAY", "10.0.0.2")], table=1000
    )
    msg = encode_newroute(r, 5, PROTO)
    assert msg == expected
    assert msg[16 + 4] == 0  # rtm_table: RT_TABLE_UNSPEC


def test_delroute_matches_pyroute2_and_names_protocol_and_metric() -> None:
    r = KernelRoute(*net("fd10::/64"), (Nexthop(ip("fd00::2")),), metric=1024)
    expected = reference(
        RTM_DELROUTE,
        NLM_F_REQUEST | NLM_F_ACK,
        6,
        "fd10::/64",
        [("RTA_PRIORITY", 1024)],
        scope=255,
        rtype=0,
    )
    assert encode_delroute(r, 6, PROTO) == expected
    assert encode_op(RouteOp(OpKind.DELETE, r), 6, PROTO) == expected
    assert encode_op(RouteOp(OpKind.REPLACE, r), 6, PROTO) == encode_newroute(r, 6, PROTO)


def test_pyroute2_reads_our_message_back() -> None:
    r = KernelRoute(*net("10.1.2.0/24"), (Nexthop(ip("10.0.0.2"), 3),), metric=20)
    m = rtmsg(encode_newroute(r, 11, PROTO))
    m.decode()
    assert m["header"]["sequence_number"] == 11
    assert m["proto"] == PROTO
    assert m.get_attr("RTA_DST") == "10.1.2.0"
    assert m.get_attr("RTA_GATEWAY") == "10.0.0.2"
    assert m.get_attr("RTA_OIF") == 3
    assert m.get_attr("RTA_PRIORITY") == 20
    assert m["header"]["length"] == len(encode_newroute(r, 11, PROTO))


def test_dump_request_noop_and_getlink() -> None:
    dump = encode_route_dump(AF_INET6, 12, PROTO)
    m = rtmsg(dump)
    m.decode()
    assert (m["header"]["type"], m["header"]["flags"]) == (RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP)
    assert (m["family"], m["proto"], m["table"], m["dst_len"]) == (AF_INET6, PROTO, 0, 0)
    assert m["attrs"] == []
    m = rtmsg(encode_route_dump(AF_INET, 13, PROTO, table=1000))
    m.decode()
    assert m.get_attr("RTA_TABLE") == 1000

    assert encode_noop(14) == struct.pack(
        "=IHHII", 16, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, 14, 0
    )

    ref = ifinfmsg()
    ref["header"]["type"] = RTM_GETLINK
    ref["header"]["flags"] = NLM_F_REQUEST
    ref["header"]["sequence_number"] = 15
    ref["attrs"] = [("IFLA_IFNAME", "veth-a")]
    ref.encode()
    assert encode_getlink("veth-a", 15) == bytes(ref.data)


# -- decoding: kernel dump entries as pyroute2 encodes them ---------------------------------


def kernel_entry(prefix: str, attrs: list[tuple[str, Any]], **kw: Any) -> bytes:
    """A dump entry laid out as the kernel sends it (RTA_TABLE first, extra attributes)."""
    return reference(RTM_NEWROUTE, NLM_F_MULTI, 99, prefix, attrs, **kw)[16:]


def test_decode_ipv4_entry() -> None:
    body = kernel_entry(
        "10.1.2.0/24",
        [("RTA_PRIORITY", 20), ("RTA_GATEWAY", "10.0.0.2"), ("RTA_OIF", 3)],
        rtm_flags=4,
    )
    entry = decode_route(body)
    assert entry is not None
    assert entry.protocol == PROTO
    assert entry.route == KernelRoute(
        *net("10.1.2.0/24"), (Nexthop(ip("10.0.0.2"), 3, True),), metric=20
    )


def test_decode_ipv6_entry_skips_unknown_attributes() -> None:
    body = kernel_entry(
        "fd10::/64",
        [("RTA_PRIORITY", 1024), ("RTA_PREF", 0), ("RTA_GATEWAY", "fd00::2"), ("RTA_OIF", 2)],
        proto=4,
    )
    entry = decode_route(body)
    assert entry is not None
    assert entry.protocol == 4
    assert decode_route(body, protocol=4) == entry
    assert decode_route(body, protocol=PROTO) is None  # someone else's route: skipped
    assert entry.route == KernelRoute(*net("fd10::/64"), (Nexthop(ip("fd00::2"), 2),), metric=1024)


def test_decode_multipath_blackhole_and_default() -> None:
    mp = [
        {"attrs": [("RTA_GATEWAY", "10.0.0.2")], "oif": 3, "flags": 4, "hops": 0},
        {"attrs": [("RTA_GATEWAY", "10.0.0.3")], "oif": 4, "flags": 16, "hops": 0},  # linkdown
    ]
    entry = decode_route(kernel_entry("10.9.0.0/16", [("RTA_MULTIPATH", mp)], table=1000))
    assert entry is not None
    assert entry.route.table == 1000
    assert entry.route.nexthops == (Nexthop(ip("10.0.0.2"), 3, True), Nexthop(ip("10.0.0.3"), 4))

    entry = decode_route(kernel_entry("192.168.1.0/26", [], rtype=6))
    assert entry is not None
    assert entry.route.type is RouteType.BLACKHOLE
    assert entry.route.nexthops == ()

    m = rtmsg()
    m["family"], m["table"], m["proto"], m["type"] = AF_INET, 254, PROTO, 1
    m["attrs"] = [("RTA_TABLE", 254), ("RTA_GATEWAY", "10.0.0.1"), ("RTA_OIF", 2)]
    m.encode()
    entry = decode_route(bytes(m.data)[16:])
    assert entry is not None
    assert (entry.route.dst, entry.route.dst_len) == (bytes(4), 0)
    assert entry.route.metric == 0  # IPv4 leaves RTA_PRIORITY out when it is 0


def test_decode_skips_route_kinds_we_never_install() -> None:
    assert decode_route(kernel_entry("10.0.0.1/32", [("RTA_OIF", 2)], rtype=2)) is None  # local
    assert decode_route(kernel_entry("10.0.0.0/8", [], rtype=7)) is None  # unreachable
    assert decode_route(kernel_entry("10.0.0.0/8", [])) is None  # unicast with no nexthop
    with pytest.raises(NetlinkDecodeError):
        decode_route(b"\x02\x18")


nexthops4 = st.builds(
    Nexthop,
    st.sampled_from([ip("10.0.0.2"), ip("10.0.0.3"), ip("192.0.2.1")]),
    st.integers(0, 70000),
    st.booleans(),
)
nexthops6 = st.builds(
    Nexthop,
    st.sampled_from([ip("fd00::2"), ip("fe80::1"), ip("2001:db8::1")]),
    st.integers(1, 70000),
    st.booleans(),
)


@st.composite
def routes(draw: st.DrawFn) -> KernelRoute:
    v6 = draw(st.booleans())
    bits = 128 if v6 else 32
    plen = draw(st.integers(0, bits))
    addr = draw(st.integers(0, 2**bits - 1)) >> (bits - plen) << (bits - plen)
    dst = addr.to_bytes(bits // 8, "big")
    table = draw(st.sampled_from([254, 100, 255, 1000, 2**31]))
    metric = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    family = AF_INET6 if v6 else AF_INET
    if draw(st.booleans()):
        return KernelRoute(family, dst, plen, (), RouteType.BLACKHOLE, table, metric)
    legs = draw(st.lists(nexthops6 if v6 else nexthops4, min_size=1, max_size=4))
    return KernelRoute(family, dst, plen, tuple(legs), RouteType.UNICAST, table, metric)


@settings(max_examples=300, deadline=None)
@given(routes(), st.integers(0, 2**32 - 1), st.integers(0, 255))
def test_encode_decode_round_trip(route: KernelRoute, seq: int, proto: int) -> None:
    msg = encode_newroute(route, seq, proto)
    ((mtype, flags, mseq, body),) = split_messages(msg)
    assert (mtype, flags, mseq) == (RTM_NEWROUTE, NEW, seq)
    entry = decode_route(body)
    assert entry is not None
    assert entry.protocol == proto
    assert route_matches(route, entry.route)
    if route.metric is not None:
        assert entry.route == route
    ref = rtmsg(msg)
    ref.decode()  # pyroute2 parses every message we build, with the same length
    assert ref["header"]["length"] == len(msg)
    assert ref.get_attr("RTA_TABLE") == route.table


# -- acks, errors and framing ---------------------------------------------------------------


def error_msg(seq: int, err: int, *, text: str = "", capped: bool = True) -> bytes:
    """An NLMSG_ERROR as the kernel builds it (net/netlink/af_netlink.c netlink_ack)."""
    request = encode_newroute(
        KernelRoute(*net("10.1.0.0/24"), (Nexthop(ip("10.9.9.9")),)), seq, PROTO, ack=False
    )
    body = struct.pack("=i", -err) + (request[:16] if capped else request)
    flags = NLM_F_CAPPED if capped else 0
    if text:
        raw = text.encode() + b"\0"
        tlv = struct.pack("=HH", 4 + len(raw), 1) + raw + b"\0" * (-(4 + len(raw)) % 4)
        body += tlv
        flags |= NLM_F_ACK_TLVS
    return struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, flags, seq, 0) + body


def test_decode_plain_ack_and_errors_with_messages() -> None:
    data = (
        error_msg(1, 0)
        + error_msg(2, 101, text="Nexthop has invalid gateway")
        + error_msg(3, 22, text="Invalid prefix for given prefix length", capped=False)
        + error_msg(4, 3, capped=False)
    )
    got = [(seq, decode_error(body, flags)) for _t, flags, seq, body in split_messages(data)]
    assert got == [
        (1, (0, "")),
        (2, (101, "Nexthop has invalid gateway")),
        (3, (22, "Invalid prefix for given prefix length")),
        (4, (3, "")),
    ]


def test_split_messages_frames_and_rejects_bad_lengths() -> None:
    done = struct.pack("=IHHII", 20, NLMSG_DONE, 2, 5, 0) + struct.pack("=i", 0)
    r = KernelRoute(*net("10.1.0.0/24"), (Nexthop(ip("10.0.0.2")),))
    data = encode_newroute(r, 4, PROTO) + done
    assert [(t, s) for t, _f, s, _b in split_messages(data)] == [(RTM_NEWROUTE, 4), (NLMSG_DONE, 5)]
    assert split_messages(b"") == []
    with pytest.raises(NetlinkDecodeError):
        split_messages(data[:-1])
    with pytest.raises(NetlinkDecodeError):
        split_messages(struct.pack("=IHHII", 8, NLMSG_DONE, 0, 0, 0))
    with pytest.raises(NetlinkDecodeError):
        decode_error(b"\0" * 8, 0)


def test_decode_link_index() -> None:
    ref = ifinfmsg()
    ref["index"] = 42
    ref["attrs"] = [("IFLA_IFNAME", "eth0")]
    ref.encode()
    assert decode_link_index(bytes(ref.data)[16:]) == 42
    with pytest.raises(NetlinkDecodeError):
        decode_link_index(b"\0" * 4)
