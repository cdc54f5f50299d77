"""Our BFD alone in a lab node: `BfdManager` on UDP 3784 with the sessions named on the
command line, reporting for the interop tests.

    python3 bfd_node.py --session PEER,LOCAL,INTERVAL,MULTIPLIER [--session ...] --status FILE

Every BFD event goes to stdout as one JSON line with the monotonic time it happened
(CLOCK_MONOTONIC is one clock for every process on the host, so the test can compare it)
and, for a session's peer, the time of the last packet taken from it. FILE holds the
`show bfd sessions` records, rewritten after each event and every 0.2 s. SIGTERM closes the
manager (AdminDown to every peer) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time

from bgpd.bfd.driver import BfdManager
from bgpd.bfd.events import BfdDown, BfdEvent, BfdStateChanged, BfdUp
from bgpd.bfd.status import format_bird_sessions


def _session(text: str) -> tuple[str, str, float, int]:
    peer, local, interval, multiplier = text.split(",")
    return peer, local, float(interval), int(multiplier)


async def run(args: argparse.Namespace) -> None:
    manager: BfdManager

    def emit(event: BfdEvent) -> None:
        line: dict[str, object] = {"t": time.monotonic(), "peer": event.peer}  # type: ignore[attr-defined]
        if isinstance(event, BfdUp):
            line["event"] = "up"
        elif isinstance(event, BfdDown):
            line |= {"event": "down", "diag": int(event.diag), "admin": event.admin}
        elif isinstance(event, BfdStateChanged):
            line |= {"event": "state", "old": str(event.old), "new": str(event.new),
                     "diag": int(event.diag)}  # fmt: skip
        session = manager.table.get(line["peer"])  # type: ignore[arg-type]
        if session is not None:
            line["last_received"] = session.last_received
            line["detection_time"] = session.detection_time
        print(json.dumps(line), flush=True)
        write_status()

    def write_status() -> None:
        records = manager.sessions()
        tmp = f"{args.status}.tmp"
        with open(tmp, "w") as f:
            json.dump(
                {"records": [r.to_json() for r in records],
                 "text": format_bird_sessions(records, time.time())},
                f,
            )  # fmt: skip
        os.replace(tmp, args.status)

    manager = BfdManager(emit)
    await manager.start()
    for peer, local, interval, multiplier in args.session:
        manager.add(peer, local, interval=interval, multiplier=multiplier)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(json.dumps({"event": "started", "t": time.monotonic()}), flush=True)
    while not stop.is_set():
        write_status()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    await manager.close()
    print(json.dumps({"event": "closed", "t": time.monotonic()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--session", type=_session, action="append", required=True)
    parser.add_argument("--status", required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
