"""Differential test: UPDATEs and OPENs our codec encodes decode to the same content in our
codec and in ExaBGP 5's (a test-only dependency, driven in-process)."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import capabilities, families, updates

from bgpd.wire import (
    AddPath,
    CodecOptions,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    Family,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    Open,
    RouteRefreshCap,
    UnknownCapability,
    Update,
    decode_message,
    encode_open,
    encode_update,
)
from bgpd.wire.family import bytes_to_address, nlri_to_prefix, strip_path_id
from labs.harness.needs import require_module

exabgp = require_module("exabgp", "exabgp (test-only dependency) is not importable")

from exabgp.bgp.message.direction import Direction  # noqa: E402
from exabgp.bgp.message.open import Open as XOpen  # noqa: E402
from exabgp.bgp.message.open.capability.negotiated import Negotiated  # noqa: E402
from exabgp.bgp.message.update import EOR  # noqa: E402
from exabgp.bgp.message.update import Update as XUpdate  # noqa: E402
from exabgp.bgp.message.update.nlri.nlri import Action  # noqa: E402
from exabgp.logger import log  # noqa: E402
from exabgp.protocol.family import AFI, SAFI  # noqa: E402

_LOG_METHODS = ("debug", "info", "warning", "error", "critical", "fatal")
_EXA_FAMILY = {
    Family.IPV4_UNICAST: (AFI.ipv4, SAFI.unicast),
    Family.IPV6_UNICAST: (AFI.ipv6, SAFI.unicast),
}


class _Neighbor(dict[str, Any]):
    """The one neighbor setting Negotiated reads when it is built by hand."""

    def __init__(self) -> None:
        super().__init__(capability={"aigp": False})


@contextlib.contextmanager
def _exabgp_quiet() -> Iterator[None]:
    """ExaBGP logs through class-level globals it sets up from its environment; silence them
    for the call and put them back after, so nothing leaks into other tests."""
    saved = {name: log.__dict__.get(name) for name in _LOG_METHODS}
    log.disable()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(log, name)
            else:
                setattr(log, name, value)


def exabgp_decode_update(wire: bytes, opts: CodecOptions) -> Any:
    """ExaBGP's decoding of one UPDATE, with a fresh Negotiated (it caches per session)."""
    negotiated = Negotiated(_Neighbor())
    negotiated.asn4 = opts.four_octet_as
    negotiated.families = list(_EXA_FAMILY.values())
    negotiated.msg_size = opts.max_message_size
    for family in opts.add_path_receive:
        negotiated.addpath._receive[_EXA_FAMILY[family]] = True
    with _exabgp_quiet():
        return XUpdate.unpack_message(wire[19:], Direction.IN, negotiated)


def exabgp_decode_open(wire: bytes) -> Any:
    with _exabgp_quiet():
        return XOpen.unpack_message(wire[19:])


# --- normal forms -------------------------------------------------------------------------


def _family_name(afi: Any, safi: Any) -> str:
    return f"{int(afi)}/{int(safi)}"


def ours_update(msg: Update, opts: CodecOptions) -> dict[str, Any]:
    ap = opts.add_path_receive
    announced: list[tuple[str, str, bytes | None, str]] = []
    withdrawn: list[tuple[str, str, bytes | None]] = []

    def item(family: Family, raw: bytes) -> tuple[str, str, bytes | None]:
        add_path = family in ap
        prefix = nlri_to_prefix(family, strip_path_id(raw, add_path))
        return _family_name(*family.value), prefix, raw[:4] if add_path else None

    attrs = msg.attributes
    for raw in msg.nlri:
        assert attrs is not None and attrs.next_hop is not None
        announced.append((*item(Family.IPV4_UNICAST, raw), bytes_to_address(attrs.next_hop)))
    if msg.mp_reach is not None:
        nh = bytes_to_address(msg.mp_reach.next_hop)
        announced += [(*item(msg.mp_reach.family, raw), nh) for raw in msg.mp_reach.nlri]
    withdrawn += [item(Family.IPV4_UNICAST, raw) for raw in msg.withdrawn]
    if msg.mp_unreach is not None:
        withdrawn += [item(msg.mp_unreach.family, raw) for raw in msg.mp_unreach.withdrawn]
    # Sets: a prefix repeated in one UPDATE is one route to both decoders.
    out: dict[str, Any] = {"announced": set(announced), "withdrawn": set(withdrawn)}
    if attrs is not None and (announced or msg.nlri):
        out.update(
            origin=attrs.origin,
            as_path=[(t, list(asns)) for t, asns in attrs.as_path],
            med=attrs.med,
            local_pref=attrs.local_pref,
            atomic_aggregate=attrs.atomic_aggregate,
            aggregator=attrs.aggregator,
            # Communities are sets (ExaBGP sorts them and drops repeats).
            communities=set(attrs.communities),
            large_communities=set(attrs.large_communities),
            originator_id=attrs.originator_id,
            cluster_list=list(attrs.cluster_list),
        )
    return out


