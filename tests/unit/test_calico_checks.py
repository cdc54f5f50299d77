"""Cross-resource mistakes: overlapping pools (Calico refuses them), duplicate node addresses
(calico-node refuses its own), block affinities outside every pool (a warning); found by
`calico.checks`, reported by `bgpd --check`, `bgpd plan` and `bgpctl apply`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.cli.bgpctl import main as bgpctl_main
from calico import checks, parse_resource
from calico.checks import AFFINITY_OUTSIDE_POOLS, ERROR, NODE_ADDRESS, POOL_OVERLAP, WARNING
from calico.snapshot import Snapshot


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name},
            "spec": spec}


def pool(name: str, cidr: str) -> dict[str, Any]:
    return doc("IPPool", name, {"cidr": cidr})


def node(name: str, v4: str | None = None, v6: str | None = None) -> dict[str, Any]:
    bgp = {k: v for k, v in (("ipv4Address", v4), ("ipv6Address", v6)) if v}
    return doc("Node", name, {"bgp": bgp})


def affinity(node_name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return doc("BlockAffinity", f"{node_name}-{cidr.replace('/', '-')}",
               {"node": node_name, "cidr": cidr, "state": "confirmed", **spec})


def snap(*docs: dict[str, Any]) -> Snapshot:
    return Snapshot.of(parse_resource(d) for d in docs)


def codes(findings: list[checks.Finding]) -> list[tuple[str, str]]:
    return [(f.severity, f.code) for f in findings]


# --- the checks -----------------------------------------------------------------------------


def test_overlapping_pools_are_an_error_in_calicos_words() -> None:
    found = checks.check(snap(pool("a", "10.0.0.0/16"), pool("b", "10.0.4.0/24"),
                              pool("c", "10.1.0.0/16"), pool("v6", "fd00::/48")))
    assert [(f.severity, f.code, f.message) for f in found] == [(
        ERROR, POOL_OVERLAP,
        "IPPool(a) CIDR 10.0.0.0/16 overlaps with IPPool(b) CIDR 10.0.4.0/24 "
        "(Calico refuses to create a pool that overlaps another)",
    )]
    assert found[0].resources == (("IPPool", "a"), ("IPPool", "b"))
    assert checks.check(snap(pool("a", "10.0.0.0/16"), pool("b", "fd00::/16"))) == []


def test_duplicate_node_addresses() -> None:
    s = snap(node("n1", "10.0.0.1/24", "fd00::1/64"), node("n2", "10.0.0.1/16"),
             node("n3", "10.0.0.3/24", "fd00::1/64"), node("n4"))
    # As another node: warnings (Calico stores them; each node's calico-node refuses).
    assert [f.message for f in checks.check(s)] == [
        "Nodes 'n1', 'n2' have the same IPv4 address 10.0.0.1: peers cannot tell them apart",
        "Nodes 'n1', 'n3' have the same IPv6 address fd00::1: peers cannot tell them apart",
    ]
    # As n1 itself: errors, as calico-node would refuse to start.
    mine = checks.check(s, "n1")
    assert codes(mine) == [(ERROR, NODE_ADDRESS), (ERROR, NODE_ADDRESS)]
    assert mine[0].message == (
        "Node 'n1' has IPv4 address 10.0.0.1, which Node 'n2' also uses "
        "(calico-node refuses to start on a conflicting address)"
    )
    assert codes(checks.check(s, "n2")) == [(ERROR, NODE_ADDRESS), (WARNING, NODE_ADDRESS)]
    assert checks.check(s, "n4") == checks.check(s)


def test_affinities_outside_every_pool() -> None:
    s = snap(pool("p", "192.168.0.0/16"), pool("p6", "fd10::/48"),
             affinity("n1", "192.168.1.0/26"), affinity("n1", "10.9.0.0/26"),
             affinity("n2", "fd10::/122"), affinity("n2", "fd99::/122"),
             affinity("n3", "10.8.0.0/26", deleted="true"))
    found = checks.check(s)
    assert codes(found) == [(WARNING, AFFINITY_OUTSIDE_POOLS)] * 2
    assert found[0].message == (
        "Node 'n1''s block 10.9.0.0/26 (BlockAffinity) is in no IPPool: it is still advertised "
        "and blackholed, with no pool's settings"
    )
    assert "fd99::/122" in found[1].message
    # A block larger than the pool is not inside it either.
    small = doc("IPPool", "p", {"cidr": "10.0.0.0/28", "blockSize": 28})
    assert codes(checks.check(snap(small, affinity("n", "10.0.0.0/26")))) == [
        (WARNING, AFFINITY_OUTSIDE_POOLS)
    ]


def test_errors_come_first_and_introduced_compares_by_content() -> None:
    before = snap(pool("a", "10.0.0.0/16"), affinity("n1", "10.9.0.0/26"))
    after = before.with_resource(parse_resource(pool("b", "10.0.0.0/24")))
    found = checks.check(after)
    assert codes(found) == [(ERROR, POOL_OVERLAP), (WARNING, AFFINITY_OUTSIDE_POOLS)]
    assert codes(checks.introduced(checks.check(before), found)) == [(ERROR, POOL_OVERLAP)]
    assert checks.errors(found) == found[:1]
    # The same affinity under another name says the same thing.
    renamed = parse_resource({**affinity("n1", "10.9.0.0/26"),
                              "metadata": {"name": "other-name"}})
    again = snap(pool("a", "10.0.0.0/16")).with_resource(renamed)
    assert checks.introduced(checks.check(before), checks.check(again)) == []
    assert str(found[0]).startswith("error: IPPool(a) CIDR")


# --- bgpd --check and bgpd plan --------------------------------------------------------------

MINE = [
    doc("BGPConfiguration", "default", {"asNumber": 64512}),
    node("node1", "10.0.0.1/24"),
    node("node2", "10.0.0.2/24"),
    pool("pods", "192.168.0.0/16"),
    affinity("node1", "192.168.1.0/26"),
]


Docs = list[dict[str, Any]]


def bgpd(tmp_path: Path, docs: Docs, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "calico.yaml"
    config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpd_main", *args, "--node", "node1",
         "--datastore", f"file://{config}", "--control-socket", str(tmp_path / "bgpd.sock")],
        capture_output=True, text=True, timeout=60,
    )


def plan(tmp_path: Path, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "calico.yaml"
    config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpd_main", "plan", "--node", "node1",
         "--datastore", f"file://{config}"],
        capture_output=True, text=True, timeout=60,
    )


def test_check_and_plan_are_quiet_on_a_sound_configuration(tmp_path: Path) -> None:
    result = bgpd(tmp_path, MINE, "--check")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    result = plan(tmp_path, MINE)
    assert (result.returncode, result.stderr) == (0, "")


def test_check_warns_of_an_affinity_outside_every_pool(tmp_path: Path) -> None:
    result = bgpd(tmp_path, [*MINE, affinity("node1", "10.9.0.0/26")], "--check")
    assert result.returncode == 0
    assert result.stderr == (
        "bgpd: warning: Node 'node1''s block 10.9.0.0/26 (BlockAffinity) is in no IPPool: it is "
        "still advertised and blackholed, with no pool's settings\n"
    )
    assert result.stdout.startswith("node node1: router id 10.0.0.1")


def test_check_and_plan_exit_1_where_calico_refuses(tmp_path: Path) -> None:
    overlap = [*MINE, pool("more", "192.168.128.0/17")]
    result = bgpd(tmp_path, overlap, "--check")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "bgpd: error: IPPool(more) CIDR 192.168.128.0/17 overlaps with IPPool(pods) CIDR "
        "192.168.0.0/16 (Calico refuses to create a pool that overlaps another)\n"
    )
    result = plan(tmp_path, overlap)
    assert result.returncode == 1
    assert result.stdout.startswith("node node1: router id 10.0.0.1")  # still shown
    assert result.stderr.startswith("bgpd plan: error: IPPool(more) CIDR")
    # This node's address used by another node: calico-node would not start.
    result = bgpd(tmp_path, [*MINE, node("node3", "10.0.0.1/24")], "--check")
    assert result.returncode == 1
    assert result.stderr == (
        "bgpd: error: Node 'node1' has IPv4 address 10.0.0.1, which Node 'node3' also uses "
        "(calico-node refuses to start on a conflicting address)\n"
    )
    # Two other nodes sharing one: a warning.
    result = bgpd(tmp_path, [*MINE, node("node3", "10.0.0.2/24")], "--check")
    assert result.returncode == 0
    assert result.stderr.startswith("bgpd: warning: Nodes 'node2', 'node3' have the same IPv4")


# --- bgpctl apply ----------------------------------------------------------------------------


def apply(url: str, tmp_path: Path, docs: list[dict[str, Any]],
          capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    f = tmp_path / "apply.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    code = bgpctl_main(["--datastore", url, "apply", "-f", str(f)])
    out, err = capsys.readouterr()
    return code, out, err


def stored_pools(url: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert bgpctl_main(["--datastore", url, "get", "ippools"]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]


def test_apply_refuses_an_overlapping_pool_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'calico.db'}"
    assert apply(url, tmp_path, MINE, capsys) == (0, "Successfully applied 5 resource(s)\n", "")
    code, out, err = apply(
        url, tmp_path, [node("node3", "10.0.0.3/24"), pool("more", "192.168.7.0/24")], capsys
    )
    assert (code, out) == (1, "")
    assert err == (
        "bgpctl: error: IPPool(more) CIDR 192.168.7.0/24 overlaps with IPPool(pods) CIDR "
        "192.168.0.0/16 (Calico refuses to create a pool that overlaps another)\n"
    )
    assert stored_pools(url, capsys) == ["pods"]
    assert bgpctl_main(["--datastore", url, "get", "nodes", "node3"]) == 1  # not written
    capsys.readouterr()
    # Re-applying what is stored brings nothing new in: no finding.
    assert apply(url, tmp_path, MINE, capsys) == (0, "Successfully applied 5 resource(s)\n", "")


def test_apply_warns_and_writes_what_calico_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite://{tmp_path / 'calico.db'}"
    apply(url, tmp_path, MINE, capsys)
    code, out, err = apply(
        url, tmp_path, [node("node3", "10.0.0.2/24"), affinity("node3", "10.9.0.0/26")], capsys
    )
    assert (code, out) == (0, "Successfully applied 2 resource(s)\n")
    assert err.splitlines() == [
        "bgpctl: warning: Nodes 'node2', 'node3' have the same IPv4 address 10.0.0.2: peers "
        "cannot tell them apart",
        "bgpctl: warning: Node 'node3''s block 10.9.0.0/26 (BlockAffinity) is in no IPPool: it "
        "is still advertised and blackholed, with no pool's settings",
    ]
    assert apply(url, tmp_path, [node("node3", "10.0.0.2/24")], capsys)[2] == ""
