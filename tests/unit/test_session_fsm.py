"""The connection state machine on a fake clock: establishment, timers, OPEN checks, FSM
errors, NOTIFICATIONs, UPDATE delivery."""

from __future__ import annotations

import struct

import pytest
from session_pair import SessionPair, drain, rid, settings_pair, update_bytes

from bgpd.session.errors import LocalSessionError
from bgpd.session.events import (
    RouteRefreshReceived,
    SessionDown,
    SessionEstablished,
    StateChanged,
    UpdateReceived,
)
from bgpd.session.fsm import State
from bgpd.session.session import OPEN_SENT_HOLD_TIME, Session
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.codec import (
    decode_message,
    encode_keepalive,
    encode_notification,
    encode_open,
    encode_route_refresh,
    pack_announcements,
    split_messages,
)
from bgpd.wire.errors import Handling
from bgpd.wire.family import Family, prefix_to_nlri
from bgpd.wire.messages import (
    AS_TRANS,
    FourOctetAs,
    Keepalive,
    Message,
    Multiprotocol,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from bgpd.wire.options import CodecOptions


def sent(session: Session) -> list[Message]:
    frames, rest = split_messages(session.data_to_send(), 65535)
    assert rest == b""
    return [decode_message(f) for f in frames]


def peer_open(**kw: object) -> Open:
    """An OPEN as B (10.0.0.2, AS 65000) would send it to A."""
    fields: dict[str, object] = {
        "my_as": 65000,
        "hold_time": 90,
        "bgp_id": rid("10.0.0.2"),
        "capabilities": (Multiprotocol(Family.IPV4_UNICAST), FourOctetAs(65000)),
    }
    fields.update(kw)
    return Open(**fields)  # type: ignore[arg-type]


def opened(session: Session) -> Session:
    """`session` started, its OPEN taken off the wire."""
    session.start(0.0)
    assert isinstance(sent(session)[0], Open)
    drain(session)
    return session


def down(session: Session) -> SessionDown:
    events = [e for e in drain(session) if isinstance(e, SessionDown)]
    assert len(events) == 1
    return events[0]


# --- establishment -------------------------------------------------------------------------


def test_establishes_both_ways_and_reports_it() -> None:
    pair = SessionPair()
    pair.establish()
    for session, other in ((pair.a, pair.b), (pair.b, pair.a)):
        events = drain(session)
        states = [(e.old, e.new) for e in events if isinstance(e, StateChanged)]
        assert states == [
            (State.IDLE, State.OPEN_SENT),
            (State.OPEN_SENT, State.OPEN_CONFIRM),
            (State.OPEN_CONFIRM, State.ESTABLISHED),
        ]
        (est,) = [e for e in events if isinstance(e, SessionEstablished)]
        assert est.local_open == session.local_open
        assert est.remote_open == other.local_open
        assert est.options.four_octet_as and est.options.extended_message
        assert est.negotiated.families == frozenset(Family)
        assert session.options is est.options


def test_byte_at_a_time_establishes_too() -> None:
    pair = SessionPair()
    pair.start()
    for _ in range(3):
        for src, dst in ((pair.a, pair.b), (pair.b, pair.a)):
            for i, byte in enumerate(src.data_to_send()):
                dst.receive_data(bytes([byte]), float(i))
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED


def test_trailing_partial_message_waits_for_the_rest() -> None:
    a = opened(Session(settings_pair()[0]))
    wire = encode_open(peer_open()) + encode_keepalive()[:7]
    a.receive_data(wire, 0.0)
    assert a.state is State.OPEN_CONFIRM
    a.receive_data(encode_keepalive()[7:], 0.0)
    assert a.state is State.ESTABLISHED


def test_start_sends_open_and_arms_the_large_hold_timer() -> None:
    a = Session(settings_pair()[0])
    a.start(10.0)
    (msg,) = sent(a)
    assert msg == a.local_open
    assert a.state is State.OPEN_SENT
    assert a.next_timer() == 10.0 + OPEN_SENT_HOLD_TIME
    with pytest.raises(LocalSessionError):
        a.start(11.0)


def test_receive_before_start_is_misuse() -> None:
    with pytest.raises(LocalSessionError):
        Session(settings_pair()[0]).receive_data(encode_keepalive(), 0.0)


# --- timers --------------------------------------------------------------------------------


def test_hold_time_is_the_smaller_offer_and_keepalive_a_third() -> None:
    pair = SessionPair(*settings_pair(a={"hold_time": 90}, b={"hold_time": 30}))
    pair.establish()
    assert pair.a.negotiated is not None and pair.b.negotiated is not None
    assert pair.a.negotiated.hold_time == pair.b.negotiated.hold_time == 30
    assert pair.a.negotiated.keepalive_time == 10
    assert pair.a.next_timer() == 10.0


def test_has_output_says_whether_anything_waits_to_be_sent() -> None:
    # The driver schedules a write only when there is output (an idle peer's KEEPALIVE read
    # costs the read alone).
    pair = SessionPair(*settings_pair(a={"hold_time": 30}, b={"hold_time": 30}))
    pair.establish()
    assert not pair.a.has_output() and not pair.b.has_output()
    pair.a.receive_data(encode_keepalive(), 1.0)  # reading a KEEPALIVE sends nothing
    assert not pair.a.has_output()
    pair.a.handle_timer(10.0)  # the keepalive timer: ours goes out
    assert pair.a.has_output()
    assert pair.a.data_to_send() == encode_keepalive()
    assert not pair.a.has_output()


def test_configured_keepalive_is_capped_by_the_hold_time() -> None:
    pair = SessionPair(*settings_pair(a={"keepalive_time": 60, "hold_time": 90}))
    pair.establish()
    assert pair.a.negotiated is not None and pair.a.negotiated.keepalive_time == 30
    pair = SessionPair(*settings_pair(a={"keepalive_time": 5}))
    pair.establish()
    assert pair.a.negotiated is not None and pair.a.negotiated.keepalive_time == 5


def test_keepalives_keep_both_sides_up_across_many_hold_times() -> None:
    pair = SessionPair(*settings_pair(hold_time=9))
    pair.establish()
    drain(pair.a), drain(pair.b)
    received_before = pair.b.counters.messages_received
    now = 0.0
    while True:
        deadline = min(t for t in (pair.a.next_timer(), pair.b.next_timer()) if t is not None)
        assert deadline > now
        if deadline > 100.0:
            break
        now = deadline
        pair.advance(now)
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    # One keepalive every 3 s for 100 s.
    assert pair.b.counters.messages_received - received_before == 33
    assert not [e for e in drain(pair.a) + drain(pair.b) if isinstance(e, SessionDown)]


def test_hold_timer_expiry_sends_4_0_and_ends_the_session() -> None:
    pair = SessionPair(*settings_pair(hold_time=30))
    pair.establish()
    drain(pair.a), drain(pair.b)
    # A goes silent: only B's timers run.
    pair.b.handle_timer(10.0)
    pair.a.receive_data(pair.b.data_to_send(), 10.0)
    pair.a.data_to_send()
    assert pair.b.next_timer() == 20.0
    pair.b.handle_timer(20.0)
    pair.b.data_to_send()
    assert pair.b.next_timer() == 30.0  # hold (30) and keepalive (30) are both due
    pair.b.handle_timer(30.0)
    assert pair.b.state is State.IDLE and pair.b.closed
    assert pair.b.next_timer() is None
    event = down(pair.b)
    assert event.reason == "BGP Error: Hold timer expired"
    assert event.notification_sent == Notification(4, 0)
    assert pair.b.info == "BGP Error: Hold timer expired"
    # A gets the NOTIFICATION.
    pair.a.receive_data(pair.b.data_to_send(), 30.0)
    event = down(pair.a)
    assert event.notification_received == Notification(4, 0)
    assert event.reason == "Received: Hold timer expired"
    assert event.restart_time is None  # a NOTIFICATION ends graceful restart


def test_hold_timer_in_open_sent_expires_after_four_minutes() -> None:
    a = opened(Session(settings_pair()[0]))
    a.handle_timer(OPEN_SENT_HOLD_TIME - 1)
    assert a.state is State.OPEN_SENT
    a.handle_timer(OPEN_SENT_HOLD_TIME)
    assert sent(a) == [Notification(4, 0)]
    assert down(a).notification_sent == Notification(4, 0)


def test_hold_time_zero_runs_no_timers() -> None:
    pair = SessionPair(*settings_pair(a={"hold_time": 0}))
    pair.establish()
    assert pair.a.negotiated is not None and pair.a.negotiated.hold_time == 0
    assert pair.a.next_timer() is None and pair.b.next_timer() is None
    pair.advance(10_000.0)
    assert pair.a.state is State.ESTABLISHED


def test_received_traffic_restarts_the_hold_timer() -> None:
    pair = SessionPair(*settings_pair(hold_time=30))
    pair.establish()
    pair.b.send_update_bytes(update_bytes())
    pair.now = 25.0
    pair.transfer()
    assert pair.a.next_timer() == 10.0  # keepalive
    pair.a.handle_timer(10.0)
    pair.a.handle_timer(20.0)
    pair.a.data_to_send()
    pair.a.handle_timer(30.0)
    assert pair.a.state is State.ESTABLISHED  # hold now runs to 55
    pair.a.handle_timer(55.0)
    assert pair.a.state is State.IDLE


# --- OPEN checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("open_", "code", "reason"),
    [
        (peer_open(my_as=65001, capabilities=()), (2, 2), "BGP Error: Bad peer AS"),
        (
            peer_open(my_as=AS_TRANS, capabilities=(FourOctetAs(4200000000),)),
            (2, 2),
            "BGP Error: Bad peer AS",
        ),
        (peer_open(bgp_id=rid("10.0.0.1")), (2, 3), "BGP Error: Bad BGP identifier"),
        (peer_open(version=3), (2, 1), "BGP Error: Unsupported version number"),
    ],
)
def test_bad_open_is_refused_with_its_subcode(
    open_: Open, code: tuple[int, int], reason: str
) -> None:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_open(open_), 1.0)
    (notification,) = sent(a)
    assert isinstance(notification, Notification)
    assert (notification.code, notification.subcode) == code
    event = down(a)
    assert event.reason == reason and event.notification_sent == notification
    assert a.closed


