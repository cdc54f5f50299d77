"""The etcd v3 store: `etcd://host:port[,host:port...]`, through aetcd (gRPC, asyncio).

aetcd gives the channel and the generated stubs; the requests are built here because its
helpers leave out what Calico's access pattern needs (ranged reads at one revision in pages,
compare-and-swap on Version==0 / ModRevision, a watch that reports compaction and loss).

Failover: one endpoint is used at a time. A call that finds it unreachable (gRPC UNAVAILABLE,
or past the deadline) closes that channel and tries the next endpoint, once round the list;
when all fail it raises `Unavailable`. A watch on a member that dies raises `Unavailable`
too, after moving to the next endpoint, so the caller lists afresh and watches again there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aetcd  # type: ignore[import-untyped]
import aetcd.rpc as rpc  # type: ignore[import-untyped]

from calico.errors import Compacted, DatastoreError, LeaseNotFound, Unavailable
from calico.store.kv import (
    Compare,
    Delete,
    EventType,
    KeyValue,
    KVStore,
    Listing,
    Op,
    Put,
    TxnResult,
    WatchEvent,
    prefix_end,
)

__all__ = ["EtcdKV", "open_url", "parse_endpoints"]

_T = TypeVar("_T")
_PAGE = 500
_UNREACHABLE = {rpc.StatusCode.UNAVAILABLE, rpc.StatusCode.DEADLINE_EXCEEDED}
# gRPC keepalives notice a member that vanished without closing the connection.
_CHANNEL_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
    # gRPC shares connections between channels to one target by default, and with them a
    # failed connection's backoff: a new client right after an outage would fail at once.
    "grpc.use_local_subchannel_pool": 1,
}


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """`etcd://h1:2379,h2:2379` -> [(h1, 2379), (h2, 2379)]; the port defaults to 2379;
    an IPv6 host is written in brackets."""
    if not url.startswith("etcd://"):
        raise DatastoreError(f"not an etcd URL: {url!r} (use etcd://HOST:PORT[,HOST:PORT])")
    rest = url[len("etcd://") :].rstrip("/")
    endpoints: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        host, port = part, 2379
        if part.startswith("["):
            end = part.find("]")
            host, tail = part[1:end], part[end + 1 :]
            if tail.startswith(":"):
                port = _port(url, tail[1:])
        elif part.count(":") == 1:
            host, port_text = part.split(":")
            port = _port(url, port_text)
        endpoints.append((host, port))
    if not endpoints:
        raise DatastoreError(f"no endpoints in {url!r}")
    return endpoints


def _port(url: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DatastoreError(f"bad port {text!r} in {url!r}")
    return int(text)


def _kv(raw: Any) -> KeyValue:
    return KeyValue(
        raw.key.decode(),
        bytes(raw.value),
        int(raw.create_revision),
        int(raw.mod_revision),
        int(raw.version),
        int(raw.lease),
    )


class EtcdKV(KVStore):
    def __init__(self, endpoints: Sequence[tuple[str, int]], *, timeout: float = 5.0) -> None:
        if not endpoints:
            raise DatastoreError("etcd: no endpoints")
        self.endpoints = list(endpoints)
        self.url = "etcd://" + ",".join(f"{h}:{p}" for h, p in self.endpoints)
        self.timeout = timeout
        self._current = 0
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        host, port = self.endpoints[self._current]
        return f"{host}:{port}"

    async def _connected(self) -> Any:
        if self._client is None:
            host, port = self.endpoints[self._current]
            client = aetcd.Client(
                host=host, port=port, timeout=self.timeout, options=_CHANNEL_OPTIONS
            )
            await client.connect()
            self._client = client
        return self._client

    async def _drop(self, client: Any) -> None:
        """Leave a failed endpoint for the next one."""
        if client is not None and client is self._client:
            self._client = None
            self._current = (self._current + 1) % len(self.endpoints)
            # A broken channel may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                await client.close()

    async def _call(self, fn: Callable[[Any], Awaitable[_T]]) -> _T:
        """Run `fn(client)`, moving round the endpoints while they are unreachable."""
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            client = await self._connected()
            try:
                return await fn(client)
            except rpc.AioRpcError as exc:
                if exc.code() not in _UNREACHABLE:
                    raise _error(exc) from None
                last = exc
                await self._drop(client)
        detail = last.details() if isinstance(last, rpc.AioRpcError) else str(last)
        raise Unavailable(f"{self.url}: no endpoint reachable ({detail})")

    # --- reading -----------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        async def call(client: Any) -> KeyValue | None:
            resp = await client.kvstub.Range(
                rpc.RangeRequest(key=key.encode()), timeout=self.timeout, metadata=client.metadata
            )
            return _kv(resp.kvs[0]) if resp.kvs else None

        return await self._call(call)

    async def list(self, *prefixes: str) -> Listing:
        async def call(client: Any) -> Listing:
            revision = 0
            items: list[KeyValue] = []
            for prefix in sorted(set(prefixes)):
                start, end = prefix.encode(), prefix_end(prefix).encode()
                while True:
                    resp = await client.kvstub.Range(
                        rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision),
                        timeout=self.timeout,
                        metadata=client.metadata,
                    )
                    # Later pages and prefixes are read at the first page's revision.
                    revision = revision or int(resp.header.revision)
                    items.extend(_kv(raw) for raw in resp.kvs)
                    if not resp.more or not resp.kvs:
                        break
                    start = resp.kvs[-1].key + b"\0"
            if not revision:
                resp = await client.kvstub.Range(
                    rpc.RangeRequest(key=b"\0", count_only=True),
                    timeout=self.timeout,
                    metadata=client.metadata,
                )
                revision = int(resp.header.revision)
            items.sort(key=lambda kv: kv.key)
            return Listing(tuple(items), revision)

        return await self._call(call)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        client = await self._connected()
        create = rpc.WatchCreateRequest(
            key=prefix.encode(),
            range_end=prefix_end(prefix).encode(),
            start_revision=start_revision,
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await done.wait()

        call = rpc.WatchStub(client.channel).Watch(requests(), metadata=client.metadata)
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(start_revision, int(resp.compact_revision))
                if resp.canceled:
                    raise Unavailable(f"{self.url}: watch canceled: {resp.cancel_reason}")
                for ev in resp.events:
                    deleted = ev.type == rpc.Event.DELETE
                    yield WatchEvent(
                        EventType.DELETE if deleted else EventType.PUT,
                        ev.kv.key.decode(),
                        b"" if deleted else bytes(ev.kv.value),
                        int(ev.kv.mod_revision),
                    )
        except rpc.AioRpcError as exc:
            if exc.code() in _UNREACHABLE:
                await self._drop(client)
                raise Unavailable(f"{self.url}: watch lost: {exc.details()}") from None
            if exc.code() == rpc.StatusCode.CANCELLED:
                return
            raise _error(exc) from None
        finally:
            done.set()
            call.cancel()
        # etcd never ends a watch stream by itself: the member is going away.
        await self._drop(client)
        raise Unavailable(f"{self.url}: watch stream ended")

    # --- writing -----------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares], success=[_request_op(op) for op in ops]
        )

        async def call(client: Any) -> TxnResult:
            resp = await client.kvstub.Txn(
                request, timeout=self.timeout, metadata=client.metadata
            )
            return TxnResult(bool(resp.succeeded), int(resp.header.revision))

        return await self._call(call)

    async def compact(self, revision: int) -> None:
        async def call(client: Any) -> None:
            await client.kvstub.Compact(
                rpc.CompactionRequest(revision=revision, physical=True),
                timeout=self.timeout,
                metadata=client.metadata,
            )

        await self._call(call)

    # --- leases ------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        async def call(client: Any) -> int:
            resp = await client.leasestub.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout, metadata=client.metadata
            )
            return int(resp.ID)

        return await self._call(call)

    async def keepalive(self, lease: int) -> int:
        async def call(client: Any) -> int:
            stream = client.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                timeout=self.timeout,
                metadata=client.metadata,
            )
            async for reply in stream:
                return int(reply.TTL)
            return 0

        ttl = await self._call(call)
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease} not found (expired or revoked)")
        return ttl

    async def revoke(self, lease: int) -> None:
        async def call(client: Any) -> None:
            try:
                await client.leasestub.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease), timeout=self.timeout,
                    metadata=client.metadata,
                )
            except rpc.AioRpcError as exc:
                if exc.code() != rpc.StatusCode.NOT_FOUND:
                    raise

        await self._call(call)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _compare(c: Compare) -> Any:
    if c.mod_revision == 0:
        # Calico's create: Version(key) == 0, i.e. the key does not exist.
        return rpc.Compare(
            key=c.key.encode(), target=rpc.Compare.VERSION, result=rpc.Compare.EQUAL, version=0
        )
    return rpc.Compare(
        key=c.key.encode(),
        target=rpc.Compare.MOD,
        result=rpc.Compare.EQUAL,
        mod_revision=c.mod_revision,
    )


def _request_op(op: Op) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=op.key.encode(), value=op.value, lease=op.lease)
        )
    if isinstance(op, Delete):
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key.encode()))
    raise TypeError(f"not a transaction op: {op!r}")


def _error(exc: Any) -> DatastoreError:
    details = exc.details() or str(exc.code())
    if "lease not found" in details:
        return LeaseNotFound(details)
    if "compacted" in details:
        return Compacted(0, 0)
    return DatastoreError(f"etcd: {details}")


def open_url(url: str) -> EtcdKV:
    return EtcdKV(parse_endpoints(url))
