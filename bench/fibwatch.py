"""Every lab node's FIB as the kernel reports it: one rtnetlink socket per network namespace,
a dump at the start and route events after it, so a route that leaves a FIB for a moment is
seen however short the moment (polling `ip route` every 50 ms would miss it, and cost a
process per node per poll).

`route_messages` (bytes to events) and `FibState` (events to what each node holds, what it
misses and what it lost) are pure; `FibWatch` owns the sockets.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import selectors
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

NETLINK_ROUTE = 0
RTMGRP_IPV4_ROUTE = 0x40
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_PRIORITY, RTA_TABLE = 1, 6, 15
RT_TABLE_MAIN = 254
CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33
NLMSG = struct.Struct("=IHHII")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")


@dataclass(frozen=True, slots=True)
class RouteEvent:
    """One rtnetlink message: "new" or "del" for an IPv4 route, "done" or "error" for a dump."""

    kind: str
    seq: int
    prefix: str = ""  # "192.168.1.0/26"
    table: int = 0
    key: tuple[int, int] = (0, 0)  # (tos, priority): with table and prefix, a FIB entry's key


def route_messages(data: bytes) -> list[RouteEvent]:
    """The IPv4 route messages (and dump ends) in one netlink read."""
    out = []
    pos = 0
    while pos + NLMSG.size <= len(data):
        length, kind, _flags, seq, _pid = NLMSG.unpack_from(data, pos)
        if length < NLMSG.size or pos + length > len(data):
            break
        body = pos + NLMSG.size
        if kind == NLMSG_DONE:
            out.append(RouteEvent("done", seq))
        elif kind == NLMSG_ERROR:
            out.append(RouteEvent("error", seq))
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE) and length >= NLMSG.size + RTMSG.size:
            family, dst_len, _src, tos, table, _proto, _scope, _type, _fl = RTMSG.unpack_from(
                data, body
            )
            if family == socket.AF_INET:
                dst = b"\0\0\0\0"
                priority = 0
                apos = body + RTMSG.size
                end = pos + length
                while apos + RTATTR.size <= end:
                    alen, atype = RTATTR.unpack_from(data, apos)
                    if alen < RTATTR.size:
                        break
                    value = data[apos + RTATTR.size : apos + alen]
                    if atype == RTA_DST:
                        dst = value[:4]
                    elif atype == RTA_TABLE and len(value) >= 4:
                        table = struct.unpack("=I", value[:4])[0]
                    elif atype == RTA_PRIORITY and len(value) >= 4:
                        priority = struct.unpack("=I", value[:4])[0]
                    apos += (alen + 3) & ~3
                prefix = f"{ipaddress.IPv4Address(dst)}/{dst_len}"
                out.append(
                    RouteEvent(
                        "new" if kind == RTM_NEWROUTE else "del", seq, prefix, table,
                        (tos, priority),
                    )
                )  # fmt: skip
        pos += (length + 3) & ~3
    return out


@dataclass(slots=True)
class Loss:
    """A wanted route that left a node's FIB: when, and when it came back (None: not yet)."""

    node: str
    prefix: str
    since: float
    until: float | None = None


@dataclass
class FibState:
    """What each node's main table holds of the `wanted` prefixes (node -> prefixes it should
    hold). `missing` is the wanted (node, prefix) pairs not held; while `tracking`, a wanted
    route leaving a FIB opens a `Loss` and its return closes it."""

    wanted: dict[str, set[str]]
    entries: dict[str, dict[str, set[tuple[int, int]]]] = field(default_factory=dict)
    missing: set[tuple[str, str]] = field(default_factory=set)
    tracking: bool = False
    losses: list[Loss] = field(default_factory=list)
    _open: dict[tuple[str, str], Loss] = field(default_factory=dict)
    watched: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.entries = {node: {} for node in self.wanted}
        self.missing = {(n, p) for n, ps in self.wanted.items() for p in ps}
        self.watched = set().union(*self.wanted.values()) if self.wanted else set()

    @property
    def wanted_count(self) -> int:
        return sum(len(ps) for ps in self.wanted.values())

    @property
    def held_count(self) -> int:
        return self.wanted_count - len(self.missing)

    def holds(self, node: str, prefix: str) -> bool:
        return bool(self.entries[node].get(prefix))

    def apply(self, node: str, event: RouteEvent, now: float) -> None:
        if event.kind not in ("new", "del") or event.table != RT_TABLE_MAIN:
            return
        if event.prefix not in self.watched:
            return
        keys = self.entries[node].setdefault(event.prefix, set())
        before = bool(keys)
        if event.kind == "new":
            keys.add(event.key)
        else:
            keys.discard(event.key)
        self._changed(node, event.prefix, before, bool(keys), now)

    def replace(self, node: str, held: dict[str, set[tuple[int, int]]], now: float) -> None:
        """A fresh dump of the node's table (after a netlink overflow lost events)."""
        for prefix in self.watched:
            before = self.holds(node, prefix)
            self.entries[node][prefix] = set(held.get(prefix, ()))
            self._changed(node, prefix, before, self.holds(node, prefix), now)

    def _changed(self, node: str, prefix: str, before: bool, after: bool, now: float) -> None:
        if before == after or prefix not in self.wanted[node]:
            return
        pair = (node, prefix)
        if after:
            self.missing.discard(pair)
            loss = self._open.pop(pair, None)
            if loss is not None:
                loss.until = now
        else:
            self.missing.add(pair)
            if self.tracking and pair not in self._open:
                loss = Loss(node, prefix, now)
                self.losses.append(loss)
                self._open[pair] = loss

    def track_losses(self) -> None:
        self.tracking = True
        self.losses = []
        self._open = {}


