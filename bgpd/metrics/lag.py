"""Event-loop lag, sans-I/O: the daemon asks to be called every `interval` seconds and
records how late each call came (`record(lateness, now)`); every `window` seconds a summary
(p50, p99, max in milliseconds, samples) comes back for the log. A busy loop, one that
starves keepalives and hold timers, shows here first (DESIGN principle 5).

The probe runs every `INTERVAL` while the loop works and every `IDLE_INTERVAL` while it
idles (`probe_interval`): an idle loop is never late, and twenty wake-ups a second to say
so were most of an idle daemon's CPU. Samples therefore come mostly from busy times, which
is when lateness happens."""

from __future__ import annotations

from dataclasses import dataclass

INTERVAL = 0.05
IDLE_INTERVAL = 1.0
BUSY_SHARE = 0.02
"""The share of a core above which the loop counts as working since the last probe."""
WINDOW = 60.0


def probe_interval(cpu: float, elapsed: float) -> float:
    """Seconds to the next probe, given the CPU seconds the loop's thread used in the
    `elapsed` seconds since the previous one."""
    return INTERVAL if cpu > BUSY_SHARE * elapsed else IDLE_INTERVAL


@dataclass(frozen=True, slots=True)
class LagSummary:
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples: int


class LagMeter:
    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: list[float] = []
        self._window_start: float | None = None
        self.last: LagSummary | None = None

    def record(self, lateness: float, now: float) -> LagSummary | None:
        """One timer's lateness in seconds; a summary when a window closes, else None."""
        if self._window_start is None:
            self._window_start = now
        self._samples.append(max(0.0, lateness))
        if now - self._window_start < self.window:
            return None
        data = sorted(self._samples)
        self._samples.clear()
        self._window_start = now
        self.last = LagSummary(
            p50_ms=round(data[len(data) // 2] * 1000, 2),
            p99_ms=round(data[min(len(data) - 1, int(len(data) * 0.99))] * 1000, 2),
            max_ms=round(data[-1] * 1000, 2),
            samples=len(data),
        )
        return self.last
