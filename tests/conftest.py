"""Shared fixtures: network-namespace labs for interop tests, and their logs on failure.

The lab harness itself (namespaces, peers, node runners) is the `labs.harness` package, which
tests, bench/ and labs/ all import by that one name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from labs.harness.lab import Lab, all_labs, cleanup_stale, open_labs

_FAILED = pytest.StashKey[bool]()


def _netns_problem() -> str | None:
    """Why network-namespace labs cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "not root (network namespaces need root)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) not installed"
    probe = f"pyb-probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` does not work: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Skip unless root and `ip netns` work; clear namespaces left by crashed earlier runs."""
    problem = _netns_problem()
    if problem:
        pytest.skip(problem)
    cleanup_stale()


@pytest.fixture
def lab(netns_ok: None, tmp_path: Path) -> Iterator[Lab]:
    """A fresh lab; every namespace and process in it is gone after the test, pass or fail."""
    with Lab(workdir=tmp_path / "lab") as fresh:
        yield fresh


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _daemon_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print the log tails of the labs it made (already closed by now, their
    logs stay in tmp_path) and of the labs still open; pytest shows them with the failure under
    "Captured stdout teardown"."""
    before = len(all_labs())
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    labs = all_labs()[before:] + [lab for lab in open_labs() if lab not in all_labs()[before:]]
    for lab in labs:
        for label, tail in lab.log_tails():
            print(f"----- {label} (lab {lab.id})\n{tail}")
