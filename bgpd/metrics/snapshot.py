"""What the daemon reports when scraped: read from it on every scrape, turned into metric
families by `collector.py`. Pure, so the daemon holds it without loading the Prometheus
client unless the endpoint is on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bgpd.metrics.histogram import Histogram
from bgpd.status.records import ProtocolDetail


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    node: str
    router_id: str
    asn: int
    version: str
    started: float
    protocols: Sequence[ProtocolDetail]
    rib_routes: Mapping[str, int]  # Loc-RIB prefixes per family ("ipv4", "ipv6")
    fib_routes: int | None  # None with --no-fib
    fib_batches: Histogram | None
    loop_lag: Histogram
