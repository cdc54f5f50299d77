"""The embedded store: `sqlite:///PATH`, a SQLite file with etcd's key model.

    kv      key -> value, create_revision, mod_revision, version, lease
    events  the revision log: (revision, seq) -> put/delete, key, value; watches read it
    leases  id -> ttl, expiry (wall-clock seconds, so every process on the machine agrees)
    meta    revision (the store's current revision), compact_revision

Several processes may share the file (WAL mode). Every write is one `BEGIN IMMEDIATE`
transaction, which takes SQLite's write lock before reading, so a compare-and-swap reads and
writes with no other writer in between: no update is lost. Expired leases are reaped (their
keys deleted and logged as delete events) whenever any client writes, reads or polls a
watch, so a watcher sees a dead node's keys go within a poll interval.

Watches poll the log: one poller per `SqliteKV` reads `meta.revision` for all its watches
(reaping expired leases as it goes), and each watch reads its log rows only when it moved.
The poller reads every `poll_interval` seconds after a change and backs off, doubling, to
`max_poll_interval` while nothing changes (`next_poll_interval`): an idle process does one
read a second, not ten per watch. The log is compacted automatically to the last
`KEEP_REVISIONS` revisions; a watcher that fell further behind gets `Compacted`.

sqlite3 calls block (briefly, or for up to `busy_timeout` under write contention), so the
async `SqliteKV` runs each one in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager

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

__all__ = ["SqliteKV", "SqliteStore", "open_url"]

KEEP_REVISIONS = 10_000
_COMPACT_EVERY = 1_000
_PUT, _DELETE = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl INTEGER NOT NULL,
    expiry REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compact_revision', 0);
"""


