"""BGP framing and message codec (RFC 4271 4 and 6, RFC 4760, RFC 6793, RFC 7606, RFC 7911).

Sans-I/O: `split_messages` cuts whole messages out of received bytes and hands back the
rest (short input never raises); `decode_message` turns one message into a value;
`encode_*` and the packers return bytes. Peer faults raise `WireError` subclasses that
carry the NOTIFICATION code/subcode/data; RFC 7606 non-fatal problems come back in
`Update.error` instead.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache

from bgpd.wire.attributes import (
    FLAG_OPTIONAL,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    NEXT_HOP,
    ORIGIN,
    PathAttributes,
)
from bgpd.wire.attrs_codec import (
    attribute_header,
    decode_attribute_block,
    encode_attribute_block,
)
from bgpd.wire.capabilities import decode_capabilities, encode_capabilities
from bgpd.wire.errors import (
    BadBgpId,
    BadMessageLength,
    BadMessageType,
    ConnectionNotSynchronized,
    EncodeError,
    Handling,
    IgnoredMessage,
    InvalidMessageLength,
    InvalidNetworkField,
    MalformedAttributeList,
    MissingWellKnownAttribute,
    OpenMessageError,
    OptionalAttributeError,
    UnacceptableHoldTime,
    UnsupportedOptionalParameter,
    UnsupportedVersion,
    WireError,
)
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    HEADER_LEN,
    MARKER,
    MSG_KEEPALIVE,
    MSG_NOTIFICATION,
    MSG_OPEN,
    MSG_ROUTE_REFRESH,
    MSG_UPDATE,
    Capability,
    Keepalive,
    Message,
    MpReach,
    MpUnreach,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from bgpd.wire.nlri import chunk_nlri, split_nlri
from bgpd.wire.options import DEFAULT_OPTIONS, CodecOptions

__all__ = [
    "decode_message",
    "encode_attributes",
    "encode_end_of_rib",
    "encode_keepalive",
    "encode_message",
    "encode_notification",
    "encode_open",
    "encode_route_refresh",
    "encode_update",
    "pack_announcements",
    "pack_withdrawals",
    "split_messages",
]

_OPT_PARAM_CAPABILITIES = 2
_OPT_PARAM_EXTENDED = 255  # RFC 9072 marker in the Optional Parameter Type position
_HEADER = struct.Struct(">16sHB")
_KEEPALIVE = MARKER + struct.pack(">HB", HEADER_LEN, MSG_KEEPALIVE)
_IPV4 = Family.IPV4_UNICAST


def _message(msg_type: int, body: bytes, max_size: int = 65535) -> bytes:
    length = HEADER_LEN + len(body)
    if length > max_size:
        raise EncodeError(f"message of {length} octets exceeds {max_size}")
    return MARKER + struct.pack(">HB", length, msg_type) + body


# --- framing ------------------------------------------------------------------------------


def split_messages(buf: bytes | bytearray, max_size: int = 4096) -> tuple[list[bytes], bytes]:
    """Whole messages (header included) at the front of `buf`, and the bytes left over.

    Checks each header as soon as its 19 octets are in: a bad marker is Connection Not
    Synchronized, a length below 19 or above `max_size` is Bad Message Length with the
    length field as data (RFC 4271 6.1).
    """
    messages: list[bytes] = []
    n = len(buf)
    pos = 0
    while n - pos >= HEADER_LEN:
        if buf[pos : pos + 16] != MARKER:
            raise ConnectionNotSynchronized("bad marker")
        length = (buf[pos + 16] << 8) | buf[pos + 17]
        if length < HEADER_LEN or length > max_size:
            raise BadMessageLength(f"message length {length}", bytes(buf[pos + 16 : pos + 18]))
        end = pos + length
        if end > n:
            break
        messages.append(bytes(buf[pos:end]))
        pos = end
    return messages, bytes(buf[pos:])


def decode_message(data: bytes, opts: CodecOptions = DEFAULT_OPTIONS) -> Message:
    """One whole message, header included (as `split_messages` returns them)."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_LEN:
        raise BadMessageLength(f"message of {len(data)} octets", data[16:18])
    marker, length, msg_type = _HEADER.unpack_from(data)
    if marker != MARKER:
        raise ConnectionNotSynchronized("bad marker")
    if length != len(data) or length > opts.max_message_size:
        raise BadMessageLength(f"message length {length}", data[16:18])
    if msg_type == MSG_UPDATE:
        if length < 23:
            raise BadMessageLength(f"UPDATE length {length}", data[16:18])
        return _decode_update(data, opts)
    if msg_type == MSG_KEEPALIVE:
        if length != 19:
            raise BadMessageLength(f"KEEPALIVE length {length}", data[16:18])
        return Keepalive()
    if msg_type == MSG_OPEN:
        if length < 29:
            raise BadMessageLength(f"OPEN length {length}", data[16:18])
        return _decode_open(data)
    if msg_type == MSG_NOTIFICATION:
        if length < 21:
            raise BadMessageLength(f"NOTIFICATION length {length}", data[16:18])
        return Notification(data[19], data[20], data[21:])
    if msg_type == MSG_ROUTE_REFRESH:
        return _decode_route_refresh(data)
    raise BadMessageType(f"message type {msg_type}", bytes((msg_type,)))


