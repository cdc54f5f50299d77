"""Link messages for the route monitor: the dump request and RTM_NEWLINK names."""

from __future__ import annotations

import struct

import pytest

from common.netlink.rtmsg import (
    IFLA_IFNAME,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    RTM_GETLINK,
    NetlinkDecodeError,
    decode_link,
    encode_link_dump,
    split_messages,
)


def newlink_body(index: int, name: bytes | None) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0, 0)
    if name is not None:
        payload = name + b"\0"
        attr = struct.pack("=HH", 4 + len(payload), IFLA_IFNAME) + payload
        body += attr + b"\0" * (-len(attr) % 4)
    return body


def test_link_dump_request() -> None:
    ((mtype, flags, seq, body),) = split_messages(encode_link_dump(42))
    assert (mtype, flags, seq) == (RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 42)
    assert len(body) == 16


def test_decode_link() -> None:
    assert decode_link(newlink_body(7, b"cali1234567890a")) == (7, "cali1234567890a")
    assert decode_link(newlink_body(3, None)) == (3, "")
    with pytest.raises(NetlinkDecodeError):
        decode_link(b"\0" * 8)
