"""The operator commands against real daemons: two bgpd processes in a mesh on loopback
(bgpd_pair.Pair), driven with the bgpctl CLI as an operator would."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bgpd_pair import REPO, Pair

from labs.harness.wait import wait_for


@pytest.fixture
def pair() -> Iterator[Pair]:
    tmp = Path(tempfile.mkdtemp(prefix="pyb-ops-"))
    p = Pair(tmp)
    try:
        yield p
    finally:
        p.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _established(pair: Pair, name: str) -> bool:
    return pair.protocol(name)["bgp_state"] == "Established"


def test_operator_commands_on_live_daemons(pair: Pair) -> None:
    wait_for(lambda: pair.bgpctl("node1", "check", "live").returncode == 0, 30,
             message="node1 control socket")
    wait_for(lambda: pair.bgpctl("node2", "check", "live").returncode == 0, 30,
             message="node2 control socket")
    wait_for(lambda: pair.bgpctl("node1", "check", "ready").returncode == 0, 60,
             message=lambda: "node1 ready\n" + pair.logs())
    assert pair.bgpctl("node1", "check", "ready").stdout == "ready: 1/1 sessions established\n"

    # show protocols all: BIRD's detail with the negotiated timers and route counts.
    wait_for(lambda: pair.protocol("node1")["routes_advertised"] == 1, 30, message="route out")
    text = pair.bgpctl("node1", "show", "protocols", "all", "127.0.0.2").stdout
    lines = text.splitlines()
    assert lines[0].split() == ["Name", "Proto", "Table", "State", "Since", "Info"]
    assert lines[1].split()[:4] == ["Mesh_127_0_0_2", "BGP", "master4", "up"]
    assert "    Neighbor ID:      127.0.0.2" in lines
    assert "    Hold time:        240 (offered 240)" in lines
    assert "    Keepalive time:   80" in lines
    # node2's block arrives but is not imported: a loopback NEXT_HOP is martian (RFC 7606
    # treat-as-withdraw), which is why the routes are checked at node2 below.
    assert "    Routes:         0 imported, 1 exported" in lines
    assert "    Route refresh:  yes" in lines

    # Refresh: node2 answers a ROUTE-REFRESH by sending its routes again (more UPDATEs in).
    before = pair.protocol("node1")
    result = pair.bgpctl("node1", "neighbor", "Mesh_127_0_0_2", "refresh")
    assert (result.returncode, result.stdout) == (
        0, "Mesh_127_0_0_2: route refresh requested for ipv4\n"
    )
    wait_for(
        lambda: pair.protocol("node1")["updates_received"] > before["updates_received"], 30,
        message="UPDATEs resent after ROUTE-REFRESH",
    )
    assert pair.protocol("node1")["since"] == before["since"]  # the session stayed up

    # Reset: the session goes down (Cease) and comes back.
    result = pair.bgpctl("node1", "neighbor", "127.0.0.2", "reset")
    assert (result.returncode, result.stdout) == (0, "Mesh_127_0_0_2: session reset\n")
    wait_for(lambda: pair.protocol("node1")["since"] != before["since"], 30,
             message="session state changed by the reset")
    wait_for(lambda: _established(pair, "node1"), 60, message=lambda: "re-established\n"
             + pair.logs())
    assert "Received: Administrative reset" in (pair.tmp / "node2.log").read_text()

    # Errors an operator meets.
    result = pair.bgpctl("node1", "neighbor", "10.9.9.9", "reset")
    assert (result.returncode, result.stderr) == (1, "bgpctl: no such peer '10.9.9.9'\n")
    result = pair.bgpctl("node1", "show", "protocols", "ghost")
    assert (result.returncode, result.stderr) == (1, "bgpctl: no such protocol 'ghost'\n")

    # Reload: node2's block moves; node2 originates the new one after `bgpctl reload`.
    pair.write({"node1": "192.168.1.0/26", "node2": "192.168.9.0/26"})
    result = pair.bgpctl("node2", "reload")
    assert result.returncode == 0, result.stderr

    def originated() -> bool:
        routes = json.loads(pair.bgpctl("node2", "routes", "--json").stdout)
        return {r["prefix"] for r in routes} == {"192.168.9.0/26"}

    wait_for(originated, 30, message="node2's new block")

    # A file that does not parse: the reload is refused with the parse error (exit 1), and
    # the running plan stays, its session untouched. BIRD's `configure` answers the same way.
    blocks = {"node1": "192.168.1.0/26", "node2": "192.168.9.0/26"}
    since = pair.protocol("node1")["since"]
    pair.config.write_text(pair.config.read_text() + "---\nkind: [unclosed\n")
    result = pair.bgpctl("node1", "reload")
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(
        "bgpctl: reload refused, keeping the running configuration: "
    ), result.stderr
    assert str(pair.config) in result.stderr and len(result.stderr.splitlines()) == 1
    assert (result.stdout, pair.protocol("node1")["since"]) == ("", since)
    assert _established(pair, "node1")
    pair.write(blocks)
    result = pair.bgpctl("node1", "reload")
    assert (result.returncode, result.stdout) == (0, "bgpd: reloaded, configuration unchanged\n")

    # Readiness fails once the peer is gone, naming it.
    pair.procs["node2"].send_signal(signal.SIGTERM)
    pair.procs["node2"].wait(30)

    def not_ready() -> subprocess.CompletedProcess[str] | None:
        result = subprocess.run(
            [sys.executable, "-m", "bgpd.cli.bgpctl", "--control-socket", pair.socket("node1"),
             "check", "ready"],
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )
        return result if result.returncode == 1 else None

    result = wait_for(not_ready, 60, message="node1 not ready after node2 stopped")
    assert result.stdout.startswith("not ready: 0/1 sessions established\n  Mesh_127_0_0_2")
    gone = subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "--control-socket", pair.socket("node2"),
         "check", "live"],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert gone.returncode == 3