def encode_message(msg: Message, opts: CodecOptions = DEFAULT_OPTIONS) -> bytes:
    if isinstance(msg, Update):
        return encode_update(msg, opts)
    if isinstance(msg, Keepalive):
        return _KEEPALIVE
    if isinstance(msg, Open):
        return encode_open(msg)
    if isinstance(msg, Notification):
        return encode_notification(msg)
    return encode_route_refresh(msg)


# --- OPEN ---------------------------------------------------------------------------------


def _decode_open(data: bytes) -> Open:
    version = data[19]
    if version != 4:
        raise UnsupportedVersion(f"BGP version {version}", b"\x00\x04")
    my_as, hold_time, bgp_id, opt_len = struct.unpack_from(">HHIB", data, 20)
    if hold_time in (1, 2):
        raise UnacceptableHoldTime(f"hold time {hold_time}")
    if bgp_id == 0:
        raise BadBgpId("BGP identifier 0", data[24:28])
    params = data[29:]
    caps: list[Capability] = []
    if opt_len == 255 and params[:1] == bytes((_OPT_PARAM_EXTENDED,)):
        # RFC 9072: type 255, 2-octet total length, then parameters with 2-octet lengths.
        if len(params) < 3:
            raise OpenMessageError("extended optional parameters truncated")
        ext_len = int.from_bytes(params[1:3], "big")
        body, head = params[3:], 3
        if ext_len != len(body):
            raise OpenMessageError(f"extended optional parameters length {ext_len}")
    else:
        if opt_len != len(params):
            raise OpenMessageError(f"optional parameters length {opt_len} != {len(params)}")
        body, head = params, 2
    pos, end = 0, len(body)
    while pos < end:
        if pos + head > end:
            raise OpenMessageError("optional parameter header truncated")
        ptype = body[pos]
        plen = body[pos + 1] if head == 2 else int.from_bytes(body[pos + 1 : pos + 3], "big")
        stop = pos + head + plen
        if stop > end:
            raise OpenMessageError(f"optional parameter {ptype} overruns the message")
        if ptype != _OPT_PARAM_CAPABILITIES:
            raise UnsupportedOptionalParameter(f"optional parameter {ptype}")
        caps.extend(decode_capabilities(body[pos + head : stop]))
        pos = stop
    return Open(my_as=my_as, hold_time=hold_time, bgp_id=bgp_id, capabilities=tuple(caps))


def encode_open(msg: Open) -> bytes:
    """All capabilities in one optional parameter; past 255 octets of parameters, the
    RFC 9072 extended form."""
    if not 0 <= msg.my_as <= 0xFFFF:
        raise EncodeError(f"OPEN My AS {msg.my_as} does not fit 2 octets")
    caps = b"".join(encode_capabilities(msg.capabilities))
    if not caps:
        params = b"\x00"
    elif len(caps) <= 253:
        params = bytes((len(caps) + 2, _OPT_PARAM_CAPABILITIES, len(caps))) + caps
    else:
        long = bytes((_OPT_PARAM_CAPABILITIES,)) + len(caps).to_bytes(2, "big") + caps
        params = bytes((255, _OPT_PARAM_EXTENDED)) + len(long).to_bytes(2, "big") + long
    head = struct.pack(">BHHI", msg.version, msg.my_as, msg.hold_time, msg.bgp_id)
    return _message(MSG_OPEN, head + params, 4096)


