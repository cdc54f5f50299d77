"""BGPFilters on a live bgpd (issue 15): an export rule keeps a block from a BIRD peer, an import
rule keeps a peer's route out of bgpd's RIB and FIB; editing the filter, or the BGPPeer's list
of filters, in the datastore file is applied to the running session: the peer sees the
withdrawal and the announcement, bgpd's RIB follows, and neither end's session is reset
(bgpd's `since` and BIRD's session stay)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from labs.harness.bgpd_node import Bgpd, resources
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, Neighbor, missing_programs
from labs.harness.wait import wait_for

BGPD_AS, PEER_AS = 64512, 65002
BLOCK_A, BLOCK_B = "10.244.1.0/26", "10.245.1.0/26"
ROUTE_A, ROUTE_B = "10.99.1.0/24", "10.99.2.0/24"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(bool(missing_programs(BirdPeer)), reason="bird2 not installed"),
]


def bgp_filter(export_reject: str, import_reject: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPFilter",
        "metadata": {"name": "tor"},
        "spec": {
            "exportV4": [{"cidr": export_reject, "matchOperator": "In", "action": "Reject"}],
            "importV4": [{"cidr": import_reject, "matchOperator": "In", "action": "Reject"}],
        },
    }


def write(bgpd: Bgpd, docs: list[dict[str, Any]]) -> None:
    tmp = bgpd.config.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    os.replace(tmp, bgpd.config)


def since(bgpd: Bgpd, address: str) -> Any:
    return next(p["since"] for p in bgpd.status()["peers"] if p["address"] == address)


def bird_since(peer: BirdPeer, address: str) -> str:
    out = peer.birdc(f"show protocols {peer.protocol_name(address)}")
    line = out.strip().splitlines()[-1].split()
    return " ".join(line[4:6])  # name proto table state since (date, time) info


def test_filter_edits_apply_to_the_running_session(lab: Lab) -> None:
    sw = lab.add_switch("sw", "10.0.40.0/24", "fd00:40::/64")
    a, b = lab.add_node("bgpd"), lab.add_node("tor")
    a_ip = sw.attach(a, "10.0.40.1").v4
    b_ip = sw.attach(b, "10.0.40.2").v4
    assert a_ip is not None and b_ip is not None
    tor = BirdPeer(b, b_ip, PEER_AS, [Neighbor(a_ip, BGPD_AS)], routes_v4=[ROUTE_A, ROUTE_B])
    tor.start()

    def docs(*extra: dict[str, Any], filters: tuple[str, ...] = ("tor",)) -> list[dict[str, Any]]:
        return resources(
            node="node1", ipv4=f"{a_ip}/24", asn=BGPD_AS, blocks=[BLOCK_A, BLOCK_B],
            pools=["10.244.0.0/14"],
            peers=[{"peerIP": b_ip, "asNumber": PEER_AS, "filters": list(filters)}],
        ) + list(extra)

    # The case: export Reject 10.244.0.0/16, import Reject 10.99.1.0/24.
    bgpd = Bgpd(a, "node1", docs(bgp_filter("10.244.0.0/16", ROUTE_A))).start()
    bgpd.wait_established(b_ip)
    tor.wait_received(4, [BLOCK_B], [BLOCK_A])
    wait_for(lambda: ROUTE_B in bgpd.kernel_prefixes(4), 30, message="B's route in the FIB")
    assert ROUTE_A not in bgpd.kernel_prefixes(4)
    assert ROUTE_A not in {r["prefix"] for r in bgpd.routes()}
    ours, theirs = since(bgpd, b_ip), bird_since(tor, a_ip)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", theirs), theirs

    # The other way round: the peer gets A and loses B; bgpd takes A and drops B.
    write(bgpd, docs(bgp_filter("10.245.0.0/16", ROUTE_B)))
    tor.wait_received(4, [BLOCK_A], [BLOCK_B])
    wait_for(lambda: ROUTE_A in bgpd.kernel_prefixes(4), 30, message="A's route in the FIB")
    wait_for(lambda: ROUTE_B not in bgpd.kernel_prefixes(4), 30, message="B's route gone")
    assert since(bgpd, b_ip) == ours and bird_since(tor, a_ip) == theirs

    # The BGPPeer no longer names the filter: both ways open, on the same session.
    write(bgpd, docs(bgp_filter("10.245.0.0/16", ROUTE_B), filters=()))
    tor.wait_received(4, [BLOCK_A, BLOCK_B])
    wait_for(lambda: {ROUTE_A, ROUTE_B} <= bgpd.kernel_prefixes(4), 30, message="both routes")
    # Named again, the filter deleted: as confd, nothing of it applies (and a note says so).
    write(bgpd, docs())
    wait_for(lambda: "BGPFilter 'tor' does not exist" in bgpd.log_path.read_text(), 20,
             message="the missing filter noted")
    tor.wait_received(4, [BLOCK_A, BLOCK_B])
    assert since(bgpd, b_ip) == ours and bird_since(tor, a_ip) == theirs
    assert re.search(r"export filters changed", bgpd.log_path.read_text())