def exabgp_update(x: Any, opts: CodecOptions) -> dict[str, Any]:
    if isinstance(x, EOR):
        return {"announced": set(), "withdrawn": set()}
    add_path = {_EXA_FAMILY[f] for f in opts.add_path_receive}
    announced = []
    withdrawn = []
    seen: set[Any] = set()
    for nlri in x.nlris:
        afi, safi = nlri.family().afi_safi()
        pid = nlri.path_info.pack() if (afi, safi) in add_path else None
        key = (_family_name(afi, safi), nlri.cidr.prefix(), pid)
        if nlri.action == Action.ANNOUNCE:
            # A global + link-local IPv6 next hop comes out as one route per address, the
            # global one first; the global one is the next hop.
            if (key, "announce") not in seen:
                announced.append((*key, str(nlri.nexthop)))
            seen.add((key, "announce"))
        else:
            withdrawn.append(key)
    out: dict[str, Any] = {"announced": set(announced), "withdrawn": set(withdrawn)}
    if announced:
        a = x.attributes
        aggregator = a.get(7)
        out.update(
            origin=a[1].origin,
            # ExaBGP drops an empty AS_PATH attribute (an iBGP route we originate).
            as_path=[(seg.ID, [int(asn) for asn in seg]) for seg in a[2].aspath] if 2 in a else [],
            med=a[4].med if 4 in a else None,
            local_pref=a[5].localpref if 5 in a else None,
            atomic_aggregate=6 in a,
            aggregator=None
            if aggregator is None
            else (int(aggregator.asn), aggregator.speaker.pack()),
            communities={int.from_bytes(c.community, "big") for c in a[8].communities}
            if 8 in a
            else set(),
            large_communities={struct.unpack("!LLL", c.large_community) for c in a[32].communities}
            if 32 in a
            else set(),
            originator_id=int(ipaddress.IPv4Address(str(a[9]))) if 9 in a else None,
            cluster_list=[int.from_bytes(c.pack(), "big") for c in a[10].clusters]
            if 10 in a
            else [],
        )
    return out


def ours_open(msg: Open) -> dict[str, Any]:
    caps: dict[str, Any] = {"mp": set(), "unknown": {}}
    for cap in msg.capabilities:
        if isinstance(cap, Multiprotocol):
            caps["mp"].add(_family_name(*cap.family.value))
        elif isinstance(cap, RouteRefreshCap):
            caps["route_refresh"] = True
        elif isinstance(cap, EnhancedRouteRefreshCap):
            caps["enhanced_route_refresh"] = True
        elif isinstance(cap, ExtendedMessageCap):
            caps["extended_message"] = True
        elif isinstance(cap, FourOctetAs):
            caps["asn4"] = cap.asn
        elif isinstance(cap, GracefulRestart):
            caps["graceful_restart"] = (
                cap.restart_time,
                cap.restarting,
                cap.notification,
                {_family_name(*f.value): fwd for f, fwd in cap.families},
            )
        elif isinstance(cap, AddPath):
            caps["add_path"] = {_family_name(*f.value): mode for f, mode in cap.families}
        elif isinstance(cap, UnknownCapability):
            caps["unknown"][cap.code] = cap.value
    return {"asn": msg.my_as, "hold_time": msg.hold_time, "bgp_id": msg.bgp_id, "caps": caps}


