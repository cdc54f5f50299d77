"""`bgpd plan`: the rendering of a plan (text and JSON) against golden files, and the
subcommand end to end. Set UPDATE_GOLDEN=1 to rewrite the golden files, then review the diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bgpd.plan import compute
from bgpd.plan.render import plan_dict, plan_text
from calico import load_text

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

CLUSTER = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
  programClusterRoutes: Enabled
  logSeverityScreen: Warning
  ignoredInterfaces: [eth9, "veth*"]
  communities: [{name: site, value: "65000:100"}]
  prefixAdvertisements:
  - {cidr: 192.168.0.0/16, communities: [site, "65000:1:2"]}
  serviceClusterIPs: [{cidr: 10.96.0.0/12}]
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: rr1, labels: {route-reflector: "true"}}
spec:
  bgp: {ipv4Address: 10.0.0.1/24, ipv6Address: "fd00::1/64", routeReflectorClusterID: 224.0.0.1}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2, labels: {rack: a}}
spec: {bgp: {ipv4Address: 10.0.0.2/24, ipv6Address: "fd00::2/64"}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node3, labels: {rack: b}}
spec: {bgp: {ipv4Address: 10.0.0.3/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: peer-with-rr}
spec: {nodeSelector: all(), peerSelector: has(route-reflector)}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
  annotations: {pybgpd.io/bfd: "true", pybgpd.io/bfd-interval: 100ms}
spec:
  peerIP: 10.0.0.254:1179
  asNumber: 65001
  keepOriginalNextHop: true
  ttlSecurity: 1
  sourceAddress: None
  maxRestartTime: 30s
  keepaliveTime: 10s
  password: {secretKeyRef: {name: bgp-secrets, key: tor}}
  numAllowedLocalASNumbers: 1
  reachableBy: 10.0.0.250
  filters: [only-pods]
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: ipip}
spec: {cidr: 192.168.0.0/16, ipipMode: CrossSubnet}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: plain}
spec: {cidr: 172.16.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: private}
spec: {cidr: 172.20.0.0/16, disableBGPExport: true}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: vx6}
spec: {cidr: "fd10::/64", vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node2-a}
spec: {node: node2, cidr: 192.168.2.0/26, state: confirmed}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node2-b}
spec: {node: node2, cidr: 172.20.2.0/26, state: confirmed}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node2-c}
spec: {node: node2, cidr: 172.16.2.0/26, state: pendingDeletion}
"""


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


@pytest.mark.parametrize("node", ["rr1", "node2"])
def test_plan_text_matches_golden(node: str) -> None:
    plan = compute(load_text(CLUSTER), node)
    check_golden(f"plan_{node}.txt", plan_text(plan))


@pytest.mark.parametrize("node", ["rr1", "node2"])
def test_plan_json_matches_golden(node: str) -> None:
    plan = compute(load_text(CLUSTER), node)
    check_golden(f"plan_{node}.json", json.dumps(plan_dict(plan), indent=2) + "\n")


def test_json_holds_the_fields_the_issue_lists() -> None:
    data = plan_dict(compute(load_text(CLUSTER), "node2"))
    assert {"router_id", "as", "sessions", "blackholes", "advertised"} <= set(data)
    want = {
        "name", "address", "port", "as", "local_as", "type", "passive", "rr_client",
        "rr_cluster_id", "ttl_security", "source_address", "next_hop", "restart_time",
        "keepalive_time", "password_set",
    }
    assert data["sessions"] and all(want <= set(s) for s in data["sessions"])
    tor = next(s for s in data["sessions"] if s["address"] == "10.0.0.254")
    assert (tor["type"], tor["port"], tor["as"], tor["next_hop"]) == (
        "global", 1179, 65001, "keep"
    )
    assert (tor["allow_local_as"], tor["add_path"], tor["filters"]) == (1, "rx/tx", ["only-pods"])
    assert tor["communities"] == ["192.168.0.0/16: 65000:100 65000:1:2"]
    assert data["static_routes"] == [{"prefix": "10.0.0.254/32", "via": "10.0.0.250"}]
    assert data["log_severity"] == "Warning"
    assert data["ignored_interfaces"] == ["eth9", "veth*"]
    # Nothing shown as if it were in force: what is not applied is a note.
    assert any("BGPFilter 'only-pods' does not exist" in n for n in data["notes"])
    assert any("serviceClusterIPs not advertised" in n for n in data["notes"])
    assert (tor["ttl_security"], tor["restart_time"], tor["keepalive_time"]) == (True, 30, 10)
    assert tor["password_set"] is True and tor["source_address"] is None
    rr = next(s for s in data["sessions"] if s["address"] == "10.0.0.1")
    assert rr["type"] == "node specific" and not rr["rr_client"]
    # The private pool's block is blackholed but never advertised.
    assert sorted(data["blackholes"]) == ["172.16.2.0/26", "172.20.2.0/26", "192.168.2.0/26"]
    # pendingDeletion: no aggregate, but still a route inside an exported pool.
    assert sorted(data["advertised"]) == ["172.16.2.0/26", "192.168.2.0/26"]


def test_reflector_sessions_are_rr_clients() -> None:
    data = plan_dict(compute(load_text(CLUSTER), "rr1"))
    clients = [s for s in data["sessions"] if s["rr_client"]]
    assert {s["address"] for s in clients} == {"10.0.0.2", "10.0.0.3", "fd00::2"}
    assert {s["rr_cluster_id"] for s in clients} == {"224.0.0.1"}
    assert data["rr_cluster_id"] == "224.0.0.1" and data["mesh"] is False


def run_bgpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpd_main", *args],
        capture_output=True, text=True, timeout=60,
    )


def test_bgpd_plan_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(CLUSTER)
    url = f"file://{config}"
    result = run_bgpd("plan", "--node", "node2", "--datastore", url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == plan_dict(compute(load_text(CLUSTER), "node2"))
    result = run_bgpd("plan", "--node", "node2", "--datastore", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == plan_text(compute(load_text(CLUSTER), "node2"))


def test_bgpd_plan_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(CLUSTER)
    result = run_bgpd("plan", "--node", "nope", "--datastore", f"file://{config}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["bgpd plan: no Node resource named 'nope'"]
    result = run_bgpd("plan", "--node", "node2", "--datastore", "zk://somewhere")
    assert result.returncode == 1 and "unsupported datastore" in result.stderr
