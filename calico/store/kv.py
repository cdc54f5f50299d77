"""The key-value interface both stores speak: etcd v3 (`etcd.py`) and the embedded SQLite
file (`sqlite.py`). It is etcd's model, cut to what Calico's data needs:

- keys are strings, values bytes; every write bumps one global revision, and each key keeps
  create_revision, mod_revision and version (writes since creation) as etcd does;
- `list` reads every key under some prefixes at one revision (a consistent view);
- `watch` streams the changes under a prefix from a revision on; it raises `Compacted` when
  that history is gone and `Unavailable` when the store went away: list afresh and re-watch;
- writes are transactions guarded by compare-and-swap: `Compare(key, 0)` holds while the key
  is absent (Calico's create: Version==0), `Compare(key, rev)` while its mod_revision is rev
  (Calico's update and delete). A lost race is `TxnResult.succeeded == False`, or `Conflict`
  from the helpers;
- leases: a key put under a lease is deleted (a watched delete event) when it expires.

Nothing here does I/O; the backends do. `open_kv(datastore)` picks one by URL scheme.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from calico.errors import Conflict, DatastoreConfigError
from calico.store.etcdconfig import DatastoreConfig, Given, datastore_config, is_etcd_url

__all__ = [
    "Compare",
    "Delete",
    "EventType",
    "KVStore",
    "KeyValue",
    "Listing",
    "Put",
    "TxnResult",
    "WatchEvent",
    "mutate",
    "open_kv",
    "prefix_end",
]


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change; `mod_revision` is the revision that made it (a delete's own revision).
    A delete carries an empty value."""

    type: EventType
    key: str
    value: bytes
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Listing:
    """Keys read at one revision, sorted by key."""

    items: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds while `key`'s mod_revision equals `mod_revision`; 0 means "absent"."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether every compare held (and so the ops ran), and the store's revision after."""

    succeeded: bool
    revision: int


def prefix_end(prefix: str) -> str:
    """The smallest key above every key that starts with `prefix` (etcd's range_end).
    Keys compare as UTF-8 bytes, which order as code points do."""
    if not prefix:
        raise ValueError("an empty prefix has no end")
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class KVStore(abc.ABC):
    """A connection to one store. The primitives are abstract; the CAS helpers are built
    on `txn` so both backends share their meaning."""

    url: str = ""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def list(self, *prefixes: str) -> Listing:
        """Every key under any of `prefixes`, all read at the same revision."""

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Changes under `prefix` from `start_revision` (inclusive) on, in revision order."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult: ...

    @abc.abstractmethod
    async def pause(self, seconds: float) -> None:
        """Wait `seconds` before trying this store again (a writer that lost a race)."""

    @abc.abstractmethod
    async def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""

    @abc.abstractmethod
    async def keepalive(self, lease: int) -> int:
        """Renew a lease to its full TTL; the TTL. Raises LeaseNotFound once it expired."""

    @abc.abstractmethod
    async def revoke(self, lease: int) -> None:
        """End a lease now, deleting its keys (no error if it is already gone)."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Forget the history before `revision`: watches from earlier raise Compacted."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # --- compare-and-swap helpers ------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write unconditionally; the new revision."""
        return (await self.txn((), (Put(key, value, lease),))).revision

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write `key` only if it is absent; raises Conflict if it exists."""
        result = await self.txn((Compare(key, 0),), (Put(key, value, lease),))
        if not result.succeeded:
            raise Conflict(key, "already exists")
        return result.revision

    async def update(self, key: str, value: bytes, mod_revision: int, *, lease: int = 0) -> int:
        """Write `key` only if it is unchanged since `mod_revision`; raises Conflict."""
        if mod_revision <= 0:
            raise ValueError("update needs the mod_revision the value was read at")
        result = await self.txn((Compare(key, mod_revision),), (Put(key, value, lease),))
        if not result.succeeded:
            raise Conflict(key)
        return result.revision

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        """Delete `key` (only if unchanged since `mod_revision`, when given; raises Conflict
        otherwise). Deleting an absent key without a revision is not an error."""
        compares = () if mod_revision is None else (Compare(key, mod_revision),)
        result = await self.txn(compares, (Delete(key),))
        if not result.succeeded:
            raise Conflict(key)
        return result.revision

    async def __aenter__(self) -> KVStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def mutate(
    kv: KVStore,
    key: str,
    change: Callable[[KeyValue | None], bytes | None],
    *,
    attempts: int = 50,
    lease: int = 0,
) -> int:
    """Read-modify-write `key` with compare-and-swap, retrying when another writer got in
    first: `change(current)` returns the new value, or None to delete. Returns the revision
    written. No update is ever lost: each try writes only over the value it read."""
    for _ in range(attempts):
        current = await kv.get(key)
        new = change(current)
        rev = current.mod_revision if current is not None else 0
        op: Op = Delete(key) if new is None else Put(key, new, lease)
        if new is None and current is None:
            return 0
        result = await kv.txn((Compare(key, rev),), (op,))
        if result.succeeded:
            return result.revision
    raise Conflict(key, f"still contended after {attempts} attempts")


def open_kv(datastore: str | DatastoreConfig) -> KVStore:
    """A store for `sqlite:///PATH`, or for etcd (`etcd://`/`http://` plaintext, `https://`
    over TLS; see etcdconfig.py), given as a URL or as a DatastoreConfig carrying the TLS
    and auth settings. The backend is imported only when used (aetcd pulls in gRPC)."""
    config = datastore if isinstance(datastore, DatastoreConfig) else _config_of(datastore)
    if config.scheme == "sqlite":
        from calico.store import sqlite

        return sqlite.open_url(config.url)
    if config.etcd is not None:
        from calico.store import etcd

        return etcd.open_config(config.etcd)
    raise DatastoreConfigError(
        f"unsupported key-value store URL {config.url!r}: use sqlite:///PATH, "
        "https://HOST:PORT or etcd://HOST:PORT"
    )


def _config_of(url: str) -> DatastoreConfig:
    if is_etcd_url(url):
        return datastore_config(Given(url, "the URL"))
    return DatastoreConfig(url)
