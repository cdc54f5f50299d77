"""LagMeter on a fake clock: summaries per window, percentiles of the lateness recorded."""

from __future__ import annotations

from bgpd.metrics.lag import (
    BUSY_SHARE,
    IDLE_INTERVAL,
    INTERVAL,
    LagMeter,
    LagSummary,
    probe_interval,
)


def test_a_summary_per_window() -> None:
    meter = LagMeter(window=10.0)
    summaries = []
    for i in range(200):
        lateness = 0.5 if i == 150 else 0.001 * (i % 10)
        summary = meter.record(lateness, 100.0 + i / 10)
        if summary is not None:
            summaries.append(summary)
    assert len(summaries) == 1  # the window closed once in 20 seconds (at 10 s)
    first = summaries[0]
    assert first.samples == 101 and first.max_ms == 9.0 and first.p50_ms == 4.0
    assert meter.last is first
    assert meter.record(0.0, 130.0) == LagSummary(
        p50_ms=5.0, p99_ms=500.0, max_ms=500.0, samples=100
    )


def test_early_calls_count_as_on_time() -> None:
    meter = LagMeter(window=0.0)
    assert meter.record(-0.002, 1.0) == LagSummary(0.0, 0.0, 0.0, 1)


def test_the_probe_runs_often_only_while_the_loop_works() -> None:
    # 5 ms of CPU in 50 ms is work: probe again in 50 ms; 0.5 ms in a second is idle.
    assert probe_interval(0.005, 0.05) == INTERVAL
    assert probe_interval(0.0005, 1.0) == IDLE_INTERVAL
    assert probe_interval(0.0, 0.05) == IDLE_INTERVAL
    assert probe_interval(BUSY_SHARE * 1.0 + 1e-6, 1.0) == INTERVAL
    assert INTERVAL < IDLE_INTERVAL
