"""Hypothesis strategies for the wire codec tests: messages that must round-trip."""

from __future__ import annotations

from hypothesis import strategies as st

from bgpd.wire.attributes import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    FLAG_OPTIONAL,
    FLAG_PARTIAL,
    FLAG_TRANSITIVE,
    PathAttributes,
    UnknownAttribute,
)
from bgpd.wire.attrs_codec import ATTRS
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    AddPath,
    Capability,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    MpReach,
    MpUnreach,
    Multiprotocol,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshCap,
    UnknownCapability,
    Update,
)

KNOWN_CAP_CODES = frozenset((1, 2, 6, 64, 65, 69, 70))

families = st.sampled_from(list(Family))
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

capabilities: st.SearchStrategy[Capability] = st.one_of(
    families.map(Multiprotocol),
    st.just(RouteRefreshCap()),
    st.just(EnhancedRouteRefreshCap()),
    st.just(ExtendedMessageCap()),
    u32.map(FourOctetAs),
    st.builds(
        GracefulRestart,
        restart_time=st.integers(0, 4095),
        restarting=st.booleans(),
        notification=st.booleans(),
        families=st.lists(st.tuples(families, st.booleans()), max_size=3).map(tuple),
    ),
    st.builds(AddPath, st.lists(st.tuples(families, st.integers(1, 3)), max_size=3).map(tuple)),
    st.builds(
        UnknownCapability,
        st.integers(0, 255).filter(lambda c: c not in KNOWN_CAP_CODES),
        st.binary(max_size=40),
    ),
)

opens = st.builds(
    Open,
    my_as=u16,
    hold_time=st.sampled_from([0, 3, 9, 90, 180, 65535]),
    bgp_id=st.integers(1, 0xFFFFFFFF),
    capabilities=st.lists(capabilities, max_size=12).map(tuple),
)

notifications = st.builds(
    Notification, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64)
)
route_refreshes = st.builds(RouteRefresh, families, st.integers(0, 2))
small_messages = st.one_of(opens, notifications, route_refreshes, st.just(Keepalive()))


def prefix_items(
    family: Family, add_path: bool = False, canonical: bool = False
) -> st.SearchStrategy[bytes]:
    """NLRI items: length octet + significant octets, maybe a path id. Host bits arbitrary
    unless `canonical`."""

    @st.composite
    def item(draw: st.DrawFn) -> bytes:
        plen = draw(st.integers(0, family.max_len))
        n = (plen + 7) // 8
        body = draw(st.binary(min_size=n, max_size=n))
        if canonical and plen % 8:
            body = body[:-1] + bytes((body[-1] & (0xFF << (8 - plen % 8)) & 0xFF,))
        pid = draw(st.binary(min_size=4, max_size=4)) if add_path else b""
        return pid + bytes((plen,)) + body

    return item()


def _segments(max_asn: int, confed: bool) -> st.SearchStrategy[tuple[int, tuple[int, ...]]]:
    types = [AS_SEQUENCE, AS_SET] + ([AS_CONFED_SEQUENCE, AS_CONFED_SET] if confed else [])
    return st.tuples(
        st.sampled_from(types),
        st.lists(st.integers(0, max_asn), min_size=1, max_size=8).map(tuple),
    )


def as_paths(
    max_asn: int = 0xFFFFFFFF, confed: bool = True
) -> st.SearchStrategy[tuple[tuple[int, tuple[int, ...]], ...]]:
    return st.lists(_segments(max_asn, confed), max_size=4).map(tuple)


ipv4_host = st.tuples(
    st.integers(1, 223).filter(lambda x: x != 127), st.binary(min_size=3, max_size=3)
).map(lambda t: bytes((t[0],)) + t[1])

unknown_attributes = st.builds(
    UnknownAttribute,
    st.just(FLAG_OPTIONAL | FLAG_TRANSITIVE | FLAG_PARTIAL),
    st.integers(1, 255).filter(lambda c: c not in ATTRS),
    st.binary(max_size=300),
)


def path_attributes(
    next_hop: st.SearchStrategy[bytes | None] = ipv4_host,
    max_asn: int = 0xFFFFFFFF,
    confed: bool = True,
    unknown: bool = True,
) -> st.SearchStrategy[PathAttributes]:
    """Attributes that survive encode/decode unchanged (in the form the decoder builds)."""
    return st.builds(
        PathAttributes,
        origin=st.integers(0, 2),
        as_path=as_paths(max_asn, confed),
        next_hop=next_hop,
        med=st.none() | u32,
        local_pref=st.none() | u32,
        atomic_aggregate=st.booleans(),
        aggregator=st.none()
        | st.tuples(st.integers(0, max_asn), st.binary(min_size=4, max_size=4)),
        communities=st.lists(u32, max_size=6).map(tuple),
        large_communities=st.lists(st.tuples(u32, u32, u32), max_size=4, unique=True).map(tuple),
        originator_id=st.none() | u32,
        cluster_list=st.lists(u32, max_size=4).map(tuple),
        unknown=st.lists(
            unknown_attributes, max_size=2 if unknown else 0, unique_by=lambda u: u.type_code
        ).map(lambda us: tuple(sorted(us, key=lambda u: u.type_code))),
    )


@st.composite
def updates(
    draw: st.DrawFn,
    add_path: frozenset[Family] = frozenset(),
    max_asn: int = 0xFFFFFFFF,
    canonical: bool = False,
    unknown: bool = True,
    confed: bool = True,
) -> Update:
    """UPDATEs in the form the decoder builds, so decode(encode(u)) == u."""
    v4 = Family.IPV4_UNICAST

    def items(fam: Family) -> st.SearchStrategy[tuple[bytes, ...]]:
        return st.lists(prefix_items(fam, fam in add_path, canonical), max_size=5).map(tuple)

    withdrawn = draw(items(v4))
    nlri = draw(items(v4))
    mp_reach = mp_unreach = None
    if draw(st.booleans()):
        fam = draw(families)
        nh = draw(
            ipv4_host
            if fam is v4
            else st.binary(min_size=16, max_size=16) | st.binary(min_size=32, max_size=32)
        )
        mp_reach = MpReach(fam, nh, draw(items(fam)))
    if draw(st.booleans()):
        fam = draw(families)
        mp_unreach = MpUnreach(fam, draw(items(fam)))
    attrs = None
    if nlri or mp_reach is not None or draw(st.booleans()):
        # The decoder's next hop: NEXT_HOP with IPv4 NLRI, else the MP_REACH one.
        nh_strategy: st.SearchStrategy[bytes | None]
        if nlri or mp_reach is None:
            nh_strategy = ipv4_host if nlri else st.none() | ipv4_host
        else:
            nh_strategy = st.just(mp_reach.next_hop)
        attrs = draw(path_attributes(nh_strategy, max_asn, confed, unknown))
    return Update(withdrawn, attrs, nlri, mp_reach, mp_unreach)
