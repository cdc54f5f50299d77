"""The neighbor above its connections: connect and retry timing, passive ends, error wait,
collision detection (RFC 4271 6.8), graceful restart on a new OPEN, administrative stop."""

from __future__ import annotations

from dataclasses import replace

from session_pair import PeerPair, actions, drain, rid, settings_pair

from bgpd.session.events import (
    CloseRequested,
    ConnectRequested,
    SessionDown,
    SessionEstablished,
    StateChanged,
)
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open
from bgpd.session.peer import MAX_CONNECTIONS, Peer
from bgpd.wire.codec import encode_notification, encode_open
from bgpd.wire.messages import GracefulRestart, Notification


def established(pair: PeerPair) -> bool:
    return pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED


def kinds(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, StateChanged)]


# --- connecting ----------------------------------------------------------------------------


def test_active_peer_connects_at_once_without_a_connect_delay() -> None:
    peer = Peer(settings_pair()[0])
    peer.start(0.0)
    assert actions(peer) == [ConnectRequested("Mesh_10_0_0_2")]
    assert peer.state is State.CONNECT
    assert peer.next_timer() == 5.0  # the attempt's timeout is the retry time


def test_connect_delay_then_retry_every_connect_retry_time() -> None:
    peer = Peer(settings_pair(connect_delay_time=2.0, connect_retry_time=5.0)[0])
    peer.start(0.0)
    assert actions(peer) == [] and peer.state is State.ACTIVE
    assert peer.next_timer() == 2.0
    peer.handle_timer(2.0)
    assert actions(peer) == [ConnectRequested("Mesh_10_0_0_2")]
    peer.connect_failed(2.1, "Connection refused")
    assert peer.state is State.ACTIVE
    assert peer.info == "Socket: Connection refused"
    assert peer.next_timer() == 7.0
    peer.handle_timer(6.9)
    assert actions(peer) == []
    peer.handle_timer(7.0)
    assert actions(peer) == [ConnectRequested("Mesh_10_0_0_2")]
    # An attempt that neither succeeds nor fails is given up after the retry time.
    peer.handle_timer(12.0)
    assert actions(peer) == [ConnectRequested("Mesh_10_0_0_2")]
    assert peer.state is State.CONNECT


def test_stale_connect_results_are_ignored() -> None:
    peer = Peer(settings_pair()[0])
    peer.start(0.0)
    actions(peer)
    peer.connect_failed(1.0, "Connection refused")
    peer.connect_failed(1.1, "Network is unreachable")  # no attempt is pending
    assert peer.info == "Socket: Connection refused"
    assert peer.connection_made(1.2, outgoing=True) is None  # nor for a success


def test_passive_peer_never_connects_and_says_passive() -> None:
    peer = Peer(settings_pair(passive=True)[0])
    peer.start(0.0)
    peer.handle_timer(1000.0)
    assert actions(peer) == []
    assert peer.next_timer() is None
    assert peer.state is State.ACTIVE and peer.state_text == "Passive"
    assert peer.connection_made(1000.0, outgoing=False) is not None
    assert peer.state is State.OPEN_SENT


def test_stopped_peer_refuses_connections() -> None:
    peer = Peer(settings_pair()[0])
    assert peer.connection_made(0.0, outgoing=False) is None
    assert peer.state_text == "Idle"


def test_connection_limit() -> None:
    peer = Peer(settings_pair(passive=True)[0])
    peer.start(0.0)
    ids = [peer.connection_made(0.0, outgoing=False) for _ in range(MAX_CONNECTIONS + 1)]
    assert None not in ids[:-1] and ids[-1] is None


# --- establishing ----------------------------------------------------------------------------


def test_active_and_passive_establish_and_report_one_pair_of_events() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True}))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    assert established(pair)
    assert pair.connect_requests == {id(pair.a): 1, id(pair.b): 0}
    events_a, events_b = drain(pair.a), drain(pair.b)
    assert kinds(events_a) == ["SessionEstablished"] and kinds(events_b) == ["SessionEstablished"]
    states = [(e.old, e.new) for e in events_a if isinstance(e, StateChanged)]
    assert states == [
        (State.IDLE, State.CONNECT),
        (State.CONNECT, State.OPEN_SENT),
        (State.OPEN_SENT, State.OPEN_CONFIRM),
        (State.OPEN_CONFIRM, State.ESTABLISHED),
    ]
    assert pair.a.next_timer() is not None
    # Nothing pending at the peer level while established: only session timers.
    assert pair.a.next_timer() == pair.a.established.next_timer()  # type: ignore[union-attr]