# --- KEEPALIVE, NOTIFICATION, ROUTE-REFRESH -----------------------------------------------


def encode_keepalive() -> bytes:
    return _KEEPALIVE


def encode_notification(msg: Notification) -> bytes:
    return _message(MSG_NOTIFICATION, bytes((msg.code, msg.subcode)) + msg.data, 4096)


def _decode_route_refresh(data: bytes) -> RouteRefresh:
    if len(data) != 23:
        # RFC 7313 5: a BoRR/EoRR of the wrong length has its own error; else RFC 4271 6.1.
        if len(data) >= 22 and data[21] in (1, 2):
            raise InvalidMessageLength(f"ROUTE-REFRESH length {len(data)}", data)
        raise BadMessageLength(f"ROUTE-REFRESH length {len(data)}", data[16:18])
    afi, subtype, safi = struct.unpack_from(">HBB", data, 19)
    family = Family.lookup(afi, safi)
    if family is None:
        raise IgnoredMessage(f"ROUTE-REFRESH for AFI {afi} SAFI {safi}")
    if subtype > 2:
        raise IgnoredMessage(f"ROUTE-REFRESH subtype {subtype}")
    return RouteRefresh(family, subtype)


def encode_route_refresh(msg: RouteRefresh) -> bytes:
    body = struct.pack(">HBB", msg.family.afi, msg.subtype, msg.family.safi)
    return _message(MSG_ROUTE_REFRESH, body)


# --- UPDATE decoding ----------------------------------------------------------------------


def _decode_update(data: bytes, opts: CodecOptions) -> Update:
    n = len(data)
    wlen = (data[19] << 8) | data[20]
    at = 21 + wlen
    if at + 2 > n:
        raise MalformedAttributeList(f"withdrawn routes length {wlen} overruns the message")
    alen = (data[at] << 8) | data[at + 1]
    block_at = at + 2
    nlri_at = block_at + alen
    if nlri_at > n:
        raise MalformedAttributeList(f"total path attribute length {alen} overruns the message")
    add_path = opts.add_path_receive
    v4_ap = _IPV4 in add_path
    withdrawn = split_nlri(data[21:at], 32, v4_ap) if wlen else ()
    nlri = split_nlri(data[nlri_at:], 32, v4_ap) if nlri_at < n else ()
    if not alen:
        if nlri:
            err = MissingWellKnownAttribute(
                "NLRI without path attributes", bytes((ORIGIN,)), Handling.TREAT_AS_WITHDRAW
            )
            return Update(withdrawn=withdrawn + nlri, error=err)
        return Update(withdrawn=withdrawn)

    block, mp_reach_raw, mp_unreach_raw = decode_attribute_block(
        data[block_at:nlri_at], opts.four_octet_as
    )
    attrs = block.attributes
    error = block.error
    mp_reach = mp_unreach = None
    if mp_reach_raw is not None:
        mp_reach, mp_error = _decode_mp_reach(mp_reach_raw, add_path)
        if mp_error is not None:
            error = _worse(error, mp_error)
    if mp_unreach_raw is not None:
        mp_unreach, mp_error = _decode_mp_unreach(mp_unreach_raw, add_path)
        if mp_error is not None:
            error = _worse(error, mp_error)

    if nlri or mp_reach is not None:
        if block.missing:
            error = _worse(error, _missing(block.missing))
        if nlri:
            if not block.has_next_hop:
                error = _worse(error, _missing(NEXT_HOP))
            elif block.next_hop_error is not None:
                error = _worse(error, block.next_hop_error)
        elif mp_reach is not None and attrs is not None and attrs.next_hop != mp_reach.next_hop:
            # Only MP NLRI: NEXT_HOP, if any, is ignored (RFC 4760 3); the family's next hop
            # is the MP_REACH one.
            attrs = block.with_next_hop(mp_reach.next_hop)

    if error is None or error.handling == Handling.ATTRIBUTE_DISCARD:
        return Update(withdrawn, attrs, nlri, mp_reach, mp_unreach, error)

    # Treat-as-withdraw. It needs every NLRI parsed; after a framing error with no
    # reachable NLRI found, an MP_REACH_NLRI may have been lost in the tail (RFC 7606 5.2).
    if block.framing and not nlri and mp_reach is None:
        raise MalformedAttributeList(str(error), error.data)
    withdrawn += nlri
    if mp_reach is not None:
        if mp_unreach is None:
            mp_unreach = MpUnreach(mp_reach.family, mp_reach.nlri)
        elif mp_unreach.family is mp_reach.family:
            mp_unreach = MpUnreach(mp_unreach.family, mp_unreach.withdrawn + mp_reach.nlri)
        elif mp_reach.family is _IPV4:
            withdrawn += mp_reach.nlri
        else:
            # Reach for IPv6, unreach for IPv4: the IPv4 items move to the classic field.
            withdrawn += mp_unreach.withdrawn
            mp_unreach = MpUnreach(mp_reach.family, mp_reach.nlri)
    return Update(withdrawn=withdrawn, mp_unreach=mp_unreach, error=error)


