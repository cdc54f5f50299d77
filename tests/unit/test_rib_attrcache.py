"""Attribute interning: identity for equal values, reference-counted lifetime."""

from __future__ import annotations

from bgpd.rib.attrcache import AttrCache
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes


def attrs(*asns: int, nh: bytes = b"\x0a\x00\x00\x01") -> PathAttributes:
    return PathAttributes(as_path=((AS_SEQUENCE, asns),), next_hop=nh, communities=(1, 2))


def test_equal_values_intern_to_one_object() -> None:
    cache = AttrCache()
    a, b = attrs(1, 2), attrs(1, 2)
    assert a == b and a is not b
    ca, cb = cache.intern(a), cache.intern(b)
    assert ca is a and cb is a
    assert cache.intern(attrs(1, 3)) is not ca
    assert len(cache) == 2


def test_entries_live_while_referenced() -> None:
    cache = AttrCache()
    canon = cache.intern(attrs(1))
    cache.ref(canon, 3)
    cache.release(canon, 2)
    assert canon in cache and cache.refcount(canon) == 1
    cache.release(canon)
    assert canon not in cache and len(cache) == 0
    # Interned again after it went: a new canonical object.
    again = attrs(1)
    assert cache.intern(again) is again


def test_collect_drops_only_unowned_entries() -> None:
    cache = AttrCache()
    kept = cache.intern(attrs(1))
    cache.ref(kept)
    cache.intern(attrs(2))
    assert len(cache) == 2
    assert cache.collect() == 1
    assert kept in cache and attrs(2) not in cache
    assert cache.collect() == 0


def test_releasing_a_superseded_instance_leaves_the_new_entry() -> None:
    cache = AttrCache()
    old = cache.intern(attrs(1))
    cache.ref(old)
    cache.release(old)
    new = cache.intern(attrs(1))
    cache.ref(new)
    assert new is not old
    cache.release(old)  # a late holder of the first instance
    assert cache.refcount(new) == 1
    assert cache.intern(attrs(1)) is new


def test_ref_then_release_of_equal_route_keeps_entry() -> None:
    # A route replaced by one with the same attributes: ref first, release second.
    cache = AttrCache()
    canon = cache.intern(attrs(5))
    cache.ref(canon)
    cache.ref(canon)
    cache.release(canon)
    assert cache.refcount(canon) == 1