def test_bad_peer_as_carries_the_as_it_saw() -> None:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_open(peer_open(my_as=65001, capabilities=())), 1.0)
    assert sent(a) == [Notification(2, 2, (65001).to_bytes(2, "big"))]


@pytest.mark.parametrize(("hold", "code"), [(1, (2, 6)), (2, (2, 6))])
def test_unacceptable_hold_time(hold: int, code: tuple[int, int]) -> None:
    a = opened(Session(settings_pair()[0]))
    frame = bytearray(encode_open(peer_open()))
    frame[22:24] = hold.to_bytes(2, "big")  # the codec refuses to build it: patch the wire
    a.receive_data(bytes(frame), 1.0)
    (notification,) = sent(a)
    assert isinstance(notification, Notification)
    assert (notification.code, notification.subcode) == code


def test_ebgp_peer_may_share_our_router_id() -> None:
    sa, _ = settings_pair(a={"peer_as": 65001})
    a = opened(Session(sa))
    a.receive_data(encode_open(peer_open(my_as=65001, capabilities=(), bgp_id=sa.router_id)), 1)
    assert a.state is State.OPEN_CONFIRM
    assert sent(a) == [Keepalive()]


def test_peer_without_capabilities_gets_ipv4_and_two_octet_as() -> None:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_open(peer_open(capabilities=())) + encode_keepalive(), 1.0)
    assert a.state is State.ESTABLISHED
    (est,) = [e for e in drain(a) if isinstance(e, SessionEstablished)]
    assert est.negotiated.families == frozenset({Family.IPV4_UNICAST})
    assert not est.options.four_octet_as and not est.options.extended_message
    assert not est.negotiated.route_refresh and est.negotiated.graceful_restart is None


