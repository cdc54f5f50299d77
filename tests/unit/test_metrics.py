"""The Prometheus endpoint: the collector from fixed snapshots, and a real bgpd scraped over
HTTP on loopback, its text parsed with prometheus_client's own parser."""

from __future__ import annotations

import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bgpd_pair import Pair
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from bgpd.cli.bgpd_main import main as bgpd_main
from bgpd.metrics.collector import DaemonCollector
from bgpd.metrics.driver import parse_listen
from bgpd.metrics.histogram import Histogram
from bgpd.metrics.snapshot import MetricsSnapshot
from bgpd.status.records import PeerStatus, ProtocolDetail
from labs.harness.wait import wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    names: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return names, samples


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((0.01, 0.1, 1.0))
    for value in (0.005, 0.01, 0.05, 0.5, 3.0):
        h.observe(value)
    assert h.buckets() == [("0.01", 2), ("0.1", 3), ("1.0", 4), ("+Inf", 5)]
    assert (h.count, round(h.sum, 3)) == (5, 3.565)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def _detail(state: str) -> ProtocolDetail:
    peer = PeerStatus(
        name="Mesh_10_0_0_2", address="10.0.0.2", port=179, type="node-to-node mesh",
        peer_as=64512, local_as=64512, bgp_state=state, since=None, info="",
        routes_received=7, routes_advertised=3, family="ipv4",
    )
    return ProtocolDetail(peer, "10.0.0.2", 90, 30, 240, ["ipv4"], True, None, 12, 11, 4, 2)


def test_collector_families_from_a_snapshot() -> None:
    fib = Histogram()
    fib.observe(0.002)
    snapshot = MetricsSnapshot(
        node="node1", router_id="10.0.0.1", asn=64512, version="0.1.0", started=1000.0,
        protocols=[_detail("Established")], rib_routes={"ipv4": 5, "ipv6": 0},
        fib_routes=4, fib_batches=fib, loop_lag=Histogram(),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(lambda: snapshot))
    names, samples = parse(generate_latest(registry).decode())
    labels = (("address", "10.0.0.2"), ("peer", "Mesh_10_0_0_2"), ("type", "node-to-node mesh"))
    assert samples[("pybgpd_peer_state", labels)] == 6
    assert samples[("pybgpd_peer_established", labels)] == 1
    assert samples[("pybgpd_peer_updates_received_total", labels)] == 4
    assert samples[("pybgpd_peer_updates_sent_total", labels)] == 2
    assert samples[("pybgpd_peer_prefixes_received", labels)] == 7
    assert samples[("pybgpd_peer_prefixes_advertised", labels)] == 3
    assert samples[("pybgpd_rib_prefixes", (("family", "ipv4"),))] == 5
    assert samples[("pybgpd_fib_routes", ())] == 4
    assert samples[("pybgpd_fib_programming_seconds_count", ())] == 1
    assert samples[("pybgpd_fib_programming_seconds_bucket", (("le", "0.005"),))] == 1
    assert samples[("pybgpd_fib_programming_seconds_bucket", (("le", "0.001"),))] == 0
    assert samples[("pybgpd_event_loop_lag_seconds_count", ())] == 0
    assert samples[("pybgpd_start_time_seconds", ())] == 1000.0

    # Without a FIB (--no-fib) its families are absent rather than zero.
    registry = CollectorRegistry(auto_describe=False)
    bare = MetricsSnapshot(
        node="rr", router_id="10.0.0.9", asn=64512, version="0.1.0", started=0.0,
        protocols=[_detail("Active")], rib_routes={}, fib_routes=None, fib_batches=None,
        loop_lag=Histogram(),
    )
    registry.register(DaemonCollector(lambda: bare))
    names, samples = parse(generate_latest(registry).decode())
    assert "pybgpd_fib_routes" not in names and "pybgpd_fib_programming_seconds" not in names
    assert samples[("pybgpd_peer_state", labels)] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9179", ("127.0.0.1", 9179)),
        ("[::1]:9179", ("::1", 9179)),
        (":9179", ("::", 9179)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9179", "host:", "host:http", "1.2.3.4:70000", "1.2.3.4:0"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_bad_metrics_listen_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = bgpd_main(["--node", "n", "--datastore", "file:///x.yaml", "--metrics-listen", "9179"])
    assert code == 2
    assert "--metrics-listen: expected ADDR:PORT" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def scraped_pair() -> Iterator[tuple[Pair, str]]:
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="pyb-met-"))
    pair = Pair(tmp, {"node1": ["--metrics-listen", f"127.0.0.1:{port}"]})
    try:
        yield pair, f"http://127.0.0.1:{port}"
    finally:
        pair.close()
        shutil.rmtree(tmp, ignore_errors=True)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return str(response.read().decode())


def test_scrape_a_running_bgpd(scraped_pair: tuple[Pair, str]) -> None:
    pair, base = scraped_pair
    labels = (("address", "127.0.0.2"), ("peer", "Mesh_127_0_0_2"), ("type", "node-to-node mesh"))

    def established() -> Samples | None:
        _, samples = parse(scrape(f"{base}/metrics"))
        return samples if samples.get(("pybgpd_peer_state", labels)) == 6 else None

    samples = wait_for(established, 60, message=lambda: "session up\n" + pair.logs(),
                       ignore=(OSError,))
    names, _ = parse(scrape(f"{base}/metrics"))
    assert {
        "pybgpd_info", "pybgpd_peer_state", "pybgpd_peer_established",
        "pybgpd_peer_updates_received", "pybgpd_peer_updates_sent",
        "pybgpd_peer_messages_received", "pybgpd_peer_messages_sent",
        "pybgpd_peer_prefixes_received", "pybgpd_peer_prefixes_advertised",
        "pybgpd_rib_prefixes", "pybgpd_event_loop_lag_seconds",
    } <= names
    assert samples[("pybgpd_peer_established", labels)] == 1
    assert samples[("pybgpd_peer_messages_received_total", labels)] >= 2  # OPEN, KEEPALIVE
    assert samples[("pybgpd_rib_prefixes", (("family", "ipv4"),))] == 1  # node1's own block
    # The lag probe runs every 50 ms from the start.
    assert samples[("pybgpd_event_loop_lag_seconds_count", ())] > 0
    info = [k for k in samples if k[0] == "pybgpd_info"]
    assert dict(info[0][1])["node"] == "node1"

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/nothing", timeout=10)
    assert err.value.code == 404
