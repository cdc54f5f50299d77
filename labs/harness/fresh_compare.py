"""What the fault tests check afterwards: a bgpd's RIB and FIB against those of a freshly
started bgpd on the same configuration, and its descriptors, threads and memory against a
baseline taken before the faults."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bgpd_node import Bgpd
from .wait import wait_for

FD_SLACK = 4
# asyncio's default executor starts its (at most cpu_count + 4) workers lazily.
THREAD_SLACK = (os.cpu_count() or 1) + 4
RSS_SLACK_KIB = 24 << 10


def rib_fib(bgpd: Bgpd) -> tuple[str, str]:
    """bgpd's RIB (bgpctl routes --json) and FIB (our protocol's kernel routes), canonical."""
    rib = sorted(json.dumps(r, sort_keys=True) for r in bgpd.routes())
    fib = {
        f: sorted(json.dumps(r, sort_keys=True) for r in bgpd.node.routes(f, proto=201))
        for f in (4, 6)
    }
    return json.dumps(rib), json.dumps(fib, sort_keys=True)


def diff(old: tuple[str, str], new: tuple[str, str]) -> str:
    lines = []
    for label, a, b in (("RIB", old[0], new[0]), ("FIB", old[1], new[1])):
        if a != b:
            lines.append(f"{label} differs:\n  old {a[:1500]}\n  new {b[:1500]}")
    return "\n".join(lines) or "(now equal)"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a bgpd process holds: open descriptors, OS threads (gRPC, to_thread workers) and
    resident memory."""

    fds: int
    threads: int
    rss_kib: int


def usage(bgpd: Bgpd) -> Usage:
    assert bgpd.proc is not None, "bgpd is not running"
    pid = bgpd.proc.pid
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Usage(fds, int(fields["Threads"]), int(fields["VmRSS"].split()[0]))


def assert_no_leak(baseline: Usage, now: Usage) -> None:
    assert now.fds <= baseline.fds + FD_SLACK, f"descriptors {baseline.fds} -> {now.fds}"
    assert now.threads <= baseline.threads + THREAD_SLACK, (
        f"threads {baseline.threads} -> {now.threads}"
    )
    assert now.rss_kib <= baseline.rss_kib + RSS_SLACK_KIB, (
        f"RSS {baseline.rss_kib} -> {now.rss_kib} KiB"
    )


def assert_fresh_start_agrees(
    old: Bgpd,
    fresh: Callable[[], Bgpd],
    converged: Callable[[Bgpd], bool],
    timeout: float = 60,
) -> Bgpd:
    """Stop `old`, start `fresh()` on the same configuration: once `converged`, it must come
    to the very same RIB and FIB. Returns the fresh daemon."""
    before = rib_fib(old)
    old.stop()
    new = fresh()
    wait_for(lambda: converged(new), timeout, interval=0.3, message="the fresh daemon converged")
    wait_for(
        lambda: rib_fib(new) == before,
        30,
        message=lambda: (
            f"fresh daemon's RIB/FIB to equal the old one's:\n{diff(before, rib_fib(new))}"
        ),
    )
    return new