def test_after_a_cease_the_active_side_reconnects() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True}, connect_delay_time=2.0))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.advance(2.0)
    assert established(pair)
    drain(pair.a), drain(pair.b)
    pair.now = 3.0
    pair.b.close_connection(pair.b.connection_ids()[0], 3.0, Notification(6, 4))
    pair.transfer()
    (down_a,) = [e for e in drain(pair.a) if isinstance(e, SessionDown)]
    assert down_a.notification_received == Notification(6, 4)
    assert pair.a.info == "Received: Administrative reset"
    assert pair.a.state is State.ACTIVE  # a Cease is no error: no error wait
    assert pair.a.next_timer() == 5.0  # the connect delay again
    pair.advance(5.0)
    assert established(pair)


def test_error_wait_doubles_and_refuses_incoming_meanwhile() -> None:
    sa, sb = settings_pair(b={"passive": True, "peer_as": 65001}, error_wait_time=(5.0, 12.0))
    pair = PeerPair(sa, sb)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    # B expected AS 65001: Bad peer AS both ways, and both wait.
    assert pair.b.info == "BGP Error: Bad peer AS"
    assert pair.a.info == "Received: Bad peer AS"
    assert pair.a.state is State.IDLE and pair.b.state is State.IDLE
    assert pair.b.connection_made(1.0, outgoing=False) is None
    assert pair.a.next_timer() == 5.0
    waits = []
    for _ in range(3):
        pair.advance(pair.a.next_timer())  # type: ignore[arg-type]
        deadline = pair.a.next_timer()
        assert deadline is not None
        waits.append(deadline - pair.now)
    assert waits == [10.0, 12.0, 12.0]


def test_error_wait_is_forgotten_after_error_forget_time() -> None:
    peer = Peer(settings_pair(error_wait_time=(5.0, 30.0), error_forget_time=300.0)[0])
    assert peer._next_error_wait(0.0) == 5.0
    assert peer._next_error_wait(10.0) == 10.0
    assert peer._next_error_wait(20.0) == 20.0
    assert peer._next_error_wait(400.0) == 5.0


def test_updates_and_session_down_only_for_the_established_session() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True}))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    drain(pair.a), drain(pair.b)
    pair.a.stop(1.0)
    assert pair.a.state is State.IDLE
    pair.transfer()
    (down_a,) = [e for e in drain(pair.a) if isinstance(e, SessionDown)]
    assert down_a.notification_sent == Notification(6, 2)
    (down_b,) = [e for e in drain(pair.b) if isinstance(e, SessionDown)]
    assert down_b.notification_received == Notification(6, 2)
    assert pair.a.info == ""  # our own Cease is not an error to show
    pair.advance(100.0)
    assert pair.connect_requests[id(pair.a)] == 1  # stopped: no reconnect
    assert pair.a.next_timer() is None


def test_failed_attempts_do_not_produce_session_down() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True, "peer_as": 65009}))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    assert [e for e in drain(pair.a) if not isinstance(e, StateChanged)] == []


# --- collisions ------------------------------------------------------------------------------


def _collide(a_id: str, b_id: str) -> PeerPair:
    sa, sb = settings_pair(a={"router_id": rid(a_id)}, b={"router_id": rid(b_id)})
    pair = PeerPair(sa, sb)
    pair.a.start(0.0)
    pair.b.start(0.0)
    actions(pair.a), actions(pair.b)
    # Both connect at once: two connections, each peer holds both.
    pair.connect(pair.a)
    pair.connect(pair.b)
    pair.transfer()
    return pair


def _initiator_of_survivor(pair: PeerPair) -> str:
    (link,) = pair.links
    return "a" if link[0] is pair.a else "b"


def test_collision_keeps_the_connection_of_the_higher_router_id() -> None:
    pair = _collide("10.0.0.1", "10.0.0.2")
    assert established(pair)
    assert _initiator_of_survivor(pair) == "b"
    assert len(pair.closed) == 1
    events = drain(pair.a)
    assert kinds(events) == ["SessionEstablished"]  # the loser is not reported


def test_collision_other_outcome() -> None:
    pair = _collide("10.0.0.9", "10.0.0.2")
    assert established(pair)
    assert _initiator_of_survivor(pair) == "a"
    assert kinds(drain(pair.b)) == ["SessionEstablished"]


