"""Path attributes to and from their wire form: one `AttrSpec` per attribute (BIRD's
bgp_attr_table), each naming the RFC 7606 action taken when an instance is malformed.

`decode_attribute_block` turns an UPDATE's path attribute block into a `DecodedBlock`
(MP_REACH_NLRI / MP_UNREACH_NLRI come back raw; the codec lifts them into the Update).
Decoding is memoised on the raw octets: a reflector sees the same few attribute blocks
over and over, and a repeated block then costs one dict lookup. The memo is a pure cache
(same input, same output), so it changes no behaviour.

`encode_attribute_block` writes attributes in type-code order, unknown optional transitive
ones with the PARTIAL bit set and unknown optional non-transitive ones dropped (RFC 4271 5).
With a 2-octet-AS peer it writes AS_TRANS plus AS4_PATH / AS4_AGGREGATOR (RFC 6793 4.2.2).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bgpd.wire.attributes import (
    AGGREGATOR,
    AS4_AGGREGATOR,
    AS4_PATH,
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_PATH,
    AS_SEQUENCE,
    AS_SET,
    ATOMIC_AGGREGATE,
    CLUSTER_LIST,
    COMMUNITIES,
    FLAG_EXTENDED_LENGTH,
    FLAG_OPTIONAL,
    FLAG_PARTIAL,
    FLAG_TRANSITIVE,
    LARGE_COMMUNITIES,
    LOCAL_PREF,
    MP_REACH_NLRI,
    MP_UNREACH_NLRI,
    MULTI_EXIT_DISC,
    NEXT_HOP,
    ORIGIN,
    ORIGIN_INCOMPLETE,
    ORIGINATOR_ID,
    AsPathSegment,
    PathAttributes,
    UnknownAttribute,
)
from bgpd.wire.errors import (
    AttributeFlagsError,
    AttributeLengthError,
    EncodeError,
    Handling,
    InvalidNextHopAttribute,
    InvalidOriginAttribute,
    MalformedAsPath,
    MalformedAttributeList,
    OptionalAttributeError,
    UnrecognizedWellKnownAttribute,
    WireError,
)

AS_TRANS = 23456
_WELL_KNOWN = FLAG_TRANSITIVE
_OPT_TRANSITIVE = FLAG_OPTIONAL | FLAG_TRANSITIVE
_OPT_NON_TRANSITIVE = FLAG_OPTIONAL
_SEGMENT_TYPES = frozenset((AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET))

DecodeFn = Callable[[bytes, bool], Any]
"""(value octets, four_octet_as) -> field value; raises a WireError subclass if malformed."""
EncodeFn = Callable[[PathAttributes, bool], bytes | None]
"""(attributes, four_octet_as) -> value octets, or None when the attribute is absent."""


@dataclass(frozen=True, slots=True)
class AttrSpec:
    """How one attribute travels. `flags` are the Optional/Transitive bits it must carry;
    `on_error` is the RFC 7606 action for a malformed instance, conflicting flags included
    (7606 3.c). `field` names the PathAttributes field it fills ("" for MP_* and AS4_*,
    which the codec handles itself)."""

    code: int
    name: str
    flags: int
    on_error: Handling
    field: str
    decode: DecodeFn
    encode: EncodeFn


# --- decoders -----------------------------------------------------------------------------


def _need_len(name: str, value: bytes, n: int) -> None:
    if len(value) != n:
        raise AttributeLengthError(f"{name} length {len(value)} != {n}")


def _decode_origin(value: bytes, four: bool) -> int:
    _need_len("ORIGIN", value, 1)
    if value[0] > ORIGIN_INCOMPLETE:
        raise InvalidOriginAttribute(f"ORIGIN value {value[0]}")
    return value[0]


def _parse_as_path(value: bytes, size: int) -> tuple[AsPathSegment, ...]:
    """Segments of an AS_PATH / AS4_PATH with `size`-octet AS numbers (RFC 7606 7.2)."""
    fmt = "I" if size == 4 else "H"
    segs: list[AsPathSegment] = []
    pos, n = 0, len(value)
    while pos < n:
        if pos + 2 > n:
            raise MalformedAsPath("AS_PATH segment header truncated")
        seg_type, count = value[pos], value[pos + 1]
        if seg_type not in _SEGMENT_TYPES:
            raise MalformedAsPath(f"AS_PATH segment type {seg_type}")
        if not count:
            raise MalformedAsPath("AS_PATH segment of length zero")
        end = pos + 2 + count * size
        if end > n:
            raise MalformedAsPath("AS_PATH segment overruns the attribute")
        segs.append((seg_type, struct.unpack_from(f">{count}{fmt}", value, pos + 2)))
        pos = end
    return tuple(segs)


def _decode_as_path(value: bytes, four: bool) -> tuple[AsPathSegment, ...]:
    return _parse_as_path(value, 4 if four else 2)


_MARTIAN_FIRST_OCTET = frozenset((0, 127, *range(224, 256)))


def _decode_next_hop(value: bytes, four: bool) -> bytes:
    _need_len("NEXT_HOP", value, 4)
    # RFC 4271 6.3: not a valid host address (0/8, loopback, multicast and class E).
    if value[0] in _MARTIAN_FIRST_OCTET:
        raise InvalidNextHopAttribute(f"martian NEXT_HOP {'.'.join(map(str, value))}")
    return value


def _decode_u32(name: str) -> DecodeFn:
    def decode(value: bytes, four: bool) -> int:
        _need_len(name, value, 4)
        return int.from_bytes(value, "big")

    return decode


def _decode_atomic_aggregate(value: bytes, four: bool) -> bool:
    _need_len("ATOMIC_AGGREGATE", value, 0)
    return True


def _decode_aggregator(value: bytes, four: bool) -> tuple[int, bytes]:
    size = 4 if four else 2
    _need_len("AGGREGATOR", value, size + 4)
    return int.from_bytes(value[:size], "big"), value[size:]


def _decode_u32_list(name: str) -> DecodeFn:
    def decode(value: bytes, four: bool) -> tuple[int, ...]:
        n = len(value)
        if not n or n % 4:
            raise AttributeLengthError(f"{name} length {n} is not a non-zero multiple of 4")
        return struct.unpack(f">{n // 4}I", value)

    return decode


def _decode_large_communities(value: bytes, four: bool) -> tuple[tuple[int, int, int], ...]:
    n = len(value)
    if not n or n % 12:
        raise AttributeLengthError(f"LARGE_COMMUNITIES length {n} is not a multiple of 12")
    flat = struct.unpack(f">{n // 4}I", value)
    # Repeated ones are silently dropped (RFC 8092 5).
    return tuple(dict.fromkeys(zip(flat[0::3], flat[1::3], flat[2::3], strict=True)))


def _decode_mp_reach(value: bytes, four: bool) -> tuple[int, int, bytes, bytes]:
    """(AFI, SAFI, next hop, NLRI field); the codec checks the family and splits NLRI."""
    if len(value) < 5 or len(value) < 5 + value[3]:
        raise OptionalAttributeError("MP_REACH_NLRI truncated")
    nh_end = 4 + value[3]
    return int.from_bytes(value[0:2], "big"), value[2], value[4:nh_end], value[nh_end + 1 :]


def _decode_mp_unreach(value: bytes, four: bool) -> tuple[int, int, bytes]:
    if len(value) < 3:
        raise OptionalAttributeError("MP_UNREACH_NLRI truncated")
    return int.from_bytes(value[0:2], "big"), value[2], value[3:]


def _decode_as4_path(value: bytes, four: bool) -> tuple[AsPathSegment, ...]:
    segs = _parse_as_path(value, 4)
    # Confederation segments are not allowed in AS4_PATH and are dropped (RFC 6793 6).
    return tuple(s for s in segs if s[0] in (AS_SET, AS_SEQUENCE))


def _decode_as4_aggregator(value: bytes, four: bool) -> tuple[int, bytes]:
    _need_len("AS4_AGGREGATOR", value, 8)
    return int.from_bytes(value[:4], "big"), value[4:]


# --- encoders -----------------------------------------------------------------------------


def _encode_origin(a: PathAttributes, four: bool) -> bytes:
    return bytes((a.origin,))


def _pack_path(path: tuple[AsPathSegment, ...], four: bool) -> bytes:
    out = []
    fmt = "I" if four else "H"
    for seg_type, asns in path:
        if not four:
            asns = tuple(x if x <= 0xFFFF else AS_TRANS for x in asns)
        # A segment holds at most 255 AS numbers; longer ones continue in the next segment.
        for i in range(0, len(asns), 255):
            part = asns[i : i + 255]
            out.append(bytes((seg_type, len(part))) + struct.pack(f">{len(part)}{fmt}", *part))
    return b"".join(out)


def _encode_as_path(a: PathAttributes, four: bool) -> bytes:
    return _pack_path(a.as_path, four)


def _encode_next_hop(a: PathAttributes, four: bool) -> bytes | None:
    nh = a.next_hop
    return nh if nh is not None and len(nh) == 4 else None


def _encode_u32(name: str) -> EncodeFn:
    def encode(a: PathAttributes, four: bool) -> bytes | None:
        value: int | None = getattr(a, name)
        return None if value is None else value.to_bytes(4, "big")

    return encode


def _encode_atomic_aggregate(a: PathAttributes, four: bool) -> bytes | None:
    return b"" if a.atomic_aggregate else None


def _encode_aggregator(a: PathAttributes, four: bool) -> bytes | None:
    if a.aggregator is None:
        return None
    asn, addr = a.aggregator
    if four:
        return asn.to_bytes(4, "big") + addr
    return (asn if asn <= 0xFFFF else AS_TRANS).to_bytes(2, "big") + addr


def _encode_u32_list(name: str) -> EncodeFn:
    def encode(a: PathAttributes, four: bool) -> bytes | None:
        values: tuple[int, ...] = getattr(a, name)
        return struct.pack(f">{len(values)}I", *values) if values else None

    return encode


def _encode_large_communities(a: PathAttributes, four: bool) -> bytes | None:
    lcs = a.large_communities
    if not lcs:
        return None
    unique = dict.fromkeys(lcs)  # never send duplicates (RFC 8092 5)
    return struct.pack(f">{3 * len(unique)}I", *(x for lc in unique for x in lc))


def _encode_none(a: PathAttributes, four: bool) -> None:
    return None


def _needs_as4(a: PathAttributes) -> bool:
    return any(x > 0xFFFF for t, asns in a.as_path if t in (AS_SET, AS_SEQUENCE) for x in asns)


def _encode_as4_path(a: PathAttributes, four: bool) -> bytes | None:
    if four or not _needs_as4(a):
        return None
    return _pack_path(tuple(s for s in a.as_path if s[0] in (AS_SET, AS_SEQUENCE)), True)


def _encode_as4_aggregator(a: PathAttributes, four: bool) -> bytes | None:
    if four or a.aggregator is None or a.aggregator[0] <= 0xFFFF:
        return None
    return a.aggregator[0].to_bytes(4, "big") + a.aggregator[1]


# --- the registry -------------------------------------------------------------------------

_W, _D, _R = Handling.TREAT_AS_WITHDRAW, Handling.ATTRIBUTE_DISCARD, Handling.SESSION_RESET

ATTRS: dict[int, AttrSpec] = {
    s.code: s
    for s in (
        # RFC 7606 7.1 - 7.12, RFC 6793 6, RFC 8092 5.
        AttrSpec(ORIGIN, "ORIGIN", _WELL_KNOWN, _W, "origin", _decode_origin, _encode_origin),
        AttrSpec(AS_PATH, "AS_PATH", _WELL_KNOWN, _W, "as_path", _decode_as_path, _encode_as_path),
        AttrSpec(
            NEXT_HOP, "NEXT_HOP", _WELL_KNOWN, _W, "next_hop", _decode_next_hop, _encode_next_hop
        ),
        AttrSpec(
            MULTI_EXIT_DISC,
            "MULTI_EXIT_DISC",
            _OPT_NON_TRANSITIVE,
            _W,
            "med",
            _decode_u32("MULTI_EXIT_DISC"),
            _encode_u32("med"),
        ),
        AttrSpec(
            LOCAL_PREF,
            "LOCAL_PREF",
            _WELL_KNOWN,
            _W,
            "local_pref",
            _decode_u32("LOCAL_PREF"),
            _encode_u32("local_pref"),
        ),
        AttrSpec(
            ATOMIC_AGGREGATE,
            "ATOMIC_AGGREGATE",
            _WELL_KNOWN,
            _D,
            "atomic_aggregate",
            _decode_atomic_aggregate,
            _encode_atomic_aggregate,
        ),
        AttrSpec(
            AGGREGATOR,
            "AGGREGATOR",
            _OPT_TRANSITIVE,
            _D,
            "aggregator",
            _decode_aggregator,
            _encode_aggregator,
        ),
        AttrSpec(
            COMMUNITIES,
            "COMMUNITIES",
            _OPT_TRANSITIVE,
            _W,
            "communities",
            _decode_u32_list("COMMUNITIES"),
            _encode_u32_list("communities"),
        ),
        AttrSpec(
            ORIGINATOR_ID,
            "ORIGINATOR_ID",
            _OPT_NON_TRANSITIVE,
            _W,
            "originator_id",
            _decode_u32("ORIGINATOR_ID"),
            _encode_u32("originator_id"),
        ),
        AttrSpec(
            CLUSTER_LIST,
            "CLUSTER_LIST",
            _OPT_NON_TRANSITIVE,
            _W,
            "cluster_list",
            _decode_u32_list("CLUSTER_LIST"),
            _encode_u32_list("cluster_list"),
        ),
        # Without a parsable NLRI treat-as-withdraw is impossible: session reset (7606 5.3).
        AttrSpec(
            MP_REACH_NLRI,
            "MP_REACH_NLRI",
            _OPT_NON_TRANSITIVE,
            _R,
            "",
            _decode_mp_reach,
            _encode_none,
        ),
        AttrSpec(
            MP_UNREACH_NLRI,
            "MP_UNREACH_NLRI",
            _OPT_NON_TRANSITIVE,
            _R,
            "",
            _decode_mp_unreach,
            _encode_none,
        ),
        AttrSpec(AS4_PATH, "AS4_PATH", _OPT_TRANSITIVE, _D, "", _decode_as4_path, _encode_as4_path),
        AttrSpec(
            AS4_AGGREGATOR,
            "AS4_AGGREGATOR",
            _OPT_TRANSITIVE,
            _D,
            "",
            _decode_as4_aggregator,
            _encode_as4_aggregator,
        ),
        AttrSpec(
            LARGE_COMMUNITIES,
            "LARGE_COMMUNITIES",
            _OPT_TRANSITIVE,
            _W,
            "large_communities",
            _decode_large_communities,
            _encode_large_communities,
        ),
    )
}

_ENCODE_ORDER = tuple(ATTRS[c] for c in sorted(ATTRS) if c not in (MP_REACH_NLRI, MP_UNREACH_NLRI))


# --- block decoding -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    """An attribute block, MP_REACH_NLRI / MP_UNREACH_NLRI aside.

    `attributes` is None when the block held no other attribute. `error` is the worst
    non-fatal problem (a NEXT_HOP problem is kept apart in `next_hop_error`: it only
    matters when the UPDATE carries IPv4 NLRI in its NLRI field). `missing` is the code of
    the first of ORIGIN / AS_PATH that is absent, or 0. `framing` tells that the block was
    cut short (RFC 7606 4), so an MP attribute may have been lost in the tail.
    """

    attributes: PathAttributes | None
    error: WireError | None
    next_hop_error: WireError | None
    missing: int
    has_next_hop: bool
    framing: bool
    # The attributes with each MP_REACH next hop seen with this block, so an IPv6 UPDATE
    # does not pay for a dataclass copy every time.
    _with_next_hop: dict[bytes, PathAttributes] = field(
        default_factory=dict, compare=False, repr=False
    )

    def with_next_hop(self, next_hop: bytes) -> PathAttributes:
        """`attributes` (not None) with `next_hop` as the next hop."""
        variants = self._with_next_hop
        attrs = variants.get(next_hop)
        if attrs is None:
            assert self.attributes is not None
            if len(variants) >= 64:
                variants.clear()
            attrs = variants[next_hop] = self.attributes.replace(next_hop=next_hop)
        return attrs


class _Memo:
    """A bounded memo in two generations: lookups hit the young dict, fall back to the old
    one (promoting the entry), and when the young one fills up it becomes the old one. Hot
    blocks stay; eviction costs nothing per call."""

    __slots__ = ("old", "size", "young")

    def __init__(self, size: int) -> None:
        self.size = size
        self.young: dict[bytes, DecodedBlock] = {}
        self.old: dict[bytes, DecodedBlock] = {}

    def get(self, key: bytes) -> DecodedBlock | None:
        hit = self.young.get(key)
        if hit is None:
            hit = self.old.get(key)
            if hit is not None:
                self.put(key, hit)
        return hit

    def put(self, key: bytes, value: DecodedBlock) -> None:
        young = self.young
        young[key] = value
        if len(young) >= self.size:
            self.old, self.young = young, {}

    def clear(self) -> None:
        self.young, self.old = {}, {}


MEMO_SIZE = 8192
_MEMOS = (_Memo(MEMO_SIZE), _Memo(MEMO_SIZE))  # by four_octet_as


def clear_memo() -> None:
    """Forget memoised blocks (benchmarks use it to measure cold decoding)."""
    for memo in _MEMOS:
        memo.clear()


def _worse(current: WireError | None, new: WireError) -> WireError:
    return new if current is None or new.handling > current.handling else current


def _flags_ok(flags: int, expected: int) -> bool:
    if flags & _OPT_TRANSITIVE != expected:
        return False
    # PARTIAL may only be set on optional transitive attributes (RFC 4271 4.3).
    return not (flags & FLAG_PARTIAL and expected != _OPT_TRANSITIVE)


def decode_attribute_block(
    block: bytes, four_octet_as: bool
) -> tuple[DecodedBlock, bytes | None, bytes | None]:
    """(decoded block, MP_REACH_NLRI value, MP_UNREACH_NLRI value).

    Raises WireError for the problems that cost the session (RFC 7606 session reset):
    a malformed or duplicated MP_* attribute, an unrecognised well-known attribute.
    """
    memo = _MEMOS[four_octet_as]
    hit = memo.young.get(block) or memo.get(block)
    if hit is not None:
        return hit, None, None

    # Scan the TLVs once: MP_* are taken out, the rest is decoded (or found in the memo
    # under the octets that remain, which is how a block with MP_* hits).
    tlvs: list[tuple[int, int, int, int, int]] = []
    mp_reach: bytes | None = None
    mp_unreach: bytes | None = None
    framing_error: WireError | None = None
    n, pos = len(block), 0
    while pos < n:
        flags = block[pos]
        ext = flags & FLAG_EXTENDED_LENGTH
        if n - pos < (4 if ext else 3):
            framing_error = MalformedAttributeList(
                "attribute header truncated", handling=Handling.TREAT_AS_WITHDRAW
            )
            break
        code = block[pos + 1]
        if ext:
            start = pos + 4
            end = start + ((block[pos + 2] << 8) | block[pos + 3])
        else:
            start = pos + 3
            end = start + block[pos + 2]
        if end > n:
            if code in (MP_REACH_NLRI, MP_UNREACH_NLRI):
                raise MalformedAttributeList(f"attribute {code} overruns the attribute block")
            framing_error = MalformedAttributeList(
                f"attribute {code} overruns the attribute block",
                handling=Handling.TREAT_AS_WITHDRAW,
            )
            break
        if code in (MP_REACH_NLRI, MP_UNREACH_NLRI):
            if (mp_reach if code == MP_REACH_NLRI else mp_unreach) is not None:
                raise MalformedAttributeList(f"attribute {code} appears twice")
            if not _flags_ok(flags, _OPT_NON_TRANSITIVE):
                raise AttributeFlagsError(f"attribute {code} flags {flags:#x}", block[pos:end])
            if code == MP_REACH_NLRI:
                mp_reach = block[start:end]
            else:
                mp_unreach = block[start:end]
        else:
            tlvs.append((flags, code, start, end, pos))
        pos = end

    if framing_error is not None:
        return _decode_tlvs(block, tlvs, four_octet_as, framing_error), mp_reach, mp_unreach
    if mp_reach is None and mp_unreach is None:
        decoded = _decode_tlvs(block, tlvs, four_octet_as, None)
        memo.put(block, decoded)
        return decoded, None, None
    key = b"".join(block[t[4] : t[3]] for t in tlvs)
    hit = memo.get(key)
    if hit is None:
        hit = _decode_tlvs(block, tlvs, four_octet_as, None)
        memo.put(key, hit)
    return hit, mp_reach, mp_unreach


def _decode_tlvs(
    block: bytes,
    tlvs: list[tuple[int, int, int, int, int]],
    four: bool,
    framing_error: WireError | None,
) -> DecodedBlock:
    fields: dict[str, Any] = {}
    unknown: list[UnknownAttribute] = []
    worst = framing_error
    nh_error: WireError | None = None
    as4_path: tuple[AsPathSegment, ...] | None = None
    as4_aggregator: tuple[int, bytes] | None = None
    seen = 0
    for flags, code, start, end, at in tlvs:
        bit = 1 << code
        if seen & bit:
            # Later copies are dropped (RFC 7606 3.g).
            worst = _worse(
                worst,
                MalformedAttributeList(
                    f"attribute {code} appears twice", block[at:end], Handling.ATTRIBUTE_DISCARD
                ),
            )
            continue
        seen |= bit
        spec = ATTRS.get(code)
        if spec is None:
            if not flags & FLAG_OPTIONAL:
                raise UnrecognizedWellKnownAttribute(
                    f"unrecognized well-known attribute {code}", block[at:end]
                )
            unknown.append(
                UnknownAttribute(flags & (_OPT_TRANSITIVE | FLAG_PARTIAL), code, block[start:end])
            )
            continue
        if not _flags_ok(flags, spec.flags):
            err: WireError = AttributeFlagsError(
                f"{spec.name} flags {flags:#04x}", block[at:end], spec.on_error
            )
        else:
            try:
                value = spec.decode(block[start:end], four)
            except WireError as e:
                err = e
                err.handling = spec.on_error
                err.data = err.data or block[at:end]
            else:
                if code == AS4_PATH:
                    as4_path = value
                elif code == AS4_AGGREGATOR:
                    as4_aggregator = value
                else:
                    fields[spec.field] = value
                continue
        if code == NEXT_HOP:
            nh_error = err
        else:
            worst = _worse(worst, err)

    # AS4_* from a 4-octet-AS peer are discarded (RFC 6793 4.1); else merged (4.2.3).
    if not four and (as4_path is not None or as4_aggregator is not None):
        _merge_as4(fields, as4_path, as4_aggregator)

    if not seen:
        attributes = None
    else:
        if unknown:
            fields["unknown"] = tuple(unknown)
        attributes = PathAttributes(**fields)
    missing = ORIGIN if not seen & (1 << ORIGIN) else AS_PATH if not seen & (1 << AS_PATH) else 0
    return DecodedBlock(
        attributes=attributes,
        error=worst,
        next_hop_error=nh_error,
        missing=missing,
        has_next_hop=bool(seen & (1 << NEXT_HOP)),
        framing=framing_error is not None,
    )


def _path_count(path: tuple[AsPathSegment, ...]) -> int:
    """AS numbers as RFC 6793 4.2.3 counts them: a set is one, confed segments none."""
    n = 0
    for seg_type, asns in path:
        if seg_type == AS_SEQUENCE:
            n += len(asns)
        elif seg_type == AS_SET:
            n += 1
    return n


def _merge_as4(
    fields: dict[str, Any],
    as4_path: tuple[AsPathSegment, ...] | None,
    as4_aggregator: tuple[int, bytes] | None,
) -> None:
    aggregator = fields.get("aggregator")
    if aggregator is not None and aggregator[0] != AS_TRANS:
        # An OLD speaker aggregated after the NEW ones: AS4_* are stale (RFC 6793 4.2.3).
        return
    if aggregator is not None and as4_aggregator is not None:
        fields["aggregator"] = as4_aggregator
    path: tuple[AsPathSegment, ...] = fields.get("as_path", ())
    if as4_path is None or "as_path" not in fields:
        return
    keep = _path_count(path) - _path_count(as4_path)
    if keep < 0:
        return
    merged: list[AsPathSegment] = []
    for seg_type, asns in path:
        if keep <= 0 and seg_type in (AS_SEQUENCE, AS_SET):
            break
        if seg_type == AS_SEQUENCE:
            take = asns[:keep]
            merged.append((seg_type, take))
            keep -= len(take)
        elif seg_type == AS_SET:
            merged.append((seg_type, asns))
            keep -= 1
        else:
            merged.append((seg_type, asns))
    fields["as_path"] = (*merged, *as4_path)


# --- block encoding -----------------------------------------------------------------------


def attribute_header(flags: int, code: int, length: int) -> bytes:
    if length > 0xFFFF:
        raise EncodeError(f"attribute {code} value of {length} octets")
    if length > 255:
        return bytes((flags | FLAG_EXTENDED_LENGTH, code, length >> 8, length & 0xFF))
    return bytes((flags, code, length))


def encode_attribute_block(attrs: PathAttributes, four_octet_as: bool, next_hop: bool) -> bytes:
    """The attributes in type-code order; NEXT_HOP only if `next_hop` (IPv4 NLRI field)."""
    out: list[tuple[int, bytes]] = []
    try:
        for spec in _ENCODE_ORDER:
            if spec.code == NEXT_HOP and not next_hop:
                continue
            value = spec.encode(attrs, four_octet_as)
            if value is not None:
                out.append((spec.code, attribute_header(spec.flags, spec.code, len(value)) + value))
    except (struct.error, OverflowError) as e:
        raise EncodeError(f"attribute value out of range: {e}") from e
    if attrs.unknown:
        for u in attrs.unknown:
            # Known codes travel in their own fields; unknown non-transitive ones stay here.
            if u.type_code in ATTRS or u.flags & _OPT_TRANSITIVE != _OPT_TRANSITIVE:
                continue
            flags = (u.flags & _OPT_TRANSITIVE) | FLAG_PARTIAL
            out.append((u.type_code, attribute_header(flags, u.type_code, len(u.value)) + u.value))
        out.sort(key=lambda item: item[0])
    return b"".join(item[1] for item in out)
