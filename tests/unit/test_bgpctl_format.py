"""bgpctl's text and JSON output against golden files, from fixed records and a fixed clock.

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the diff.
"""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path

import pytest

from bgpd.cli.format import (
    bird_info,
    bird_since,
    bird_state,
    calico_address,
    format_routes,
    format_status,
    render_table,
    routes_json,
    status_json,
)
from bgpd.status.codec import from_json
from bgpd.status.records import DaemonStatus, PeerStatus, RouteEntry

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

# 2023-11-14T22:13:20Z
NOW = 1_700_000_000.0


def peer(
    address: str,
    type: str = "node-to-node mesh",
    bgp_state: str = "Established",
    since: float | None = NOW - 60,
    info: str = "",
    port: int = 179,
    family: str = "ipv4",
    passive: bool = False,
) -> PeerStatus:
    return PeerStatus(
        name=f"peer-{address}-{port}",
        address=address,
        port=port,
        type=type,
        peer_as=64512,
        local_as=64512,
        bgp_state=bgp_state,
        since=since,
        info=info,
        routes_received=3,
        routes_advertised=2,
        family=family,
        passive=passive,
    )


def daemon(*peers: PeerStatus) -> DaemonStatus:
    return DaemonStatus(
        router_id="172.17.8.101",
        asn=64512,
        node="node-1",
        version="0.1.0",
        started=NOW - 7200,
        peers=list(peers),
    )


def route(
    prefix: str,
    next_hop: str,
    best: bool = True,
    from_peer: str = "Mesh_172_17_8_102",
    as_path: str = "",
    family: str = "ipv4",
    local_pref: int | None = 100,
    reason: str | None = None,
) -> RouteEntry:
    return RouteEntry(
        prefix=prefix,
        family=family,
        next_hop=next_hop,
        best=best,
        from_peer=from_peer,
        as_path=as_path,
        origin="IGP",
        local_pref=local_pref,
        med=None,
        communities=[],
        large_communities=[],
        originator_id=None,
        cluster_list=[],
        reason=reason,
        in_fib=best,
    )


# calicoctl's documented example, with the same three peers.
CALICO_EXAMPLE = daemon(
    peer("172.17.8.102", since=NOW - 60),
    peer("10.20.30.40", "global", "Connect", since=NOW - 3600),
    peer("192.10.0.0", "node specific", "Active", since=NOW - 30, info="Connection refused"),
)

MIXED = daemon(
    # Out of order on purpose: the table lists mesh, global, node specific, then by address.
    peer("10.0.0.9", "node specific", "Idle", since=NOW - 5, info="Received: Hold timer expired"),
    peer("10.0.0.3", since=NOW - 3 * 86400),
    peer("10.0.0.2", "global", "OpenSent", since=NOW - 2, port=1790),
    peer("10.0.0.4", "node-to-node mesh", "Active", since=NOW - 10, passive=True),
    peer("fd00::2", since=NOW - 20 * 3600, family="ipv6"),
    peer("fd00::1", since=NOW - 20 * 3600 + 1, family="ipv6"),
    peer("fd00::5", "global", "OpenConfirm", since=None, port=50, family="ipv6"),
    peer("fd00::7", "node specific", "Connect", info="BGP Error:  Bad peer AS", family="ipv6"),
)

ROUTES = [
    route("10.65.0.0/26", "0.0.0.0", from_peer="local", local_pref=None, reason=None),
    route("10.65.1.0/26", "172.17.8.102", reason="LOCAL_PREF"),
    route("10.65.1.0/26", "172.17.8.103", best=False, from_peer="Mesh_172_17_8_103"),
    route("10.65.2.7/32", "10.20.30.40", from_peer="Global_10_20_30_40", as_path="64513 64514"),
    route("fd00:10:65::/122", "fd00::2", from_peer="Mesh_fd00__2", family="ipv6"),
]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("status_calico_example.txt", CALICO_EXAMPLE),
        ("status_mixed.txt", MIXED),
        ("status_no_peers.txt", daemon()),
    ],
)
def test_status_text_matches_golden(name: str, status: DaemonStatus) -> None:
    check_golden(name, format_status(status, now=NOW, tz=UTC))


