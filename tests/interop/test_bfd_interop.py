"""Our BFD (BfdManager, bgpd/bfd) against BIRD 2's `protocol bfd` and FRR's `bfdd`, over a
veth pair between two network namespaces, IPv4 and IPv6 at once.

For each peer: both sessions come Up on both sides; the peer is frozen (SIGSTOP) and we
declare each session Down with diag 1 (Control Detection Time Expired) within the detection
time (peer multiplier x agreed interval) of the last packet we took from it, measured by our
own process's clock, plus a small scheduling allowance; thawed, they come back Up. Then the
other way: we are frozen and the peer's own view (`birdc show bfd sessions`, `vtysh -c 'show
bfd peers'`) shows Down within its detection time of our last packet; and when we shut down
we send AdminDown, which FRR reports as the remote's diagnostic.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labs.harness.lab import Lab, LabError, Node
from labs.harness.peers import BirdPeer, FrrBfdPeer, Peer
from labs.harness.wait import wait_for

pytestmark = pytest.mark.interop

INTERVAL_MS = 100
MULTIPLIER = 3
DETECTION = MULTIPLIER * INTERVAL_MS / 1000
# Timer and event-loop latency in our process between the deadline and the Down event.
SCHEDULING_ALLOWANCE = 0.1
# The peer's view is polled from here (a birdc/vtysh run takes ~10-50 ms on a busy host).
POLL_ALLOWANCE = 0.6
RUNNER = Path(__file__).with_name("bfd_node.py")
DIAG_TIMEOUT = 1


class OurBfd:
    """bfd_node.py in a lab node: events from its stdout, records from its status file."""

    def __init__(self, node: Node, sessions: list[tuple[str, str]]) -> None:
        self.node = node
        self.sessions = sessions
        self.log = node.workdir / "bfd_node.out"
        self.status_path = node.workdir / "bfd_status.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OurBfd:
        argv = [sys.executable, str(RUNNER), "--status", str(self.status_path)]
        for peer, local in self.sessions:
            argv += ["--session", f"{peer},{local},{INTERVAL_MS / 1000},{MULTIPLIER}"]
        self.proc = self.node.popen(argv, log_path=self.log, label="ours/bfd_node")
        wait_for(lambda: any(e["event"] == "started" for e in self.events()), timeout=15,
                 message=lambda: f"bfd_node to start:\n{self.log_tail()}")  # fmt: skip
        return self

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    out.append(event)
        if self.proc is not None and self.proc.poll() is not None:
            raise LabError(f"bfd_node exited ({self.proc.returncode}):\n{self.log_tail()}")
        return out

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-30:]) if self.log.exists() else ""

    def records(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.status_path.read_text())
        return {r["address"]: r for r in data["records"]}

    def text(self) -> str:
        return str(json.loads(self.status_path.read_text())["text"])

    def wait_states(self, state: str, timeout: float = 20.0) -> None:
        wanted = {peer for peer, _ in self.sessions}
        wait_for(
            lambda: {a for a, r in self.records().items() if r["state"] == state} >= wanted,
            timeout=timeout,
            ignore=(OSError, ValueError, KeyError),
            message=lambda: f"our sessions to be {state}: {self.log_tail()}",
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)


def bird_config(links: list[tuple[str, str]], ifname: str) -> str:
    neighbors = "\n".join(f'  neighbor {peer} dev "{ifname}";' for peer, _ in links)
    return (
        "protocol bfd {\n"
        f'  interface "{ifname}" {{ interval {INTERVAL_MS} ms; multiplier {MULTIPLIER}; }};\n'
        f"{neighbors}\n}}\n"
    )


_BIRD_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(AdminDown|Down|Init|Up)\s", re.M)


def bird_view(peer: BirdPeer) -> dict[str, str]:
    """Address -> state from `birdc show bfd sessions`."""
    return {m[1]: m[3] for m in _BIRD_ROW.finditer(peer.birdc("show bfd sessions"))}


def frr_states(peer: FrrBfdPeer) -> dict[str, str]:
    names = {"up": "Up", "down": "Down", "init": "Init", "shutdown": "AdminDown"}
    return {a: names.get(str(p["status"]), str(p["status"])) for a, p in peer.bfd_view().items()}


def lab_pair(lab: Lab) -> tuple[Node, Node, list[tuple[str, str]], list[tuple[str, str]], str]:
    ours, theirs = lab.add_node("ours"), lab.add_node("peer")
    link = lab.link(ours, theirs)
    a, b = link.a, link.b
    assert a.v4 and a.v6 and b.v4 and b.v6
    our_sessions = [(b.v4, a.v4), (b.v6, a.v6)]
    their_sessions = [(a.v4, b.v4), (a.v6, b.v6)]
    return ours, theirs, our_sessions, their_sessions, b.ifname


def make_peer(
    kind: str, lab: Lab
) -> tuple[Peer, Node, list[tuple[str, str]], Callable[[], dict[str, str]]]:
    ours, theirs, our_sessions, their_sessions, ifname = lab_pair(lab)
    if kind == "bird":
        missing = BirdPeer.missing()
        if missing:
            pytest.skip(f"BIRD not installed: {missing}")
        bird = BirdPeer(theirs, "10.255.0.2", 65001, extra=bird_config(their_sessions, ifname))
        return bird, ours, our_sessions, lambda: bird_view(bird)
    missing = FrrBfdPeer.missing()
    if missing:
        pytest.skip(f"FRR with bfdd not installed: {missing}")
    frr = FrrBfdPeer(
        theirs, "10.255.0.2", 65001,
        bfd_peers=[(p, lo, ifname, INTERVAL_MS, MULTIPLIER) for p, lo in their_sessions],
    )
    return frr, ours, our_sessions, lambda: frr_states(frr)


@contextlib.contextmanager
def running(peer: Peer) -> Iterator[Peer]:
    peer.start()
    try:
        yield peer
    finally:
        with contextlib.suppress(Exception):
            peer.thaw()
        peer.stop()


@pytest.mark.parametrize("kind", ["bird", "frr"])
def test_bfd_detects_a_silent_peer_and_the_peer_detects_us(lab: Lab, kind: str) -> None:
    peer, node, sessions, view = make_peer(kind, lab)
    addresses = [p for p, _ in sessions]
    with running(peer):
        ours = OurBfd(node, sessions).start()
        ours.wait_states("Up")
        wait_for(lambda: all(view().get(a) == "Up" for a in our_locals(sessions)), timeout=20,
                 message=lambda: f"{peer} sessions Up: {view()}")  # fmt: skip

        # Both sides at 100 ms once their Poll Sequences are done; the peer's multiplier
        # makes our detection time.
        def settled() -> bool:
            records = ours.records()
            return all(
                (records[a]["interval"], records[a]["timeout"])
                == (INTERVAL_MS * 1000, DETECTION * 1_000_000)
                for a in addresses
            )

        wait_for(settled, timeout=10, message=lambda: f"timers to settle: {ours.records()}")
        assert all(ours.records()[a]["interface"] == "eth0" for a in addresses)
        if isinstance(peer, BirdPeer):
            # Our text is BIRD's: the same header lines as birdc's own.
            theirs = peer.birdc("show bfd sessions").splitlines()
            header = next(i for i, line in enumerate(theirs) if line.startswith("IP address"))
            assert ours.text().splitlines()[1] == theirs[header].rstrip()

        # The peer falls silent: we declare Down within the detection time of its last packet.
        before = len(ours.events())
        peer.freeze()
        wait_for(lambda: downs(ours, before) >= set(addresses), timeout=10,
                 message=lambda: f"our sessions to go down: {ours.log_tail()}")  # fmt: skip
        for event in ours.events()[before:]:
            if event["event"] != "down":
                continue
            assert event["diag"] == DIAG_TIMEOUT and not event["admin"], event
            waited = event["t"] - event["last_received"]
            assert DETECTION - 0.005 <= waited <= DETECTION + SCHEDULING_ALLOWANCE, event
        peer.thaw()
        ours.wait_states("Up")

        # We fall silent: the peer's own view goes Down within its detection time of us.
        wait_for(lambda: all(view().get(a) == "Up" for a in our_locals(sessions)), timeout=20)
        ours.signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            wait_for(lambda: all(view().get(a) == "Down" for a in our_locals(sessions)),
                     timeout=10, interval=0.02,
                     message=lambda: f"{peer} to see our sessions Down: {view()}")  # fmt: skip
            seen = time.monotonic() - frozen_at
        finally:
            ours.signal(signal.SIGCONT)
        assert seen <= DETECTION + POLL_ALLOWANCE
        if isinstance(peer, FrrBfdPeer):
            for address in our_locals(sessions):
                # What it said when it saw us go down (we are running again by now).
                assert peer.last_view[address]["diagnostic"] == "control detection time expired"
        ours.wait_states("Up")
        wait_for(lambda: all(view().get(a) == "Up" for a in our_locals(sessions)), timeout=20)

        # A clean shutdown: AdminDown, so the peer sees an administrative down at once.
        ours.signal(signal.SIGTERM)
        assert ours.proc is not None
        ours.proc.wait(10)
        wait_for(lambda: all(view().get(a) == "Down" for a in our_locals(sessions)), timeout=5)
        if isinstance(peer, FrrBfdPeer):
            for address in our_locals(sessions):
                assert peer.last_view[address]["remote-diagnostic"] == "administratively down"


def our_locals(sessions: list[tuple[str, str]]) -> list[str]:
    return [local for _, local in sessions]


def downs(ours: OurBfd, since: int) -> set[str]:
    return {e["peer"] for e in ours.events()[since:] if e["event"] == "down"}