class SqliteStore:
    """The blocking store: one connection, serialized by a lock (threads share it)."""

    def __init__(
        self, path: str, *, busy_timeout: float = 10.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.clock = clock
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Idempotent statements, each in its own transaction: racing creators agree.
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"sqlite://{path}: {exc}") from None
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        # Under the lock: closing a connection another thread is using crashes the process.
        with self._lock:
            self._closed = True
            self._db.close()

    # --- transactions ------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: the write lock is held from the first read, so reads inside
        see what the writes will overwrite."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    # --- reading -----------------------------------------------------------------------

    def revision(self) -> int:
        with self._lock, self._errors():
            return self._meta(self._db, "revision")

    def poll(self) -> int:
        """Reap expired leases, then the current revision (what a watch poll reads)."""
        with self._lock, self._errors():
            self._reap(self._db)
            return self._meta(self._db, "revision")

    def get(self, key: str) -> KeyValue | None:
        with self._lock, self._errors():
            self._reap(self._db)
            row = self._db.execute(
                "SELECT key, value, create_revision, mod_revision, version, lease "
                "FROM kv WHERE key = ?",
                (key,),
            ).fetchone()
            return None if row is None else KeyValue(*row)

    def list_prefixes(self, prefixes: Sequence[str]) -> Listing:
        with self._lock, self._errors():
            self._reap(self._db)
            with self._read() as db:
                revision = self._meta(db, "revision")
                items: list[KeyValue] = []
                for prefix in sorted(set(prefixes)):
                    items.extend(
                        KeyValue(*row)
                        for row in db.execute(
                            "SELECT key, value, create_revision, mod_revision, version, lease "
                            "FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                            (prefix, prefix_end(prefix)),
                        )
                    )
        items.sort(key=lambda kv: kv.key)
        return Listing(tuple(items), revision)

    def events(self, prefix: str, start_revision: int) -> tuple[list[WatchEvent], int]:
        """Changes under `prefix` from `start_revision` on (at most a window of revisions),
        and the revision the next call should start from."""
        with self._lock, self._errors():
            self._reap(self._db)
            with self._read() as db:
                current = self._meta(db, "revision")
                compacted = self._meta(db, "compact_revision")
                if start_revision < compacted:
                    raise Compacted(start_revision, compacted)
                if start_revision > current:
                    return [], start_revision
                last = min(current, start_revision + 999)
                rows = db.execute(
                    "SELECT revision, type, key, value FROM events "
                    "WHERE revision >= ? AND revision <= ? AND key >= ? AND key < ? "
                    "ORDER BY revision, seq",
                    (start_revision, last, prefix, prefix_end(prefix)),
                ).fetchall()
        out = [
            WatchEvent(EventType.PUT if t == _PUT else EventType.DELETE, k, v, r)
            for r, t, k, v in rows
        ]
        return out, last + 1

    # --- writing -----------------------------------------------------------------------

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        with self._lock, self._errors():
            self._reap(self._db)
            with self._write() as db:
                current = self._meta(db, "revision")
                for c in compares:
                    row = db.execute(
                        "SELECT mod_revision FROM kv WHERE key = ?", (c.key,)
                    ).fetchone()
                    if (row[0] if row else 0) != c.mod_revision:
                        return TxnResult(False, current)
                for op in ops:
                    if isinstance(op, Put) and op.lease and not db.execute(
                        "SELECT 1 FROM leases WHERE id = ?", (op.lease,)
                    ).fetchone():
                        raise LeaseNotFound(f"lease {op.lease} not found")
                revision = self._apply(db, current, ops)
            return TxnResult(True, revision)

    def _apply(self, db: sqlite3.Connection, current: int, ops: Sequence[Op]) -> int:
        """Run the ops at revision current+1; returns the revision after (unchanged if the
        ops changed nothing, as etcd does for a delete of an absent key)."""
        revision = current + 1
        seq = 0
        for op in ops:
            if isinstance(op, Put):
                row = db.execute(
                    "SELECT create_revision, version FROM kv WHERE key = ?", (op.key,)
                ).fetchone()
                created, version = (row[0], row[1] + 1) if row else (revision, 1)
                db.execute(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)",
                    (op.key, op.value, created, revision, version, op.lease),
                )
                db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    (revision, seq, _PUT, op.key, op.value),
                )
                seq += 1
            elif db.execute("DELETE FROM kv WHERE key = ?", (op.key,)).rowcount:
                db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    (revision, seq, _DELETE, op.key, b""),
                )
                seq += 1
        if seq == 0:
            return current
        db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        if revision % _COMPACT_EVERY == 0:
            self._compact(db, revision - KEEP_REVISIONS)
        return revision

    def compact(self, revision: int) -> None:
        with self._lock, self._errors(), self._write() as db:
            current = self._meta(db, "revision")
            if revision > current:
                raise DatastoreError(f"cannot compact to {revision}: the store is at {current}")
            self._compact(db, revision)

    def _compact(self, db: sqlite3.Connection, revision: int) -> None:
        if revision <= self._meta(db, "compact_revision"):
            return
        db.execute("DELETE FROM events WHERE revision < ?", (revision,))
        db.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,))

    # --- leases ------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        if ttl <= 0:
            raise ValueError("a lease needs a positive TTL")
        with self._lock, self._errors(), self._write() as db:
            cur = db.execute(
                "INSERT INTO leases (ttl, expiry) VALUES (?, ?)", (ttl, self.clock() + ttl)
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def keepalive(self, lease: int) -> int:
        with self._lock, self._errors():
            self._reap(self._db)
            with self._write() as db:
                row = db.execute("SELECT ttl FROM leases WHERE id = ?", (lease,)).fetchone()
                if row is None:
                    raise LeaseNotFound(f"lease {lease} not found (expired or revoked)")
                db.execute(
                    "UPDATE leases SET expiry = ? WHERE id = ?", (self.clock() + row[0], lease)
                )
                return int(row[0])

    def revoke(self, lease: int) -> None:
        with self._lock, self._errors(), self._write() as db:
            self._end_leases(db, [lease])

    def _reap(self, db: sqlite3.Connection) -> None:
        """Delete expired leases and their keys (logged). Reads first, so the common case
        takes no write lock."""
        now = self.clock()
        if db.execute("SELECT 1 FROM leases WHERE expiry < ? LIMIT 1", (now,)).fetchone() is None:
            return
        with self._write():
            expired = [r[0] for r in db.execute("SELECT id FROM leases WHERE expiry < ?", (now,))]
            self._end_leases(db, expired)

    def _end_leases(self, db: sqlite3.Connection, leases: Sequence[int]) -> None:
        keys: list[str] = []
        for lease in leases:
            keys.extend(r[0] for r in db.execute("SELECT key FROM kv WHERE lease = ?", (lease,)))
            db.execute("DELETE FROM leases WHERE id = ?", (lease,))
        if keys:
            self._apply(db, self._meta(db, "revision"), [Delete(k) for k in sorted(keys)])

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _meta(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0])

    @contextmanager
    def _errors(self) -> Iterator[None]:
        if self._closed:
            raise Unavailable(f"sqlite://{self.path}: the store is closed")
        try:
            yield
        except sqlite3.OperationalError as exc:
            # "database is locked" past busy_timeout, a vanished file, a full disk.
            raise Unavailable(f"sqlite://{self.path}: {exc}") from None
        except sqlite3.Error as exc:
            raise DatastoreError(f"sqlite://{self.path}: {exc}") from None