# --- FSM errors ----------------------------------------------------------------------------


def _established_a() -> Session:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_open(peer_open()) + encode_keepalive(), 0.0)
    assert a.state is State.ESTABLISHED
    a.data_to_send()
    drain(a)
    return a


def _open_confirm_a() -> Session:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_open(peer_open()), 0.0)
    assert a.state is State.OPEN_CONFIRM
    a.data_to_send()
    drain(a)
    return a


@pytest.mark.parametrize(
    ("make", "wire", "subcode"),
    [
        (lambda: opened(Session(settings_pair()[0])), update_bytes(), 1),
        (lambda: opened(Session(settings_pair()[0])), encode_keepalive(), 1),
        (
            lambda: opened(Session(settings_pair()[0])),
            encode_route_refresh(RouteRefresh(Family.IPV4_UNICAST)),
            1,
        ),
        (_open_confirm_a, update_bytes(), 2),
        (_open_confirm_a, encode_open(peer_open()), 2),
        (_open_confirm_a, encode_route_refresh(RouteRefresh(Family.IPV4_UNICAST)), 2),
        (_established_a, encode_open(peer_open()), 3),
    ],
    ids=[
        "update-in-opensent",
        "keepalive-in-opensent",
        "refresh-in-opensent",
        "update-in-openconfirm",
        "open-in-openconfirm",
        "refresh-in-openconfirm",
        "open-in-established",
    ],
)
def test_unexpected_message_is_an_fsm_error(make: object, wire: bytes, subcode: int) -> None:
    session = make()  # type: ignore[operator]
    assert isinstance(session, Session)
    session.receive_data(wire, 1.0)
    assert sent(session) == [Notification(5, subcode)]
    event = down(session)
    assert event.notification_sent == Notification(5, subcode)
    assert session.state is State.IDLE


