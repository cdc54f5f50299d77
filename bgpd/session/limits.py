"""Limits that keep one neighbor from costing more than its share, sans-I/O: a token bucket
per source address for the listener's accepts, and the per-peer maximum-prefix rule
(RFC 4486 Cease subcode 1; FRR's `maximum-prefix`, BIRD's `receive limit`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bgpd.session.errors import CEASE_MAX_PREFIXES
from bgpd.wire.errors import CEASE
from bgpd.wire.family import Family
from bgpd.wire.messages import Notification

ACCEPT_RATE = 1.0
"""Connections per second a source address earns (BGP speakers retry every few seconds)."""
ACCEPT_BURST = 8
"""Connections a source address may open back to back (collisions, quick restarts)."""
MAX_SOURCES = 4096
"""Buckets kept at most; the fullest (idle) ones go first when there are more."""


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second up to `burst`; `take` spends one if there is one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.burst


class ConnectionRateLimiter:
    """One token bucket per source address: `allow(address, now)` says whether to take a
    connection from it. Memory stays bounded: buckets that refilled are forgotten."""

    def __init__(
        self, rate: float = ACCEPT_RATE, burst: int = ACCEPT_BURST, max_sources: int = MAX_SOURCES
    ) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate, burst and max_sources must be positive")
        self.rate = rate
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, address: str, now: float) -> bool:
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._prune(now)
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[address] = bucket
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        for address in [a for a, b in self._buckets.items() if b.full(now)]:
            del self._buckets[address]
        if len(self._buckets) >= self.max_sources:
            # All busy: drop the oldest half rather than grow (a flood from many sources).
            for address in list(self._buckets)[: self.max_sources // 2 or 1]:
                del self._buckets[address]


# --- maximum prefixes ---------------------------------------------------------------------

WARNING_THRESHOLD = 0.75
"""Share of the maximum at which a warning is logged first (FRR's default threshold)."""


class PrefixVerdict(enum.Enum):
    """What crossing a limit calls for; `PrefixLimit.check` reports each crossing once."""

    WARNING = "warning"  # past the threshold: log it
    EXCEEDED = "exceeded"  # past the maximum, warning only: log it, keep the session
    TEAR_DOWN = "tear down"  # past the maximum: Cease 1, then wait before reconnecting


class PrefixLimit:
    """The maximum-prefix rule for one neighbor's session."""

    def __init__(
        self, maximum: int, *, warning_only: bool = False, threshold: float = WARNING_THRESHOLD
    ) -> None:
        if maximum < 1:
            raise ValueError("the maximum number of prefixes must be at least 1")
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.maximum = maximum
        self.warning_only = warning_only
        self.warn_at = max(1, int(maximum * threshold))
        self._level = 0  # 0 below the threshold, 1 past it, 2 past the maximum

    def check(self, count: int) -> PrefixVerdict | None:
        """The verdict for `count` accepted prefixes when a limit is crossed upwards, else
        None (dropping below the threshold again re-arms the warnings)."""
        level = 2 if count > self.maximum else 1 if count >= self.warn_at else 0
        previous, self._level = self._level, level
        if level <= previous:
            return None
        if level == 1:
            return PrefixVerdict.WARNING
        return PrefixVerdict.EXCEEDED if self.warning_only else PrefixVerdict.TEAR_DOWN

    def reset(self) -> None:
        """A new session: count from zero."""
        self._level = 0

    def notification(self, family: Family) -> Notification:
        """Cease 1 with RFC 4486's data: AFI, SAFI and the upper bound."""
        data = family.afi.to_bytes(2, "big") + bytes((family.safi,))
        return Notification(CEASE, CEASE_MAX_PREFIXES, data + self.maximum.to_bytes(4, "big"))
