"""The file datastore as a SnapshotSource: the YAML file is read whole at start and again
whenever it changes. A file cannot be watched portably without a dependency, so its status
(inode, size, modification time) is polled, once a second by default; a change is read once
the status has stayed the same for one short debounce interval, so an editor's half-written
save is not read. A bad new file is logged (its one-line error) and the last good state kept.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from calico.errors import DatastoreError
from calico.file import load_file
from calico.snapshot import Snapshot
from common.log import get_logger

__all__ = ["FileSource"]

log = get_logger("calico.datastore")

_Stamp = tuple[int, int, int, int] | None


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _wake(waiter: asyncio.Future[_Stamp]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class FileSource:
    """file:///PATH.yaml."""

    def __init__(self, path: str, *, interval: float = 1.0, debounce: float = 0.2) -> None:
        self.path = path
        self.interval = interval
        self.debounce = debounce
        self._stamp: _Stamp = None
        self._last: Snapshot | None = None
        self._closed = False
        self._waiter: asyncio.Future[_Stamp] | None = None

    async def load(self) -> Snapshot:
        stamp = _stamp(self.path)
        snapshot = await asyncio.to_thread(load_file, self.path)
        self._stamp, self._last = stamp, snapshot
        return snapshot

    async def updates(self) -> AsyncIterator[Snapshot]:
        if self._stamp is None:
            self._stamp = _stamp(self.path)
        while not self._closed:
            stamp = await self._next_stamp()
            if stamp is None:
                return
            # Debounce: read only once the file has stopped changing.
            while True:
                if await self._wait(self.debounce):
                    return
                again = _stamp(self.path)
                if again == stamp:
                    break
                stamp = again
            self._stamp = stamp
            try:
                snapshot = await asyncio.to_thread(load_file, self.path)
            except DatastoreError as exc:
                log.error("datastore change refused; keeping the last good state", error=str(exc))
                continue
            if snapshot == self._last:
                continue
            self._last = snapshot
            yield snapshot

    async def _next_stamp(self) -> _Stamp:
        """The file's status once it differs from the last one read (None: closed). A timer
        alone polls; the task waiting here wakes only for a change (the `wait_for` on an
        Event it replaces made a task and four callbacks of every second)."""
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Stamp] = loop.create_future()
        self._waiter = waiter
        timer: asyncio.TimerHandle | None = None

        def poll() -> None:
            nonlocal timer
            if waiter.done():
                return
            stamp = _stamp(self.path)
            if stamp is not None and stamp != self._stamp:
                waiter.set_result(stamp)
            else:
                timer = loop.call_later(self.interval, poll)

        timer = loop.call_later(self.interval, poll)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    async def _wait(self, seconds: float) -> bool:
        """Sleep; True when the source was closed meanwhile."""
        if self._closed:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Stamp] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._closed

    async def close(self) -> None:
        self._closed = True
        if self._waiter is not None:
            _wake(self._waiter)
