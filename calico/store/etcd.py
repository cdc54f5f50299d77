"""The etcd v3 store: `etcd://HOST:PORT[,...]` or `http://...` in plaintext, `https://...` over
TLS (a CA to trust, a client certificate), with or without etcd's user/password auth, through
gRPC asyncio and aetcd's generated stubs (`calico.store.etcdconfig` says how the settings are
given).

The channel is built here, not by aetcd.Client: aetcd 1.0 opens only insecure channels. The
requests are built here too, because its helpers leave out what Calico's access pattern needs
(ranged reads at one revision in pages, compare-and-swap on Version==0 / ModRevision, a watch
that reports compaction and loss).

Before connecting, the TLS files and the password file are read and checked (present,
readable, PEM, the key matching the certificate, the certificate in its validity period): a
mistake is named with its file, never found out as a handshake failure. They are read again
at each new connection, so rotated certificates are picked up. Every failure becomes one line
(`etcdfailures.explain`); nothing falls back to plaintext.

Failover: one endpoint is used at a time. A call that finds it unreachable, or whose TLS
handshake fails (gRPC UNAVAILABLE, or past the deadline), closes that channel and tries the
next endpoint, once round the list; when all fail it raises `Unavailable`, or `AccessDenied`
when every endpoint refused the handshake. Wrong credentials and missing permissions raise
`AccessDenied` at once (they are the same on every member); a token etcd forgot (a restart,
or its TTL) is renewed by authenticating again. A watch on a member that dies raises
`Unavailable` too, after moving to the next endpoint, so the caller lists afresh and watches
again there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

# gRPC's C core prints its own view of every failed handshake on stderr; each failure is
# raised to us and reported once, in our words. GRPC_VERBOSITY set by the user still counts.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import aetcd.rpc as rpc  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]

from calico.errors import (
    AccessDenied,
    Compacted,
    DatastoreConfigError,
    DatastoreError,
    LeaseNotFound,
    Unavailable,
)
from calico.store.etcdconfig import EtcdConfig, Given, endpoint_text
from calico.store.etcdfailures import Failure, Kind, explain
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
from calico.store.pem import certificates, validity
from common.log import get_logger

__all__ = ["Credentials", "EtcdKV", "open_config", "read_credentials"]

log = get_logger("calico.etcd")

_T = TypeVar("_T")
_PAGE = 500
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


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a connection presents, read from the configured files (None: not configured)."""

    ca_cert: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return "Credentials(...)"


