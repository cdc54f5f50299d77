"""A rate limit for repeated log events, sans-I/O: the first few of a kind per subject in a
window are logged, the rest counted, and when the window ends one summary says how many
were suppressed ("suppressed 499 similar"). Refused connections from one address, a
neighbor's failing connects every few seconds: a line a minute, not one per event.

Events are keyed by `kind` (the log event) and `subject` (an address, a peer and its
error). `allow(kind, subject, now)` says whether to log this one. Summaries are pulled, as
timers are in the protocol modules: `next_deadline()` is when the earliest window holding
suppressed events ends, `due(now)` hands out the summaries of ended windows, and `drain()`
all the rest at shutdown. Memory stays bounded: a kind keeps at most `max_subjects`
windows; once it has that many, further subjects share one window, subject OTHERS.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

OTHERS = "*"
"""The subject of a kind's events beyond its `max_subjects` (e.g. a flood from many
addresses); reserved, not a subject of its own."""

INTERVAL = 60.0
BURST = 1
MAX_SUBJECTS = 256


@dataclass(frozen=True, slots=True)
class Suppressed:
    """`count` events of `kind` about `subject` were not logged in the window that began at
    `since` and lasted `seconds`; `detail` holds the fields of the first one (for the
    summary line), empty for OTHERS."""

    kind: str
    subject: Hashable
    count: int
    since: float
    seconds: float
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Window:
    start: float
    detail: Mapping[str, Any]
    passed: int = 0
    suppressed: int = 0


class LogLimiter:
    """At most `burst` events per (kind, subject) in each `interval` seconds."""

    def __init__(
        self, *, burst: int = BURST, interval: float = INTERVAL, max_subjects: int = MAX_SUBJECTS
    ) -> None:
        if burst < 1 or interval <= 0 or max_subjects < 1:
            raise ValueError("burst, interval and max_subjects must be positive")
        self.burst = burst
        self.interval = interval
        self.max_subjects = max_subjects
        self._windows: dict[tuple[str, Hashable], _Window] = {}
        self._per_kind: dict[str, int] = {}
        self._ended: list[Suppressed] = []

    def allow(
        self, kind: str, subject: Hashable, now: float, detail: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether to log this event; `detail` is kept for its window's summary."""
        key = (kind, subject)
        window = self._windows.get(key)
        if window is not None and now >= window.start + self.interval:
            self._end(key, window, now)
            window = None
        if window is None:
            if self._per_kind.get(kind, 0) >= self.max_subjects:
                self._sweep(now)
            if self._per_kind.get(kind, 0) >= self.max_subjects:
                return self._count_other(kind, now)
            window = self._open(key, now, detail or {})
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        return False

    def next_deadline(self) -> float | None:
        """When the earliest window with suppressed events ends (a summary falls due); None
        when nothing waits."""
        if self._ended:
            return min(s.since + s.seconds for s in self._ended)
        ends = [w.start + self.interval for w in self._windows.values() if w.suppressed]
        return min(ends) if ends else None

    def due(self, now: float) -> list[Suppressed]:
        """Summaries of the windows that ended by `now`, each handed out once."""
        self._sweep(now)
        out, self._ended = self._ended, []
        return out

    def drain(self, now: float) -> list[Suppressed]:
        """Every summary still owed, ended or not (at shutdown); the limiter starts empty."""
        out = self._ended
        for (kind, subject), w in self._windows.items():
            if w.suppressed:
                seconds = min(self.interval, max(0.0, now - w.start))
                out.append(Suppressed(kind, subject, w.suppressed, w.start, seconds, w.detail))
        self._ended = []
        self._windows.clear()
        self._per_kind.clear()
        return out

    # --- windows ------------------------------------------------------------------------

    def _open(self, key: tuple[str, Hashable], now: float, detail: Mapping[str, Any]) -> _Window:
        window = self._windows[key] = _Window(now, detail)
        self._per_kind[key[0]] = self._per_kind.get(key[0], 0) + 1
        return window

    def _end(self, key: tuple[str, Hashable], window: _Window, now: float) -> None:
        del self._windows[key]
        if key[1] != OTHERS:
            self._per_kind[key[0]] -= 1
        if window.suppressed:
            seconds = min(self.interval, now - window.start)
            self._ended.append(
                Suppressed(key[0], key[1], window.suppressed, window.start, seconds,
                           window.detail)
            )

    def _sweep(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now >= window.start + self.interval:
                self._end(key, window, now)

    def _count_other(self, kind: str, now: float) -> bool:
        # The kind's subjects are all in use: lump this one in with the other newcomers,
        # whose first event is still logged (OTHERS is a subject beyond the count).
        key = (kind, OTHERS)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now, {})
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        return False
