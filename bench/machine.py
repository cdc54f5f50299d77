"""What every benchmark record says about where it ran, and the kernel settings a run needs."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labs.harness.peers import FRR_DIR

NEIGH_SYSCTLS = {
    "net.ipv4.neigh.default.gc_thresh1": 16384,
    "net.ipv4.neigh.default.gc_thresh2": 32768,
    "net.ipv4.neigh.default.gc_thresh3": 65536,
}


@contextlib.contextmanager
def neighbour_tables() -> Iterator[None]:
    """The kernel's neighbour limits are global: raise them for the run, restore afterwards."""
    old = {}
    for key, value in NEIGH_SYSCTLS.items():
        path = Path("/proc/sys") / key.replace(".", "/")
        old[key] = path.read_text().strip()
        if int(old[key]) < value:
            path.write_text(str(value))
    try:
        yield
    finally:
        for key, value in old.items():
            (Path("/proc/sys") / key.replace(".", "/")).write_text(value)


def _first_line(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "?"
    text = (proc.stdout + proc.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cpu = next(
        (line.split(":", 1)[1].strip()
         for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.machine(),
    )  # fmt: skip
    from bgpd import __version__

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            "bgpd": f"pybgpd {__version__}",
            "bird": _first_line(["bird", "--version"]),
            "frr": _first_line([str(FRR_DIR / "bgpd"), "--version"]),
            "gobgp": _first_line(["gobgpd", "--version"]),
            "floor": f"bench/rr_floor.py (Python {platform.python_version()})",
        },
    }