def _worse(current: WireError | None, new: WireError) -> WireError:
    return new if current is None or new.handling > current.handling else current


def _missing(code: int) -> WireError:
    return MissingWellKnownAttribute(
        f"missing well-known attribute {code}", bytes((code,)), Handling.TREAT_AS_WITHDRAW
    )


def _mp_family(
    raw: bytes, afi: int, safi: int, code: int
) -> tuple[Family | None, WireError | None]:
    family = Family.lookup(afi, safi)
    if family is None:
        # A family we do not speak: the attribute is ignored, the rest of the UPDATE stands.
        return None, OptionalAttributeError(
            f"attribute {code} for AFI {afi} SAFI {safi} ignored",
            raw,
            Handling.ATTRIBUTE_DISCARD,
        )
    return family, None


def _split_mp(
    field: bytes, family: Family, add_path: frozenset[Family], code: int
) -> tuple[bytes, ...]:
    try:
        return split_nlri(field, family.max_len, family in add_path)
    except InvalidNetworkField as e:
        raise OptionalAttributeError(f"attribute {code}: {e}", e.data) from e


def _decode_mp_reach(
    raw: bytes, add_path: frozenset[Family]
) -> tuple[MpReach | None, WireError | None]:
    if len(raw) < 5 or len(raw) < 5 + raw[3]:
        raise OptionalAttributeError("MP_REACH_NLRI truncated", raw)
    afi, safi, nh_len = (raw[0] << 8) | raw[1], raw[2], raw[3]
    family, error = _mp_family(raw, afi, safi, MP_REACH_NLRI)
    if family is None:
        return None, error
    if nh_len not in ((4,) if family is _IPV4 else (16, 32)):
        raise OptionalAttributeError(f"MP_REACH_NLRI next hop length {nh_len}", raw)
    nlri = _split_mp(raw[5 + nh_len :], family, add_path, MP_REACH_NLRI)
    return MpReach(family, raw[4 : 4 + nh_len], nlri), None


def _decode_mp_unreach(
    raw: bytes, add_path: frozenset[Family]
) -> tuple[MpUnreach | None, WireError | None]:
    if len(raw) < 3:
        raise OptionalAttributeError("MP_UNREACH_NLRI truncated", raw)
    family, error = _mp_family(raw, (raw[0] << 8) | raw[1], raw[2], MP_UNREACH_NLRI)
    if family is None:
        return None, error
    return MpUnreach(family, _split_mp(raw[3:], family, add_path, MP_UNREACH_NLRI)), None


# --- UPDATE encoding ----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _attr_block(attrs: PathAttributes, four_octet_as: bool, next_hop: bool) -> bytes:
    return encode_attribute_block(attrs, four_octet_as, next_hop)


def encode_attributes(attrs: PathAttributes, family: Family, opts: CodecOptions) -> bytes:
    """The attribute block announcing routes of `family` with `attrs` (MP_REACH_NLRI aside).

    For IPv4 the NEXT_HOP attribute carries `attrs.next_hop`; for IPv6 there is no NEXT_HOP
    and `pack_announcements` puts `attrs.next_hop` into MP_REACH_NLRI.
    """
    return _attr_block(attrs, opts.four_octet_as, family is _IPV4)


def _mp_reach_attr(family: Family, next_hop: bytes, nlri: bytes) -> bytes:
    value = struct.pack(">HBB", family.afi, family.safi, len(next_hop)) + next_hop + b"\x00" + nlri
    return attribute_header(FLAG_OPTIONAL, MP_REACH_NLRI, len(value)) + value


