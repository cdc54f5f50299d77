"""NLRI fields split into items and joined back (RFC 4271 4.3, RFC 4760 5, RFC 7911 3).

An item is the prefix form of `bgpd.wire.family` (length octet + significant octets, host
bits as received), preceded by a 4-octet path identifier when ADD-PATH applies. Splitting
is a slice per item and no other object, since a route reflector splits millions of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from bgpd.wire.errors import EncodeError, InvalidNetworkField


def split_nlri(data: bytes, max_bits: int, add_path: bool = False) -> tuple[bytes, ...]:
    """Items of one NLRI or Withdrawn Routes field.

    Raises InvalidNetworkField (RFC 7606 5.3) when a prefix length exceeds `max_bits` (32 or
    128) or an item overruns the field; the caller re-raises it as the attribute's error when
    the field sits inside MP_REACH_NLRI / MP_UNREACH_NLRI.
    """
    n = len(data)
    if not n:
        return ()
    items: list[bytes] = []
    append = items.append
    skip = 4 if add_path else 0
    pos = 0
    while pos < n:
        at = pos + skip
        if at >= n:
            raise InvalidNetworkField("NLRI item truncated in its path identifier", data[pos:])
        plen = data[at]
        if plen > max_bits:
            raise InvalidNetworkField(f"prefix length {plen} > {max_bits}", data[pos:])
        end = at + 1 + ((plen + 7) >> 3)
        if end > n:
            raise InvalidNetworkField("NLRI item overruns its field", data[pos:])
        append(data[pos:end])
        pos = end
    return tuple(items)


def join_nlri(items: Sequence[bytes]) -> bytes:
    return b"".join(items)


def chunk_nlri(items: Sequence[bytes], room: int) -> list[bytes]:
    """Join items into as few fields as possible, each at most `room` octets, in order."""
    total = sum(map(len, items))
    if total <= room:
        return [b"".join(items)] if items else []
    fields: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for item in items:
        n = len(item)
        if size + n > room:
            if not current:
                raise EncodeError(f"NLRI item of {n} octets does not fit in {room}")
            fields.append(b"".join(current))
            current, size = [], 0
            if n > room:
                raise EncodeError(f"NLRI item of {n} octets does not fit in {room}")
        current.append(item)
        size += n
    if current:
        fields.append(b"".join(current))
    return fields