def test_messages_after_a_fatal_one_in_the_same_batch_are_ignored() -> None:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_keepalive() + encode_open(peer_open()), 1.0)
    assert sent(a) == [Notification(5, 1)]
    assert a.state is State.IDLE
    drain(a)
    a.receive_data(encode_keepalive(), 2.0)  # after close: dropped silently
    assert a.data_to_send() == b"" and drain(a) == []


# --- NOTIFICATIONs, wire errors --------------------------------------------------------------


def test_notification_received_ends_the_session_with_it() -> None:
    a = _established_a()
    cease = Notification(6, 2, b"\x0bmaintenance")
    a.receive_data(encode_notification(cease), 5.0)
    event = down(a)
    assert event.notification_received == cease
    assert event.notification_sent is None
    assert event.reason == "Received: Administrative shutdown"
    assert a.data_to_send() == b""  # no NOTIFICATION in reply


def test_notification_in_open_sent() -> None:
    a = opened(Session(settings_pair()[0]))
    a.receive_data(encode_notification(Notification(2, 2)), 1.0)
    assert down(a).reason == "Received: Bad peer AS"


def test_bad_marker_is_connection_not_synchronized() -> None:
    a = _established_a()
    a.receive_data(b"\x00" * 16 + encode_keepalive()[16:], 1.0)
    assert sent(a) == [Notification(1, 1)]
    assert down(a).reason == "BGP Error: Connection not synchronized"


def test_malformed_update_is_an_update_message_error() -> None:
    a = _established_a()
    frame = bytearray(update_bytes())
    frame[19:21] = (200).to_bytes(2, "big")  # withdrawn routes length past the end
    a.receive_data(bytes(frame), 1.0)
    (notification,) = sent(a)
    assert isinstance(notification, Notification) and notification.code == 3
    assert down(a).notification_sent == notification


def test_long_message_without_extended_message_is_bad_length() -> None:
    sa, _ = settings_pair(a={"extended_message": False})
    a = opened(Session(sa))
    a.receive_data(encode_open(peer_open()) + encode_keepalive(), 0.0)
    a.data_to_send()
    big = b"\xff" * 16 + struct.pack(">HB", 5000, 2) + b"\x00" * (5000 - 19)
    a.receive_data(big, 1.0)
    assert sent(a) == [Notification(1, 2, (5000).to_bytes(2, "big"))]


def test_treat_as_withdraw_update_is_delivered_not_fatal() -> None:
    a = _established_a()
    frame = bytearray(update_bytes())
    # ORIGIN is the first attribute: flags, type 1, length 1, value. Value 7 is invalid;
    # RFC 7606 7.1 says treat-as-withdraw.
    at = frame.index(bytes([0x40, 1, 1]), 23)
    frame[at + 3] = 7
    a.receive_data(bytes(frame), 1.0)
    assert a.state is State.ESTABLISHED
    (event,) = drain(a)
    assert isinstance(event, UpdateReceived)
    assert event.update.error is not None
    assert event.update.error.handling is Handling.TREAT_AS_WITHDRAW
    assert a.data_to_send() == b""


# --- UPDATEs and ROUTE-REFRESH -----------------------------------------------------------------


def test_updates_flow_once_established_and_are_counted() -> None:
    pair = SessionPair()
    with pytest.raises(LocalSessionError):
        pair.a.send_update_bytes(update_bytes())
    pair.establish()
    drain(pair.b)
    blob = update_bytes("192.168.1.0/24") + update_bytes("192.168.2.0/24")
    pair.a.send_update_bytes(blob)
    pair.transfer()
    updates = [e for e in drain(pair.b) if isinstance(e, UpdateReceived)]
    assert len(updates) == 2 and all(isinstance(e.update, Update) for e in updates)
    assert updates[0].peer == "Mesh_10_0_0_1"
    assert pair.a.counters.updates_sent == 2
    assert pair.b.counters.updates_received == 2
    with pytest.raises(LocalSessionError):
        pair.a.send_update_bytes(blob[:-1])


