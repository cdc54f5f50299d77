"""Attribute interning: one canonical `PathAttributes` object per distinct attribute set.

Routes carry the canonical instance, so "same attributes" is an identity test (`is`), and an
Adj-RIB-Out buckets prefixes by attribute object without hashing (BIRD's `rta_lookup`).

Lifetime is reference counted, as BIRD's `rta` use counts are: the tables that store routes
take a reference with `ref()` when they store one and give it back with `release()` when they
drop it, and the entry leaves the cache when the count reaches zero. Counting is O(1) per
route change and exact; a periodic sweep would instead walk every route in one go, a pause the
event loop cannot afford with a large table (principle 5). Values interned but never stored
(a looked-up export that was then superseded in the same tick) have no owner; `collect()`
drops them, and the owners call it at the end of each operation.

Counts are keyed by `id()` of the canonical object, which the cache keeps alive, so releasing
needs no hashing of the attributes.
"""

from __future__ import annotations

from bgpd.wire.attributes import PathAttributes


class AttrCache:
    __slots__ = ("_canon", "_refs", "_unowned")

    def __init__(self) -> None:
        self._canon: dict[PathAttributes, PathAttributes] = {}
        self._refs: dict[int, int] = {}
        self._unowned: dict[int, PathAttributes] = {}

    def intern(self, attrs: PathAttributes) -> PathAttributes:
        """The canonical instance equal to `attrs` (adding `attrs` itself if new).

        Takes no reference: store the result with `ref()`, or let `collect()` drop it.
        """
        canon = self._canon.get(attrs)
        if canon is None:
            self._canon[attrs] = attrs
            self._refs[id(attrs)] = 0
            self._unowned[id(attrs)] = attrs
            return attrs
        return canon

    def ref(self, canon: PathAttributes, n: int = 1) -> None:
        """Record `n` more stored routes using `canon` (an instance `intern` returned)."""
        key = id(canon)
        self._refs[key] += n
        self._unowned.pop(key, None)

    def release(self, canon: PathAttributes, n: int = 1) -> None:
        """Give back `n` references; the entry goes when none are left.

        Releasing an instance that is no longer canonical (its entry went and an equal value
        was interned again) is a no-op, so stale holders cannot evict the new entry.
        """
        key = id(canon)
        count = self._refs.get(key)
        if count is None:  # both are alive, so a known id is this very object
            return
        count -= n
        if count > 0:
            self._refs[key] = count
            return
        del self._refs[key]
        del self._canon[canon]
        self._unowned.pop(key, None)

    def collect(self) -> int:
        """Drop entries interned but never referenced; returns how many went."""
        if not self._unowned:
            return 0
        dropped = 0
        for key, canon in self._unowned.items():
            if self._refs.get(key) == 0:
                del self._refs[key]
                del self._canon[canon]
                dropped += 1
        self._unowned.clear()
        return dropped

    def refcount(self, attrs: PathAttributes) -> int:
        canon = self._canon.get(attrs)
        return 0 if canon is None else self._refs[id(canon)]

    def __contains__(self, attrs: object) -> bool:
        return attrs in self._canon

    def __len__(self) -> int:
        return len(self._canon)
