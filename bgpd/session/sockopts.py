"""Socket options a BGP neighbor needs, as plain values (Linux numbers): TCP MD5 signatures
(RFC 2385), the outgoing TTL, and GTSM's minimum TTL (RFC 5082). The driver applies them
with setsockopt; building them needs no socket."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from bgpd.session.settings import MAX_PASSWORD_LEN, PeerSettings

# Linux values (from <sys/socket.h>, <netinet/in.h>, <linux/tcp.h>).
AF_INET = 2
AF_INET6 = 10
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_IPV6 = 41
IP_TTL = 2
IP_MINTTL = 21
IPV6_UNICAST_HOPS = 16
IPV6_MINHOPCOUNT = 73
TCP_MD5SIG = 14

_SOCKADDR_STORAGE_LEN = 128
TCP_MD5SIG_LEN = _SOCKADDR_STORAGE_LEN + 1 + 1 + 2 + 4 + MAX_PASSWORD_LEN


@dataclass(frozen=True, slots=True)
class SockOpt:
    level: int
    name: int
    value: int | bytes


def normalize_address(address: str) -> str:
    """The canonical text of an address; an IPv4-mapped IPv6 address becomes plain IPv4
    ("::ffff:10.0.0.1" -> "10.0.0.1"), as a dual-stack listener reports IPv4 peers."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def address_family(address: str) -> int:
    """AF_INET or AF_INET6 for an address (after normalizing mapped addresses)."""
    return AF_INET if ipaddress.ip_address(normalize_address(address)).version == 4 else AF_INET6


def _sockaddr(address: str, socket_family: int) -> bytes:
    """A sockaddr_in / sockaddr_in6 (port 0) for `address` as seen by a socket of
    `socket_family`: an IPv4 peer on an IPv6 socket is its IPv4-mapped address."""
    ip = ipaddress.ip_address(normalize_address(address))
    if socket_family == AF_INET:
        if ip.version != 4:
            raise ValueError(f"{address} cannot be reached from an IPv4 socket")
        return struct.pack("=HH4s8x", AF_INET, 0, ip.packed)
    if socket_family != AF_INET6:
        raise ValueError(f"unknown address family {socket_family}")
    packed = ip.packed if ip.version == 6 else b"\0" * 10 + b"\xff\xff" + ip.packed
    return struct.pack("=HHI16sI", AF_INET6, 0, 0, packed, 0)


def md5sig(address: str, password: str | None, socket_family: int) -> bytes:
    """struct tcp_md5sig for TCP_MD5SIG: the key for segments to and from `address`; an
    empty key (password None) removes it."""
    key = password.encode() if password is not None else b""
    if len(key) > MAX_PASSWORD_LEN:
        raise ValueError(f"TCP MD5 keys are at most {MAX_PASSWORD_LEN} octets")
    addr = _sockaddr(address, socket_family).ljust(_SOCKADDR_STORAGE_LEN, b"\0")
    # flags 0: no prefix length, no interface (those need TCP_MD5SIG_EXT).
    return addr + struct.pack("=BBHi", 0, 0, len(key), 0) + key.ljust(MAX_PASSWORD_LEN, b"\0")


def connection_options(settings: PeerSettings, socket_family: int) -> list[SockOpt]:
    """Options for one connection to this neighbor (outgoing before connect, or accepted).

    TTL options follow the neighbor's address family: on a dual-stack IPv6 socket an IPv4
    peer's packets are IPv4, and Linux takes IPPROTO_IP options on such sockets."""
    opts: list[SockOpt] = []
    if settings.password is not None:
        opts.append(
            SockOpt(
                IPPROTO_TCP,
                TCP_MD5SIG,
                md5sig(settings.peer_address, settings.password, socket_family),
            )
        )
    if address_family(settings.peer_address) == AF_INET:
        opts.append(SockOpt(IPPROTO_IP, IP_TTL, settings.outgoing_ttl))
        if settings.min_ttl is not None:
            opts.append(SockOpt(IPPROTO_IP, IP_MINTTL, settings.min_ttl))
    else:
        opts.append(SockOpt(IPPROTO_IPV6, IPV6_UNICAST_HOPS, settings.outgoing_ttl))
        if settings.min_ttl is not None:
            opts.append(SockOpt(IPPROTO_IPV6, IPV6_MINHOPCOUNT, settings.min_ttl))
    return opts
