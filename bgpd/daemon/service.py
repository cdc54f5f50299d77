"""bgpd as a service: systemd's notify protocol (READY, STATUS, WATCHDOG, RELOADING,
STOPPING) and the event-loop lag probe.

READY=1 goes out once the configuration is loaded and the listeners are up; then a tick keeps
STATUS= current ("N/M sessions established") and, under WatchdogSec=, pings at half the
interval: a wedged loop stops pinging and systemd restarts the daemon. The lag probe asks to
be called every `lag.INTERVAL` seconds (more rarely while the loop idles, metrics/lag.py)
and records how late each call came, for the Prometheus histogram and a log line a minute.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from bgpd.metrics.histogram import Histogram
from bgpd.metrics.lag import INTERVAL as LAG_INTERVAL
from bgpd.metrics.lag import LagMeter, probe_interval
from common.log import get_logger
from common.sdnotify import Notifier, session_summary

log = get_logger("bgpd.daemon")

TICK = 1.0
"""Seconds between STATUS= refreshes for systemd (a watchdog may ask for more often)."""


class Service:
    """`sessions()` gives (established, configured) for the status line."""

    def __init__(self, sessions: Callable[[], tuple[int, int]]) -> None:
        self.sessions = sessions
        self.notifier = Notifier()
        self.loop_lag = LagMeter()
        self.lag_histogram = Histogram()
        self._lag_timer: asyncio.TimerHandle | None = None
        self._tick_timer: asyncio.TimerHandle | None = None
        self._probe_cpu = 0.0  # the loop thread's CPU clock at the last probe
        self._status = ""

    def notify(self, *lines: str) -> None:
        self.notifier.notify(*lines)

    def start_probe(self) -> None:
        loop = asyncio.get_running_loop()
        self._probe_cpu = time.thread_time()
        due = loop.time() + LAG_INTERVAL
        self._lag_timer = loop.call_at(due, self._probe_lag, due, LAG_INTERVAL)

    def ready(self) -> None:
        """The daemon is up: READY=1, then keep the status and the watchdog fed."""
        if not self.notifier.enabled:
            return
        self._status = session_summary(*self.sessions())
        self.notifier.notify("READY=1", f"STATUS={self._status}", f"MAINPID={os.getpid()}")
        self._tick()

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1")
        for timer in (self._tick_timer, self._lag_timer):
            if timer is not None:
                timer.cancel()

    def _tick(self) -> None:
        lines = ["WATCHDOG=1"] if self.notifier.watchdog else []
        status = session_summary(*self.sessions())
        if status != self._status:
            self._status = status
            lines.append(f"STATUS={status}")
        self.notifier.notify(*lines)
        interval = TICK
        if self.notifier.watchdog:
            interval = min(interval, self.notifier.watchdog / 2)
        self._tick_timer = asyncio.get_running_loop().call_later(interval, self._tick)

    def _probe_lag(self, due: float, interval: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        cpu = time.thread_time()
        used, self._probe_cpu = cpu - self._probe_cpu, cpu
        self.lag_histogram.observe(max(0.0, now - due))
        summary = self.loop_lag.record(now - due, now)
        if summary is not None:
            log.info("event loop lag", p50_ms=summary.p50_ms, p99_ms=summary.p99_ms,
                     max_ms=summary.max_ms, samples=summary.samples)
        interval = probe_interval(used, interval + max(0.0, now - due))
        self._lag_timer = loop.call_at(now + interval, self._probe_lag, now + interval, interval)