def loss_summary(losses: Iterable[Loss], now: float, restarted_block: str) -> dict[str, object]:
    losses = list(losses)
    gaps = [(loss.until if loss.until is not None else now) - loss.since for loss in losses]
    return {
        "lost_routes": len(losses),
        "nodes_lost": len({loss.node for loss in losses}),
        "restarted_block_lost_on": len({x.node for x in losses if x.prefix == restarted_block}),
        "still_missing": sum(1 for loss in losses if loss.until is None),
        "max_gap_s": max(gaps) if gaps else None,
        "examples": [
            f"{x.node}: {x.prefix} for {g:.2f} s" for x, g in zip(losses, gaps, strict=True)
        ][:5],
    }


# ------------------------------------------------------------------ the sockets


_libc = ctypes.CDLL(None, use_errno=True)


def netlink_socket_in(netns: str) -> socket.socket:
    """An rtnetlink socket of the named namespace (`ip netns` name), subscribed to IPv4 route
    events; made by entering the namespace with this thread only, then coming back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, RTMGRP_IPV4_ROUTE))
    sock.setblocking(False)
    return sock


def dump_request(seq: int) -> bytes:
    rtm = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    return NLMSG.pack(NLMSG.size + len(rtm), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + rtm


class FibWatch:
    """The FIBs of many namespaces, kept up to date by `pump`."""

    def __init__(self, namespaces: dict[str, str], state: FibState) -> None:
        """`namespaces`: node name -> `ip netns` name."""
        self.state = state
        self.selector = selectors.DefaultSelector()
        self.socks: dict[str, socket.socket] = {}
        self.dumping: dict[str, tuple[int, dict[str, set[tuple[int, int]]]]] = {}
        self.overflows = 0
        self._seq = 0
        for node, netns in namespaces.items():
            sock = netlink_socket_in(netns)
            self.socks[node] = sock
            self.selector.register(sock, selectors.EVENT_READ, node)
        for node in self.socks:
            self._dump(node)
        deadline = time.monotonic() + 30
        while self.dumping and time.monotonic() < deadline:
            self.pump(0.1)

    def _dump(self, node: str) -> None:
        self._seq += 1
        self.dumping[node] = (self._seq, {})
        self.socks[node].send(dump_request(self._seq))

    def pump(self, timeout: float) -> int:
        """Wait up to `timeout` for route events; apply all that are there. Returns how many
        messages were read."""
        count = 0
        for key, _ in self.selector.select(timeout):
            node = key.data
            for data in self._drain(node):
                now = time.monotonic()
                for event in route_messages(data):
                    count += 1
                    self._handle(node, event, now)
        return count

    def _drain(self, node: str) -> Iterator[bytes]:
        sock = self.socks[node]
        while True:
            try:
                yield sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # Events were dropped: whatever left the FIB meanwhile is found by a dump.
                self.overflows += 1
                self._dump(node)

    def _handle(self, node: str, event: RouteEvent, now: float) -> None:
        pending = self.dumping.get(node)
        if pending is not None and event.seq == pending[0]:
            if event.kind in ("done", "error"):
                del self.dumping[node]
                self.state.replace(node, pending[1], now)
            elif event.kind == "new" and event.table == RT_TABLE_MAIN:
                pending[1].setdefault(event.prefix, set()).add(event.key)
            return
        self.state.apply(node, event, now)

    def close(self) -> None:
        for sock in self.socks.values():
            self.selector.unregister(sock)
            sock.close()
        self.selector.close()
