"""The daemon's state as Prometheus metric families, built when scraped.

`DaemonCollector` asks its `snapshot` callable for a `MetricsSnapshot` on every scrape and
yields families from it: per-peer session state, messages, UPDATEs and prefixes in and out,
Loc-RIB and FIB sizes, FIB programming latency per netlink batch and event-loop lag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bgpd.metrics.histogram import Histogram
from bgpd.metrics.snapshot import MetricsSnapshot
from bgpd.status.records import BGP_STATES

PREFIX = "pybgpd"
PEER_LABELS = ("peer", "address", "type")


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], hist.buckets(), hist.sum)
    return family


class DaemonCollector(Collector):
    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot())


def families(s: MetricsSnapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        f"{PREFIX}_info", "bgpd's identity (value 1)",
        labels=("node", "router_id", "asn", "version"),
    )
    info.add_metric([s.node, s.router_id, str(s.asn), s.version], 1)
    yield info
    yield GaugeMetricFamily(
        f"{PREFIX}_start_time_seconds", "when bgpd started, seconds since the epoch",
        value=s.started,
    )

    state = GaugeMetricFamily(
        f"{PREFIX}_peer_state",
        "BGP state per session: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, "
        "6 Established",
        labels=PEER_LABELS,
    )
    up = GaugeMetricFamily(
        f"{PREFIX}_peer_established", "1 while the session is Established", labels=PEER_LABELS
    )
    counters = {
        key: CounterMetricFamily(f"{PREFIX}_peer_{key}", doc, labels=PEER_LABELS)
        for key, doc in (
            ("messages_received", "BGP messages received from the peer"),
            ("messages_sent", "BGP messages sent to the peer"),
            ("updates_received", "UPDATE messages received from the peer"),
            ("updates_sent", "UPDATE messages sent to the peer"),
        )
    }
    prefixes_in = GaugeMetricFamily(
        f"{PREFIX}_peer_prefixes_received", "prefixes accepted from the peer", labels=PEER_LABELS
    )
    prefixes_out = GaugeMetricFamily(
        f"{PREFIX}_peer_prefixes_advertised", "prefixes advertised to the peer",
        labels=PEER_LABELS,
    )
    for d in s.protocols:
        p = d.peer
        labels = [p.name, p.address, p.type]
        state.add_metric(labels, BGP_STATES.index(p.bgp_state) + 1)
        up.add_metric(labels, 1 if p.bgp_state == "Established" else 0)
        counters["messages_received"].add_metric(labels, d.messages_received)
        counters["messages_sent"].add_metric(labels, d.messages_sent)
        counters["updates_received"].add_metric(labels, d.updates_received)
        counters["updates_sent"].add_metric(labels, d.updates_sent)
        prefixes_in.add_metric(labels, p.routes_received)
        prefixes_out.add_metric(labels, p.routes_advertised)
    yield state
    yield up
    yield from counters.values()
    yield prefixes_in
    yield prefixes_out

    rib = GaugeMetricFamily(
        f"{PREFIX}_rib_prefixes", "prefixes in the Loc-RIB", labels=("family",)
    )
    for family, count in sorted(s.rib_routes.items()):
        rib.add_metric([family], count)
    yield rib
    if s.fib_routes is not None:
        yield GaugeMetricFamily(
            f"{PREFIX}_fib_routes", "routes bgpd keeps in the kernel FIB (with blackholes)",
            value=s.fib_routes,
        )
    if s.fib_batches is not None:
        yield _histogram(
            f"{PREFIX}_fib_programming_seconds",
            "time to program one batch of route changes into the kernel",
            s.fib_batches,
        )
    yield _histogram(
        f"{PREFIX}_event_loop_lag_seconds",
        "how late the event loop ran a timer due every 50 ms",
        s.loop_lag,
    )
