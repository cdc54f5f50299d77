"""What RFC 5881 asks of the sockets, as plain values (Linux numbers), and the reading of
received ancillary data; the driver applies and collects them, nothing here touches a
socket.

Received: the TTL / Hop Limit (IP_RECVTTL, IPV6_RECVHOPLIMIT: single hop means 255) and
the packet's interface and destination (IP_PKTINFO, IPV6_RECVPKTINFO: the Interface column
of `show bfd sessions`). Sent: TTL 255, from a source port in 49152-65535, with the
Internetwork Control precedence BIRD and FRR use.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

AF_INET = 2
AF_INET6 = 10
IPPROTO_IP = 0
IPPROTO_IPV6 = 41
SOL_SOCKET = 1

IP_TOS = 1
IP_TTL = 2
IP_PKTINFO = 8
IP_RECVTTL = 12
IPV6_UNICAST_HOPS = 16
IPV6_V6ONLY = 26
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_TCLASS = 67
SO_PRIORITY = 12

CONTROL_PORT = 3784
"""RFC 5881 4: single-hop control packets go to UDP port 3784."""
SOURCE_PORTS = range(49152, 65536)
"""RFC 5881 4: and come from a port in this range, the same one for the whole session."""

TTL = 255
TOS_INTERNETWORK_CONTROL = 0xC0
PRIORITY_CONTROL = 7  # TC_PRIO_CONTROL

_IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_INT = struct.Struct("=i")

Option = tuple[int, int, int]


def receive_options(family: int) -> list[Option]:
    """(level, name, value) for the receive socket: report TTL and packet info."""
    if family == AF_INET:
        return [(IPPROTO_IP, IP_RECVTTL, 1), (IPPROTO_IP, IP_PKTINFO, 1)]
    return [
        (IPPROTO_IPV6, IPV6_V6ONLY, 1),
        (IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1),
        (IPPROTO_IPV6, IPV6_RECVPKTINFO, 1),
    ]


def send_options(family: int) -> list[Option]:
    """(level, name, value) for a transmit socket: TTL 255 and control precedence."""
    common = [(SOL_SOCKET, SO_PRIORITY, PRIORITY_CONTROL)]
    if family == AF_INET:
        return [(IPPROTO_IP, IP_TTL, TTL), (IPPROTO_IP, IP_TOS, TOS_INTERNETWORK_CONTROL), *common]
    return [
        (IPPROTO_IPV6, IPV6_V6ONLY, 1),
        (IPPROTO_IPV6, IPV6_UNICAST_HOPS, TTL),
        (IPPROTO_IPV6, IPV6_TCLASS, TOS_INTERNETWORK_CONTROL),
        *common,
    ]


@dataclass(frozen=True, slots=True)
class Received:
    """What the ancillary data of one datagram said; None where it said nothing."""

    ttl: int | None = None
    ifindex: int | None = None
    destination: str | None = None


def parse_ancillary(ancdata: Iterable[tuple[int, int, bytes]]) -> Received:
    """recvmsg()'s ancillary list -> TTL / Hop Limit, interface index, destination."""
    ttl: int | None = None
    ifindex: int | None = None
    destination: str | None = None
    for level, kind, data in ancdata:
        if level == IPPROTO_IP and kind == IP_TTL and len(data) >= _INT.size:
            (ttl,) = _INT.unpack_from(data)
        elif level == IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            index, _, addr = _IN_PKTINFO.unpack_from(data)
            ifindex, destination = index, str(ipaddress.IPv4Address(addr))
        elif level == IPPROTO_IPV6 and kind == IPV6_HOPLIMIT and len(data) >= _INT.size:
            (ttl,) = _INT.unpack_from(data)
        elif level == IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
            addr6, index = _IN6_PKTINFO.unpack_from(data)
            ifindex, destination = index, str(ipaddress.IPv6Address(addr6))
    return Received(ttl, ifindex, destination)


ANCILLARY_SPACE = 128
"""Room for the TTL and pktinfo control messages of either family (CMSG_SPACE sums)."""
