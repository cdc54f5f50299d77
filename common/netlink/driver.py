"""rtnetlink for both daemons: a raw NETLINK_ROUTE socket driven by asyncio.

Thin on purpose: messages are built and read by `rtmsg`, what to send is decided by the
daemons (bgpd/kernel/fib.py and planner.py, felix's routes and cluster modules).
What lives here is the batching (principle 3): many route messages per `sendmsg` in chunks of
about 64 KB, no waiting for each answer in turn, and every kernel error mapped back to the op
that caused it by sequence number. By default route messages ask for no ACK: the kernel
answers only failures, and one NLMSG_NOOP with an ACK after the batch marks its end, so a
10k-route batch costs ~10 sends and a handful of reads instead of 10k reads.

pyroute2 is not used here: its IPRoute builds ~1.4k route messages per second, two orders of
magnitude below what `rtmsg`'s struct-packed messages reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from common.netlink.link import Address, Link, Neighbour
from common.netlink.linkmsg import (
    RTM_NEWADDR,
    RTM_NEWNEIGH,
    decode_newaddr,
    decode_newlink,
    decode_newneigh,
    encode_addr_dump,
    encode_neigh_dump,
)
from common.netlink.route import (
    AF_INET,
    AF_INET6,
    ESRCH,
    KernelRoute,
    OpKind,
    RouteFailure,
    RouteKey,
    RouteOp,
)
from common.netlink.rtmsg import (
    NLM_F_DUMP_INTR,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    NetlinkDecodeError,
    RouteEntry,
    decode_error,
    decode_link,
    decode_link_index,
    decode_route,
    drop_protocol_filter,
    encode_delroute,
    encode_getlink,
    encode_link_dump,
    encode_newroute,
    encode_noop,
    encode_route_dump,
    split_messages,
)

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # ACKs leave out the request's payload: smaller replies
NETLINK_EXT_ACK = 11  # errors carry the kernel's message ("Nexthop has invalid gateway")
NETLINK_GET_STRICT_CHK = 12  # dumps honour the protocol/table filter in the request
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
CLONE_NEWNET = 0x40000000
RTMGRP_LINK = 0x1
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_ROUTE = 0x400

_SEQ_MASK = 0xFFFFFFFF
# rcvbuf charge per queued answer (skb truesize of a small NLMSG_ERROR, rounded up): a chunk
# may hold no more messages than the receive buffer can answer before we drain it.
_ANSWER_COST = 1024
_DUMP_RETRIES = 5
_T = TypeVar("_T")
Failure = tuple[int, int, str]
"""A refused request of a batch: (its index, errno, the kernel's extended-ack message)."""
_SWEEP_PASSES = 4


class NetlinkOverrun(OSError):
    """The kernel dropped answers (ENOBUFS): which ops succeeded is unknown. Re-read the
    table (`dump_ours`) and reconcile."""


class _Batch:
    """Answers awaited for one batch of `count` requests numbered from `first`; failures
    are (request index, errno, extended-ack message)."""

    __slots__ = ("answered", "barrier", "count", "done", "failures", "first")

    def __init__(self, first: int, count: int, barrier: int | None) -> None:
        self.first = first
        self.count = count
        self.barrier = barrier
        self.answered = 0
        self.done = not count
        self.failures: list[tuple[int, int, str]] = []

    def take(self, data: bytes) -> None:
        for mtype, flags, seq, body in split_messages(data):
            if mtype != NLMSG_ERROR:
                continue
            if seq == self.barrier:
                self.done = True
                continue
            index = (seq - self.first) & _SEQ_MASK
            if index >= self.count:
                continue  # an answer to an earlier, abandoned request
            err, message = decode_error(body, flags)
            self.answered += 1
            if err:
                self.failures.append((index, err, message))
        if self.barrier is None and self.answered >= self.count:
            self.done = True


class KernelRoutes:
    """The routes of one protocol (`protocol`, the rtm_protocol it sends and sweeps) in the
    kernel FIB of this network namespace (or of `netns`: a name under /run/netns, which
    tests use to drive a namespace from outside it, or a path such as /proc/PID/ns/net);
    also the namespace's links, addresses and neighbours.

    Use as `async with KernelRoutes(proto) as kr:` or call `open()` / `close()`.
    """

    def __init__(
        self,
        protocol: int,
        *,
        netns: str | None = None,
        ack_each: bool = False,
        chunk_size: int = 64 * 1024,
        buffer_size: int = 32 * 1024 * 1024,
        timeout: float = 30.0,
    ) -> None:
        self.protocol = protocol
        self.netns = netns
        self.ack_each = ack_each
        self.chunk_size = chunk_size
        self.buffer_size = buffer_size
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = asyncio.Lock()
        self._rbuf = bytearray(1 << 17)
        self._max_per_chunk = 0
        self._max_chunk_bytes = 0

    async def open(self) -> None:
        if self._sock is None:
            self._sock = self._new_socket()

    def _new_socket(self) -> socket.socket:
        sock = _in_netns(self.netns, _netlink_socket) if self.netns else _netlink_socket()
        try:
            sndbuf, rcvbuf = _set_buffers(sock, self.buffer_size)
            # sendmsg refuses more than the send buffer; the NOOP barrier rides in the last chunk.
            self._max_chunk_bytes = min(self.chunk_size, sndbuf - 64) - 16
            # Half the receive buffer, so a chunk's answers fit even if every message fails.
            self._max_per_chunk = max(1, rcvbuf // (2 * _ANSWER_COST))
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK):
                # Older kernels lack some: bigger ACKs, no messages, unfiltered dumps.
                with contextlib.suppress(OSError):
                    sock.setsockopt(SOL_NETLINK, opt, 1)
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> KernelRoutes:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- routes -----------------------------------------------------------------------------

    async def apply(self, ops: Sequence[RouteOp]) -> list[RouteFailure]:
        """Send all ops, many per sendmsg, and return the ones the kernel refused, in op
        order. Yields to the event loop between chunks."""
        if not ops:
            return []
        protocol, ack = self.protocol, self.ack_each

        def encode(i: int, seq: int) -> bytes:
            op = ops[i]
            proto = protocol if op.protocol is None else op.protocol
            if op.kind is OpKind.DELETE:
                return encode_delroute(op.route, seq, proto, ack)
            return encode_newroute(op.route, seq, proto, ack, op.kind is OpKind.ADD)

        failures = await self._batch(len(ops), encode)
        return [RouteFailure(ops[i], err, message) for i, err, message in failures]

    async def execute(self, requests: Sequence[Callable[[int], bytes]]) -> list[Failure]:
        """Send requests (each builds its message, asking for an ACK, from a sequence
        number) in one batch and return the refused ones as (index, errno, message), in
        order: links, addresses and neighbours go this way."""
        if not requests:
            return []
        return await self._batch(len(requests), lambda i, seq: requests[i](seq))

    async def _batch(self, count: int, encode: Callable[[int, int], bytes]) -> list[Failure]:
        async with self._lock:
            sock = self._require()
            try:
                return await self._send_batch(sock, count, encode)
            except (NetlinkOverrun, TimeoutError):
                self._reopen()
                raise

    async def _send_batch(
        self, sock: socket.socket, count: int, encode: Callable[[int, int], bytes]
    ) -> list[Failure]:
        first = self._next_seq(count)
        barrier = None if self.ack_each else self._next_seq(1)
        batch = _Batch(first, count, barrier)
        chunk: list[bytes] = []
        size = 0
        limit, per_chunk = self._max_chunk_bytes, self._max_per_chunk
        for i in range(count):
            msg = encode(i, (first + i) & _SEQ_MASK)
            if chunk and (size + len(msg) > limit or len(chunk) >= per_chunk):
                await self._send(sock, b"".join(chunk), batch)
                chunk = []
                size = 0
            chunk.append(msg)
            size += len(msg)
        if barrier is not None:
            chunk.append(encode_noop(barrier))
        await self._send(sock, b"".join(chunk), batch)
        await self._await(sock, batch)
        return batch.failures

    async def dump_ours(self, table: int | None = None) -> dict[RouteKey, KernelRoute]:
        """Routes of our protocol, IPv4 and IPv6, in `table` or in all tables. Should the
        kernel hold two of ours for one key (different metrics), the lowest metric wins."""
        out: dict[RouteKey, KernelRoute] = {}
        for entry in await self.dump(self.protocol, table):
            route = entry.route
            have = out.get(route.key)
            if have is None or (route.metric or 0) < (have.metric or 0):
                out[route.key] = route
        return out

    async def dump(self, protocol: int | None = None, table: int | None = None) -> list[RouteEntry]:
        """Unicast and blackhole routes of both families, optionally of one protocol/table."""
        async with self._lock:
            sock = self._require()
            entries: list[RouteEntry] = []
            try:
                for family in (AF_INET, AF_INET6):
                    entries += await self._dump_family(sock, family, protocol or 0, table or 0)
            except (NetlinkOverrun, TimeoutError):
                self._reopen()
                raise
        return [
            e
            for e in entries
            if (protocol is None or e.protocol == protocol)
            and (table is None or e.route.table == table)
        ]

    async def sweep(self) -> int:
        """Delete every route of our protocol (left by an earlier run); returns how many."""
        removed = 0
        for _ in range(_SWEEP_PASSES):
            entries = await self.dump(self.protocol)
            if not entries:
                break
            failures = await self.apply([RouteOp(OpKind.DELETE, e.route) for e in entries])
            hard = [f for f in failures if f.errno != ESRCH]
            removed += len(entries) - len(failures)
            if hard and len(hard) == len(entries):
                first = hard[0]
                raise OSError(first.errno, f"sweep: {first.message or os.strerror(first.errno)}")
        return removed

    async def links(self) -> list[tuple[int, str]]:
        """Every interface of the namespace as (ifindex, name)."""
        async with self._lock:
            return await self._dump_request(
                self._require(), encode_link_dump, RTM_NEWLINK, decode_link, "link dump"
            )

    async def link_list(self) -> list[Link]:
        """Every interface of the namespace with its kind, state, MAC and VXLAN settings."""
        async with self._lock:
            return await self._dump_request(
                self._require(), encode_link_dump, RTM_NEWLINK, decode_newlink, "link dump"
            )

    async def addresses(self, family: int = 0) -> list[Address]:
        """The IPv4 and IPv6 addresses of every interface (or of one family)."""
        async with self._lock:
            return await self._dump_request(
                self._require(),
                lambda seq: encode_addr_dump(family, seq),
                RTM_NEWADDR,
                decode_newaddr,
                "address dump",
            )

    async def neighbours(self, family: int, ifindex: int = 0) -> list[Neighbour]:
        """The neighbour entries of `family` (AF_BRIDGE: the FDB), of one interface if
        `ifindex` is set."""
        async with self._lock:
            found = await self._dump_request(
                self._require(),
                lambda seq: encode_neigh_dump(family, seq),
                RTM_NEWNEIGH,
                decode_newneigh,
                "neighbour dump",
            )
        return [n for n in found if not ifindex or n.ifindex == ifindex]

    async def link_index(self, name: str) -> int:
        """The ifindex of interface `name` in the socket's namespace."""
        async with self._lock:
            sock = self._require()
            seq = self._next_seq(1)
            await self._sendall(sock, encode_getlink(name, seq))
            async with asyncio.timeout(self.timeout):
                while True:
                    for mtype, flags, mseq, body in split_messages(await self._recv(sock)):
                        if mseq != seq:
                            continue
                        if mtype == RTM_NEWLINK:
                            return decode_link_index(body)
                        if mtype == NLMSG_ERROR:
                            err, message = decode_error(body, flags)
                            raise OSError(err, f"{name}: {message or os.strerror(err)}")

    # -- plumbing ---------------------------------------------------------------------------

    def _reopen(self) -> None:
        """A fresh socket after lost or late answers: nothing stale is left to read."""
        self.close()
        self._sock = self._new_socket()

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("KernelRoutes is not open")
        return self._sock

    def _next_seq(self, count: int) -> int:
        first = (self._seq + 1) & _SEQ_MASK
        self._seq = (self._seq + count) & _SEQ_MASK
        return first

    async def _sendall(self, sock: socket.socket, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(sock, data)

    async def _send(self, sock: socket.socket, data: bytes, batch: _Batch) -> None:
        await self._sendall(sock, data)
        # The kernel handles a netlink request inside sendmsg, so this chunk's answers are
        # already queued: read them now and the receive buffer never holds more than a chunk.
        self._drain(sock, batch)
        await asyncio.sleep(0)

    def _drain(self, sock: socket.socket, batch: _Batch) -> None:
        while not batch.done:
            try:
                n = sock.recv_into(self._rbuf)
            except BlockingIOError:
                return
            except OSError as exc:
                raise _overrun(exc) from exc
            batch.take(bytes(self._rbuf[:n]))

    async def _await(self, sock: socket.socket, batch: _Batch) -> None:
        async with asyncio.timeout(self.timeout):
            while not batch.done:
                batch.take(await self._recv(sock))

    async def _recv(self, sock: socket.socket) -> bytes:
        try:
            n = await asyncio.get_running_loop().sock_recv_into(sock, self._rbuf)
        except OSError as exc:
            raise _overrun(exc) from exc
        return bytes(self._rbuf[:n])

    async def _dump_family(
        self, sock: socket.socket, family: int, protocol: int, table: int
    ) -> list[RouteEntry]:
        return await self._dump_request(
            sock,
            lambda seq: encode_route_dump(family, seq, protocol, table),
            RTM_NEWROUTE,
            lambda body: decode_route(body, protocol or None),
            "route dump",
        )

    async def _dump_request(
        self,
        sock: socket.socket,
        request: Callable[[int], bytes],
        reply_type: int,
        decode: Callable[[bytes], _T | None],
        what: str,
    ) -> list[_T]:
        """Send one dump request and collect the decoded replies; a dump the kernel marks
        as interrupted (the table changed under it) is asked again."""
        for _ in range(_DUMP_RETRIES):
            seq = self._next_seq(1)
            await self._sendall(sock, request(seq))
            out: list[_T] = []
            interrupted = done = False
            async with asyncio.timeout(self.timeout):
                while not done:
                    for mtype, flags, mseq, body in split_messages(await self._recv(sock)):
                        if mseq != seq:
                            continue
                        interrupted |= bool(flags & NLM_F_DUMP_INTR)
                        if mtype == reply_type:
                            item = decode(body)
                            if item is not None:
                                out.append(item)
                        elif mtype == NLMSG_DONE:
                            done = True
                        elif mtype == NLMSG_ERROR:
                            err, message = decode_error(body, flags)
                            if err:
                                raise OSError(err, f"{what}: {message or os.strerror(err)}")
                            done = True
            if not interrupted:
                return out
        raise OSError(errno.EAGAIN, f"{what} kept being interrupted by table changes")


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """An interface appeared or changed (`name` set) or went away (`name` None)."""

    index: int
    name: str | None


@dataclass(frozen=True, slots=True)
class RouteEvent:
    added: bool
    entry: RouteEntry


MonitorEvent = LinkEvent | RouteEvent


class RouteMonitor:
    """Route and link change notifications of the namespace (the RTMGRP_LINK and IPv4/IPv6
    route multicast groups): the kernel tells us what changed, so nothing is rescanned.

    `read()` returns the next events; it raises `NetlinkOverrun` when the kernel dropped
    some (the receive buffer filled): then re-dump and resync, as BIRD does on ENOBUFS.
    """

    def __init__(
        self,
        *,
        netns: str | None = None,
        buffer_size: int = 32 * 1024 * 1024,
        skip_protocol: int | None = None,
    ) -> None:
        self.netns = netns
        self.buffer_size = buffer_size
        # The caller's own route changes echo back through the group; dropping them before
        # decoding keeps a 100k-route install from costing a second decode pass.
        self.skip_protocol = skip_protocol
        self._sock: socket.socket | None = None
        self._rbuf = bytearray(1 << 18)

    def open(self) -> None:
        if self._sock is not None:
            return
        sock = _in_netns(self.netns, _netlink_socket) if self.netns else _netlink_socket()
        try:
            _set_buffers(sock, self.buffer_size)
            if self.skip_protocol is not None:
                _attach_filter(sock, drop_protocol_filter(self.skip_protocol))
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def read(self) -> list[MonitorEvent]:
        sock = self._sock
        if sock is None:
            raise RuntimeError("RouteMonitor is not open")
        loop = asyncio.get_running_loop()
        try:
            n = await loop.sock_recv_into(sock, self._rbuf)
        except OSError as exc:
            raise _overrun(exc) from exc
        events: list[MonitorEvent] = []
        try:
            messages = split_messages(bytes(self._rbuf[:n]))
        except NetlinkDecodeError:
            return events
        skip = self.skip_protocol
        for mtype, _flags, _seq, body in messages:
            try:
                if mtype in (RTM_NEWROUTE, RTM_DELROUTE):
                    if len(body) > 5 and body[5] == skip:  # rtmsg.rtm_protocol
                        continue
                    entry = decode_route(body)
                    if entry is not None:
                        events.append(RouteEvent(mtype == RTM_NEWROUTE, entry))
                elif mtype == RTM_NEWLINK:
                    index, name = decode_link(body)
                    if name:
                        events.append(LinkEvent(index, name))
                elif mtype == RTM_DELLINK:
                    events.append(LinkEvent(decode_link_index(body), None))
            except NetlinkDecodeError:
                continue  # one odd message must not stop the monitor
        return events


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    """SO_ATTACH_FILTER with a classic BPF program (struct sock_fprog points at it; the
    kernel copies it during the call)."""
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _overrun(exc: OSError) -> OSError:
    if exc.errno == errno.ENOBUFS:
        return NetlinkOverrun(errno.ENOBUFS, "netlink answers were dropped; resync the FIB")
    return exc


def _netlink_socket() -> socket.socket:
    return socket.socket(
        socket.AF_NETLINK,
        socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
        NETLINK_ROUTE,
    )


def _set_buffers(sock: socket.socket, size: int) -> tuple[int, int]:
    """Big send and receive buffers (the FORCE options pass net.core.*mem_max as root);
    returns the (send, receive) sizes the kernel granted."""
    for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return (
        int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)),
        int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)),
    )


def _in_netns(name: str, make: Callable[[], socket.socket]) -> socket.socket:
    """Run `make` in network namespace /run/netns/<name> (or at path `name`, when it has a
    slash). A socket keeps the namespace it was created in, so only the creation needs to
    happen there; it runs in a throwaway thread because setns() moves the calling thread,
    and that thread ends right after."""
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            path = name if "/" in name else f"/run/netns/{name}"
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {name}: {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
