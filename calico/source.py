"""Where the daemon's Snapshots come from, and how it hears of changes.

A `SnapshotSource` gives the current Snapshot (`load`) and then a new full Snapshot after
each change (`updates`, debounced). `open_source(url)` picks the backend by the URL's scheme:
file:///PATH.yaml (polled; calico/filewatch.py), sqlite:///PATH and etcd (https:// or etcd://;
calico/watch.py). A backend that cannot read a new state logs it and keeps the last
good one (DESIGN principle 7): `updates` never yields a half-read state and never raises
for bad input.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Protocol

from calico.errors import DatastoreError
from calico.snapshot import Snapshot
from calico.store.etcdconfig import DatastoreConfig

__all__ = ["SnapshotSource", "UnsupportedDatastore", "file_path", "open_source"]


class UnsupportedDatastore(DatastoreError):
    """The datastore URL names a scheme this build cannot read."""


class SnapshotSource(Protocol):
    async def load(self) -> Snapshot:
        """The current state; raises DatastoreError when it cannot be read."""
        ...

    def updates(self) -> AsyncIterator[Snapshot]:
        """A new full Snapshot after each change (several quick changes give one)."""
        ...

    async def close(self) -> None: ...


def file_path(datastore: str | DatastoreConfig) -> str | None:
    """The path of a file datastore (`file:///PATH` or a bare path); None otherwise."""
    url = str(datastore)
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" not in url:
        return url
    return None


def open_source(datastore: str | DatastoreConfig, node: str | None = None) -> SnapshotSource:
    """The source for a datastore, given as a URL or a DatastoreConfig (which carries etcd's
    TLS and auth settings). With `node`, a backend may read only what that node's plan needs
    (its own block affinities). Raises UnsupportedDatastore for an unknown scheme, or a
    scheme whose backend is not part of this build."""
    path = file_path(datastore)
    if path is not None:
        from calico.filewatch import FileSource

        return FileSource(path)
    url = str(datastore)
    scheme = url.split("://", 1)[0]
    if scheme in ("sqlite", "etcd", "http", "https"):
        try:
            watch = importlib.import_module("calico.watch")
        except ModuleNotFoundError as exc:
            if exc.name not in ("calico.watch", "calico"):
                raise
            raise UnsupportedDatastore(
                f"unsupported datastore {url!r}: this build reads file:///PATH.yaml only"
            ) from None
        source: SnapshotSource = watch.open_calico_source(datastore, node)
        return source
    raise UnsupportedDatastore(
        f"unsupported datastore {url!r}: use file:///PATH.yaml, sqlite:///PATH, "
        "https://HOST:PORT or etcd://HOST:PORT"
    )