def test_calico_example_rows_equal_calicoctl_documented_rows() -> None:
    # The rows of calicoctl's documented output, split on "|" as Calico's own tests do.
    text = format_status(CALICO_EXAMPLE, now=NOW, tz=UTC)
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("|")
    ]
    assert rows == [
        ["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
        ["172.17.8.102", "node-to-node mesh", "up", "22:12:20", "Established"],
        ["10.20.30.40", "global", "start", "21:13:20", "Connect"],
        ["192.10.0.0", "node specific", "start", "22:12:50", "Active Socket: Connection refused"],
    ]
    assert text.endswith("\nIPv6 BGP status\nNo IPv6 peers found.\n\n")


@pytest.mark.parametrize(
    ("name", "routes", "prefix"),
    [
        ("routes.txt", ROUTES, None),
        ("routes_empty.txt", [], None),
        ("routes_empty_prefix.txt", [], "10.99.0.0/24"),
    ],
)
def test_routes_text_matches_golden(
    name: str, routes: list[RouteEntry], prefix: str | None
) -> None:
    check_golden(name, format_routes(routes, prefix))


@pytest.mark.parametrize(
    ("state", "info", "passive", "expected"),
    [
        ("Established", "", False, "Established"),
        # BIRD clears the last error on reaching Established.
        ("Established", "Received: Hold timer expired", False, "Established"),
        ("Connect", "", False, "Connect"),
        ("Active", "Connection refused", False, "Active Socket: Connection refused"),
        ("Active", "Socket: Connection closed", False, "Active Socket: Connection closed"),
        ("Idle", "BGP Error: Hold timer expired", False, "Idle BGP Error: Hold timer expired"),
        ("Idle", "Error: Neighbor lost", False, "Idle Error: Neighbor lost"),
        ("OpenSent", "", False, "OpenSent"),
        ("OpenConfirm", "", False, "OpenConfirm"),
        ("Active", "", True, "Passive"),
        ("Idle", "Received: Cease", True, "Passive Received: Cease"),
        ("OpenSent", "", True, "OpenSent"),
    ],
)
def test_bird_info(state: str, info: str, passive: bool, expected: str) -> None:
    p = peer("10.0.0.1", bgp_state=state, info=info, passive=passive)
    assert bird_info(p) == expected
    assert bird_state(p) == ("up" if state == "Established" else "start")


def test_bird_since_switches_to_date_at_twenty_hours() -> None:
    assert bird_since(NOW - 20 * 3600 + 1, NOW, UTC) == "02:13:21"
    assert bird_since(NOW - 20 * 3600, NOW, UTC) == "2023-11-14"
    assert bird_since(NOW - 400 * 86400, NOW, UTC) == "2022-10-10"
    assert bird_since(None, NOW, UTC) == ""
    # A change stamped slightly in the future (clock step) is still "recent".
    assert bird_since(NOW + 5, NOW, UTC) == "22:13:25"


def test_calico_address_shows_port_suffix_like_calicoctl() -> None:
    assert calico_address(peer("10.0.0.1")) == "10.0.0.1"
    assert calico_address(peer("10.0.0.1", port=1790)) == "10.0.0.1.port.1790"
    assert calico_address(peer("ac13::57", port=50, family="ipv6")) == "ac13::57:port:50"


def test_render_table_centres_headers_like_tablewriter() -> None:
    # Width 5 for a 2-letter header: gap 3 -> 1 space left, 2 right, plus the cell padding.
    assert render_table(["AB", "C"], [["abcde", "x"]]) == (
        "+-------+---+\n|  AB   | C |\n+-------+---+\n| abcde | x |\n+-------+---+\n"
    )


def test_status_json() -> None:
    data = status_json(MIXED)
    assert data["router_id"] == "172.17.8.101"
    assert data["as"] == 64512
    assert data["started"] == "2023-11-14T20:13:20Z"
    # IPv4 first, each family in table order.
    assert [p["address"] for p in data["peers"]] == [
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.2",
        "10.0.0.9",
        "fd00::1",
        "fd00::2",
        "fd00::5",
        "fd00::7",
    ]
    assert data["peers"][3] == {
        "address": "10.0.0.9",
        "port": 179,
        "family": "ipv4",
        "type": "node specific",
        "state": "start",
        "since": "2023-11-14T22:13:15Z",
        "info": "Idle Received: Hold timer expired",
        "bgp_state": "Idle",
        "routes_received": 3,
        "routes_advertised": 2,
    }
    assert data["peers"][6]["since"] is None
    assert data["peers"][6]["state"] == "start"


def test_routes_json_is_the_records() -> None:
    data = routes_json(ROUTES)
    assert [from_json(RouteEntry, d) for d in data] == ROUTES
    assert data[0]["from_peer"] == "local"
    assert data[0]["local_pref"] is None
