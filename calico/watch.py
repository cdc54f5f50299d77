"""Calico's datastore as a SnapshotSource: `sqlite:///PATH` or etcd (`https://HOST:PORT[,...]`,
`etcd://HOST:PORT[,...]`).

`load()` lists the keys the planner reads (BGP configurations, nodes, BGP peers, IP pools,
workload endpoints and the node's block affinities; IPAM blocks on request) at one revision
into a Snapshot. With a node, only that node's workload endpoints are kept (the planner peers
with local workloads only), so a pod starting elsewhere changes no Snapshot here.
`updates()` then watches those prefixes from the next revision and yields a new Snapshot
after each burst of changes (debounced), and only when the resources really changed.

When a watch is compacted or lost, the state is rebuilt from a fresh list; since consumers
diff plans, a resync that finds nothing new changes nothing. When the store is unreachable
the last good Snapshot stays in force: the outage is logged once (then once a minute while
it lasts), the list is retried with exponential backoff, and the first good list after it
is yielded if anything changed meanwhile. A value that fails validation is logged with its
key and left out, the same way on a list and on a watch, so a Snapshot is always a function
of the store's contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from calico import keys
from calico.codec import decode
from calico.errors import Compacted, DatastoreError, ResourceError, Unavailable
from calico.model import Resource, WorkloadEndpoint
from calico.snapshot import Snapshot
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import EventType, KeyValue, KVStore, WatchEvent, open_kv
from common.log import get_logger

__all__ = ["CalicoSource", "SnapshotState", "open_calico_source", "watched_prefixes"]

log = get_logger("calico.datastore")

_PLANNER_KINDS = ("BGPConfiguration", "Node", "BGPPeer", "IPPool", "BGPFilter", "WorkloadEndpoint")
_REPEAT_OUTAGE_LOG = 60.0


def watched_prefixes(
    node: str | None,
    *,
    blocks: bool = False,
    kinds: tuple[str, ...] = _PLANNER_KINDS,
    affinities: bool = True,
) -> tuple[str, ...]:
    """What the planner needs: five resource kinds and `node`'s block affinities (every
    node's when node is None); IPAM blocks only when asked (they change with every pod).
    felix asks for other kinds, the blocks and no affinities."""
    prefixes = [keys.kind_prefix(k) for k in kinds]
    if affinities:
        prefixes.append(keys.affinity_prefix(node))
    if blocks:
        prefixes.append(keys.BLOCKS)
    return tuple(prefixes)


@dataclass(slots=True)
class SnapshotState:
    """Resources by key, built from a list and kept current by watch events. Pure: bad
    values come back as errors for the caller to log."""

    source: str = ""
    revision: int = 0
    by_key: dict[str, Resource] = field(default_factory=dict)
    # Keep only this node's WorkloadEndpoints (None: every node's).
    node: str | None = None

    def reset(self, items: Iterable[KeyValue], revision: int) -> list[ResourceError]:
        self.by_key = {}
        errors = [e for kv in items if (e := self._put(kv.key, kv.value)) is not None]
        self.revision = revision
        return errors

    def apply(self, events: Iterable[WatchEvent]) -> list[ResourceError]:
        errors: list[ResourceError] = []
        for ev in events:
            if ev.type is EventType.DELETE:
                self.by_key.pop(ev.key, None)
            else:
                error = self._put(ev.key, ev.value)
                if error is not None:
                    errors.append(error)
            self.revision = max(self.revision, ev.mod_revision)
        return errors

    def _put(self, key: str, value: bytes) -> ResourceError | None:
        try:
            resource = decode(key, value)
        except ResourceError as exc:
            self.by_key.pop(key, None)
            return exc
        if resource is None or (
            self.node is not None
            and isinstance(resource, WorkloadEndpoint)
            and resource.node != self.node
        ):
            self.by_key.pop(key, None)
        else:
            self.by_key[key] = resource
        return None

    def snapshot(self) -> Snapshot:
        ordered = (self.by_key[k] for k in sorted(self.by_key))
        return Snapshot.of(ordered, source=self.source, revision=self.revision)


class CalicoSource:
    def __init__(
        self,
        kv: KVStore,
        *,
        node: str | None = None,
        blocks: bool = False,
        kinds: tuple[str, ...] = _PLANNER_KINDS,
        affinities: bool = True,
        debounce: float = 0.1,
        max_delay: float = 0.5,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.kv = kv
        self.node = node
        self.prefixes = watched_prefixes(node, blocks=blocks, kinds=kinds, affinities=affinities)
        self.debounce = debounce
        self.max_delay = max_delay
        self.backoff = backoff
        self.state = SnapshotState(source=kv.url, node=node)
        self._last: Snapshot | None = None
        self._closed = asyncio.Event()
        self._reported: dict[str, str] = {}
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._following = False

    # --- SnapshotSource ----------------------------------------------------------------

    async def load(self) -> Snapshot:
        """The current state; raises Unavailable (a DatastoreError) if the store is down."""
        listing = await self.kv.list(*self.prefixes)
        if self._following:
            # A reload while the watch runs: a separate read, so events still queued
            # for the followed state are never applied over a newer list.
            fresh = SnapshotState(source=self.kv.url, node=self.node)
            self._report(fresh.reset(listing.items, listing.revision))
            return fresh.snapshot()
        self._report(self.state.reset(listing.items, listing.revision))
        self._last = self.state.snapshot()
        return self._last

    async def updates(self) -> AsyncIterator[Snapshot]:
        self._following = True
        if self._last is None:
            snapshot = await self._resync()
            if snapshot is None:
                return
            yield snapshot
        while not self._closed.is_set():
            try:
                async for snapshot in self._follow():
                    yield snapshot
            except Compacted as exc:
                log.warning(
                    "datastore watch compacted; resyncing from a fresh list",
                    datastore=self.kv.url, error=str(exc),
                )
            except Unavailable as exc:
                self._outage(exc)
            except DatastoreError as exc:
                log.warning("datastore watch failed; resyncing", datastore=self.kv.url,
                            error=str(exc))
            if self._closed.is_set():
                return
            snapshot = await self._resync()
            if snapshot is not None:
                changed = self._changed(snapshot)
                if changed is not None:
                    yield changed

    async def close(self) -> None:
        self._closed.set()
        await self.kv.close()

    # --- watching ----------------------------------------------------------------------

    async def _follow(self) -> AsyncIterator[Snapshot]:
        """Snapshots from watch events until the watch fails (raises) or close()."""
        queue: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue()
        start = self.state.revision + 1

        async def pump(prefix: str) -> None:
            watch = self.kv.watch(prefix, start)
            try:
                async for event in watch:
                    queue.put_nowait(event)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # handed to the consumer, which resyncs
                queue.put_nowait(exc)
                return
            finally:
                with contextlib.suppress(Exception):
                    await watch.aclose()  # type: ignore[attr-defined]
            queue.put_nowait(Unavailable(f"{self.kv.url}: watch on {prefix} ended"))

        tasks = [asyncio.ensure_future(pump(p)) for p in self.prefixes]
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, closer}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    return
                batch = [getter.result()]
                batch.extend(await self._more(queue))
                for item in batch:
                    if isinstance(item, BaseException):
                        # Apply what came before the failure, then fail over to a resync.
                        self._apply([e for e in batch if isinstance(e, WatchEvent)])
                        raise item
                changed = self._apply([e for e in batch if isinstance(e, WatchEvent)])
                if changed is not None:
                    yield changed
        finally:
            closer.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _more(
        self, queue: asyncio.Queue[WatchEvent | BaseException]
    ) -> list[WatchEvent | BaseException]:
        """Debounce: more events until `debounce` passes quietly (`max_delay` at most)."""
        out: list[WatchEvent | BaseException] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while True:
            remaining = min(self.debounce, deadline - loop.time())
            if remaining <= 0:
                return out
            try:
                item = await asyncio.wait_for(queue.get(), remaining)
            except TimeoutError:
                return out
            out.append(item)
            if isinstance(item, BaseException):
                return out

    def _apply(self, events: list[WatchEvent]) -> Snapshot | None:
        if not events:
            return None
        self._report(self.state.apply(events))
        return self._changed(self.state.snapshot())

    def _changed(self, snapshot: Snapshot) -> Snapshot | None:
        """`snapshot` if its resources differ from the last one yielded, else None."""
        last = self._last
        self._last = snapshot
        if last is not None and last.by_kind == snapshot.by_kind:
            return None
        return snapshot

    # --- resync and outages ------------------------------------------------------------

    async def _resync(self) -> Snapshot | None:
        """A fresh list, retried with backoff while the store is unreachable; None once
        closed."""
        delay, ceiling = self.backoff
        while not self._closed.is_set():
            try:
                listing = await self.kv.list(*self.prefixes)
            except Unavailable as exc:
                self._outage(exc)
            except DatastoreError as exc:
                log.warning("datastore list failed; retrying", datastore=self.kv.url,
                            error=str(exc))
            else:
                self._report(self.state.reset(listing.items, listing.revision))
                self._recovered()
                snapshot = self.state.snapshot()
                if self._last is None:
                    self._last = snapshot
                return snapshot
            # Jitter keeps many nodes from hammering a recovering store in step.
            wait = delay * random.uniform(0.8, 1.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), wait)
            delay = min(delay * 2, ceiling)
        return None

    def _outage(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = self._outage_logged = now
            log.warning(
                "datastore unreachable; keeping the last known configuration and retrying",
                datastore=self.kv.url, error=str(exc),
            )
        elif now - self._outage_logged >= _REPEAT_OUTAGE_LOG:
            self._outage_logged = now
            log.warning(
                "datastore still unreachable", datastore=self.kv.url, error=str(exc),
                seconds=round(now - self._outage_since),
            )

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "datastore reachable again; resynced", datastore=self.kv.url,
                seconds=round(time.monotonic() - self._outage_since),
                revision=self.state.revision,
            )
            self._outage_since = None

    def _report(self, errors: list[ResourceError]) -> None:
        for error in errors:
            key = error.source or "?"
            if self._reported.get(key) == error.message:
                continue  # the same bad value, seen again on a resync
            self._reported[key] = error.message
            log.warning("skipping invalid datastore value", key=key, error=error.message)


def open_calico_source(
    datastore: str | DatastoreConfig,
    node: str | None = None,
    *,
    blocks: bool = False,
    debounce: float = 0.1,
) -> CalicoSource:
    """The source for `sqlite:///PATH` or an etcd datastore (`etcd://` or `http://`
    plaintext, `https://` over TLS), given as a URL or a DatastoreConfig with its TLS and auth
    settings. With `node`, only that node's block affinities are read."""
    return CalicoSource(open_kv(datastore), node=node, blocks=blocks, debounce=debounce)