def test_collision_with_equal_router_ids_prefers_the_higher_as() -> None:
    # eBGP with the same router id (RFC 6286 2.3): the connection from AS 65002 survives.
    sa, sb = settings_pair(
        a={"local_as": 65001, "peer_as": 65002, "router_id": 7},
        b={"local_as": 65002, "peer_as": 65001, "router_id": 7},
    )
    pair = PeerPair(sa, sb)
    pair.a.start(0.0)
    pair.b.start(0.0)
    actions(pair.a), actions(pair.b)
    pair.connect(pair.a)
    pair.connect(pair.b)
    pair.transfer()
    assert established(pair)
    assert _initiator_of_survivor(pair) == "b"


def test_new_connection_to_an_established_peer_is_dumped() -> None:
    pair = PeerPair(*settings_pair(graceful_restart_time=None))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer(connect=False)
    pair.connect(pair.a)
    pair.transfer(connect=False)
    assert established(pair)
    first = pair.links[0]
    drain(pair.a), drain(pair.b)
    ids = pair.connect(pair.b)  # B opens a second connection
    assert ids is not None
    closed_before = len(pair.closed)
    pair.transfer(connect=False)
    assert pair.links == [first] and len(pair.closed) == closed_before + 1
    assert established(pair)
    assert kinds(drain(pair.a)) == [] and kinds(drain(pair.b)) == []


def test_new_open_from_a_graceful_restart_peer_replaces_the_old_session() -> None:
    pair = PeerPair(*settings_pair(graceful_restart_time=60))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer(connect=False)
    pair.connect(pair.a)
    pair.transfer(connect=False)
    assert established(pair)
    drain(pair.a), drain(pair.b)
    old_a = pair.a.established
    # B restarted: a fresh B (no memory of the old connection, the Restart State bit set in
    # its OPEN) connects again.
    pair.b = Peer(replace(pair.b.settings, graceful_restart_restarting=True))
    pair.b.start(1.0)
    actions(pair.b)
    pair.links.clear()  # B's old end is gone without a FIN reaching A
    pair.now = 1.0
    pair.connect(pair.b)
    pair.transfer(connect=False)
    assert established(pair)
    assert pair.a.established is not old_a
    events = drain(pair.a)
    assert kinds(events) == ["SessionDown", "SessionEstablished"]
    down_event = events[[type(e) for e in events].index(SessionDown)]
    assert isinstance(down_event, SessionDown)
    assert down_event.restart_time == 60 and down_event.notification_sent is None
    (est,) = [e for e in events if isinstance(e, SessionEstablished)]
    assert est.remote_open.find(GracefulRestart)[0].restarting  # type: ignore[attr-defined]


def test_close_requested_carries_the_final_notification() -> None:
    peer = Peer(settings_pair(passive=True)[0])
    peer.start(0.0)
    conn = peer.connection_made(0.0, outgoing=False)
    assert conn is not None
    peer.data_to_send(conn)
    assert not peer.has_output()
    peer.stop(1.0)
    assert actions(peer) == [CloseRequested("Mesh_10_0_0_2", conn)]
    assert peer.has_output()  # the final NOTIFICATION of a connection closing
    assert peer.data_to_send(conn).endswith(bytes([3, 6, 2]))  # NOTIFICATION Cease 2
    assert peer.data_to_send(conn) == b""
    assert not peer.has_output()


def test_collision_race_after_one_side_is_established_does_not_flap() -> None:
    # Graceful restart negotiated, but the late OPEN has no Restart State bit: it is an
    # ordinary collision and the established connection stays.
    pair = PeerPair(*settings_pair(graceful_restart_time=60))
    pair.a.start(0.0)
    pair.b.start(0.0)
    actions(pair.a), actions(pair.b)
    pair.connect(pair.a)
    pair.transfer(connect=False)
    assert established(pair)
    drain(pair.a), drain(pair.b)
    pair.connect(pair.b)  # B's own attempt lands late
    pair.transfer(connect=False)
    assert established(pair) and len(pair.links) == 1
    assert kinds(drain(pair.a)) == [] and kinds(drain(pair.b)) == []