def exabgp_open(x: Any) -> dict[str, Any]:
    caps: dict[str, Any] = {"mp": set(), "unknown": {}}
    for code, cap in x.capabilities.items():
        if code == 1:
            caps["mp"] = {_family_name(afi, safi) for afi, safi in cap}
        elif code == 2:
            caps["route_refresh"] = True
        elif code == 70:
            caps["enhanced_route_refresh"] = True
        elif code == 6:
            caps["extended_message"] = True
        elif code == 65:
            caps["asn4"] = int(cap)
        elif code == 64:
            caps["graceful_restart"] = (
                cap.restart_time,
                bool(cap.restart_flag & 0x8),
                bool(cap.restart_flag & 0x4),
                {_family_name(afi, safi): bool(flag & 0x80) for (afi, safi), flag in cap.items()},
            )
        elif code == 69:
            caps["add_path"] = {_family_name(afi, safi): mode for (afi, safi), mode in cap.items()}
        else:
            caps["unknown"][int(code)] = cap.data
    return {
        "asn": int(x.asn),
        "hold_time": int(x.hold_time),
        "bgp_id": int.from_bytes(x.router_id.pack(), "big"),
        "caps": caps,
    }


# --- the tests ----------------------------------------------------------------------------


def _exabgp_decodable(msg: Update) -> bool:
    """ExaBGP refuses an MP_REACH_NLRI without NLRI (RFC 4760 allows it; we accept it), and
    its routes carry no family-specific next hop to tell IPv4 NLRI in both places apart."""
    if msg.mp_reach is None:
        return True
    return bool(msg.mp_reach.nlri) and not (msg.nlri and msg.mp_reach.family is Family.IPV4_UNICAST)


DIFF_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@DIFF_SETTINGS
@given(updates(canonical=True, unknown=False).filter(_exabgp_decodable))
def test_updates_agree_with_exabgp(msg: Update) -> None:
    opts = CodecOptions(extended_message=True)
    wire = encode_update(msg, opts)
    ours = decode_message(wire, opts)
    assert isinstance(ours, Update) and ours.error is None
    assert ours_update(ours, opts) == exabgp_update(exabgp_decode_update(wire, opts), opts)


@DIFF_SETTINGS
@given(updates(add_path=frozenset(Family), canonical=True, unknown=False).filter(_exabgp_decodable))
def test_add_path_updates_agree_with_exabgp(msg: Update) -> None:
    opts = CodecOptions(add_path_receive=frozenset(Family), extended_message=True)
    wire = encode_update(msg, opts)
    ours = decode_message(wire, opts)
    assert isinstance(ours, Update)
    assert ours_update(ours, opts) == exabgp_update(exabgp_decode_update(wire, opts), opts)


@DIFF_SETTINGS
@given(
    updates(canonical=True, unknown=False, confed=False, max_asn=0xFFFF).filter(_exabgp_decodable)
)
def test_two_octet_as_updates_agree_with_exabgp(msg: Update) -> None:
    opts = CodecOptions(four_octet_as=False, extended_message=True)
    wire = encode_update(msg, opts)
    ours = decode_message(wire, opts)
    assert isinstance(ours, Update)
    assert ours_update(ours, opts) == exabgp_update(exabgp_decode_update(wire, opts), opts)


def _one_per_code(caps: list[Any]) -> tuple[Any, ...]:
    """ExaBGP keeps one capability per code (the Multiprotocol ones merged) and knows some
    codes we keep as unknown; draw only what both can represent."""
    exabgp_known = {5, 68, 73, 75, 128, 131, 185}
    seen: set[Any] = set()
    out = []
    for cap in caps:
        if isinstance(cap, UnknownCapability) and cap.code in exabgp_known:
            continue
        key = cap if isinstance(cap, Multiprotocol) else type(cap)
        key = (key, cap.code) if isinstance(cap, UnknownCapability) else key
        if key not in seen:
            seen.add(key)
            out.append(cap)
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 0xFFFF),
    st.sampled_from([0, 3, 90, 240]),
    st.integers(1, 0xFFFFFFFF),
    st.lists(capabilities, max_size=10).map(_one_per_code),
)
def test_opens_agree_with_exabgp(my_as: int, hold: int, bgp_id: int, caps: tuple[Any, ...]) -> None:
    msg = Open(my_as, hold, bgp_id, caps)
    wire = encode_open(msg)
    ours = decode_message(wire)
    assert isinstance(ours, Open)
    assert ours_open(ours) == exabgp_open(exabgp_decode_open(wire))


@settings(max_examples=50, deadline=None)
@given(families)
def test_end_of_rib_agrees_with_exabgp(family: Family) -> None:
    from bgpd.wire import encode_end_of_rib

    x = exabgp_decode_update(encode_end_of_rib(family), CodecOptions())
    assert isinstance(x, EOR)
    assert (int(x.nlris[0].afi), int(x.nlris[0].safi)) == family.value
    ours = decode_message(encode_end_of_rib(family))
    assert isinstance(ours, Update) and ours.end_of_rib is family
