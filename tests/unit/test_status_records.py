"""Status records: JSON round trips and the checks that catch a daemon filling them wrongly."""

from __future__ import annotations

import json

import pytest

from bgpd.status.codec import from_json, to_json
from bgpd.status.records import DaemonStatus, PeerStatus, RouteEntry


def make_peer(**changes: object) -> PeerStatus:
    fields: dict[str, object] = {
        "name": "Mesh_10_0_0_2",
        "address": "10.0.0.2",
        "port": 179,
        "type": "node-to-node mesh",
        "peer_as": 64512,
        "local_as": 64512,
        "bgp_state": "Established",
        "since": 1_700_000_000.5,
        "info": "",
        "routes_received": 4,
        "routes_advertised": 1,
        "family": "ipv4",
    }
    fields.update(changes)
    return PeerStatus(**fields)  # type: ignore[arg-type]


ROUTE = RouteEntry(
    prefix="fd00:10::/122",
    family="ipv6",
    next_hop="fd00::2",
    best=False,
    from_peer="Mesh_fd00__2",
    as_path="64513",
    origin="INCOMPLETE",
    local_pref=100,
    med=5,
    communities=["64512:100"],
    large_communities=["64512:1:2"],
    originator_id="10.0.0.7",
    cluster_list=["10.0.0.250", "10.0.0.251"],
    reason="IGP_COST",
    in_fib=None,
)


def test_status_round_trips_through_json_text() -> None:
    status = DaemonStatus(
        router_id="10.0.0.1",
        asn=4_200_000_000,
        node="node-1",
        version="0.1.0",
        started=1_699_990_000.0,
        peers=[make_peer(), make_peer(address="fd00::2", family="ipv6", since=None, passive=True)],
    )
    text = json.dumps(to_json(status))
    assert from_json(DaemonStatus, json.loads(text)) == status


def test_route_round_trips_through_json_text() -> None:
    assert from_json(RouteEntry, json.loads(json.dumps(to_json(ROUTE)))) == ROUTE
    local = from_json(
        RouteEntry,
        {**to_json(ROUTE), "local_pref": None, "med": None, "originator_id": None, "reason": None},
    )
    assert (local.local_pref, local.med, local.originator_id, local.reason) == (None,) * 4


def test_peer_without_passive_field_reads_as_active_end() -> None:
    data = to_json(make_peer(passive=True))
    del data["passive"]
    assert from_json(PeerStatus, data).passive is False


@pytest.mark.parametrize(
    ("field", "value"),
    [("bgp_state", "ESTABLISHED"), ("bgp_state", "up"), ("type", "mesh"), ("family", "inet")],
)
def test_peer_rejects_values_outside_the_vocabulary(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{'peer type' if field == 'type' else field} must be"):
        make_peer(**{field: value})


def test_route_rejects_unknown_family() -> None:
    with pytest.raises(ValueError, match="family"):
        from_json(RouteEntry, {**to_json(ROUTE), "family": "ipv6-unicast"})
