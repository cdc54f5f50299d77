"""OPEN encode/decode, capabilities (RFC 5492) and the OPEN syntax checks (RFC 4271 6.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from wire_strategies import opens

from bgpd.wire import (
    AddPath,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    Family,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    Open,
    RouteRefreshCap,
    UnknownCapability,
    WireError,
    decode_message,
    encode_open,
)

MARKER = b"\xff" * 16


def open_wire(
    params: bytes,
    version: int = 4,
    my_as: int = 65001,
    hold: int = 90,
    bgp_id: bytes = b"\x0a\x00\x00\x01",
    opt_len: int | None = None,
) -> bytes:
    body = (
        bytes((version,))
        + my_as.to_bytes(2, "big")
        + hold.to_bytes(2, "big")
        + bgp_id
        + bytes((len(params) if opt_len is None else opt_len,))
        + params
    )
    return MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x01" + body


def cap_param(*caps: bytes) -> bytes:
    value = b"".join(caps)
    return bytes((2, len(value))) + value


MP4 = b"\x01\x04\x00\x01\x00\x01"
MP6 = b"\x01\x04\x00\x02\x00\x01"
RR = b"\x02\x00"
AS4 = b"\x41\x04\x00\x00\xfd\xe9"  # 65001


def test_rfc_style_open() -> None:
    # As FRR sends it: one capability per optional parameter.
    wire = open_wire(cap_param(MP4) + cap_param(RR) + cap_param(AS4))
    msg = decode_message(wire)
    assert msg == Open(
        my_as=65001,
        hold_time=90,
        bgp_id=0x0A000001,
        capabilities=(Multiprotocol(Family.IPV4_UNICAST), RouteRefreshCap(), FourOctetAs(65001)),
    )
    assert msg.asn == 65001  # type: ignore[union-attr]


def test_several_caps_in_one_parameter() -> None:
    # As BIRD sends it: every capability in one parameter.
    msg = decode_message(open_wire(cap_param(MP4, MP6, RR, AS4)))
    assert isinstance(msg, Open)
    assert msg.capabilities == (
        Multiprotocol(Family.IPV4_UNICAST),
        Multiprotocol(Family.IPV6_UNICAST),
        RouteRefreshCap(),
        FourOctetAs(65001),
    )


def test_no_optional_parameters() -> None:
    msg = decode_message(open_wire(b""))
    assert msg == Open(65001, 90, 0x0A000001, ())


def test_all_known_capabilities() -> None:
    gr = b"\x40\x06" + b"\x80\x78" + b"\x00\x01\x01\x80"  # R bit, 120 s, IPv4 forwarding kept
    addpath = b"\x45\x08" + b"\x00\x01\x01\x03" + b"\x00\x02\x01\x01"
    caps = (gr, addpath, b"\x06\x00", b"\x46\x00", b"\x80\x00", b"\x01\x04\x00\x01\x00\x80")
    msg = decode_message(open_wire(cap_param(*caps)))
    assert isinstance(msg, Open)
    assert msg.capabilities == (
        GracefulRestart(120, restarting=True, families=((Family.IPV4_UNICAST, True),)),
        AddPath(((Family.IPV4_UNICAST, 3), (Family.IPV6_UNICAST, 1))),
        ExtendedMessageCap(),
        EnhancedRouteRefreshCap(),
        UnknownCapability(128, b""),  # Cisco's pre-standard route refresh
        UnknownCapability(1, b"\x00\x01\x00\x80"),  # Multiprotocol VPNv4: not a Family
    )
    assert encode_open(msg) == open_wire(cap_param(*caps))


def test_graceful_restart_notification_bit() -> None:
    cap = GracefulRestart(300, restarting=False, notification=True)
    msg = decode_message(encode_open(Open(1, 90, 1, (cap,))))
    assert isinstance(msg, Open) and msg.capabilities == (cap,)


def test_extended_optional_parameters_rfc9072() -> None:
    caps = MP4 + RR + AS4
    long_param = b"\x02" + len(caps).to_bytes(2, "big") + caps
    params = b"\xff" + len(long_param).to_bytes(2, "big") + long_param
    msg = decode_message(open_wire(params, opt_len=255))
    assert isinstance(msg, Open)
    assert msg.capabilities == (
        Multiprotocol(Family.IPV4_UNICAST),
        RouteRefreshCap(),
        FourOctetAs(65001),
    )


def test_large_open_uses_extended_parameters() -> None:
    caps = tuple(UnknownCapability(200 + i, bytes(100)) for i in range(4))
    msg = Open(65001, 90, 1, caps)
    wire = encode_open(msg)
    assert wire[28] == 255 and wire[29] == 255
    assert decode_message(wire) == msg


def test_all_caps_in_one_parameter_when_they_fit() -> None:
    caps = tuple(UnknownCapability(200 + i, bytes(100)) for i in range(2))
    wire = encode_open(Open(65001, 90, 1, caps))
    assert wire[28] == 2 + 2 * 102 and wire[29] == 2 and wire[30] == 2 * 102
    assert decode_message(wire) == Open(65001, 90, 1, caps)


@settings(max_examples=300, deadline=None)
@given(opens)
def test_open_round_trip(msg: Open) -> None:
    wire = encode_open(msg)
    assert decode_message(wire) == msg
    assert encode_open(msg) == wire


OPEN_ERRORS = [
    # (name, wire, (code, subcode), data or None)
    ("version 3", open_wire(b"", version=3), (2, 1), b"\x00\x04"),
    ("version 5", open_wire(b"", version=5), (2, 1), b"\x00\x04"),
    ("hold time 1", open_wire(b"", hold=1), (2, 6), None),
    ("hold time 2", open_wire(b"", hold=2), (2, 6), None),
    ("bgp id 0", open_wire(b"", bgp_id=b"\x00\x00\x00\x00"), (2, 3), None),
    ("auth parameter", open_wire(b"\x01\x02\x00\x00"), (2, 4), None),
    ("unknown parameter", open_wire(b"\x07\x00"), (2, 4), None),
    ("opt len too long", open_wire(cap_param(RR), opt_len=5), (2, 0), None),
    ("opt len too short", open_wire(cap_param(RR), opt_len=1), (2, 0), None),
    ("param overruns", open_wire(b"\x02\x05\x02\x00"), (2, 0), None),
    ("cap overruns param", open_wire(b"\x02\x02\x41\x04"), (2, 0), None),
    ("cap header cut", open_wire(b"\x02\x01\x41"), (2, 0), None),
    ("4-octet AS length 2", open_wire(cap_param(b"\x41\x02\xfd\xe9")), (2, 0), None),
    ("multiprotocol length 3", open_wire(cap_param(b"\x01\x03\x00\x01\x00")), (2, 0), None),
    ("route refresh length 1", open_wire(cap_param(b"\x02\x01\x00")), (2, 0), None),
    ("graceful restart length 3", open_wire(cap_param(b"\x40\x03\x00\x78\x00")), (2, 0), None),
    ("add-path length 3", open_wire(cap_param(b"\x45\x03\x00\x01\x01")), (2, 0), None),
    ("extended params cut", open_wire(b"\xff\x00", opt_len=255), (2, 0), None),
    ("extended params length", open_wire(b"\xff\x00\x09\x02\x00\x00", opt_len=255), (2, 0), None),
]


@pytest.mark.parametrize(("name", "wire", "expected", "data"), OPEN_ERRORS)
def test_open_errors(name: str, wire: bytes, expected: tuple[int, int], data: bytes | None) -> None:
    with pytest.raises(WireError) as e:
        decode_message(wire)
    assert (e.value.code, e.value.subcode) == expected
    if data is not None:
        assert e.value.data == data


def test_hold_time_zero_and_three_are_fine() -> None:
    for hold in (0, 3):
        msg = decode_message(open_wire(b"", hold=hold))
        assert isinstance(msg, Open) and msg.hold_time == hold


def test_four_octet_as_in_open() -> None:
    msg = Open(23456, 90, 1, (FourOctetAs(4200000001),))
    assert decode_message(encode_open(msg)).asn == 4200000001  # type: ignore[union-attr]
