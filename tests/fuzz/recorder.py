"""A minimal BGP speaker that records every byte its peers send (run inside a lab node by
capture.py). It answers with bgpd's own Session so real daemons reach Established and send
their tables; each connection's raw input is appended to OUTDIR/<peer address>.bin.

    python3 recorder.py OUTDIR LOCAL_AS ROUTER_ID PEER_AS
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bgpd.session.session import Session  # noqa: E402
from bgpd.session.settings import PeerSettings  # noqa: E402


def serve(
    conn: socket.socket, address: str, outdir: Path, local_as: int, rid: int, peer_as: int
) -> None:
    settings = PeerSettings(
        name=address,
        peer_address=address,
        peer_as=peer_as,
        local_as=local_as,
        router_id=rid,
        hold_time=90,
    )
    session = Session(settings, outgoing=False)
    start = time.monotonic()
    session.start(time.monotonic() - start)
    conn.sendall(session.data_to_send())
    conn.settimeout(1.0)
    with (outdir / f"{address}.bin").open("ab") as out:
        while True:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                data = None
            now = time.monotonic() - start
            if data == b"":
                return
            if data:
                out.write(data)
                out.flush()
                session.receive_data(data, now)
            deadline = session.next_timer()
            if deadline is not None and now >= deadline:
                session.handle_timer(now)
            reply = session.data_to_send()
            if reply:
                conn.sendall(reply)
            while session.next_event() is not None:
                pass
            if session.closed:
                return


def main() -> None:
    outdir, local_as, router_id, peer_as = Path(sys.argv[1]), *sys.argv[2:5]
    rid = int(ipaddress.IPv4Address(router_id))
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 179))
    sock.listen(16)
    while True:
        conn, addr = sock.accept()
        address = str(ipaddress.ip_address(addr[0].removeprefix("::ffff:")))
        threading.Thread(
            target=serve,
            args=(conn, address, outdir, int(local_as), rid, int(peer_as)),
            daemon=True,
        ).start()


if __name__ == "__main__":
    main()