def _open_confirm_collision(local: str) -> tuple[Peer, int, int]:
    """`local` (A = 10.0.0.1 or B = 10.0.0.2) holds an incoming connection in OpenConfirm
    when its own outgoing one receives the peer's OPEN."""
    sa, sb = settings_pair()
    me, them = (sa, sb) if local == "a" else (sb, sa)
    peer = Peer(me)
    peer.start(0.0)
    actions(peer)
    their_open = encode_open(build_open(them))
    incoming = peer.connection_made(0.0, outgoing=False)
    assert incoming is not None
    peer.receive_data(incoming, their_open, 0.0)
    assert peer.session(incoming).state is State.OPEN_CONFIRM  # type: ignore[union-attr]
    outgoing = peer.connection_made(0.0, outgoing=True)
    assert outgoing is not None
    peer.data_to_send(incoming), peer.data_to_send(outgoing)
    peer.receive_data(outgoing, their_open, 1.0)
    return peer, incoming, outgoing


def test_open_confirm_collision_higher_id_keeps_its_own_connection() -> None:
    peer, incoming, outgoing = _open_confirm_collision("b")
    assert actions(peer) == [CloseRequested("Mesh_10_0_0_1", incoming)]
    assert peer.data_to_send(incoming) == encode_notification(Notification(6, 7))
    assert peer.connection_ids() == [outgoing]
    assert peer.state is State.OPEN_CONFIRM


def test_open_confirm_collision_lower_id_keeps_the_peers_connection() -> None:
    peer, incoming, outgoing = _open_confirm_collision("a")
    assert actions(peer) == [CloseRequested("Mesh_10_0_0_2", outgoing)]
    assert peer.data_to_send(outgoing) == encode_notification(Notification(6, 7))
    assert peer.connection_ids() == [incoming]
    assert peer.info == ""  # losing a collision is not an error to show


def test_restart_state_bit_is_sent_only_until_the_first_session() -> None:
    sa, sb = settings_pair(a={"graceful_restart_restarting": True}, b={"passive": True})
    pair = PeerPair(sa, sb)
    first_open = pair.a.local_open
    (gr,) = first_open.find(GracefulRestart)
    assert isinstance(gr, GracefulRestart) and gr.restarting
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    assert established(pair)
    (est,) = [e for e in drain(pair.b) if isinstance(e, SessionEstablished)]
    assert est.remote_open == first_open
    (gr,) = pair.a.local_open.find(GracefulRestart)
    assert isinstance(gr, GracefulRestart) and not gr.restarting
    assert all(not forwarding for _, forwarding in gr.families)


# --- errors on the transitions they caused --------------------------------------------------


def _transitions(peer: Peer) -> list[tuple[State, State, str]]:
    return [(e.old, e.new, e.error) for e in drain(peer) if isinstance(e, StateChanged)]


def test_a_refused_connect_marks_only_its_own_transition() -> None:
    peer = Peer(settings_pair(connect_delay_time=0.0, connect_retry_time=5.0)[0])
    peer.start(0.0)
    peer.connect_failed(0.1, "Connection refused")
    peer.handle_timer(5.0)
    assert _transitions(peer) == [
        (State.IDLE, State.CONNECT, ""),
        (State.CONNECT, State.ACTIVE, "Socket: Connection refused"),
        # The retry is an ordinary step, though `info` still holds the error.
        (State.ACTIVE, State.CONNECT, ""),
    ]
    assert peer.info == "Socket: Connection refused"


def test_a_refused_open_marks_the_fall_back_and_not_the_next_attempt() -> None:
    sa, sb = settings_pair(b={"passive": True, "peer_as": 65001}, error_wait_time=(5.0, 5.0))
    pair = PeerPair(sa, sb)
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    assert _transitions(pair.a) == [
        (State.IDLE, State.CONNECT, ""),
        (State.CONNECT, State.OPEN_SENT, ""),
        (State.OPEN_SENT, State.OPEN_CONFIRM, ""),
        (State.OPEN_CONFIRM, State.IDLE, "Received: Bad peer AS"),
    ]
    assert (State.OPEN_SENT, State.IDLE, "BGP Error: Bad peer AS") in _transitions(pair.b)
    pair.advance(5.0)
    first, *_ = _transitions(pair.a)
    assert first == (State.IDLE, State.CONNECT, "")


def test_an_operator_stop_is_no_error() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True}))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    drain(pair.a)
    pair.a.stop(1.0)
    pair.transfer()
    assert _transitions(pair.a) == [(State.ESTABLISHED, State.IDLE, "")]
