"""A traffic agent inside one lab namespace (a pod): servers on a few TCP and UDP ports that
answer with their name and the peer's address, and a control socket (a unix socket in the
lab's directory, reachable from the test's namespace) through which the test asks for
probes made from inside: TCP connects, UDP exchanges, ICMP echoes, and long-lived TCP
connections to check later.

    python -m tests.interop.probe_agent --name pod1 --control /tmp/x/pod1.sock \
        --tcp 80,6379 --udp 53

Control protocol: one JSON request per line, one JSON answer per line:
    {"op": "tcp", "dst": "10.0.0.2", "port": 80, "timeout": 1.0}
        -> {"ok": true, "reply": "pod2 10.0.0.1"} | {"ok": false, "error": "timed out"}
    {"op": "udp", ...}, {"op": "ping", "dst": ..., "timeout": ...}
    {"op": "open", "id": "c1", "dst": ..., "port": ...}; {"op": "echo", "id": "c1"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any

_held: dict[str, socket.socket] = {}


def _serve_tcp(name: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)

    def handle(conn: socket.socket, peer: tuple[str, int]) -> None:
        with conn:
            try:
                conn.sendall(f"{name} {peer[0]}\n".encode())
                while data := conn.recv(4096):  # then echo, for held connections
                    conn.sendall(data)
            except OSError:
                pass

    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(conn, peer), daemon=True).start()


def _serve_udp(name: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", port))
    while True:
        _data, peer = srv.recvfrom(2048)
        srv.sendto(f"{name} {peer[0]}\n".encode(), peer)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ping(dst: str, timeout: float) -> dict[str, Any]:
    ident = (os.getpid() ^ threading.get_ident()) & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        payload = b"probe-agent"
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
        s.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            icmp_type, _code, _sum, rid, _seq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
            if icmp_type == 0 and rid == ident and addr[0] == dst:
                return {"ok": True}
    return {"ok": False, "error": "timed out"}


def _tcp(dst: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        with socket.create_connection((dst, port), timeout=timeout) as s:
            return {"ok": True, "reply": s.makefile().readline().strip()}
    except OSError as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__}


def _udp(dst: str, port: int, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(b"probe", (dst, port))
            data, _ = s.recvfrom(2048)
            return {"ok": True, "reply": data.decode().strip()}
        except OSError as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}


def _open(cid: str, dst: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        s = socket.create_connection((dst, port), timeout=timeout)
        greeting = s.makefile().readline().strip()
    except OSError as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    _held[cid] = s
    return {"ok": True, "reply": greeting}


def _echo(cid: str, timeout: float) -> dict[str, Any]:
    s = _held.get(cid)
    if s is None:
        return {"ok": False, "error": "no such connection"}
    try:
        s.settimeout(timeout)
        s.sendall(b"ping\n")
        data = s.recv(64)
        return {"ok": data == b"ping\n", "reply": data.decode(errors="replace")}
    except OSError as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    timeout = float(request.get("timeout", 1.0))
    if op == "tcp":
        return _tcp(request["dst"], int(request["port"]), timeout)
    if op == "udp":
        return _udp(request["dst"], int(request["port"]), timeout)
    if op == "ping":
        return _ping(request["dst"], timeout)
    if op == "open":
        return _open(request["id"], request["dst"], int(request["port"]), timeout)
    if op == "echo":
        return _echo(request["id"], timeout)
    return {"ok": False, "error": f"unknown op {op!r}"}


def _client(conn: socket.socket) -> None:
    with conn, conn.makefile("rw") as f:
        for line in f:
            try:
                answer = handle(json.loads(line))
            except Exception as exc:  # a bad request answers, never kills the agent
                answer = {"ok": False, "error": repr(exc)}
            f.write(json.dumps(answer) + "\n")
            f.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--tcp", default="")
    parser.add_argument("--udp", default="")
    args = parser.parse_args()
    for port in filter(None, args.tcp.split(",")):
        threading.Thread(target=_serve_tcp, args=(args.name, int(port)), daemon=True).start()
    for port in filter(None, args.udp.split(",")):
        threading.Thread(target=_serve_udp, args=(args.name, int(port)), daemon=True).start()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.control)
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(args.control)
    ctl.listen(64)
    print("probe-agent ready", flush=True)
    while True:
        conn, _ = ctl.accept()
        threading.Thread(target=_client, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
