"""The route-reflector benchmark's scenarios: M clients x N prefixes, how the clients arrive.

`settled`: every session is Established (8 connecting at a time) and a second has passed
before any client announces; the clock starts at the first announcement. `storm`: the monitor
connects first, then the clients connect with at most `burst` attempts in flight and each
announces the moment its own session is up; the clock starts at the first connection.
`stagger`: as storm, but client i starts connecting at i/M of `stagger_s` seconds, so the
early ones announce while the late ones have not connected yet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    clients: int
    prefixes: int
    prefix_len: int
    churn_seconds: float = 0.0
    churn_rate: int = 100
    mode: str = "settled"  # settled | storm | stagger
    burst: int = 20  # storm: connection attempts in flight at once
    stagger_s: float = 10.0  # stagger: the clients' connections spread over this long
    settled: str | None = None  # storm, stagger: the settled scenario of the same size

    @property
    def storm(self) -> bool:
        return self.mode != "settled"


def _storm(clients: int, mode: str = "storm", stagger_s: float = 10.0) -> Scenario:
    return Scenario(
        f"{mode}-{clients}x4", clients, 4, 26, mode=mode, stagger_s=stagger_s,
        settled=f"{clients}x4",
    )  # fmt: skip


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("100x1000", 100, 1000, 32),
        Scenario("10x10000", 10, 10000, 32),
        Scenario("1000x4", 1000, 4, 26),
        Scenario("2000x4", 2000, 4, 26),
        Scenario("5000x4", 5000, 4, 26),
        Scenario("churn", 100, 100, 32, churn_seconds=60),
    )
}
# Issue 17: reflectors restarting under real clusters, which do not wait for each other.
STORMS = {
    s.name: s
    for s in (
        _storm(1000),
        _storm(2000),
        _storm(5000),
        _storm(2000, "stagger"),
    )
}
QUICK = {
    s.name: s
    for s in (
        Scenario("20x200", 20, 200, 32),
        Scenario("200x4", 200, 4, 26),
        Scenario("churn-quick", 20, 20, 32, churn_seconds=5),
        Scenario("100x4", 100, 4, 26),
        _storm(100),
        _storm(100, "stagger", stagger_s=2.0),
    )
}
ALL = {**SCENARIOS, **STORMS, **QUICK}
# `--storm`: the storms and, for the storm/settled ratio, their settled counterparts.
STORM_RUN = ["1000x4", "2000x4", "5000x4", *STORMS]
