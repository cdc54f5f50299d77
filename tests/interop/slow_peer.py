"""A BGP peer that reads slowly: listens, answers the OPEN, then takes `--chunk` bytes every
`--interval` seconds through a small receive buffer, writing how many bytes it has read
(and the UPDATE count) to `--progress`. It plays the new peer that a full-table dump must
not let starve everyone else.

    python3 slow_peer.py --listen 10.0.44.3 --as 65005 --progress FILE
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import time

MARKER = b"\xff" * 16


def message(kind: int, body: bytes) -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold: int) -> bytes:
    caps = bytes([1, 4, 0, 1, 0, 1])  # multiprotocol IPv4 unicast
    caps += bytes([65, 4]) + struct.pack("!I", asn)  # 4-octet AS
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH", 4, asn if asn < 65536 else 23456, hold)
    body += ipaddress.IPv4Address(router_id).packed + bytes([len(params)]) + params
    return message(1, body)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--as", dest="asn", type=int, required=True)
    p.add_argument("--progress", required=True)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--interval", type=float, default=0.1)
    args = p.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A small window, inherited by the accepted socket: the sender's queue backs up at once.
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.bind((args.listen, 179))
    srv.listen(1)
    conn, _ = srv.accept()
    conn.sendall(open_message(args.asn, args.listen, 240) + message(4, b""))
    buf = b""
    total = updates = 0
    last_keepalive = time.monotonic()
    while True:
        data = conn.recv(args.chunk)
        if not data:
            break
        total += len(data)
        buf += data
        while len(buf) >= 19:
            length = struct.unpack("!H", buf[16:18])[0]
            if len(buf) < length:
                break
            if buf[18] == 2:
                updates += 1
            buf = buf[length:]
        with open(args.progress, "w") as f:
            f.write(f"{total} {updates}\n")
        now = time.monotonic()
        if now - last_keepalive > 20:
            conn.sendall(message(4, b""))
            last_keepalive = now
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
