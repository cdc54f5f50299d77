"""UPDATE encode/decode: attributes, NLRI, MP_REACH/MP_UNREACH, ADD-PATH, 2-octet AS peers,
the packers the Adj-RIB-Out uses, and RFC 7606 handling of malformed UPDATEs."""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from wire_strategies import as_paths, path_attributes, prefix_items, updates

from bgpd.wire import (
    ATTRS,
    CodecOptions,
    EncodeError,
    Family,
    Handling,
    MpReach,
    MpUnreach,
    PathAttributes,
    UnknownAttribute,
    Update,
    WireError,
    decode_message,
    encode_attributes,
    encode_end_of_rib,
    encode_update,
    pack_announcements,
    pack_withdrawals,
    split_messages,
)
from bgpd.wire.attributes import AS_CONFED_SEQUENCE, AS_SEQUENCE, AS_SET
from bgpd.wire.family import prefix_to_nlri

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
MARKER = b"\xff" * 16
TWO = CodecOptions(four_octet_as=False)
FOUR = CodecOptions()
BIG = CodecOptions(extended_message=True)


def p(prefix: str) -> bytes:
    return prefix_to_nlri(prefix)[1]


def attr(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10:
        return bytes((flags, code)) + len(value).to_bytes(2, "big") + value
    return bytes((flags, code, len(value))) + value


def update_wire(withdrawn: bytes = b"", attrs: bytes = b"", nlri: bytes = b"") -> bytes:
    body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(attrs).to_bytes(2, "big")
    body += attrs + nlri
    return MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


ORIGIN_IGP = attr(0x40, 1, b"\x00")
AS_PATH_65001 = attr(0x40, 2, b"\x02\x01\x00\x00\xfd\xe9")
NH_10_0_0_1 = attr(0x40, 3, b"\x0a\x00\x00\x01")
LOCAL_PREF_100 = attr(0x40, 5, b"\x00\x00\x00\x64")
BASE = ORIGIN_IGP + AS_PATH_65001 + NH_10_0_0_1 + LOCAL_PREF_100
NLRI = p("10.1.0.0/16") + p("192.168.7.0/24")


def v6_reach(nlri: bytes, nh: bytes = bytes.fromhex("20010db8000000000000000000000001")) -> bytes:
    return attr(0x80, 14, b"\x00\x02\x01" + bytes((len(nh),)) + nh + b"\x00" + nlri)


# --- hand-built examples ------------------------------------------------------------------


def test_ipv4_announcement() -> None:
    msg = decode_message(update_wire(attrs=BASE, nlri=NLRI))
    assert msg == Update(
        attributes=PathAttributes(
            origin=0,
            as_path=((AS_SEQUENCE, (65001,)),),
            next_hop=b"\x0a\x00\x00\x01",
            local_pref=100,
        ),
        nlri=(p("10.1.0.0/16"), p("192.168.7.0/24")),
    )
    assert encode_update(msg) == update_wire(attrs=BASE, nlri=NLRI)  # type: ignore[arg-type]


def test_withdrawal_and_end_of_rib() -> None:
    msg = decode_message(update_wire(withdrawn=NLRI))
    assert msg == Update(withdrawn=(p("10.1.0.0/16"), p("192.168.7.0/24")))
    assert msg.end_of_rib is None  # type: ignore[union-attr]
    eor = decode_message(update_wire())
    assert isinstance(eor, Update) and eor.end_of_rib is V4
    assert encode_end_of_rib(V4) == update_wire()
    eor6 = decode_message(encode_end_of_rib(V6))
    assert isinstance(eor6, Update) and eor6.end_of_rib is V6
    assert encode_end_of_rib(V6) == update_wire(attrs=attr(0x80, 15, b"\x00\x02\x01"))


def test_end_of_rib_in_mp_unreach_example() -> None:
    # The example in ExaBGP's `decode` help: End-of-RIB for IPv4 unicast sent as an empty
    # MP_UNREACH_NLRI with the extended length bit set.
    wire = bytes.fromhex("ff" * 16 + "001e0200000007900f0003000101")
    msg = decode_message(wire)
    assert msg == Update(mp_unreach=MpUnreach(V4, ()))
    assert isinstance(msg, Update) and msg.end_of_rib is V4


def test_ipv6_announcement() -> None:
    nh = bytes.fromhex("20010db8000000000000000000000001")
    wire = update_wire(attrs=v6_reach(p("2001:db8:1::/48")) + ORIGIN_IGP + AS_PATH_65001)
    msg = decode_message(wire)
    assert msg == Update(
        attributes=PathAttributes(as_path=((AS_SEQUENCE, (65001,)),), next_hop=nh),
        mp_reach=MpReach(V6, nh, (p("2001:db8:1::/48"),)),
    )
    assert encode_update(msg) == wire  # type: ignore[arg-type]


def test_ipv6_link_local_next_hop_and_ignored_next_hop_attribute() -> None:
    nh = bytes(range(32))
    wire = update_wire(attrs=v6_reach(p("::/0"), nh) + ORIGIN_IGP + AS_PATH_65001 + NH_10_0_0_1)
    msg = decode_message(wire)
    # Only MP NLRI: NEXT_HOP is ignored (RFC 4760 3), the MP next hop is the one.
    assert isinstance(msg, Update) and msg.error is None
    assert msg.attributes is not None and msg.attributes.next_hop == nh
    assert msg.mp_reach == MpReach(V6, nh, (b"\x00",))


def test_host_bits_kept_as_received() -> None:
    msg = decode_message(
        update_wire(attrs=BASE, nlri=b"\x18\x0a\x01\x02" + b"\x1f\xff\xff\xff\xff")
    )
    assert isinstance(msg, Update) and msg.nlri == (b"\x18\x0a\x01\x02", b"\x1f\xff\xff\xff\xff")


def test_add_path_items() -> None:
    opts = CodecOptions(add_path_receive=frozenset({V4}))
    nlri = b"\x00\x00\x00\x01" + p("10.0.0.0/8") + b"\x00\x00\x00\x02" + p("10.0.0.0/8")
    msg = decode_message(update_wire(attrs=BASE, nlri=nlri), opts)
    assert isinstance(msg, Update)
    assert msg.nlri == (b"\x00\x00\x00\x01\x08\x0a", b"\x00\x00\x00\x02\x08\x0a")
    # The same bytes without ADD-PATH are a malformed NLRI field (a /0 then junk).
    with pytest.raises(WireError):
        decode_message(update_wire(attrs=BASE, nlri=nlri))


def test_all_attributes_rfc_layout() -> None:
    attrs = (
        attr(0x40, 1, b"\x02")
        + attr(0x40, 2, b"\x02\x02\x00\x00\xfd\xe9\xfa\x56\xea\x01" + b"\x01\x01\x00\x00\x00\x07")
        + NH_10_0_0_1
        + attr(0x80, 4, b"\x00\x00\x00\x32")
        + LOCAL_PREF_100
        + attr(0x40, 6, b"")
        + attr(0xC0, 7, b"\x00\x00\xfd\xe9\xc0\x00\x02\x01")
        + attr(0xC0, 8, b"\xfd\xe9\x00\x01\xff\xff\xff\x01")
        + attr(0x80, 9, b"\x0a\x00\x00\x09")
        + attr(0x80, 10, b"\x01\x01\x01\x01\x02\x02\x02\x02")
        + attr(0xE0, 99, b"opaque")
        + attr(0xC0, 32, struct.pack(">3I", 65001, 1, 2))
    )
    msg = decode_message(update_wire(attrs=attrs, nlri=NLRI))
    assert isinstance(msg, Update) and msg.error is None
    assert msg.attributes == PathAttributes(
        origin=2,
        as_path=((AS_SEQUENCE, (65001, 4200000001)), (AS_SET, (7,))),
        next_hop=b"\x0a\x00\x00\x01",
        med=50,
        local_pref=100,
        atomic_aggregate=True,
        aggregator=(65001, b"\xc0\x00\x02\x01"),
        communities=(0xFDE90001, 0xFFFFFF01),
        large_communities=((65001, 1, 2),),
        originator_id=0x0A000009,
        cluster_list=(0x01010101, 0x02020202),
        unknown=(UnknownAttribute(0xE0, 99, b"opaque"),),
    )
    # Re-encoded in type-code order: the unknown one (99) moves after LARGE_COMMUNITIES (32).
    expected = attrs.replace(attr(0xE0, 99, b"opaque"), b"") + attr(0xE0, 99, b"opaque")
    assert encode_update(msg) == update_wire(attrs=expected, nlri=NLRI)


def test_unknown_attributes_on_reencode() -> None:
    attrs = BASE + attr(0xC0, 99, b"t") + attr(0x80, 98, b"n") + attr(0xD0, 97, b"x" * 300)
    msg = decode_message(update_wire(attrs=attrs, nlri=NLRI))
    assert isinstance(msg, Update) and msg.attributes is not None
    assert {u.type_code for u in msg.attributes.unknown} == {97, 98, 99}
    again = decode_message(encode_update(msg))
    assert isinstance(again, Update) and again.attributes is not None
    # Transitive ones pass with PARTIAL set; the non-transitive one is dropped.
    assert again.attributes.unknown == (
        UnknownAttribute(0xE0, 97, b"x" * 300),
        UnknownAttribute(0xE0, 99, b"t"),
    )


def test_extended_length_attribute() -> None:
    comms = struct.pack(">70I", *range(70))
    msg = decode_message(update_wire(attrs=BASE + attr(0xD0, 8, comms), nlri=NLRI))
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.communities == tuple(range(70))
    assert b"\xd0\x08\x01\x18" in encode_update(msg)  # type: ignore[arg-type]


# --- 2-octet AS peers (RFC 6793) ----------------------------------------------------------


def test_two_octet_peer_encoding() -> None:
    attrs = PathAttributes(
        as_path=((AS_SEQUENCE, (65001, 4200000001)),),
        next_hop=b"\x0a\x00\x00\x01",
        aggregator=(4200000001, b"\x0a\x00\x00\x02"),
    )
    block = encode_attributes(attrs, V4, TWO)
    assert attr(0x40, 2, b"\x02\x02\xfd\xe9\x5b\xa0") in block  # AS_TRANS = 23456
    assert attr(0xC0, 7, b"\x5b\xa0\x0a\x00\x00\x02") in block
    assert attr(0xC0, 17, b"\x02\x02\x00\x00\xfd\xe9\xfa\x56\xea\x01") in block
    assert attr(0xC0, 18, b"\xfa\x56\xea\x01\x0a\x00\x00\x02") in block
    [wire] = pack_announcements(V4, attrs, [p("10.0.0.0/8")], TWO)
    msg = decode_message(wire, TWO)
    assert isinstance(msg, Update) and msg.attributes == attrs
    # A 4-octet peer sends no AS4_* at all.
    assert b"\xc0\x11" not in encode_attributes(attrs, V4, CodecOptions())


def test_as4_path_merge_keeps_leading_old_ases() -> None:
    # An OLD speaker (AS 65002) prepended itself after the AS4_PATH was built.
    as_path = attr(0x40, 2, b"\x02\x03\xfd\xea\x5b\xa0\xfd\xe9")
    as4_path = attr(0xC0, 17, b"\x02\x02\xfa\x56\xea\x01\x00\x00\xfd\xe9")
    msg = decode_message(
        update_wire(attrs=ORIGIN_IGP + as_path + NH_10_0_0_1 + as4_path, nlri=NLRI), TWO
    )
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.as_path == ((AS_SEQUENCE, (65002,)), (AS_SEQUENCE, (4200000001, 65001)))


def test_as4_path_ignored_when_longer_or_aggregated_by_old() -> None:
    as_path = attr(0x40, 2, b"\x02\x01\x5b\xa0")
    as4_long = attr(0xC0, 17, b"\x02\x02\xfa\x56\xea\x01\x00\x00\xfd\xe9")
    msg = decode_message(
        update_wire(attrs=ORIGIN_IGP + as_path + NH_10_0_0_1 + as4_long, nlri=NLRI), TWO
    )
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.as_path == ((AS_SEQUENCE, (23456,)),)
    as4 = attr(0xC0, 17, b"\x02\x01\xfa\x56\xea\x01")
    agg = attr(0xC0, 7, b"\xfd\xe9\x0a\x00\x00\x02")
    msg = decode_message(
        update_wire(attrs=ORIGIN_IGP + as_path + NH_10_0_0_1 + agg + as4, nlri=NLRI), TWO
    )
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.as_path == ((AS_SEQUENCE, (23456,)),)
    assert msg.attributes.aggregator == (65001, b"\x0a\x00\x00\x02")


def test_as4_attributes_from_new_peer_are_discarded() -> None:
    as4 = attr(0xC0, 17, b"\x02\x01\xfa\x56\xea\x01")
    msg = decode_message(update_wire(attrs=BASE + as4, nlri=NLRI))
    assert isinstance(msg, Update) and msg.error is None and msg.attributes is not None
    assert msg.attributes.as_path == ((AS_SEQUENCE, (65001,)),)
    assert msg.attributes.unknown == ()


# --- packers ------------------------------------------------------------------------------


def _collect(wires: list[bytes], opts: CodecOptions = FOUR) -> tuple[list[bytes], list[Update]]:
    items: list[bytes] = []
    msgs = []
    for w in wires:
        assert len(w) <= opts.max_message_size
        m = decode_message(w, opts)
        assert isinstance(m, Update) and m.error is None
        msgs.append(m)
        items += m.nlri + (m.mp_reach.nlri if m.mp_reach else ()) + m.withdrawn
        items += m.mp_unreach.withdrawn if m.mp_unreach else ()
    return items, msgs


@pytest.mark.parametrize("opts", [CodecOptions(), BIG])
def test_pack_announcements_split_ipv4(opts: CodecOptions) -> None:
    attrs = PathAttributes(next_hop=b"\x0a\x00\x00\x01", local_pref=100, communities=(1, 2, 3))
    items = [p(f"10.{i // 256}.{i % 256}.0/24") for i in range(5000)]
    wires = pack_announcements(V4, attrs, items, opts)
    assert len(wires) == -(
        -len(items) * 4 // (opts.max_message_size - 23 - len(encode_attributes(attrs, V4, opts)))
    )
    got, msgs = _collect(wires, opts)
    assert got == items and all(m.attributes == attrs for m in msgs)
    block = encode_attributes(attrs, V4, opts)
    assert pack_announcements(V4, attrs, items, opts, attr_block=block) == wires


def test_pack_announcements_split_ipv6_add_path() -> None:
    opts = CodecOptions(add_path_receive=frozenset({V6}), add_path_send=frozenset({V6}))
    nh = bytes.fromhex("20010db8000000000000000000000001")
    attrs = PathAttributes(next_hop=nh, as_path=((AS_SEQUENCE, (65001,)),))
    items = [i.to_bytes(4, "big") + p(f"2001:db8:{i:x}::/48") for i in range(2000)]
    wires = pack_announcements(V6, attrs, items, opts)
    assert len(wires) > 1
    got, msgs = _collect(wires, opts)
    assert got == items and all(m.attributes == attrs for m in msgs)
    assert b"\x40\x03" not in encode_attributes(attrs, V6, opts)  # no NEXT_HOP for IPv6


def test_pack_withdrawals() -> None:
    items4 = [p(f"10.{i // 256}.{i % 256}.0/24") for i in range(3000)]
    wires = pack_withdrawals(V4, items4, CodecOptions())
    assert len(wires) == 3
    assert _collect(wires)[0] == items4
    items6 = [p(f"2001:db8:{i:x}::/48") for i in range(1000)]
    wires = pack_withdrawals(V6, items6, CodecOptions())
    assert _collect(wires)[0] == items6
    assert pack_withdrawals(V4, [], CodecOptions()) == []
    assert pack_announcements(V4, PathAttributes(), [], CodecOptions()) == []


def test_pack_errors() -> None:
    with pytest.raises(EncodeError):
        pack_announcements(V6, PathAttributes(next_hop=b"\x0a\x00\x00\x01"), [p("::/0")])
    huge = PathAttributes(next_hop=b"\x0a\x00\x00\x01", communities=tuple(range(1100)))
    with pytest.raises(EncodeError):
        pack_announcements(V4, huge, [p("10.0.0.0/8")])
    assert len(pack_announcements(V4, huge, [p("10.0.0.0/8")], BIG)) == 1


def test_stream_of_packed_updates_frames() -> None:
    attrs = PathAttributes(next_hop=b"\x0a\x00\x00\x01")
    wires = pack_announcements(V4, attrs, [p(f"10.0.{i % 256}.{i // 256}/32") for i in range(3000)])
    stream = b"".join(wires)
    msgs, rest = split_messages(stream)
    assert msgs == wires and rest == b""


# --- round-trip properties ----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(updates())
def test_update_round_trip(msg: Update) -> None:
    wire = encode_update(msg, BIG)
    assert decode_message(wire, BIG) == msg
    assert encode_update(decode_message(wire, BIG), BIG) == wire  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(updates(add_path=frozenset(Family)))
def test_update_round_trip_add_path(msg: Update) -> None:
    opts = CodecOptions(add_path_receive=frozenset(Family), extended_message=True)
    assert decode_message(encode_update(msg, opts), opts) == msg


@settings(max_examples=200, deadline=None)
@given(
    path_attributes(max_asn=0xFFFFFFFF, confed=False).filter(
        lambda a: a.aggregator is None or a.aggregator[0] > 0xFFFF
    )
    | path_attributes(max_asn=0xFFFF),
    st.lists(prefix_items(V4), min_size=1, max_size=5),
)
def test_two_octet_round_trip(attrs: PathAttributes, items: list[bytes]) -> None:
    opts = CodecOptions(four_octet_as=False, extended_message=True)
    [wire] = pack_announcements(V4, attrs, items, opts)
    msg = decode_message(wire, opts)
    assert isinstance(msg, Update) and msg.error is None
    assert msg.attributes == attrs and list(msg.nlri) == items


@settings(max_examples=150, deadline=None)
@given(
    path_attributes(st.binary(min_size=16, max_size=16)),
    st.lists(prefix_items(V6), min_size=1, max_size=8),
)
def test_ipv6_pack_round_trip(attrs: PathAttributes, items: list[bytes]) -> None:
    wires = pack_announcements(V6, attrs, items, BIG)
    got, msgs = _collect(wires, BIG)
    assert got == items and all(m.attributes == attrs for m in msgs)


def test_memo_distinguishes_as_sizes() -> None:
    # The same octets mean different paths to 4-octet and 2-octet sessions.
    wire = update_wire(
        attrs=ORIGIN_IGP + attr(0x40, 2, bytes.fromhex("02020001000202010003")) + NH_10_0_0_1,
        nlri=NLRI,
    )
    for _ in range(2):
        four, two = decode_message(wire), decode_message(wire, TWO)
        assert isinstance(four, Update) and isinstance(two, Update)
        assert four.attributes and four.attributes.as_path == ((AS_SEQUENCE, (0x10002, 0x2010003)),)
        assert two.attributes and two.attributes.as_path == (
            (AS_SEQUENCE, (1, 2)),
            (AS_SEQUENCE, (3,)),
        )


def test_confed_segments_round_trip() -> None:
    attrs = PathAttributes(
        as_path=((AS_CONFED_SEQUENCE, (65010, 65011)), (AS_SEQUENCE, (65001,))),
        next_hop=b"\x0a\x00\x00\x01",
    )
    [wire] = pack_announcements(V4, attrs, [p("10.0.0.0/8")])
    msg = decode_message(wire)
    assert isinstance(msg, Update) and msg.attributes == attrs


def test_long_as_path_segment_split() -> None:
    attrs = PathAttributes(
        as_path=((AS_SEQUENCE, tuple(range(1, 301))),), next_hop=b"\x0a\x00\x00\x01"
    )
    [wire] = pack_announcements(V4, attrs, [p("10.0.0.0/8")])
    msg = decode_message(wire)
    assert isinstance(msg, Update) and msg.attributes is not None
    assert msg.attributes.as_path == (
        (AS_SEQUENCE, tuple(range(1, 256))),
        (AS_SEQUENCE, tuple(range(256, 301))),
    )
    assert msg.attributes.as_path_length() == 300


def test_every_registered_attribute_has_a_spec_that_round_trips_its_flags() -> None:
    for code, spec in ATTRS.items():
        assert spec.code == code
        assert spec.flags in (0x40, 0x80, 0xC0)


# --- RFC 7606: malformed UPDATEs ----------------------------------------------------------

W, D, R = Handling.TREAT_AS_WITHDRAW, Handling.ATTRIBUTE_DISCARD, Handling.SESSION_RESET
MP_BASE = ORIGIN_IGP + AS_PATH_65001


def body_wire(body: bytes) -> bytes:
    return MARKER + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


MALFORMED: list[tuple[str, bytes, tuple[int, int], Handling]] = [
    # Fatal: the message cannot be parsed far enough to withdraw anything.
    ("withdrawn length overruns", body_wire(b"\x00\x10\x08\x0a"), (3, 1), R),
    ("attribute length overruns", body_wire(b"\x00\x00\x00\x20" + ORIGIN_IGP), (3, 1), R),
    ("no room for attribute length", body_wire(b"\x00\x01\x00\x00"), (3, 1), R),
    ("withdrawn prefix /33", update_wire(withdrawn=b"\x21\x0a\x00\x00\x00\x00"), (3, 10), R),
    ("withdrawn overruns field", update_wire(withdrawn=b"\x18\x0a\x00"), (3, 10), R),
    ("nlri overruns message", update_wire(attrs=BASE, nlri=b"\x18\x0a\x00"), (3, 10), R),
    ("nlri prefix /40", update_wire(attrs=BASE, nlri=b"\x28" + bytes(5)), (3, 10), R),
    (
        "mp_reach overruns block",
        update_wire(attrs=MP_BASE + b"\x80\x0e\x30\x00\x02\x01"),
        (3, 1),
        R,
    ),
    ("mp_reach truncated", update_wire(attrs=MP_BASE + attr(0x80, 14, b"\x00\x02\x01")), (3, 9), R),
    (
        "mp_reach nh overruns",
        update_wire(attrs=MP_BASE + attr(0x80, 14, b"\x00\x02\x01\x10" + bytes(4))),
        (3, 9),
        R,
    ),
    (
        "mp_reach v6 nh length 4",
        update_wire(attrs=MP_BASE + attr(0x80, 14, b"\x00\x02\x01\x04" + bytes(5))),
        (3, 9),
        R,
    ),
    (
        "mp_reach v4 nh length 16",
        update_wire(attrs=MP_BASE + attr(0x80, 14, b"\x00\x01\x01\x10" + bytes(17))),
        (3, 9),
        R,
    ),
    ("mp_reach prefix /129", update_wire(attrs=MP_BASE + v6_reach(b"\x81" + bytes(17))), (3, 9), R),
    ("mp_reach nlri overruns", update_wire(attrs=MP_BASE + v6_reach(b"\x40\x20\x01")), (3, 9), R),
    ("mp_unreach truncated", update_wire(attrs=attr(0x80, 15, b"\x00\x02")), (3, 9), R),
    (
        "mp_unreach prefix /33",
        update_wire(attrs=attr(0x80, 15, b"\x00\x01\x01\x21" + bytes(5))),
        (3, 9),
        R,
    ),
    ("duplicate mp_reach", update_wire(attrs=MP_BASE + v6_reach(b"") + v6_reach(b"")), (3, 1), R),
    ("duplicate mp_unreach", update_wire(attrs=attr(0x80, 15, b"\x00\x02\x01") * 2), (3, 1), R),
    (
        "mp_reach transitive flag",
        update_wire(attrs=MP_BASE + b"\xc0" + v6_reach(b"")[1:]),
        (3, 4),
        R,
    ),
    ("unknown well-known", update_wire(attrs=BASE + attr(0x40, 99, b"x"), nlri=NLRI), (3, 2), R),
    ("framing error, no nlri", update_wire(attrs=ORIGIN_IGP + b"\x40\x02\x09\x02"), (3, 1), R),
    # Treat-as-withdraw.
    ("framing error", update_wire(attrs=BASE + b"\x40\x05\x09\x00", nlri=NLRI), (3, 1), W),
    ("header cut short", update_wire(attrs=BASE + b"\x40\x05", nlri=NLRI), (3, 1), W),
    ("ext header cut short", update_wire(attrs=BASE + b"\x50\x05\x00", nlri=NLRI), (3, 1), W),
    (
        "origin flags optional",
        update_wire(attrs=attr(0xC0, 1, b"\x00") + BASE[4:], nlri=NLRI),
        (3, 4),
        W,
    ),
    (
        "local_pref partial",
        update_wire(attrs=BASE[:-7] + attr(0x60, 5, bytes(4)), nlri=NLRI),
        (3, 4),
        W,
    ),
    (
        "med flags transitive",
        update_wire(attrs=BASE + attr(0xC0, 4, bytes(4)), nlri=NLRI),
        (3, 4),
        W,
    ),
    ("missing origin", update_wire(attrs=BASE[4:], nlri=NLRI), (3, 3), W),
    ("missing as_path", update_wire(attrs=ORIGIN_IGP + NH_10_0_0_1, nlri=NLRI), (3, 3), W),
    ("missing next_hop", update_wire(attrs=ORIGIN_IGP + AS_PATH_65001, nlri=NLRI), (3, 3), W),
    ("missing origin for mp", update_wire(attrs=AS_PATH_65001 + v6_reach(p("::/0"))), (3, 3), W),
    ("no attributes at all", update_wire(nlri=NLRI), (3, 3), W),
    (
        "next_hop length 5",
        update_wire(attrs=MP_BASE + attr(0x40, 3, bytes(5)), nlri=NLRI),
        (3, 5),
        W,
    ),
    (
        "next_hop 0.0.0.0",
        update_wire(attrs=MP_BASE + attr(0x40, 3, bytes(4)), nlri=NLRI),
        (3, 8),
        W,
    ),
    (
        "next_hop 127.0.0.1",
        update_wire(attrs=MP_BASE + attr(0x40, 3, b"\x7f\x00\x00\x01"), nlri=NLRI),
        (3, 8),
        W,
    ),
    (
        "next_hop 224.0.0.5",
        update_wire(attrs=MP_BASE + attr(0x40, 3, b"\xe0\x00\x00\x05"), nlri=NLRI),
        (3, 8),
        W,
    ),
    (
        "next_hop 240.0.0.1",
        update_wire(attrs=MP_BASE + attr(0x40, 3, b"\xf0\x00\x00\x01"), nlri=NLRI),
        (3, 8),
        W,
    ),
    ("origin 3", update_wire(attrs=attr(0x40, 1, b"\x03") + BASE[4:], nlri=NLRI), (3, 6), W),
    (
        "origin length 2",
        update_wire(attrs=attr(0x40, 1, b"\x00\x00") + BASE[4:], nlri=NLRI),
        (3, 5),
        W,
    ),
    (
        "as_path segment overrun",
        update_wire(
            attrs=ORIGIN_IGP + attr(0x40, 2, b"\x02\x02\x00\x00\xfd\xe9") + NH_10_0_0_1, nlri=NLRI
        ),
        (3, 11),
        W,
    ),
    (
        "as_path zero-length segment",
        update_wire(attrs=ORIGIN_IGP + attr(0x40, 2, b"\x02\x00") + NH_10_0_0_1, nlri=NLRI),
        (3, 11),
        W,
    ),
    (
        "as_path segment type 5",
        update_wire(
            attrs=ORIGIN_IGP + attr(0x40, 2, b"\x05\x01\x00\x00\x00\x01") + NH_10_0_0_1, nlri=NLRI
        ),
        (3, 11),
        W,
    ),
    (
        "as_path one trailing octet",
        update_wire(
            attrs=ORIGIN_IGP + attr(0x40, 2, AS_PATH_65001[3:] + b"\x02") + NH_10_0_0_1, nlri=NLRI
        ),
        (3, 11),
        W,
    ),
    ("med length 3", update_wire(attrs=BASE + attr(0x80, 4, bytes(3)), nlri=NLRI), (3, 5), W),
    (
        "local_pref length 2",
        update_wire(attrs=BASE[:-7] + attr(0x40, 5, bytes(2)), nlri=NLRI),
        (3, 5),
        W,
    ),
    (
        "communities length 5",
        update_wire(attrs=BASE + attr(0xC0, 8, bytes(5)), nlri=NLRI),
        (3, 5),
        W,
    ),
    ("communities length 0", update_wire(attrs=BASE + attr(0xC0, 8, b""), nlri=NLRI), (3, 5), W),
    (
        "large communities length 13",
        update_wire(attrs=BASE + attr(0xC0, 32, bytes(13)), nlri=NLRI),
        (3, 5),
        W,
    ),
    (
        "originator_id length 3",
        update_wire(attrs=BASE + attr(0x80, 9, bytes(3)), nlri=NLRI),
        (3, 5),
        W,
    ),
    (
        "cluster_list length 6",
        update_wire(attrs=BASE + attr(0x80, 10, bytes(6)), nlri=NLRI),
        (3, 5),
        W,
    ),
    ("cluster_list length 0", update_wire(attrs=BASE + attr(0x80, 10, b""), nlri=NLRI), (3, 5), W),
    (
        "worst wins",
        update_wire(attrs=attr(0x40, 1, b"\x07") + BASE[4:] + attr(0xC0, 7, bytes(3)), nlri=NLRI),
        (3, 6),
        W,
    ),
    # Attribute discard.
    ("duplicate origin", update_wire(attrs=BASE + attr(0x40, 1, b"\x02"), nlri=NLRI), (3, 1), D),
    (
        "aggregator length 7",
        update_wire(attrs=BASE + attr(0xC0, 7, bytes(7)), nlri=NLRI),
        (3, 5),
        D,
    ),
    (
        "aggregator well-known flags",
        update_wire(attrs=BASE + attr(0x40, 7, bytes(8)), nlri=NLRI),
        (3, 4),
        D,
    ),
    (
        "atomic_aggregate length 1",
        update_wire(attrs=BASE + attr(0x40, 6, b"\x00"), nlri=NLRI),
        (3, 5),
        D,
    ),
    (
        "mp_reach unknown family",
        update_wire(attrs=MP_BASE + attr(0x80, 14, b"\x00\x01\x80\x04" + bytes(5))),
        (3, 9),
        D,
    ),
]


@pytest.mark.parametrize(
    ("name", "wire", "expected", "handling"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_update(
    name: str, wire: bytes, expected: tuple[int, int], handling: Handling
) -> None:
    for _ in range(2):  # the second time through the memo
        if handling is R:
            with pytest.raises(WireError) as e:
                decode_message(wire)
            err = e.value
        else:
            msg = decode_message(wire)
            assert isinstance(msg, Update) and msg.error is not None
            err = msg.error
        assert (err.code, err.subcode) == expected
        assert err.handling is handling


def test_treat_as_withdraw_moves_everything_to_withdrawn() -> None:
    bad_origin = attr(0x40, 1, b"\x09")
    wire = update_wire(
        withdrawn=p("10.9.0.0/16"),
        attrs=v6_reach(p("2001:db8::/32"))
        + attr(0x80, 15, b"\x00\x02\x01" + p("2001:db8:1::/48"))
        + bad_origin
        + AS_PATH_65001
        + NH_10_0_0_1,
        nlri=NLRI,
    )
    msg = decode_message(wire)
    assert isinstance(msg, Update)
    assert msg.attributes is None and msg.nlri == () and msg.mp_reach is None
    assert msg.withdrawn == (p("10.9.0.0/16"), p("10.1.0.0/16"), p("192.168.7.0/24"))
    assert msg.mp_unreach == MpUnreach(V6, (p("2001:db8:1::/48"), p("2001:db8::/32")))


def test_treat_as_withdraw_mixed_families() -> None:
    wire = update_wire(
        attrs=v6_reach(p("2001:db8::/32"))
        + attr(0x80, 15, b"\x00\x01\x01" + p("10.7.0.0/16"))
        + attr(0x40, 1, b"\x09")
        + AS_PATH_65001,
    )
    msg = decode_message(wire)
    assert isinstance(msg, Update) and msg.error is not None
    assert msg.withdrawn == (p("10.7.0.0/16"),)
    assert msg.mp_unreach == MpUnreach(V6, (p("2001:db8::/32"),))


def test_attribute_discard_keeps_the_rest() -> None:
    msg = decode_message(
        update_wire(attrs=BASE + attr(0xC0, 7, bytes(7)) + attr(0x40, 1, b"\x02"), nlri=NLRI)
    )
    assert isinstance(msg, Update) and msg.error is not None
    assert msg.nlri == (p("10.1.0.0/16"), p("192.168.7.0/24"))
    assert msg.attributes is not None
    assert msg.attributes.aggregator is None and msg.attributes.origin == 0  # first ORIGIN kept
    assert msg.attributes.local_pref == 100


def test_martian_next_hop_ignored_without_ipv4_nlri() -> None:
    wire = update_wire(attrs=MP_BASE + attr(0x40, 3, bytes(4)) + v6_reach(p("2001:db8::/32")))
    msg = decode_message(wire)
    assert isinstance(msg, Update) and msg.error is None and msg.mp_reach is not None


def test_withdraw_only_update_ignores_attribute_checks() -> None:
    # Attributes without NLRI: missing mandatory ones do not matter (nothing to announce).
    msg = decode_message(update_wire(withdrawn=NLRI, attrs=LOCAL_PREF_100))
    assert isinstance(msg, Update) and msg.error is None
    assert msg.withdrawn == (p("10.1.0.0/16"), p("192.168.7.0/24"))


def test_two_octet_session_aggregator_length() -> None:
    wire = update_wire(
        attrs=BASE[:4] + attr(0x40, 2, b"\x02\x01\xfd\xe9") + NH_10_0_0_1 + attr(0xC0, 7, bytes(8)),
        nlri=NLRI,
    )
    msg = decode_message(wire, TWO)
    assert isinstance(msg, Update) and msg.error is not None and msg.error.handling is D
    bad_as4 = attr(0xC0, 17, b"\x02\x05\x00")
    msg = decode_message(
        update_wire(
            attrs=BASE[:4] + attr(0x40, 2, b"\x02\x01\xfd\xe9") + NH_10_0_0_1 + bad_as4, nlri=NLRI
        ),
        TWO,
    )
    assert isinstance(msg, Update) and msg.error is not None and msg.error.handling is D
    assert msg.attributes is not None and msg.attributes.as_path == ((AS_SEQUENCE, (65001,)),)


@settings(max_examples=300, deadline=None)
@given(updates(), st.data())
def test_mutated_updates_raise_only_wire_errors(msg: Update, data: st.DataObject) -> None:
    wire = bytearray(encode_update(msg, BIG))
    assume(len(wire) > 19)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(19, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    for opts in (
        BIG,
        CodecOptions(four_octet_as=False, extended_message=True),
        CodecOptions(add_path_receive=frozenset(Family), extended_message=True),
    ):
        try:
            out = decode_message(bytes(wire), opts)
        except WireError:
            continue
        assert isinstance(out, Update)
        if out.error is not None:
            assert out.error.handling in (D, W)


@settings(max_examples=100, deadline=None)
@given(as_paths(), st.lists(prefix_items(V4), min_size=1, max_size=3))
def test_as_path_round_trip(
    path: tuple[tuple[int, tuple[int, ...]], ...], items: list[bytes]
) -> None:
    attrs = PathAttributes(as_path=path, next_hop=b"\x0a\x00\x00\x01")
    [wire] = pack_announcements(V4, attrs, items)
    msg = decode_message(wire)
    assert isinstance(msg, Update) and msg.attributes == attrs
