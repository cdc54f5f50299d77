"""Socket option values: struct tcp_md5sig, TTL / GTSM options, address normalising."""

from __future__ import annotations

import ctypes
import socket
from dataclasses import replace

import pytest
from session_pair import settings_pair

from bgpd.session import sockopts
from bgpd.session.sockopts import (
    AF_INET,
    AF_INET6,
    IP_MINTTL,
    IP_TTL,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPPROTO_TCP,
    IPV6_MINHOPCOUNT,
    IPV6_UNICAST_HOPS,
    TCP_MD5SIG,
    TCP_MD5SIG_LEN,
    SockOpt,
    address_family,
    connection_options,
    md5sig,
    normalize_address,
)


class TcpMd5Sig(ctypes.Structure):
    """<linux/tcp.h> struct tcp_md5sig, laid out by the C compiler's rules."""

    _fields_ = [
        ("addr", ctypes.c_uint8 * 128),
        ("flags", ctypes.c_uint8),
        ("prefixlen", ctypes.c_uint8),
        ("keylen", ctypes.c_uint16),
        ("ifindex", ctypes.c_int),
        ("key", ctypes.c_uint8 * 80),
    ]


def test_constants_match_the_socket_module_where_it_has_them() -> None:
    for name in ("AF_INET", "AF_INET6", "IPPROTO_IP", "IPPROTO_TCP", "IPPROTO_IPV6"):
        assert getattr(sockopts, name) == getattr(socket, name)
    assert IP_TTL == socket.IP_TTL and IPV6_UNICAST_HOPS == socket.IPV6_UNICAST_HOPS


def test_md5sig_matches_the_c_layout() -> None:
    raw = md5sig("10.1.2.3", "s3cret", AF_INET)
    assert len(raw) == TCP_MD5SIG_LEN == ctypes.sizeof(TcpMd5Sig)
    parsed = TcpMd5Sig.from_buffer_copy(raw)
    assert parsed.keylen == 6 and bytes(parsed.key)[:6] == b"s3cret"
    assert parsed.flags == 0 and parsed.prefixlen == 0 and parsed.ifindex == 0
    addr = bytes(parsed.addr)
    assert int.from_bytes(addr[:2], "little") == AF_INET  # sa_family, host order
    assert addr[4:8] == bytes([10, 1, 2, 3])
    assert addr[8:] == b"\0" * 120


def test_md5sig_ipv6_and_ipv4_mapped() -> None:
    v6 = bytes(TcpMd5Sig.from_buffer_copy(md5sig("fd00::1", "k", AF_INET6)).addr)
    assert int.from_bytes(v6[:2], "little") == AF_INET6
    assert v6[8:24] == socket.inet_pton(socket.AF_INET6, "fd00::1")
    mapped = bytes(TcpMd5Sig.from_buffer_copy(md5sig("10.0.0.1", "k", AF_INET6)).addr)
    assert mapped[8:24] == socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1")
    removal = TcpMd5Sig.from_buffer_copy(md5sig("10.0.0.1", None, AF_INET))
    assert removal.keylen == 0
    with pytest.raises(ValueError):
        md5sig("fd00::1", "k", AF_INET)
    with pytest.raises(ValueError):
        md5sig("10.0.0.1", "k" * 81, AF_INET)


def test_md5sig_is_accepted_by_the_kernel() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.setsockopt(IPPROTO_TCP, TCP_MD5SIG, md5sig("127.0.0.9", "k", AF_INET))
        except OSError as exc:
            pytest.skip(f"kernel without TCP MD5: {exc}")
        sock.setsockopt(IPPROTO_TCP, TCP_MD5SIG, md5sig("127.0.0.9", None, AF_INET))


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("FD00:0::1", "fd00::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_normalize_address(text: str, normal: str) -> None:
    assert normalize_address(text) == normal


def test_address_family() -> None:
    assert address_family("::ffff:10.0.0.1") == AF_INET
    assert address_family("fd00::1") == AF_INET6


def test_connection_options_ipv4() -> None:
    sa, _ = settings_pair()
    assert connection_options(sa, AF_INET) == [SockOpt(IPPROTO_IP, IP_TTL, 64)]
    secured = replace(sa, password="pw", ttl_security=2, peer_as=65001)
    opts = connection_options(secured, AF_INET)
    assert opts[0] == SockOpt(IPPROTO_TCP, TCP_MD5SIG, md5sig("10.0.0.2", "pw", AF_INET))
    assert opts[1:] == [SockOpt(IPPROTO_IP, IP_TTL, 255), SockOpt(IPPROTO_IP, IP_MINTTL, 254)]


def test_connection_options_ipv6() -> None:
    sa, _ = settings_pair()
    v6 = replace(sa, peer_address="fd00::2", peer_as=65001, ttl_security=1)
    assert connection_options(v6, AF_INET6) == [
        SockOpt(IPPROTO_IPV6, IPV6_UNICAST_HOPS, 255),
        SockOpt(IPPROTO_IPV6, IPV6_MINHOPCOUNT, 255),
    ]
    assert connection_options(replace(v6, ttl_security=None), AF_INET6) == [
        SockOpt(IPPROTO_IPV6, IPV6_UNICAST_HOPS, 1)
    ]


def test_options_apply_to_real_sockets() -> None:
    sa, _ = settings_pair()
    for family, settings in (
        (socket.AF_INET, replace(sa, ttl_security=1)),
        (socket.AF_INET6, replace(sa, peer_address="fd00::2", ttl_security=1)),
    ):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:
            for opt in connection_options(settings, family):
                sock.setsockopt(opt.level, opt.name, opt.value)
            if family == socket.AF_INET:
                assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
                assert sock.getsockopt(IPPROTO_IP, IP_MINTTL) == 255
