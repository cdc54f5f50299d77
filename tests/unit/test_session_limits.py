"""Limits, on a fake clock: the listener's per-address connection rate, the maximum-prefix
rule, and a neighbor held down in Idle after a Cease 1 (RFC 4486)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from session_pair import PeerPair, drain, settings_pair

from bgpd.session.events import SessionDown
from bgpd.session.fsm import State
from bgpd.session.limits import (
    ConnectionRateLimiter,
    PrefixLimit,
    PrefixVerdict,
    TokenBucket,
)
from bgpd.session.peer import Peer
from bgpd.wire.family import Family
from bgpd.wire.messages import Notification

# --- connection rate ------------------------------------------------------------------------


def test_token_bucket_spends_and_refills() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, tokens=3, updated=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 of a token
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    assert bucket.full(100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_rate_limit_is_per_source_address() -> None:
    limiter = ConnectionRateLimiter(rate=1.0, burst=2)
    assert limiter.allow("10.0.0.1", 0.0) and limiter.allow("10.0.0.1", 0.0)
    assert not limiter.allow("10.0.0.1", 0.1)
    assert limiter.allow("10.0.0.2", 0.1)  # another neighbor is not affected
    assert limiter.allow("10.0.0.1", 1.1)


def test_a_flood_is_held_to_the_rate() -> None:
    limiter = ConnectionRateLimiter(rate=1.0, burst=5)
    # 100 connection attempts a second for 10 seconds: the burst, then one a second.
    allowed = sum(limiter.allow("10.0.0.1", i / 100) for i in range(1000))
    assert allowed == 5 + 9


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = ConnectionRateLimiter(rate=1.0, burst=1, max_sources=64)
    for i in range(10_000):
        limiter.allow(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 0.0)  # all busy
        assert len(limiter) <= 64
    # Idle sources refill and are forgotten first.
    assert limiter.allow("192.0.2.1", 10.0)
    assert len(limiter) <= 64


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        ConnectionRateLimiter(rate=0)
    with pytest.raises(ValueError):
        ConnectionRateLimiter(burst=0)


# --- maximum prefixes -----------------------------------------------------------------------


def test_prefix_limit_reports_each_crossing_once() -> None:
    limit = PrefixLimit(100)
    assert limit.check(10) is None
    assert limit.check(75) is PrefixVerdict.WARNING
    assert limit.check(90) is None  # still past the threshold: said already
    assert limit.check(100) is None  # at the maximum is allowed
    assert limit.check(101) is PrefixVerdict.TEAR_DOWN
    assert limit.check(200) is None
    limit.reset()
    assert limit.check(500) is PrefixVerdict.TEAR_DOWN  # straight past both


def test_prefix_limit_rearms_below_the_threshold() -> None:
    limit = PrefixLimit(100, warning_only=True)
    assert limit.check(101) is PrefixVerdict.EXCEEDED
    assert limit.check(50) is None
    assert limit.check(80) is PrefixVerdict.WARNING
    assert limit.check(120) is PrefixVerdict.EXCEEDED


def test_prefix_limit_notification_carries_rfc4486_data() -> None:
    note = PrefixLimit(1000).notification(Family.IPV6_UNICAST)
    assert (note.code, note.subcode) == (6, 1)
    assert note.data == b"\x00\x02\x01" + (1000).to_bytes(4, "big")


def test_prefix_limit_settings_are_checked() -> None:
    base = settings_pair()[0]
    with pytest.raises(ValueError):
        PrefixLimit(0)
    with pytest.raises(ValueError):
        replace(base, max_prefixes=0)
    with pytest.raises(ValueError):
        replace(base, max_prefixes_restart=-1.0)
    assert replace(base, max_prefixes=1).max_prefixes == 1


# --- hold-down after Cease 1 ----------------------------------------------------------------


def test_close_for_sends_the_cease_and_holds_the_neighbor_down() -> None:
    pair = PeerPair(*settings_pair(b={"passive": True}, connect_delay_time=0.0))
    pair.a.start(0.0)
    pair.b.start(0.0)
    pair.transfer()
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    drain(pair.a), drain(pair.b)
    cease = PrefixLimit(10).notification(Family.IPV4_UNICAST)
    pair.now = 1.0
    pair.b.close_for(1.0, cease, 30.0)
    pair.transfer()
    (down_b,) = [e for e in drain(pair.b) if isinstance(e, SessionDown)]
    assert down_b.notification_sent == cease
    (down_a,) = [e for e in drain(pair.a) if isinstance(e, SessionDown)]
    assert down_a.notification_received == cease
    assert pair.b.state is State.IDLE
    assert pair.b.info == "Maximum number of prefixes reached"
    # A takes the Cease as no error and reconnects at once; B refuses until the hold-down ends.
    pair.advance(20.0)
    assert pair.b.state is State.IDLE and pair.a.state is not State.ESTABLISHED
    assert pair.b.next_timer() == 31.0
    pair.advance(40.0)
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED


def test_close_for_without_a_connection_does_nothing() -> None:
    peer = Peer(settings_pair()[0])
    peer.start(0.0)
    peer.close_for(1.0, Notification(6, 1), 30.0)
    assert peer.state is not State.IDLE
