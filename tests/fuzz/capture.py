#!/usr/bin/env python3
"""Record what BIRD, FRR, GoBGP and ExaBGP really send and write it as fuzz seeds (on demand,
root; the committed tests/fuzz/corpus came from this):

    python3 tests/fuzz/capture.py [--out tests/fuzz/corpus]

Each daemon runs in a lab node and connects (IPv4 and IPv6 sessions) to recorder.py in
another; it announces IPv4 and IPv6 routes, withdraws some, and is stopped (its Cease is
recorded too). Every connection's stream becomes two seeds in the targets' layout (targets.py):
the whole stream from OpenSent (flag NOT_ESTABLISHED), and what followed the OPEN exchange
(for the already-established path).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from targets import LOCAL_AS, PEER_AS, Flags  # beside this script (its directory is on sys.path)

from bgpd.wire.codec import split_messages
from bgpd.wire.messages import MSG_OPEN
from labs.harness.lab import Lab
from labs.harness.peers import BirdPeer, ExabgpPeer, FrrPeer, GobgpPeer, Neighbor
from labs.harness.wait import wait_for

HERE = Path(__file__).resolve().parent

REC_V4, PEER_V4, REC_V6, PEER_V6 = "10.0.12.1", "10.0.12.2", "fd00:12::1", "fd00:12::2"
ROUTES_V4 = [f"10.{i}.{j}.0/24" for i in range(40, 42) for j in range(0, 12)]
ROUTES_V6 = [f"fd00:{i:x}::/48" for i in range(0x40, 0x48)]


def seeds(stream: bytes) -> list[tuple[str, bytes]]:
    frames, _rest = split_messages(stream, 65535)
    full = bytes([Flags.NOT_ESTABLISHED | Flags.EXTENDED_MESSAGE]) + stream
    after = [f for f in frames if f[18] != MSG_OPEN]
    if after and after[0][18] == 4:
        after = after[1:]  # the KEEPALIVE that confirmed our OPEN
    established = bytes([Flags.EXTENDED_MESSAGE]) + b"".join(after)
    return [("open", full), ("established", established)]


def capture(kind: type, out: Path) -> None:
    with Lab() as lab:
        rec, node = lab.add_node("rec"), lab.add_node("peer")
        lab.link(rec, node, REC_V4, PEER_V4, REC_V6, PEER_V6)
        raw = rec.workdir / "raw"
        raw.mkdir()
        rec.popen(
            [
                sys.executable,
                str(HERE / "recorder.py"),
                str(raw),
                str(LOCAL_AS),
                REC_V4,
                str(PEER_AS),
            ],
            label="recorder",
        )
        wait_for(
            lambda: (
                "0.0.0.0:179" in rec.run(["ss", "-ltn"]).stdout
                or "*:179" in rec.run(["ss", "-ltn"]).stdout
            ),
            10,
            message="recorder listening",
        )
        peer = kind(
            node,
            "10.255.0.2",
            PEER_AS,
            [Neighbor(REC_V4, LOCAL_AS), Neighbor(REC_V6, LOCAL_AS)],
            routes_v4=ROUTES_V4,
            routes_v6=ROUTES_V6,
        )
        peer.start()
        files = [raw / f"{PEER_V4}.bin", raw / f"{PEER_V6}.bin"]
        wait_for(
            lambda: all(f.exists() and f.stat().st_size > 200 for f in files),
            40,
            message=f"{kind.__name__} sent its tables",
        )
        time.sleep(3)  # the rest of the table and a keepalive round (a tool, not a test)
        for prefix in (ROUTES_V4[0], ROUTES_V4[5], ROUTES_V6[0]):
            peer.withdraw(prefix)
        time.sleep(3)
        peer.stop()
        time.sleep(1)
        for f in files:
            family = "v4" if f.name.startswith(PEER_V4) else "v6"
            for what, data in seeds(f.read_bytes()):
                name = f"{peer.kind}-{family}-{what}"
                (out / name).write_bytes(data)
                print(f"{name}: {len(data)} octets")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=HERE / "corpus")
    p.add_argument("--peers", default="bird,frr,gobgp,exabgp")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = {"bird": BirdPeer, "frr": FrrPeer, "gobgp": GobgpPeer, "exabgp": ExabgpPeer}
    for name in args.peers.split(","):
        capture(kinds[name], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
