"""The status reporter: every `interval` seconds, this node's BGP status (nodestatus.py) is
written under a lease of a few intervals that each write renews. When bgpd dies the lease
runs out and the entry goes; on a clean stop the lease is revoked at once. A store outage
is logged once and the write simply retried on the next tick (a new lease if the old one
expired meanwhile): reporting never affects routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bgpd.status.nodestatus import node_status_key, to_document
from bgpd.status.records import DaemonStatus
from calico.codec import dumps
from calico.errors import DatastoreError, LeaseNotFound
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import KVStore, open_kv
from common.log import get_logger

__all__ = ["StatusReporter", "reporter_for"]

log = get_logger("bgpd.status")


class StatusReporter:
    def __init__(
        self,
        kv: KVStore,
        node: str,
        status: Callable[[], DaemonStatus],
        *,
        interval: float = 5.0,
        ttl: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.node = node
        self.status = status
        self.interval = interval
        self.ttl = ttl or max(2, int(interval * 3 + 0.5))
        self.clock = clock
        self.key = node_status_key(node)
        self.lease = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def report(self) -> None:
        """Write the status once (a new lease if there is none or it expired)."""
        doc = to_document(self.status(), now=self.clock(), period=round(self.interval))
        value = dumps(doc)
        if self.lease:
            try:
                await self.kv.keepalive(self.lease)
            except LeaseNotFound:
                self.lease = 0
        if not self.lease:
            self.lease = await self.kv.grant(self.ttl)
        try:
            await self.kv.put(self.key, value, lease=self.lease)
        except LeaseNotFound:
            self.lease = await self.kv.grant(self.ttl)
            await self.kv.put(self.key, value, lease=self.lease)

    async def _run(self) -> None:
        while True:
            try:
                await self.report()
                if self._failing:
                    log.info("status reporting resumed", key=self.key)
                self._failing = False
            except DatastoreError as exc:
                if not self._failing:
                    log.warning("cannot write node status; retrying", key=self.key,
                                datastore=self.kv.url, error=str(exc))
                self._failing = True
            except Exception:
                log.exception("status reporter error", key=self.key)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop reporting and withdraw the entry (revoking its lease), then close."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.lease:
            with contextlib.suppress(DatastoreError, TimeoutError):
                await asyncio.wait_for(self.kv.revoke(self.lease), 3)
            self.lease = 0
        with contextlib.suppress(Exception):
            await self.kv.close()


def reporter_for(
    datastore: str | DatastoreConfig,
    node: str,
    status: Callable[[], DaemonStatus],
    *,
    interval: float = 5.0,
) -> StatusReporter | None:
    """A reporter when `datastore` is a key-value store (sqlite or etcd); None for a file."""
    if not str(datastore).startswith(("sqlite://", "etcd://", "http://", "https://")):
        return None
    return StatusReporter(open_kv(datastore), node, status, interval=interval)
