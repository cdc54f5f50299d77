"""The README's first command ends in `python3 labs/demo.py`: it must run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .peers import BirdPeer, missing_programs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.interop
def test_demo_runs_and_converges(netns_ok: None) -> None:
    if missing_programs(BirdPeer):
        pytest.skip("bird2 not installed (the demo's top-of-rack router)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "labs" / "demo.py")],
        capture_output=True, text=True, timeout=300, cwd="/",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Established" in result.stdout
    assert "1 received" in result.stdout  # the ping across the segment
    assert "lab torn down" in result.stdout