MAX_POLL_INTERVAL = 1.0
"""Seconds between revision reads once nothing has changed for a while."""


def next_poll_interval(current: float, changed: bool, base: float, cap: float) -> float:
    """The wait before the next revision read: `base` right after a change, else twice the
    last one, up to `cap`."""
    return base if changed else max(base, min(current * 2, cap))


class SqliteKV(KVStore):
    """The async face of SqliteStore: each call in a worker thread."""

    def __init__(
        self,
        path: str,
        *,
        poll_interval: float = 0.1,
        max_poll_interval: float = MAX_POLL_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = f"sqlite://{path}"
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.store = SqliteStore(path, clock=clock)
        self._closed = False
        # The shared poller: the last revision it read, the watches waiting for a later one.
        self._revision = -1
        self._waiters: list[asyncio.Future[None]] = []
        self._poller: asyncio.Task[None] | None = None

    async def get(self, key: str) -> KeyValue | None:
        return await asyncio.to_thread(self.store.get, key)

    async def list(self, *prefixes: str) -> Listing:
        return await asyncio.to_thread(self.store.list_prefixes, prefixes)

    async def revision(self) -> int:
        return await asyncio.to_thread(self.store.revision)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        next_revision = start_revision
        while not self._closed:
            events, next_revision = await asyncio.to_thread(
                self.store.events, prefix, next_revision
            )
            for event in events:
                yield event
            if not events:
                await self._revision_after(next_revision - 1)

    async def _revision_after(self, revision: int) -> None:
        """Wait until the poller has read a revision above `revision` (or the store closes)."""
        loop = asyncio.get_running_loop()
        while not self._closed and self._revision <= revision:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            if self._poller is None:
                self._poller = loop.create_task(self._poll())
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _poll(self) -> None:
        interval = self.poll_interval
        try:
            while self._waiters and not self._closed:
                await asyncio.sleep(interval)
                try:
                    revision = await asyncio.to_thread(self.store.poll)
                except Exception as exc:  # the watches raise it (Unavailable, mostly)
                    waiters, self._waiters = self._waiters, []
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    return
                changed = revision != self._revision
                self._revision = revision
                interval = next_poll_interval(
                    interval, changed, self.poll_interval, self.max_poll_interval
                )
                if changed:
                    waiters, self._waiters = self._waiters, []
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._poller = None

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        return await asyncio.to_thread(self.store.txn, compares, ops)

    async def grant(self, ttl: int) -> int:
        return await asyncio.to_thread(self.store.grant, ttl)

    async def keepalive(self, lease: int) -> int:
        return await asyncio.to_thread(self.store.keepalive, lease)

    async def revoke(self, lease: int) -> None:
        await asyncio.to_thread(self.store.revoke, lease)

    async def compact(self, revision: int) -> None:
        await asyncio.to_thread(self.store.compact, revision)

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:  # the watches see the store closed and end
                if not waiter.done():
                    waiter.set_result(None)
            if self._poller is not None:
                self._poller.cancel()
            await asyncio.to_thread(self.store.close)


def path_of(url: str) -> str:
    """`sqlite:///var/lib/x.db` -> /var/lib/x.db (the path after the scheme's two slashes)."""
    if not url.startswith("sqlite://") or len(url) <= len("sqlite://"):
        raise DatastoreError(f"not a sqlite URL: {url!r} (use sqlite:///PATH)")
    return url[len("sqlite://") :]


def open_url(url: str) -> SqliteKV:
    return SqliteKV(path_of(url))
