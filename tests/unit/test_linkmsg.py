"""common.netlink.linkmsg against pyroute2's encoding of the same messages (the reference):
tunnel device creation (ipip; vxlan with VNI 4096 and port 4789 as Calico makes it),
link state, addresses, and the ARP and FDB entries of a VXLAN device."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from common.netlink.link import (
    NTF_SELF,
    NUD_PERMANENT,
    RT_SCOPE_LINK,
    Address,
    Link,
    Neighbour,
    Vxlan,
    mac_text,
    parse_mac,
)
from common.netlink.linkmsg import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELNEIGH,
    RTM_GETADDR,
    RTM_GETNEIGH,
    RTM_NEWADDR,
    RTM_NEWNEIGH,
    decode_newaddr,
    decode_newlink,
    decode_newneigh,
    encode_addr_dump,
    encode_deladdr,
    encode_dellink,
    encode_delneigh,
    encode_neigh_dump,
    encode_newaddr,
    encode_newlink,
    encode_newneigh,
    encode_setlink,
)
from common.netlink.route import AF_BRIDGE, AF_INET, AF_INET6
from common.netlink.rtmsg import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RTM_NEWLINK,
    NetlinkDecodeError,
)

CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
SET = NLM_F_REQUEST | NLM_F_ACK
MAC = "66:0a:1b:2c:3d:4e"


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def ref(
    cls: Any, mtype: int, flags: int, seq: int, fields: dict[str, Any], attrs: list[Any]
) -> bytes:
    """The same message as pyroute2 builds it."""
    m = cls()
    m["header"]["type"] = mtype
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = seq
    for k, v in fields.items():
        m[k] = v
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def test_vxlan_device_as_calico_makes_it_matches_pyroute2() -> None:
    vx = Vxlan(vni=4096, port=4789, local=ip("10.0.0.1"), link=2)
    ours = encode_newlink("vxlan.calico", "vxlan", 3, mac=parse_mac(MAC), vxlan=vx)
    data = {
        "attrs": [
            ("IFLA_VXLAN_ID", 4096),
            ("IFLA_VXLAN_LINK", 2),
            ("IFLA_VXLAN_LOCAL", "10.0.0.1"),
            ("IFLA_VXLAN_LEARNING", 0),
            ("IFLA_VXLAN_PORT", 4789),
        ]
    }
    expected = ref(ifinfmsg, RTM_NEWLINK, CREATE, 3, {}, [
        ("IFLA_IFNAME", "vxlan.calico"),
        ("IFLA_ADDRESS", MAC),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", data)]}),
    ])  # fmt: skip
    assert ours == expected
    # The UDP port travels in network order (0x12b5 = 4789).
    assert bytes.fromhex("06000f0012b5") in ours


def test_ipip_device_and_mtu_match_pyroute2() -> None:
    expected = ref(ifinfmsg, RTM_NEWLINK, CREATE, 4, {}, [
        ("IFLA_IFNAME", "tunl0"),
        ("IFLA_MTU", 1480),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "ipip")]}),
    ])  # fmt: skip
    assert encode_newlink("tunl0", "ipip", 4, mtu=1480) == expected
    with pytest.raises(ValueError, match="settings"):
        encode_newlink("vx", "vxlan", 1)


def test_setlink_up_and_dellink_match_pyroute2() -> None:
    up = ref(ifinfmsg, RTM_NEWLINK, SET, 5, {"index": 9, "flags": 1, "change": 1}, [])
    assert encode_setlink(9, 5, up=True) == up
    down = ref(ifinfmsg, RTM_NEWLINK, SET, 6, {"index": 9, "flags": 0, "change": 1}, [])
    assert encode_setlink(9, 6, up=False) == down
    mtu = ref(ifinfmsg, RTM_NEWLINK, SET, 7, {"index": 9}, [("IFLA_MTU", 1450)])
    assert encode_setlink(9, 7, mtu=1450) == mtu
    assert encode_dellink(9, 8) == ref(ifinfmsg, RTM_DELLINK, SET, 8, {"index": 9}, [])


def test_decode_link_reads_kind_state_mac_and_vxlan_settings() -> None:
    data = {"attrs": [("IFLA_VXLAN_ID", 4096), ("IFLA_VXLAN_LINK", 2),
                      ("IFLA_VXLAN_LOCAL", "10.0.0.1"), ("IFLA_VXLAN_LEARNING", 0),
                      ("IFLA_VXLAN_PORT", 4789)]}  # fmt: skip
    body = ref(ifinfmsg, RTM_NEWLINK, 0, 1, {"index": 12, "flags": 0x1043}, [
        ("IFLA_IFNAME", "vxlan.calico"),
        ("IFLA_MTU", 1450),
        ("IFLA_ADDRESS", MAC),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"), ("IFLA_INFO_DATA", data)]}),
    ])[16:]  # fmt: skip
    assert decode_newlink(body) == Link(
        12, "vxlan.calico", "vxlan", True, 1450, parse_mac(MAC),
        Vxlan(4096, 4789, ip("10.0.0.1"), 2, False), running=True,
    )  # fmt: skip
    plain = ref(ifinfmsg, RTM_NEWLINK, 0, 1, {"index": 1, "flags": 0}, [("IFLA_IFNAME", "lo")])
    assert decode_newlink(plain[16:]) == Link(1, "lo")
    with pytest.raises(NetlinkDecodeError):
        decode_newlink(b"\0" * 8)


@pytest.mark.parametrize(
    ("family", "addr", "plen"), [(AF_INET, "10.244.0.1", 32), (AF_INET6, "fd00::1", 128)]
)
def test_addresses_match_pyroute2(family: int, addr: str, plen: int) -> None:
    a = Address(7, family, ip(addr), plen)
    fields = {"family": family, "prefixlen": plen, "index": 7}
    attrs = [("IFA_LOCAL", addr), ("IFA_ADDRESS", addr)]
    assert encode_newaddr(a, 9) == ref(ifaddrmsg, RTM_NEWADDR, REPLACE, 9, fields, attrs)
    assert encode_deladdr(a, 10) == ref(ifaddrmsg, RTM_DELADDR, SET, 10, fields, attrs)
    assert decode_newaddr(encode_newaddr(a, 9)[16:]) == a
    # IPv6 replies carry IFA_ADDRESS only.
    only = ref(ifaddrmsg, RTM_NEWADDR, 0, 1, {**fields, "scope": RT_SCOPE_LINK},
               [("IFA_ADDRESS", addr)])  # fmt: skip
    assert decode_newaddr(only[16:]) == Address(7, family, ip(addr), plen, RT_SCOPE_LINK)
    dump = ref(ifaddrmsg, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 11, {"family": family}, [])
    assert encode_addr_dump(family, 11) == dump
    with pytest.raises(ValueError):
        Address(7, AF_INET, ip("fd00::1"), 32)


def test_arp_entry_of_a_remote_vtep_matches_pyroute2() -> None:
    n = Neighbour(AF_INET, 12, parse_mac(MAC), ip("10.244.1.0"))
    fields = {"family": AF_INET, "ifindex": 12, "state": NUD_PERMANENT, "ndm_type": 1}
    attrs = [("NDA_DST", "10.244.1.0"), ("NDA_LLADDR", MAC)]
    assert encode_newneigh(n, 3) == ref(ndmsg, RTM_NEWNEIGH, REPLACE, 3, fields, attrs)
    assert encode_delneigh(n, 4) == ref(ndmsg, RTM_DELNEIGH, SET, 4, fields, attrs)
    assert decode_newneigh(encode_newneigh(n, 3)[16:]) == n


def test_fdb_entry_of_a_remote_vtep_matches_pyroute2() -> None:
    n = Neighbour(AF_BRIDGE, 12, parse_mac(MAC), ip("172.20.0.3"), flags=NTF_SELF)
    assert n.is_fdb
    fields = {"family": socket.AF_BRIDGE, "ifindex": 12, "state": NUD_PERMANENT,
              "flags": NTF_SELF}  # fmt: skip
    attrs = [("NDA_DST", "172.20.0.3"), ("NDA_LLADDR", MAC)]
    assert encode_newneigh(n, 5) == ref(ndmsg, RTM_NEWNEIGH, REPLACE, 5, fields, attrs)
    assert decode_newneigh(encode_newneigh(n, 5)[16:]) == n
    dump = ref(ndmsg, RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, 6,
               {"family": socket.AF_BRIDGE}, [])  # fmt: skip
    assert encode_neigh_dump(AF_BRIDGE, 6) == dump
    # An entry without a MAC (an incomplete ARP entry) is not one of ours.
    bare = ref(ndmsg, RTM_NEWNEIGH, 0, 1, {"family": AF_INET, "ifindex": 3},
               [("NDA_DST", "10.0.0.9")])  # fmt: skip
    assert decode_newneigh(bare[16:]) is None


def test_mac_text() -> None:
    assert mac_text(parse_mac("66-0A-1B-2C-3D-4E")) == MAC
    for bad in ("66:0a:1b:2c:3d", "660a1b2c3d4e", "66:0a:1b:2c:3d:zz"):
        with pytest.raises(ValueError):
            parse_mac(bad)
