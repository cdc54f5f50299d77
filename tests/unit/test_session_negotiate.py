"""Our OPEN, and what two OPENs negotiate (CodecOptions, families, hold, GR, refresh)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from session_pair import settings_pair

from bgpd.session.negotiate import Negotiated, build_open, hold_and_keepalive, negotiate
from bgpd.session.settings import PeerSettings
from bgpd.wire.codec import decode_message, encode_open
from bgpd.wire.family import Family
from bgpd.wire.messages import (
    ADD_PATH_BOTH,
    ADD_PATH_RECEIVE,
    ADD_PATH_SEND,
    AS_TRANS,
    AddPath,
    EnhancedRouteRefreshCap,
    ExtendedMessageCap,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    Open,
    RouteRefreshCap,
)

V4, V6 = Family.IPV4_UNICAST, Family.IPV6_UNICAST


def test_build_open_carries_every_configured_capability() -> None:
    sa, _ = settings_pair(add_path=((V4, ADD_PATH_BOTH),))
    open_ = build_open(sa)
    assert open_.my_as == 65000 and open_.hold_time == 240 and open_.bgp_id == sa.router_id
    assert open_.capabilities == (
        Multiprotocol(V4),
        Multiprotocol(V6),
        RouteRefreshCap(),
        EnhancedRouteRefreshCap(),
        ExtendedMessageCap(),
        GracefulRestart(120, False, False, ((V4, False), (V6, False))),
        FourOctetAs(65000),
        AddPath(((V4, ADD_PATH_BOTH),)),
    )
    assert decode_message(encode_open(open_)) == open_


def test_build_open_minimal_and_four_octet_as() -> None:
    sa, _ = settings_pair(
        a={
            "local_as": 4200000000,
            "peer_as": 65000,
            "route_refresh": False,
            "enhanced_route_refresh": False,
            "extended_message": False,
            "graceful_restart_time": None,
            "families": frozenset({V6}),
        }
    )
    open_ = build_open(sa)
    assert open_.my_as == AS_TRANS and open_.asn == 4200000000
    assert open_.capabilities == (Multiprotocol(V6), FourOctetAs(4200000000))


def test_restarting_speaker_sets_the_restart_and_forwarding_bits() -> None:
    sa, _ = settings_pair(graceful_restart_restarting=True, graceful_restart_time=60)
    (gr,) = build_open(sa).find(GracefulRestart)
    assert gr == GracefulRestart(60, True, False, ((V4, True), (V6, True)))


def _negotiated(a: dict[str, Any], b: dict[str, Any]) -> tuple[Negotiated, Negotiated]:
    sa, sb = settings_pair(a=a, b=b)
    oa, ob = build_open(sa), build_open(sb)
    return negotiate(sa, oa, ob), negotiate(sb, ob, oa)


def test_everything_on_both_sides() -> None:
    na, nb = _negotiated({}, {})
    for n in (na, nb):
        assert n.options.four_octet_as and n.options.extended_message
        assert n.families == frozenset({V4, V6})
        assert n.route_refresh and n.enhanced_route_refresh
        assert n.graceful_restart is not None


def test_families_intersect_and_extended_message_needs_both() -> None:
    na, _ = _negotiated(
        {"families": frozenset({V4, V6})},
        {"families": frozenset({V6}), "extended_message": False},
    )
    assert na.families == frozenset({V6})
    assert not na.options.extended_message
    assert na.options.max_message_size == 4096


def test_no_multiprotocol_capability_means_ipv4_unicast() -> None:
    sa, _ = settings_pair()
    remote = Open(my_as=65000, hold_time=90, bgp_id=2)
    n = negotiate(sa, build_open(sa), remote)
    assert n.families == frozenset({V4})
    assert not n.options.four_octet_as
    assert n.graceful_restart is None and not n.route_refresh
    assert n.peer_as == 65000 and n.peer_id == 2


def test_graceful_restart_needs_ours_too() -> None:
    na, nb = _negotiated({"graceful_restart_time": None}, {"graceful_restart_time": 30})
    assert na.graceful_restart is None
    assert nb.graceful_restart is None
    na, nb = _negotiated({"graceful_restart_time": 10}, {"graceful_restart_time": 30})
    assert na.graceful_restart is not None and na.graceful_restart.restart_time == 30
    assert nb.graceful_restart is not None and nb.graceful_restart.restart_time == 10


@pytest.mark.parametrize(
    ("mode_a", "mode_b", "a_receive", "a_send"),
    [
        (ADD_PATH_BOTH, ADD_PATH_BOTH, True, True),
        (ADD_PATH_RECEIVE, ADD_PATH_SEND, True, False),
        (ADD_PATH_SEND, ADD_PATH_RECEIVE, False, True),
        (ADD_PATH_SEND, ADD_PATH_SEND, False, False),
        (ADD_PATH_RECEIVE, ADD_PATH_RECEIVE, False, False),
        (ADD_PATH_BOTH, None, False, False),
    ],
)
def test_add_path_directions(
    mode_a: int, mode_b: int | None, a_receive: bool, a_send: bool
) -> None:
    na, nb = _negotiated(
        {"add_path": ((V4, mode_a),)},
        {"add_path": ((V4, mode_b),) if mode_b is not None else ()},
    )
    assert (V4 in na.options.add_path_receive) is a_receive
    assert (V4 in na.options.add_path_send) is a_send
    # The peer's view is the mirror image.
    assert nb.options.add_path_send == na.options.add_path_receive
    assert nb.options.add_path_receive == na.options.add_path_send
    assert V6 not in na.options.add_path_receive | na.options.add_path_send


@pytest.mark.parametrize(
    ("ours", "keepalive", "theirs", "expected"),
    [
        (240, None, 90, (90, 30)),
        (240, None, 0, (0, 0)),
        (0, None, 90, (0, 0)),
        (9, None, 240, (9, 3)),
        (3, None, 240, (3, 1)),
        (240, 10, 90, (90, 10)),
        (240, 100, 90, (90, 30)),
    ],
)
def test_hold_and_keepalive(
    ours: int, keepalive: int | None, theirs: int, expected: tuple[int, int]
) -> None:
    sa, _ = settings_pair(hold_time=ours, keepalive_time=keepalive)
    assert hold_and_keepalive(sa, theirs) == expected


def test_settings_is_hashable_and_validated() -> None:
    sa, _ = settings_pair()
    assert hash(sa) == hash(replace(sa))
    with pytest.raises(ValueError):
        replace(sa, hold_time=2)
    with pytest.raises(ValueError):
        replace(sa, password="x" * 81)
    with pytest.raises(ValueError):
        replace(sa, peer_address="not an address")
    with pytest.raises(ValueError):
        replace(sa, four_octet_as=False, local_as=70000)
    with pytest.raises(ValueError):
        replace(sa, families=frozenset({V4}), add_path=((V6, ADD_PATH_BOTH),))
    with pytest.raises(ValueError):
        replace(sa, ttl_security=255)


def test_ttl_follows_bird() -> None:
    ibgp, _ = settings_pair()
    assert ibgp.is_ibgp and ibgp.outgoing_ttl == 64 and ibgp.min_ttl is None
    ebgp = replace(ibgp, peer_as=65001)
    assert not ebgp.is_ibgp and ebgp.outgoing_ttl == 1
    assert replace(ebgp, multihop=5).outgoing_ttl == 5
    gtsm = replace(ebgp, ttl_security=1)
    assert gtsm.outgoing_ttl == 255 and gtsm.min_ttl == 255
    assert replace(ebgp, ttl_security=3).min_ttl == 253


def test_default_settings_follow_bird_and_calico() -> None:
    s = PeerSettings("Mesh_10_0_0_2", "10.0.0.2", 65000, 65000, 1)
    assert s.hold_time == 240 and s.keepalive_time is None
    assert s.connect_retry_time == 5.0 and s.connect_delay_time == 2.0
    assert s.error_wait_time == (5.0, 30.0) and s.graceful_restart_time == 120
    assert s.families == frozenset({V4, V6}) and s.peer_port == 179