def test_route_refresh_round_trip() -> None:
    pair = SessionPair()
    pair.establish()
    drain(pair.b)
    pair.a.send_route_refresh(Family.IPV6_UNICAST)
    pair.a.send_route_refresh(Family.IPV4_UNICAST, 1)
    pair.transfer()
    assert drain(pair.b) == [
        RouteRefreshReceived("Mesh_10_0_0_1", Family.IPV6_UNICAST, 0),
        RouteRefreshReceived("Mesh_10_0_0_1", Family.IPV4_UNICAST, 1),
    ]


def test_route_refresh_needs_the_capability_and_the_family() -> None:
    pair = SessionPair(*settings_pair(b={"route_refresh": False, "enhanced_route_refresh": False}))
    pair.establish()
    with pytest.raises(LocalSessionError):
        pair.a.send_route_refresh(Family.IPV4_UNICAST)
    with pytest.raises(LocalSessionError):
        pair.b.send_route_refresh(Family.IPV4_UNICAST, 1)  # no enhanced route refresh
    pair = SessionPair(*settings_pair(b={"families": frozenset({Family.IPV4_UNICAST})}))
    pair.establish()
    with pytest.raises(LocalSessionError):
        pair.a.send_route_refresh(Family.IPV6_UNICAST)


def test_route_refresh_for_a_family_not_negotiated_is_ignored() -> None:
    pair = SessionPair(*settings_pair(a={"families": frozenset({Family.IPV4_UNICAST})}))
    pair.establish()
    drain(pair.a)
    pair.a.receive_data(encode_route_refresh(RouteRefresh(Family.IPV6_UNICAST)), 1.0)
    assert pair.a.state is State.ESTABLISHED and drain(pair.a) == []


# --- closing -----------------------------------------------------------------------------------


def test_close_sends_cease_and_the_peer_sees_it() -> None:
    pair = SessionPair()
    pair.establish()
    drain(pair.a), drain(pair.b)
    pair.a.close(1.0)
    assert down(pair.a).notification_sent == Notification(6, 2)
    pair.transfer()
    event = down(pair.b)
    assert event.notification_received == Notification(6, 2)
    pair.a.close(2.0)  # idempotent
    assert drain(pair.a) == []


def test_close_without_notification() -> None:
    pair = SessionPair()
    pair.establish()
    drain(pair.a)
    pair.a.close(1.0, None, reason="Graceful restart")
    assert pair.a.data_to_send() == b""
    event = down(pair.a)
    assert event.reason == "Graceful restart" and event.notification_sent is None


def test_connection_lost_keeps_routes_stale_when_graceful_restart_was_negotiated() -> None:
    pair = SessionPair(*settings_pair(b={"graceful_restart_time": 90}))
    pair.establish()
    drain(pair.a)
    pair.a.connection_lost(3.0, None)
    event = down(pair.a)
    assert event.reason == "Socket: Connection closed"
    assert event.restart_time == 90
    pair.a.connection_lost(4.0, None)  # already closed: nothing more
    assert drain(pair.a) == []


def test_connection_lost_without_graceful_restart_flushes() -> None:
    pair = SessionPair(*settings_pair(a={"graceful_restart_time": None}))
    pair.establish()
    drain(pair.b)
    pair.b.connection_lost(3.0, ConnectionResetError(104, "Connection reset by peer"))
    event = down(pair.b)
    assert event.reason == "Socket: Connection reset by peer"
    assert event.restart_time is None


def test_counters_count_every_message() -> None:
    pair = SessionPair()
    pair.establish()
    # OPEN and KEEPALIVE each way.
    assert pair.a.counters.messages_sent == 2 and pair.a.counters.messages_received == 2


def test_having_advertised_extended_message_we_take_long_messages() -> None:
    # RFC 8654 3: B did not advertise it, but A did, so B may send A long messages.
    pair = SessionPair(*settings_pair(b={"extended_message": False}))
    pair.establish()
    assert not pair.a.options.extended_message
    drain(pair.a)
    family, nlri = prefix_to_nlri("10.0.0.0/8")
    attrs = PathAttributes(next_hop=bytes([10, 0, 0, 2]), communities=tuple(range(2000)))
    (big,) = pack_announcements(family, attrs, [nlri], CodecOptions(extended_message=True))
    assert len(big) > 4096
    pair.a.receive_data(big, 1.0)
    assert pair.a.state is State.ESTABLISHED
    assert [type(e) for e in drain(pair.a)] == [UpdateReceived]
