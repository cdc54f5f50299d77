"""`bgpd` refuses bad configuration with one line naming file, resource and field, and starts
nothing (no control socket appears)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOOD = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec: {bgp: {ipv4Address: 10.0.0.1/24}}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node2}
spec: {bgp: {ipv4Address: 10.0.0.2/24}}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: node1-block}
spec: {node: node1, cidr: 192.168.1.0/26, state: confirmed}
"""


def bgpd(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "calico.yaml"
    config.write_text(text)
    sock = tmp_path / "bgpd.sock"
    return subprocess.run(
        [
            sys.executable, "-m", "bgpd.cli.bgpd_main",
            "--node", "node1",
            "--datastore", f"file://{config}",
            "--control-socket", str(sock),
            *extra,
        ],
        capture_output=True, text=True, timeout=60,
    )


def test_check_prints_the_plan(tmp_path: Path) -> None:
    result = bgpd(tmp_path, GOOD, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "node node1: router id 10.0.0.1, AS 64512, 1 sessions, 1 originated prefixes"
    )


def test_bad_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    result = bgpd(tmp_path, GOOD + "---\nkind: [unclosed\n")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "calico.yaml" in lines[0] and "line" in lines[0]
    assert not (tmp_path / "bgpd.sock").exists()


def test_invalid_resource_names_file_resource_and_field(tmp_path: Path) -> None:
    bad = GOOD + (
        "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
        "spec: {peerIP: 10.0.0.300, asNumber: 65000}\n"
    )
    result = bgpd(tmp_path, bad)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line
    assert "calico.yaml" in line and "BGPPeer 'tor'" in line and "spec.peerIP" in line
    assert not (tmp_path / "bgpd.sock").exists()


def test_unknown_node_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace("name: node1}", "name: other}", 1)
    result = bgpd(tmp_path, text)
    assert result.returncode == 1
    assert "node1" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_password_secret_is_refused_before_start(tmp_path: Path) -> None:
    text = GOOD + (
        "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: tor}\n"
        "spec: {peerIP: 10.0.0.254, asNumber: 65000, password: "
        "{secretKeyRef: {name: bgp, key: tor}}}\n"
    )
    result = bgpd(tmp_path, text, "--secrets-dir", str(tmp_path / "secrets"))
    assert result.returncode == 1
    assert "bgp/tor" in result.stderr and "No such file" in result.stderr
    assert not (tmp_path / "bgpd.sock").exists()
