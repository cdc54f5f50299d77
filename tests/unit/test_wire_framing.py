"""Framing (split_messages), the message header checks, KEEPALIVE / NOTIFICATION /
ROUTE-REFRESH, and a fuzz test that arbitrary bytes only ever raise WireError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import small_messages

from bgpd.wire import (
    Family,
    Handling,
    IgnoredMessage,
    Keepalive,
    Notification,
    RouteRefresh,
    WireError,
    decode_message,
    encode_keepalive,
    encode_message,
    encode_notification,
    encode_route_refresh,
    split_messages,
)
from bgpd.wire.errors import BadMessageLength
from bgpd.wire.options import CodecOptions

MARKER = b"\xff" * 16


def header(length: int, msg_type: int) -> bytes:
    return MARKER + length.to_bytes(2, "big") + bytes((msg_type,))


KEEPALIVE = header(19, 4)


# --- the three-way framing test (h11's tr()) ----------------------------------------------


def feed_whole(stream: bytes) -> tuple[list[bytes], bytes]:
    return split_messages(stream)


def feed_bytewise(stream: bytes) -> tuple[list[bytes], bytes]:
    got: list[bytes] = []
    buf = b""
    for i in range(len(stream)):
        msgs, buf = split_messages(buf + stream[i : i + 1])
        got.extend(msgs)
    return got, buf


def feed_bytearray(stream: bytes) -> tuple[list[bytes], bytes]:
    return split_messages(bytearray(stream))


def three_way(messages: list[bytes]) -> None:
    stream = b"".join(messages)
    for feed in (feed_whole, feed_bytewise, feed_bytearray):
        got, rest = feed(stream)
        assert got == messages and rest == b""
        assert all(type(m) is bytes for m in got) and type(rest) is bytes
    # With trailing bytes: a partial next message stays in the rest, never raises.
    tail = encode_keepalive()[:11]
    for feed in (feed_whole, feed_bytewise, feed_bytearray):
        got, rest = feed(stream + tail)
        assert got == messages and rest == tail


def test_three_way_small_messages() -> None:
    three_way(
        [
            encode_keepalive(),
            encode_notification(Notification(6, 2, b"bye")),
            encode_route_refresh(RouteRefresh(Family.IPV6_UNICAST, 1)),
            encode_keepalive(),
        ]
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(small_messages, max_size=6))
def test_three_way_generated(msgs: list[object]) -> None:
    three_way([encode_message(m) for m in msgs])  # type: ignore[arg-type]


def test_short_input_never_raises() -> None:
    for n in range(19):
        assert split_messages(b"\x00" * n) == ([], b"\x00" * n)
    assert split_messages(b"") == ([], b"")


def test_max_size() -> None:
    big = header(5000, 2) + bytes(5000 - 19)
    with pytest.raises(BadMessageLength) as e:
        split_messages(big)
    assert e.value.data == (5000).to_bytes(2, "big")
    assert split_messages(big, max_size=65535) == ([big], b"")


# --- header errors ------------------------------------------------------------------------

HEADER_CASES = [
    # (name, message bytes, (code, subcode), data)
    ("bad marker", b"\x00" * 16 + (19).to_bytes(2, "big") + b"\x04", (1, 1), b""),
    ("length 18", header(18, 4), (1, 2), b"\x00\x12"),
    ("length 0", header(0, 4), (1, 2), b"\x00\x00"),
    ("length 4097", header(4097, 2) + bytes(4078), (1, 2), b"\x10\x01"),
]


@pytest.mark.parametrize(("name", "data", "expected", "err_data"), HEADER_CASES)
def test_split_header_errors(
    name: str, data: bytes, expected: tuple[int, int], err_data: bytes
) -> None:
    with pytest.raises(WireError) as e:
        split_messages(KEEPALIVE + data)
    assert (e.value.code, e.value.subcode) == expected
    assert e.value.data == err_data
    assert e.value.handling is Handling.SESSION_RESET


DECODE_CASES = [
    ("bad marker", b"\x00" * 16 + (19).to_bytes(2, "big") + b"\x04", (1, 1)),
    ("type 0", header(19, 0), (1, 3)),
    ("type 6", header(19, 6), (1, 3)),
    ("type 255", header(19, 255), (1, 3)),
    ("keepalive 20", header(20, 4) + b"\x00", (1, 2)),
    ("open 28", header(28, 1) + bytes(9), (1, 2)),
    ("update 22", header(22, 2) + bytes(3), (1, 2)),
    ("notification 20", header(20, 3) + b"\x06", (1, 2)),
    ("route-refresh 22", header(22, 5) + b"\x00\x01\x00", (1, 2)),
    ("route-refresh 24", header(24, 5) + b"\x00\x01\x00\x01\x00", (1, 2)),
    ("borr 24", header(24, 5) + b"\x00\x01\x01\x01\x00", (7, 1)),
    ("eorr 22", header(22, 5) + b"\x00\x01\x02", (7, 1)),
    ("length field != size", header(30, 4), (1, 2)),
    ("over max size", header(4097, 4) + bytes(4078), (1, 2)),
]


@pytest.mark.parametrize(("name", "data", "expected"), DECODE_CASES)
def test_decode_header_errors(name: str, data: bytes, expected: tuple[int, int]) -> None:
    with pytest.raises(WireError) as e:
        decode_message(data)
    assert (e.value.code, e.value.subcode) == expected
    assert e.value.handling is Handling.SESSION_RESET


def test_bad_message_type_data_is_the_type() -> None:
    with pytest.raises(WireError) as e:
        decode_message(header(19, 9))
    assert e.value.data == b"\x09"


def test_bad_length_data_is_the_length_field() -> None:
    with pytest.raises(WireError) as e:
        decode_message(header(20, 4) + b"\x00")
    assert e.value.data == b"\x00\x14"


def test_eorr_wrong_length_data_is_the_message() -> None:
    msg = header(24, 5) + b"\x00\x02\x02\x01\x00"
    with pytest.raises(WireError) as e:
        decode_message(msg)
    assert e.value.data == msg


# --- KEEPALIVE, NOTIFICATION, ROUTE-REFRESH -----------------------------------------------


def test_keepalive() -> None:
    assert encode_keepalive() == KEEPALIVE
    assert decode_message(KEEPALIVE) == Keepalive()
    assert encode_message(Keepalive()) == KEEPALIVE


def test_notification_rfc_example() -> None:
    # Cease / Administrative Shutdown with an RFC 8203 message.
    wire = header(26, 3) + b"\x06\x02\x04" + b"bye!"
    msg = decode_message(wire)
    assert msg == Notification(6, 2, b"\x04bye!")
    assert encode_notification(msg) == wire  # type: ignore[arg-type]


def test_route_refresh() -> None:
    wire = header(23, 5) + b"\x00\x02\x00\x01"
    assert decode_message(wire) == RouteRefresh(Family.IPV6_UNICAST, 0)
    assert encode_route_refresh(RouteRefresh(Family.IPV6_UNICAST)) == wire
    borr = header(23, 5) + b"\x00\x01\x01\x01"
    assert decode_message(borr) == RouteRefresh(Family.IPV4_UNICAST, 1)


@pytest.mark.parametrize(
    "body", [b"\x00\x01\x00\x80", b"\x00\x19\x00\x46", b"\x00\x01\x03\x01", b"\x00\x01\xff\x01"]
)
def test_route_refresh_ignored(body: bytes) -> None:
    # Unknown AFI/SAFI (RFC 2918 4) or subtype (RFC 7313 5): drop, no NOTIFICATION.
    with pytest.raises(IgnoredMessage) as e:
        decode_message(header(23, 5) + body)
    assert e.value.handling is Handling.NONE


@settings(max_examples=200, deadline=None)
@given(small_messages)
def test_small_message_round_trip(msg: object) -> None:
    wire = encode_message(msg)  # type: ignore[arg-type]
    assert decode_message(wire) == msg
    assert encode_message(decode_message(wire)) == wire


# --- fuzz: only WireError, ever -----------------------------------------------------------

OPTS = [
    CodecOptions(),
    CodecOptions(four_octet_as=False),
    CodecOptions(
        add_path_receive=frozenset(Family), add_path_send=frozenset(Family), extended_message=True
    ),
]


def _only_wire_errors(data: bytes) -> None:
    try:
        messages, _ = split_messages(data, 65535)
    except WireError:
        return
    for m in messages:
        for opts in OPTS:
            with contextlib.suppress(WireError):
                decode_message(m, opts)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_raw_bytes(data: bytes) -> None:
    _only_wire_errors(data)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([1, 2, 3, 4, 5, 0, 7]), st.binary(max_size=300))
def test_fuzz_framed_bodies(msg_type: int, body: bytes) -> None:
    # A valid header in front, so the body reaches the per-type decoders.
    _only_wire_errors(header(19 + len(body), msg_type) + body)
