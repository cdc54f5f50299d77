"""The README's first command ends in `python3 labs/demo.py`: it must run as written."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PODS = {"pod1": "node1", "pod2": "node2", "pod3": "node3"}


@pytest.mark.interop
def test_demo_runs_pods_ping_across_nodes(netns_ok: None) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "labs" / "demo.py")],
        capture_output=True, text=True, timeout=300, cwd="/",
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    # `bgpctl status` of each node: two mesh peers Established on each.
    sections = re.split(r"^=== ", out, flags=re.MULTILINE)
    for node in PODS.values():
        (status,) = [s for s in sections if s.startswith(f"bgpctl status ({node})")]
        assert status.count("Established") == 2, status
    # Every pod reached every other pod, each on another node, at its CNI-assigned address.
    for a, b in itertools.permutations(PODS, 2):
        pattern = (rf"^  {a} \({PODS[a]}, 192\.168\.[\d.]+\) -> "
                   rf"{b} \({PODS[b]}, 192\.168\.[\d.]+\): ok$")
        assert re.search(pattern, out, re.MULTILINE), (pattern, out[-3000:])
    assert "FAILED" not in out
    # A progress line per step, with elapsed seconds, ending with the teardown.
    progress = re.findall(r"^\[\s*[\d.]+s\] (.*)$", out, re.MULTILINE)
    assert len(progress) >= 6, progress
    assert progress[-1] == "lab torn down"