def _mp_unreach_attr(family: Family, withdrawn: bytes) -> bytes:
    value = struct.pack(">HB", family.afi, family.safi) + withdrawn
    return attribute_header(FLAG_OPTIONAL, MP_UNREACH_NLRI, len(value)) + value


def _update(withdrawn: bytes, block: bytes, nlri: bytes, max_size: int) -> bytes:
    length = 23 + len(withdrawn) + len(block) + len(nlri)
    if length > max_size:
        raise EncodeError(f"UPDATE of {length} octets exceeds {max_size}")
    return b"".join(
        (
            MARKER,
            struct.pack(">HBH", length, MSG_UPDATE, len(withdrawn)),
            withdrawn,
            len(block).to_bytes(2, "big"),
            block,
            nlri,
        )
    )


def encode_update(msg: Update, opts: CodecOptions = DEFAULT_OPTIONS) -> bytes:
    """The UPDATE as given: MP_REACH_NLRI / MP_UNREACH_NLRI first (RFC 7606 5.1), then the
    attributes in type-code order. NEXT_HOP is written when `attributes.next_hop` is an IPv4
    address and the NLRI field has items (or there is no MP_REACH_NLRI)."""
    parts = []
    if msg.mp_reach is not None:
        reach = msg.mp_reach
        parts.append(_mp_reach_attr(reach.family, reach.next_hop, b"".join(reach.nlri)))
    if msg.mp_unreach is not None:
        parts.append(_mp_unreach_attr(msg.mp_unreach.family, b"".join(msg.mp_unreach.withdrawn)))
    attrs = msg.attributes
    if attrs is not None:
        nh = bool(msg.nlri) or msg.mp_reach is None
        parts.append(_attr_block(attrs, opts.four_octet_as, nh))
    return _update(
        b"".join(msg.withdrawn), b"".join(parts), b"".join(msg.nlri), opts.max_message_size
    )


def pack_announcements(
    family: Family,
    attrs: PathAttributes,
    items: Sequence[bytes],
    opts: CodecOptions = DEFAULT_OPTIONS,
    attr_block: bytes | None = None,
) -> list[bytes]:
    """UPDATEs announcing `items` (NLRI items as the peer expects them, path ids included
    when ADD-PATH is on) with `attrs`, each within `opts.max_message_size`.

    `attr_block` is a cached `encode_attributes(attrs, family, opts)`.
    """
    if not items:
        return []
    block = attr_block if attr_block is not None else encode_attributes(attrs, family, opts)
    max_size = opts.max_message_size
    if family is _IPV4:
        room = max_size - 23 - len(block)
        alen = len(block).to_bytes(2, "big")
        fixed = 23 + len(block)
        return [
            b"".join((MARKER, struct.pack(">HBH", fixed + len(f), MSG_UPDATE, 0), alen, block, f))
            for f in chunk_nlri(items, room)
        ]
    nh = attrs.next_hop
    if nh is None or len(nh) not in (16, 32):
        raise EncodeError(f"{family} announcement needs a 16 or 32 octet next hop")
    room = max_size - 23 - len(block) - (4 + 5 + len(nh))
    return [
        _update(b"", _mp_reach_attr(family, nh, field) + block, b"", max_size)
        for field in chunk_nlri(items, room)
    ]


def pack_withdrawals(
    family: Family, items: Sequence[bytes], opts: CodecOptions = DEFAULT_OPTIONS
) -> list[bytes]:
    """UPDATEs withdrawing `items`, each within `opts.max_message_size`."""
    if not items:
        return []
    max_size = opts.max_message_size
    if family is _IPV4:
        return [_update(f, b"", b"", max_size) for f in chunk_nlri(items, max_size - 23)]
    return [
        _update(b"", _mp_unreach_attr(family, f), b"", max_size)
        for f in chunk_nlri(items, max_size - 23 - 4 - 3)
    ]


def encode_end_of_rib(family: Family) -> bytes:
    """End-of-RIB (RFC 4724 2): an empty UPDATE for IPv4, an empty MP_UNREACH_NLRI else."""
    if family is _IPV4:
        return _update(b"", b"", b"", 4096)
    return _update(b"", _mp_unreach_attr(family, b""), b"", 4096)
