"""Export rules: iBGP split horizon, the RFC 4456 client/non-client/eBGP matrix, and the
attributes each kind of target gets."""

from __future__ import annotations

import pytest

from bgpd.policy.reflection import (
    NO_ADVERTISE,
    NO_EXPORT,
    export_attrs,
    may_export,
    reflect,
    reflecting,
)
from bgpd.rib.attrcache import AttrCache
from bgpd.rib.route import LOCAL, PeerInfo, Route, Source
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST
AS = 64512
CLUSTER = 0x0A0000FE
ME4 = address_to_bytes("10.0.0.1")
ME6 = address_to_bytes("fd00::1")
PREFIX = prefix_to_nlri("10.65.0.0/26")[1]


def peer(name: str, last: int, asn: int = AS, rr_client: bool = False) -> PeerInfo:
    return PeerInfo(name, bytes([10, 0, 0, last]), asn, 0x0A000000 + last, AS, rr_client)


CLIENT = peer("client", 2, rr_client=True)
CLIENT2 = peer("client2", 3, rr_client=True)
NONCLIENT = peer("nonclient", 4)
NONCLIENT2 = peer("nonclient2", 5)
EBGP = peer("ebgp", 6, asn=65001)
EBGP2 = peer("ebgp2", 7, asn=65002)


def route(source: Source, **kw: object) -> Route:
    kw.setdefault("next_hop", bytes([10, 0, 0, 200]))
    return Route(PREFIX, V4, PathAttributes(**kw), source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        # Full mesh, no reflection: iBGP-learned routes do not go to iBGP peers.
        (NONCLIENT, NONCLIENT2, False),
        (NONCLIENT, EBGP, True),
        (EBGP, NONCLIENT, True),
        (EBGP, EBGP2, True),
        (LOCAL, NONCLIENT, True),
        (LOCAL, EBGP, True),
        # RFC 4456 6: from a client to everyone, from a non-client to clients only.
        (CLIENT, CLIENT2, True),
        (CLIENT, NONCLIENT, True),
        (CLIENT, EBGP, True),
        (NONCLIENT, CLIENT, True),
        (EBGP, CLIENT, True),
        (LOCAL, CLIENT, True),
        # Never back to the sender.
        (CLIENT, CLIENT, False),
        (EBGP, EBGP, False),
        (NONCLIENT, NONCLIENT, False),
    ],
)
def test_export_matrix(source: PeerInfo, target: PeerInfo, allowed: bool) -> None:
    assert may_export(source, target, route(source)) is allowed


@pytest.mark.parametrize(
    ("community", "target", "allowed"),
    [
        (NO_EXPORT, EBGP, False),
        (NO_EXPORT, NONCLIENT, True),
        (NO_ADVERTISE, NONCLIENT, False),
        (NO_ADVERTISE, CLIENT, False),
        (0xFDE80001, EBGP, True),
    ],
)
def test_well_known_communities(community: int, target: PeerInfo, allowed: bool) -> None:
    assert may_export(LOCAL, target, route(LOCAL, communities=(community,))) is allowed


def test_reflecting_only_between_ibgp_peers() -> None:
    assert reflecting(CLIENT, NONCLIENT)
    assert not reflecting(EBGP, CLIENT)
    assert not reflecting(CLIENT, EBGP)
    assert not reflecting(LOCAL, CLIENT)


def test_reflect_sets_originator_once_and_prepends_cluster() -> None:
    a = reflect(PathAttributes(cluster_list=(7,)), CLIENT, CLUSTER)
    assert a.originator_id == CLIENT.router_id and a.cluster_list == (CLUSTER, 7)
    b = reflect(a, NONCLIENT, 9)
    assert b.originator_id == CLIENT.router_id and b.cluster_list == (9, CLUSTER, 7)


def exported(r: Route, target: PeerInfo, *, nhs: bool = False, addr: bytes = ME4) -> PathAttributes:
    return export_attrs(
        r, target, local_as=AS, cluster_id=CLUSTER, next_hop_self=nhs, local_address=addr
    )


def test_ebgp_export() -> None:
    learned = route(
        NONCLIENT,
        as_path=((AS_SEQUENCE, (65010,)),),
        local_pref=300,
        med=20,
        originator_id=5,
        cluster_list=(5,),
    )
    a = exported(learned, EBGP)
    assert a.as_path == ((AS_SEQUENCE, (AS, 65010)),)
    assert a.next_hop == ME4
    assert (a.local_pref, a.originator_id, a.cluster_list, a.med) == (None, None, (), None)
    # Our own routes keep the MED we gave them.
    own = exported(route(LOCAL, med=10, next_hop=None), EBGP)
    assert own.med == 10 and own.as_path == ((AS_SEQUENCE, (AS,)),) and own.next_hop == ME4


def test_ibgp_export_of_local_routes() -> None:
    a = exported(route(LOCAL, next_hop=None), NONCLIENT)
    assert (a.local_pref, a.next_hop, a.as_path) == (100, ME4, ())
    assert a.originator_id is None and a.cluster_list == ()
    assert exported(route(LOCAL, local_pref=50), NONCLIENT).local_pref == 50


def test_ibgp_export_of_ebgp_routes_keeps_next_hop_unless_self() -> None:
    r = route(EBGP, as_path=((AS_SEQUENCE, (65001,)),), next_hop=bytes([192, 0, 2, 1]))
    a = exported(r, NONCLIENT)
    assert a.next_hop == bytes([192, 0, 2, 1]) and a.local_pref == 100
    assert a.as_path == ((AS_SEQUENCE, (65001,)),)
    assert a.originator_id is None
    assert exported(r, NONCLIENT, nhs=True).next_hop == ME4


def test_reflected_routes_get_originator_and_cluster() -> None:
    a = exported(route(CLIENT, local_pref=200), NONCLIENT)
    assert a.originator_id == CLIENT.router_id and a.cluster_list == (CLUSTER,)
    assert a.local_pref == 200 and a.next_hop == bytes([10, 0, 0, 200])
    kept = exported(route(NONCLIENT, originator_id=42, cluster_list=(1,)), CLIENT)
    assert kept.originator_id == 42 and kept.cluster_list == (CLUSTER, 1)


def test_ipv6_link_local_next_hop_is_not_passed_on() -> None:
    nh = address_to_bytes("fd00::9") + address_to_bytes("fe80::9")
    r = Route(prefix_to_nlri("fd00:1::/64")[1], V6, PathAttributes(next_hop=nh), EBGP)
    assert exported(r, NONCLIENT, addr=ME6).next_hop == nh[:16]


def test_export_returns_interned_values() -> None:
    cache = AttrCache()
    r1 = route(CLIENT)
    r2 = Route(
        prefix_to_nlri("10.66.0.0/26")[1], V4, PathAttributes(next_hop=r1.attrs.next_hop), CLIENT
    )
    kw = {"local_as": AS, "cluster_id": CLUSTER, "next_hop_self": False, "local_address": ME4}
    a1 = export_attrs(r1, NONCLIENT, cache=cache, **kw)  # type: ignore[arg-type]
    a2 = export_attrs(r2, NONCLIENT, cache=cache, **kw)  # type: ignore[arg-type]
    assert a1 is a2 and a1 in cache


def test_next_hop_self_needs_a_local_address() -> None:
    with pytest.raises(ValueError):
        exported(route(LOCAL), EBGP, addr=None)  # type: ignore[arg-type]
