"""BFD control packets (RFC 5880 4.1): round trips, the exact octets, and each 6.8.6 discard
rule the decoder applies, plus arbitrary bytes that may only ever raise BfdPacketError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.bfd.errors import (
    AuthenticationPresent,
    BadLength,
    BadVersion,
    BfdPacketError,
    LocalBfdError,
    MultipointSet,
    PollAndFinal,
    TooShort,
    ZeroDetectMult,
    ZeroMyDiscriminator,
)
from bgpd.bfd.packet import (
    LENGTH,
    ControlPacket,
    Diag,
    State,
    decode_control,
    describe_diag,
    encode_control,
)

U32 = st.integers(0, 2**32 - 1)


@st.composite
def packets(draw: st.DrawFn) -> ControlPacket:
    poll = draw(st.booleans())
    return ControlPacket(
        state=draw(st.sampled_from(State)),
        detect_mult=draw(st.integers(1, 255)),
        my_discriminator=draw(st.integers(1, 2**32 - 1)),
        your_discriminator=draw(U32),
        desired_min_tx=draw(U32),
        required_min_rx=draw(U32),
        required_min_echo_rx=draw(U32),
        diag=draw(st.integers(0, 31)),
        poll=poll,
        final=not poll and draw(st.booleans()),
        control_plane_independent=draw(st.booleans()),
        demand=draw(st.booleans()),
    )


@given(packets())
def test_round_trip(packet: ControlPacket) -> None:
    data = encode_control(packet)
    assert len(data) == LENGTH
    assert decode_control(data) == packet


@given(packets(), st.binary(max_size=40))
def test_octets_past_the_length_field_are_ignored(packet: ControlPacket, tail: bytes) -> None:
    assert decode_control(encode_control(packet) + tail) == packet


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_bfd_packet_error(data: bytes) -> None:
    try:
        packet = decode_control(data)
    except BfdPacketError:
        return
    # What decodes re-encodes to the same mandatory section (reserved bits aside).
    if data[3] == LENGTH:
        assert encode_control(packet) == data[:LENGTH]


def test_known_octets() -> None:
    # An Up packet with Poll, as BIRD sends on reaching Up: 100 ms both ways, multiplier 3.
    packet = ControlPacket(
        state=State.UP,
        detect_mult=3,
        my_discriminator=0x01020304,
        your_discriminator=0x0A0B0C0D,
        desired_min_tx=100_000,
        required_min_rx=100_000,
        poll=True,
    )
    expected = bytes.fromhex("20e00318010203040a0b0c0d000186a0000186a000000000")
    assert encode_control(packet) == expected
    down = ControlPacket(
        state=State.DOWN,
        detect_mult=5,
        my_discriminator=7,
        desired_min_tx=1_000_000,
        required_min_rx=10_000,
        diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
    )
    assert encode_control(down)[:4] == bytes((0x21, 0x40, 5, 24))


def _packet(edits: dict[int, int] | None = None) -> bytes:
    """A valid Down packet with the octets at the given offsets replaced."""
    data = bytearray(
        encode_control(
            ControlPacket(state=State.DOWN, detect_mult=3, my_discriminator=1, desired_min_tx=1)
        )
    )
    for offset, value in (edits or {}).items():
        data[offset] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TooShort),
        (_packet()[:23], TooShort),
        (_packet({0: 0x00}), BadVersion),  # version 0 (the pre-RFC draft)
        (_packet({0: 0x40}), BadVersion),  # version 2
        (_packet({3: 23}), BadLength),
        (_packet({3: 25}), BadLength),  # longer than what arrived
        (_packet({2: 0}), ZeroDetectMult),
        (_packet({1: 0x41}), MultipointSet),
        (_packet({1: 0x70}), PollAndFinal),
        (_packet({4: 0, 5: 0, 6: 0, 7: 0}), ZeroMyDiscriminator),
        (_packet({1: 0x44}), AuthenticationPresent),
        (_packet({1: 0x44, 3: 26}) + b"\x01\x02", AuthenticationPresent),
    ],
)
def test_bad_packets(data: bytes, error: type[BfdPacketError]) -> None:
    with pytest.raises(error) as info:
        decode_control(data)
    assert info.value.reason in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [
        {"detect_mult": 0},
        {"detect_mult": 256},
        {"my_discriminator": 0},
        {"your_discriminator": 2**32},
        {"desired_min_tx": -1},
        {"diag": 32},
        {"poll": True, "final": True},
    ],
)
def test_encoding_refuses_what_does_not_fit(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"state": State.UP, "detect_mult": 3, "my_discriminator": 1}
    with pytest.raises(LocalBfdError):
        encode_control(ControlPacket(**{**base, **fields}))  # type: ignore[arg-type]


def test_diag_names() -> None:
    assert describe_diag(1) == "Control detection time expired"
    assert describe_diag(7) == "Administratively down"
    assert describe_diag(20) == "Reserved (20)"
    assert str(State.ADMIN_DOWN) == "AdminDown"
