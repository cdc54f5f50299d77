"""`bgpctl explain` and `bgpctl show route export`: the answers built from a real RIB and
Adj-RIB-Out, the handlers, and the text output against golden files (UPDATE_GOLDEN=1 rewrites
them; review the diff)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bgpd.cli.route_cmds import format_explanation, format_exported
from bgpd.control.explain import PeerState, explain, exported_routes
from bgpd.control.handlers import encode_response, handle_line
from bgpd.policy.calico import AffineBlock, ExportPolicy, PoolSpec
from bgpd.policy.imports import ImportRules
from bgpd.policy.policy import Policy
from bgpd.rib.adj_out import AdjRibOut, GroupKey
from bgpd.rib.rib import Rib
from bgpd.rib.route import KERNEL, PeerInfo
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import DaemonStatus, Explanation, ExportedRoute, RouteEntry
from bgpd.wire.attributes import AS_SEQUENCE, PathAttributes
from bgpd.wire.family import Family, address_to_bytes, prefix_to_nlri
from bgpd.wire.messages import Update
from bgpd.wire.options import CodecOptions

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
V4 = Family.IPV4_UNICAST
AS = 64512
OPTS = CodecOptions()
ME = address_to_bytes("10.0.0.1")
POLICY = ExportPolicy(
    (AffineBlock("192.168.1.0/26", "ipv4", "confirmed"),),
    (PoolSpec("default", "192.168.0.0/16", "ipv4", "Never", "Never", False, False, False),),
)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def peer(name: str, last: int, asn: int = AS) -> PeerInfo:
    return PeerInfo(name, bytes([10, 0, 0, last]), asn, 0x0A000000 + last, AS)


MESH2, MESH3, TOR = (
    peer("Mesh_10_0_0_2", 2),
    peer("Mesh_10_0_0_3", 3),
    peer("Global_10_0_0_254", 254, 65001),
)


def nlri(prefix: str) -> bytes:
    return prefix_to_nlri(prefix)[1]


def setup() -> tuple[Rib, AdjRibOut, list[PeerState]]:
    rib = Rib(AS, 0x0A000001, imports=ImportRules())
    for p in (MESH2, MESH3, TOR):
        rib.add_peer(p)
    rib.originate(V4, nlri("192.168.1.0/26"), PathAttributes())
    rib.originate(V4, nlri("192.168.1.5/32"), PathAttributes(origin=2), source=KERNEL)
    rib.originate(V4, nlri("192.168.7.9/32"), PathAttributes(origin=2), source=KERNEL)
    # Two mesh peers announce the same block; the ToR announces it with our AS in the path.
    for p, lp in ((MESH2, 100), (MESH3, 200)):
        rib.apply_update(
            p.name,
            Update(
                attributes=PathAttributes(next_hop=p.address, local_pref=lp),
                nlri=(nlri("192.168.2.0/26"),),
            ),
            OPTS,
        )
    rib.apply_update(
        TOR.name,
        Update(
            attributes=PathAttributes(next_hop=TOR.address, as_path=((AS_SEQUENCE, (65001, AS)),)),
            nlri=(nlri("192.168.2.0/26"),),
        ),
        OPTS,
    )
    out = AdjRibOut(rib.cluster_id, Policy(POLICY))
    for p in (MESH2, TOR):
        key = GroupKey.for_peer(p, options=OPTS, families=(V4,), local_ipv4=ME)
        out.join(p, key, rib.iter_best)
    peers = [
        PeerState(MESH2.name, "Established", True, True, False),
        PeerState(MESH3.name, "Active", False, True, False),
        PeerState(TOR.name, "Established", True, False, False),
    ]
    return rib, out, peers


def fib(family: Family, prefix: bytes) -> tuple[bool, str]:
    if prefix == nlri("192.168.2.0/26"):
        return True, "installed via 10.0.0.3"
    return False, "no best path"


def test_explain_a_learned_block() -> None:
    rib, out, peers = setup()
    e = explain(rib, out, "192.168.2.0/26", peers, POLICY, fib)
    assert e.in_loc_rib and e.in_fib
    verdicts = {c.from_peer: c.verdict for c in e.candidates}
    assert verdicts == {
        "Mesh_10_0_0_3": "best (Local Pref)",
        "Mesh_10_0_0_2": "lost to Mesh_10_0_0_3 on Local Pref",
        "Global_10_0_0_254": "rejected: AS_PATH contains our AS",
    }
    reasons = {x.peer: (x.exported, x.reason) for x in e.exports}
    assert reasons["Mesh_10_0_0_2"] == (
        False,
        "iBGP split horizon: learned from an iBGP non-client",
    )
    assert reasons["Mesh_10_0_0_3"] == (False, "session not established (Active)")
    assert reasons["Global_10_0_0_254"] == (True, "export policy accepted: inside an IP pool")
    check_golden("explain_learned_block.txt", format_explanation(e))
    assert from_json(Explanation, json.loads(json.dumps(to_json(e)))) == e


def test_explain_local_routes() -> None:
    rib, out, peers = setup()
    e = explain(rib, out, "192.168.1.5/32", peers, POLICY, fib)
    assert e.in_loc_rib and not e.in_fib
    assert e.fib_reason == "not installed: a route learned from the kernel"
    assert {x.reason for x in e.exports if x.exported is False} >= {
        "export policy rejected: more specific than a confirmed local block "
        "(the aggregate covers it)"
    }
    check_golden("explain_workload.txt", format_explanation(e))
    borrowed = explain(rib, out, "192.168.7.9/32", peers, POLICY, fib)
    assert [x.exported for x in borrowed.exports] == [True, False, True]
    missing = explain(rib, out, "10.1.0.0/16", peers, POLICY, None)
    assert not missing.in_loc_rib and missing.in_fib is None
    assert {x.reason for x in missing.exports} >= {"no best path"}
    check_golden("explain_missing.txt", format_explanation(missing))


def test_exported_routes() -> None:
    _rib, out, _peers = setup()
    routes = exported_routes(out, TOR.name)
    assert {r.prefix for r in routes} == {"192.168.1.0/26", "192.168.2.0/26", "192.168.7.9/32"}
    assert {r.as_path for r in routes} == {"64512"}
    mesh = exported_routes(out, MESH2.name)
    assert {r.prefix for r in mesh} == {"192.168.1.0/26", "192.168.7.9/32"}
    check_golden(
        "export_tor.txt", format_exported(TOR.name, sorted(routes, key=lambda r: r.prefix))
    )
    assert format_exported("x", []) == "No routes exported to x.\n"
    assert [from_json(ExportedRoute, to_json(r)) for r in routes] == routes


class View:
    def __init__(self) -> None:
        self.rib, self.out, self.peers = setup()

    def status(self) -> DaemonStatus:
        raise AssertionError

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        raise AssertionError

    def exported(self, peer: str) -> list[ExportedRoute]:
        if peer not in {p.name for p in self.peers}:
            raise KeyError(peer)
        return exported_routes(self.out, peer)

    def explain(self, prefix: str) -> Explanation:
        return explain(self.rib, self.out, prefix, self.peers, POLICY, fib)


def answer(line: bytes) -> Any:
    return json.loads(b"".join(encode_response(handle_line(line, View()))))


def test_handlers() -> None:
    got = answer(b'{"command": "explain", "prefix": "192.168.2.0/26"}')
    assert got["ok"] and got["result"]["prefix"] == "192.168.2.0/26"
    got = answer(b'{"command": "explain", "prefix": "192.168.7.9"}')
    assert got["ok"] and got["result"]["prefix"] == "192.168.7.9/32"
    got = answer(b'{"command": "exported", "peer": "Global_10_0_0_254"}')
    assert [r["prefix"] for r in got["result"]] == [
        "192.168.1.0/26",
        "192.168.2.0/26",
        "192.168.7.9/32",
    ]
    assert answer(b'{"command": "exported", "peer": "nobody"}') == {
        "ok": False,
        "error": "no such peer 'nobody'",
    }
    assert not answer(b'{"command": "explain", "prefix": "300.1.1.1"}')["ok"]
