"""The pieces issue 8's benchmark work added: shared output chunks, the fast RIB records,
and the load generator's NLRI walk (checked against the codec)."""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from pathlib import Path

import pytest
from session_pair import SessionPair, drain, update_bytes

from bgpd.rib.route import PeerInfo, Route
from bgpd.rib.table import BestChange, Destination
from bgpd.session.events import UpdateReceived
from bgpd.session.session import SHARED_CHUNK
from bgpd.wire import DEFAULT_OPTIONS, Family, Update, decode_message, encode_update
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.messages import MpReach, MpUnreach

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import rr_loadgen

V4 = Family.IPV4_UNICAST
V6 = Family.IPV6_UNICAST


# --- Session.chunks_to_send ----------------------------------------------------------------


def test_chunks_keep_large_pieces_uncopied_and_join_small_runs() -> None:
    pair = SessionPair()
    pair.establish()
    drain(pair.b)
    small = update_bytes("192.168.1.0/24")
    big = b"".join(update_bytes(f"10.{i // 256}.{i % 256}.0/24") for i in range(1000))
    assert len(big) >= SHARED_CHUNK
    pair.a.send_update_bytes(small)
    pair.a.send_update_bytes(small)
    pair.a.send_update_bytes(big, 1000)
    pair.a.send_update_bytes(small)
    chunks = pair.a.chunks_to_send()
    assert chunks[0] == small + small
    assert chunks[1] is big  # the group's object itself, not a copy
    assert chunks[2] == small
    assert pair.a.chunks_to_send() == []
    pair.b.receive_data(b"".join(chunks), pair.now)
    got = [e for e in drain(pair.b) if isinstance(e, UpdateReceived)]
    assert len(got) == 1003


def test_chunks_of_one_piece_and_of_nothing() -> None:
    pair = SessionPair()
    pair.establish()
    assert pair.a.chunks_to_send() == []
    blob = update_bytes()
    pair.a.send_update_bytes(blob)
    assert pair.a.chunks_to_send() == [blob]


# --- Route and BestChange constructors -----------------------------------------------------

PEER = PeerInfo("p", b"\x0a\x00\x00\x02", 64512, 1, 64512, rr_client=True)
ATTRS = PathAttributes(next_hop=b"\x0a\x00\x00\x02", local_pref=100)


def test_route_is_still_a_frozen_value() -> None:
    r = Route(b"\x18\x0a\x01\x02", V4, ATTRS, PEER)
    assert (r.path_id, r.stale) == (0, False)
    assert r == Route(b"\x18\x0a\x01\x02", V4, ATTRS, PEER, 0, False)
    assert hash(r) == hash(Route(b"\x18\x0a\x01\x02", V4, ATTRS, PEER))
    assert dataclasses.replace(r, stale=True).stale is True
    assert Route(prefix=b"\x00", family=V4, attrs=ATTRS, source=PEER, path_id=7).path_id == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.stale = True  # type: ignore[misc]


def test_best_change_is_still_a_frozen_value() -> None:
    c = BestChange(V4, b"\x00", None, None, None, False)
    assert c.multipath == ()
    assert c == BestChange(V4, b"\x00", None, None, None, False, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.old = None  # type: ignore[misc]


@pytest.mark.parametrize("next_hop", [b"\x0a\x00\x00\x02", None])
def test_first_path_fast_path_matches_the_general_one(next_hop: bytes | None) -> None:
    route = Route(b"\x18\x0a\x01\x02", V4, PathAttributes(next_hop=next_hop), PEER)
    fast = Destination(V4, route.prefix)
    change = fast.update(route)
    general = Destination(V4, route.prefix)
    general.paths.append(route)
    expected = general._recompute()
    assert change == expected
    assert (fast.best, fast.reason, fast.multipath) == (
        general.best,
        general.reason,
        general.multipath,
    )
    # A second path from another peer then goes through the decision as before: the first
    # path's router ID (1) is lower and keeps it best.
    other = PeerInfo("q", b"\x0a\x00\x00\x03", 64512, 2, 64512)
    fast.update(Route(route.prefix, V4, ATTRS, other))
    assert len(fast) == 2 and fast.best is route


# --- load generator: pre-built messages and the monitor's NLRI walk ------------------------


def _walk(message: bytes) -> tuple[list[bytes], list[bytes]]:
    added: list[bytes] = []
    removed: list[bytes] = []
    rr_loadgen.walk_update(memoryview(message)[19:], added, removed)
    return added, removed


def test_prefix_items_are_nlri_forms() -> None:
    items = rr_loadgen.prefix_items(int(ipaddress.IPv4Address("100.64.0.0")) >> 6, 3, 26)
    assert items == [b"\x1a\x64\x40\x00\x00", b"\x1a\x64\x40\x00\x40", b"\x1a\x64\x40\x00\x80"]


def test_walk_finds_what_the_codec_decodes() -> None:
    items = rr_loadgen.prefix_items(int(ipaddress.IPv4Address("100.64.0.0")), 500, 32)
    attrs = rr_loadgen.attrs_for("10.0.0.7")
    for message in rr_loadgen.pack_announcements(V4, attrs, items):
        decoded = decode_message(message, DEFAULT_OPTIONS)
        assert isinstance(decoded, Update)
        assert _walk(message) == (list(decoded.nlri), [])
    withdrawn = rr_loadgen.pack_withdrawals(V4, items[:10])
    assert _walk(b"".join(withdrawn)) == ([], items[:10])


def test_walk_reads_ipv4_mp_attributes_and_skips_other_families() -> None:
    attrs = PathAttributes(next_hop=b"\x0a\x00\x00\x01", local_pref=100)
    v4_mp = Update(
        attributes=attrs,
        mp_reach=MpReach(V4, b"\x0a\x00\x00\x01", (b"\x20\x01\x02\x03\x04",)),
        mp_unreach=MpUnreach(V4, (b"\x18\x0a\x00\x01",)),
    )
    assert _walk(encode_update(v4_mp)) == ([b"\x20\x01\x02\x03\x04"], [b"\x18\x0a\x00\x01"])
    v6 = Update(
        attributes=PathAttributes(next_hop=bytes(16), local_pref=100),
        mp_reach=MpReach(V6, bytes(16), (b"\x40" + bytes(8),)),
    )
    assert _walk(encode_update(v6)) == ([], [])


def test_open_bytes_decode() -> None:
    opened = decode_message(rr_loadgen.open_bytes("10.0.0.9", 64512, 90), DEFAULT_OPTIONS)
    assert opened.asn == 64512  # type: ignore[union-attr]
    assert opened.hold_time == 90  # type: ignore[union-attr]
    assert opened.bgp_id == int(ipaddress.IPv4Address("10.0.0.9"))  # type: ignore[union-attr]