def _read(given: Given, what: str) -> bytes:
    try:
        with open(given.value, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatastoreConfigError(
            f"etcd {what} {given}: {exc.strerror or exc}"
        ) from None
    if not data.strip():
        raise DatastoreConfigError(f"etcd {what} {given}: the file is empty")
    return data


def _no_passphrase() -> str:
    raise DatastoreConfigError("encrypted")


def read_credentials(config: EtcdConfig, now: datetime | None = None) -> Credentials:
    """The TLS files and password of `config`, checked; raises DatastoreConfigError naming
    the file at fault."""
    now = now or datetime.now(UTC)
    ca = cert = key = None
    tls = config.tls
    if tls is not None and tls.ca_cert is not None:
        ca = _read(tls.ca_cert, "CA certificate")
        _certificate(ca, tls.ca_cert, "CA certificate", now=None)
    if tls is not None and tls.cert is not None and tls.key is not None:
        cert = _read(tls.cert, "client certificate")
        key = _read(tls.key, "client key")
        _certificate(cert, tls.cert, "client certificate", now=now)
        if b"PRIVATE KEY-----" not in key:
            raise DatastoreConfigError(f"etcd client key {tls.key}: not a PEM private key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(tls.cert.value, tls.key.value, password=_no_passphrase)
        except DatastoreConfigError:
            raise DatastoreConfigError(
                f"etcd client key {tls.key}: encrypted with a passphrase (etcd clients need "
                "an unencrypted key)"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            raise DatastoreConfigError(
                f"etcd client key {tls.key} does not go with the client certificate "
                f"{tls.cert}: {reason}"
            ) from None
    password = None
    if config.password is not None:
        if config.password.file is not None:
            text = _read(Given(config.password.file, config.password.origin), "password file")
            password = text.decode("utf-8", "replace").rstrip("\r\n")
        else:
            password = config.password.value
    return Credentials(ca, cert, key, password)


def _certificate(pem: bytes, given: Given, what: str, *, now: datetime | None) -> None:
    try:
        ders = certificates(pem)
        if not ders:
            raise ValueError("no PEM CERTIFICATE block")
        span = validity(ders[0])
    except ValueError as exc:
        raise DatastoreConfigError(f"etcd {what} {given}: not a certificate ({exc})") from None
    problem = span.problem(now) if now is not None else None
    if problem:
        raise DatastoreConfigError(f"etcd {what} {given}: {problem}")


def _kv(raw: Any) -> KeyValue:
    return KeyValue(
        raw.key.decode(),
        bytes(raw.value),
        int(raw.create_revision),
        int(raw.mod_revision),
        int(raw.version),
        int(raw.lease),
    )


class _Connection:
    """A channel to one endpoint, its stubs, and our auth token there."""

    def __init__(self, endpoint: str, channel: Any) -> None:
        self.endpoint = endpoint
        self.channel = channel
        self.kvstub = rpc.KVStub(channel)
        self.leasestub = rpc.LeaseStub(channel)
        self.watchstub = rpc.WatchStub(channel)
        self.authstub = rpc.AuthStub(channel)
        self.metadata: tuple[tuple[str, str], ...] | None = None


class _Failed(Exception):
    """An endpoint failed in a way `_call` handles (next endpoint, or authenticate again)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


_MOVE_ON = (Kind.UNREACHABLE, Kind.TLS)


class EtcdKV(KVStore):
    def __init__(self, config: EtcdConfig) -> None:
        if not config.endpoints:
            raise DatastoreError("etcd: no endpoints")
        self.config = config
        self.endpoints = list(config.endpoints)
        self.url = config.url
        self.timeout = config.timeout
        self._current = 0
        self._conn: _Connection | None = None
        self._connecting = asyncio.Lock()
        # Fail now, naming the file, if a TLS or password file is wrong.
        read_credentials(config)

    @property
    def endpoint(self) -> str:
        host, port = self.endpoints[self._current]
        return endpoint_text(host, port)

    # --- connections -------------------------------------------------------------------

    async def _connected(self) -> _Connection:
        """The connection to the current endpoint, made (and authenticated) if there is none.
        Raises _Failed when connecting fails, DatastoreConfigError when a file is wrong."""
        async with self._connecting:
            if self._conn is None:
                creds = read_credentials(self.config)
                endpoint = self.endpoint
                options = list(_CHANNEL_OPTIONS.items())
                if self.config.tls is not None:
                    tls = grpc.ssl_channel_credentials(creds.ca_cert, creds.key, creds.cert)
                    channel = rpc.secure_channel(endpoint, tls, options=options)
                else:
                    channel = rpc.insecure_channel(endpoint, options=options)
                conn = _Connection(endpoint, channel)
                if self.config.username is not None:
                    try:
                        await self._authenticate(conn, creds.password or "")
                    except BaseException:
                        with contextlib.suppress(Exception):
                            await channel.close()
                        raise
                self._conn = conn
            return self._conn

    async def _authenticate(self, conn: _Connection, password: str) -> None:
        assert self.config.username is not None
        try:
            resp = await conn.authstub.Authenticate(
                rpc.AuthenticateRequest(name=self.config.username.value, password=password),
                timeout=self.timeout,
            )
        except rpc.AioRpcError as exc:
            failure = self._failure(exc)
            if failure.kind is not Kind.AUTH_NOT_ENABLED:
                raise _Failed(failure) from None
            # etcd's own client goes on without a token here; so do we, but say so.
            log.warning(
                "etcd authentication is not enabled; the user name is not used",
                endpoint=conn.endpoint, user=self.config.username.value,
            )
            return
        conn.metadata = (("token", str(resp.token)),)

    async def _drop(self, conn: _Connection | None, index: int, *, move_on: bool) -> None:
        """Forget `conn` (the connection to endpoint `index`, or None when connecting failed),
        and with `move_on` go to the next endpoint; nothing if another call already did."""
        if self._conn is not conn or self._current != index:
            return
        self._conn = None
        if move_on:
            self._current = (index + 1) % len(self.endpoints)
        if conn is not None:
            # A broken channel may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                await conn.channel.close()

    def _failure(self, exc: Any) -> Failure:
        return explain(exc.code().name, exc.details() or "", self.config)

    def _error(self, endpoint: str, failure: Failure) -> DatastoreError:
        if failure.kind is Kind.DENIED:
            return AccessDenied(f"etcd {endpoint}: {failure.reason}")
        if "lease not found" in failure.reason:
            return LeaseNotFound(failure.reason)
        if "compacted" in failure.reason:
            return Compacted(0, 0)
        return DatastoreError(f"etcd {endpoint}: {failure.reason}")

    async def _call(self, fn: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run `fn(connection)`, moving round the endpoints while they are unreachable or
        refuse the handshake, and authenticating again once if etcd forgot our token."""
        failures: list[tuple[str, Failure]] = []
        renewed = False
        while len(failures) < len(self.endpoints):
            index, endpoint, conn = self._current, self.endpoint, self._conn
            try:
                conn = await self._connected()
                return await fn(conn)
            except rpc.AioRpcError as exc:
                failure = self._failure(exc)
            except _Failed as exc:
                failure = exc.failure
                conn = None
            if failure.kind is Kind.TOKEN and not renewed:
                renewed = True
                await self._drop(conn, index, move_on=False)  # reconnect, authenticate
                continue
            if failure.kind not in _MOVE_ON:
                raise self._error(endpoint, failure)
            failures.append((endpoint, failure))
            await self._drop(conn, index, move_on=True)
        detail = "; ".join(f"{e}: {f.reason}" for e, f in failures)
        if all(f.kind is Kind.TLS for _, f in failures):
            raise AccessDenied(f"etcd {detail}")
        if len(failures) == 1:
            raise Unavailable(f"etcd {detail}")
        raise Unavailable(f"etcd: no endpoint reachable: {detail}")

    # --- reading -----------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        async def call(conn: _Connection) -> KeyValue | None:
            resp = await conn.kvstub.Range(
                rpc.RangeRequest(key=key.encode()), timeout=self.timeout, metadata=conn.metadata
            )
            return _kv(resp.kvs[0]) if resp.kvs else None

        return await self._call(call)

    async def list(self, *prefixes: str) -> Listing:
        async def call(conn: _Connection) -> Listing:
            revision = 0
            items: list[KeyValue] = []
            for prefix in sorted(set(prefixes)):
                start, end = prefix.encode(), prefix_end(prefix).encode()
                while True:
                    resp = await conn.kvstub.Range(
                        rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision),
                        timeout=self.timeout,
                        metadata=conn.metadata,
                    )
                    # Later pages and prefixes are read at the first page's revision.
                    revision = revision or int(resp.header.revision)
                    items.extend(_kv(raw) for raw in resp.kvs)
                    if not resp.more or not resp.kvs:
                        break
                    start = resp.kvs[-1].key + b"\0"
            if not revision:
                resp = await conn.kvstub.Range(
                    rpc.RangeRequest(key=b"\0", count_only=True),
                    timeout=self.timeout,
                    metadata=conn.metadata,
                )
                revision = int(resp.header.revision)
            items.sort(key=lambda kv: kv.key)
            return Listing(tuple(items), revision)

        return await self._call(call)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        index, endpoint = self._current, self.endpoint
        try:
            conn = await self._connected()
        except _Failed as exc:
            if exc.failure.kind not in _MOVE_ON:
                raise self._error(endpoint, exc.failure) from None
            await self._drop(None, index, move_on=True)
            raise Unavailable(f"etcd {endpoint}: {exc.failure.reason}") from None
        create = rpc.WatchCreateRequest(
            key=prefix.encode(),
            range_end=prefix_end(prefix).encode(),
            start_revision=start_revision,
        )
        done = asyncio.Event()

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            await done.wait()

        call = conn.watchstub.Watch(requests(), metadata=conn.metadata)
        try:
            async for resp in call:
                if resp.compact_revision:
                    raise Compacted(start_revision, int(resp.compact_revision))
                if resp.canceled:
                    reason = str(resp.cancel_reason)
                    if "permission denied" in reason or "auth token" in reason:
                        # etcd cancels a watch made with a token it forgot ("invalid auth
                        # token") or without the permission ("permission denied"): either way
                        # the caller's next list authenticates afresh on a new connection.
                        await self._drop(conn, index, move_on=False)
                    if "permission denied" in reason:
                        raise self._error(endpoint, explain("PERMISSION_DENIED", reason,
                                                            self.config))
                    raise Unavailable(f"etcd {endpoint}: watch canceled: {reason}")
                for ev in resp.events:
                    deleted = ev.type == rpc.Event.DELETE
                    yield WatchEvent(
                        EventType.DELETE if deleted else EventType.PUT,
                        ev.kv.key.decode(),
                        b"" if deleted else bytes(ev.kv.value),
                        int(ev.kv.mod_revision),
                    )
        except rpc.AioRpcError as exc:
            if exc.code() == rpc.StatusCode.CANCELLED:
                return
            failure = self._failure(exc)
            if failure.kind is Kind.TOKEN:
                await self._drop(conn, index, move_on=False)
            elif failure.kind in _MOVE_ON:
                await self._drop(conn, index, move_on=True)
            else:
                raise self._error(endpoint, failure) from None
            raise Unavailable(f"etcd {endpoint}: watch lost: {failure.reason}") from None
        finally:
            done.set()
            call.cancel()
        # etcd never ends a watch stream by itself: the member is going away.
        await self._drop(conn, index, move_on=True)
        raise Unavailable(f"etcd {endpoint}: watch stream ended")

    # --- writing -----------------------------------------------------------------------

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares], success=[_request_op(op) for op in ops]
        )

        async def call(conn: _Connection) -> TxnResult:
            resp = await conn.kvstub.Txn(request, timeout=self.timeout, metadata=conn.metadata)
            return TxnResult(bool(resp.succeeded), int(resp.header.revision))

        return await self._call(call)

    async def compact(self, revision: int) -> None:
        async def call(conn: _Connection) -> None:
            await conn.kvstub.Compact(
                rpc.CompactionRequest(revision=revision, physical=True),
                timeout=self.timeout,
                metadata=conn.metadata,
            )

        await self._call(call)

    # --- leases ------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        async def call(conn: _Connection) -> int:
            resp = await conn.leasestub.LeaseGrant(
                rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout, metadata=conn.metadata
            )
            return int(resp.ID)

        return await self._call(call)

    async def keepalive(self, lease: int) -> int:
        async def call(conn: _Connection) -> int:
            stream = conn.leasestub.LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease)]),
                timeout=self.timeout,
                metadata=conn.metadata,
            )
            async for reply in stream:
                return int(reply.TTL)
            return 0

        ttl = await self._call(call)
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease} not found (expired or revoked)")
        return ttl

    async def revoke(self, lease: int) -> None:
        async def call(conn: _Connection) -> None:
            try:
                await conn.leasestub.LeaseRevoke(
                    rpc.LeaseRevokeRequest(ID=lease), timeout=self.timeout,
                    metadata=conn.metadata,
                )
            except rpc.AioRpcError as exc:
                if exc.code() != rpc.StatusCode.NOT_FOUND:
                    raise

        await self._call(call)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.channel.close()


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


def open_config(config: EtcdConfig) -> EtcdKV:
    """The store `config` describes; raises DatastoreConfigError if a file it names is wrong."""
    return EtcdKV(config)
