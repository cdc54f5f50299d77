"""config/grafana/pybgpd-dashboard.json queries only metrics bgpd exports (names taken from
the collector's output), and covers sessions, routes, FIB latency and event-loop lag."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bgpd.metrics.collector import MetricsSnapshot, families
from bgpd.metrics.histogram import Histogram

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "pybgpd-dashboard.json"


def exported_names() -> set[str]:
    snap = MetricsSnapshot(
        node="n", router_id="10.0.0.1", asn=64512, version="0", started=0.0, protocols=[],
        rib_routes={"ipv4": 0}, fib_routes=0, fib_batches=Histogram(), loop_lag=Histogram(),
    )
    names: set[str] = set()
    for family in families(snap):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def test_dashboard_queries_exported_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bpybgpd_[a-z_]+", e)}
    known = exported_names() | {"pybgpd_info"}
    assert used <= known, used - known
    for needed in ("pybgpd_peer_established", "pybgpd_rib_prefixes",
                   "pybgpd_fib_programming_seconds_bucket", "pybgpd_event_loop_lag_seconds_bucket"):
        assert needed in used
