"""The asyncio shell around a `Speaker` (as session/driver.py is around a `Peer`): it feeds in
session events, drives the inbound queue in slices, fires the speaker's deadlines, runs the
paced write-outs, and carries out the speaker's actions against the session drivers, the
kernel and the log.

Per event-loop tick (DESIGN.md "Shape"): session drivers deliver events (`on_event`); a slice
of queued route work (`Pacer.slice_length`, a few milliseconds' worth) runs as one task step,
then yields behind the I/O and timers that fell due meanwhile; the write-out is a timer
callback of its own at the time the pacer allows, writing each group's joined bytes to all
of its members and handing the tick's FIB changes to the kernel as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from bgpd.session.driver import PeerDriver
from bgpd.session.errors import LocalSessionError
from bgpd.session.events import SessionDown, SessionEvent
from bgpd.session.session import count_messages
from bgpd.speaker.actions import (
    Action,
    Broadcast,
    CancelDump,
    Close,
    Dump,
    FibChanges,
    FibConverged,
    Log,
    SetReading,
)
from bgpd.speaker.logs import merge_follow_ups
from bgpd.speaker.speaker import Speaker
from common.log import get_logger

if TYPE_CHECKING:
    from bgpd.kernel.driver import KernelSync  # only with FIB programming (netlink, ctypes)

log = get_logger("bgpd.speaker")

DUMP_BURST = 64 * 1024
"""Bytes of a catch-up written between yields to the event loop."""

cpu_clock: Callable[[], float] = time.thread_time
"""The loop thread's CPU clock (see speaker/pacing.py): time taken from the loop while this
process was not even running (a busy machine) is not time other callbacks used."""


async def behind_due_work(loop: asyncio.AbstractEventLoop) -> None:
    """Yield to the loop and continue only after the I/O that is ready and the timers that
    are due. `asyncio.sleep(0)` would queue the caller first for the next iteration, ahead
    of them, so a timer falling due during one slice of route work would also wait out the
    next slice; as a timer itself, the continuation runs after every earlier-due one."""
    woken = loop.create_future()
    loop.call_at(loop.time(), _wake, woken)
    await woken


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled at shutdown
        future.set_result(None)


class SpeakerDriver:
    """Runs `speaker` on the running loop. `drivers` maps session names to their drivers (the
    daemon keeps it current); `kernel` is None without FIB programming."""

    def __init__(
        self,
        speaker: Speaker,
        drivers: Mapping[str, PeerDriver],
        kernel: KernelSync | None = None,
    ) -> None:
        self.speaker = speaker
        self.drivers = drivers
        self.kernel = kernel
        self._drain_task: asyncio.Task[None] | None = None
        self._write_handle: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._dumps: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    # --- inputs -------------------------------------------------------------------------

    def on_event(self, event: SessionEvent) -> None:
        """A session driver's callback."""
        if self._closed:
            # Shutting down: the speaker hears no more, but a session's end is still its
            # one line (as the speaker would have logged it).
            if isinstance(event, SessionDown):
                peer = self.speaker.peers.get(event.peer)
                address = peer.spec.peer_address if peer is not None else None
                log.info("session down", peer=event.peer, address=address, reason=event.reason)
            return
        self.speaker.receive(event, asyncio.get_running_loop().time())
        if self.speaker.has_work() and self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        self.settle()

    def settle(self) -> None:
        """Carry out what the speaker asked for, and re-arm the write-out and the timer.
        Call after anything fed to the speaker from outside."""
        self._run(self.speaker.take_actions())
        loop = asyncio.get_running_loop()
        if self._write_handle is None:
            due = self.speaker.write_due(loop.time())
            if due is not None:
                # A timer even when that is now: it then runs after the timers already due
                # and before the inbound queue's next slice (see `behind_due_work`).
                self._write_handle = loop.call_at(due, self._scheduled_write)
        when = self.speaker.next_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if when is None else loop.call_at(when, self._on_timer)
            self._timer_at = when

    def write_now(self) -> None:
        """Write out what is pending at once (shutdown, reconfiguration)."""
        if self._write_handle is not None:
            self._write_handle.cancel()
            self._write_handle = None
        self.speaker.write_out(asyncio.get_running_loop().time())
        self.settle()

    async def close(self) -> None:
        self._closed = True
        for handle in (self._write_handle, self._timer):
            if handle is not None:
                handle.cancel()
        self._write_handle = self._timer = None
        tasks = [t for t in (self._drain_task, *self._dumps.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._dumps.clear()

    # --- the loop's work ----------------------------------------------------------------

    async def _drain(self) -> None:
        """Work through the inbound queue, yielding to the loop after each slice, so
        keepalives, timers and the control socket are served on time during any burst."""
        loop = asyncio.get_running_loop()
        speaker = self.speaker
        pacer = speaker.pacer
        pacer.begin(cpu_clock())
        try:
            while speaker.has_work():
                deadline = loop.time() + pacer.slice_length(cpu_clock())
                while True:  # at least one item per slice
                    speaker.step(loop.time())
                    if not speaker.has_work() or loop.time() >= deadline:
                        break
                speaker.slice_done()
                self.settle()
                pacer.slice_done(cpu_clock())
                await behind_due_work(loop)
        finally:
            self._drain_task = None

    def _scheduled_write(self) -> None:
        self._write_handle = None
        try:
            self.speaker.write_out(asyncio.get_running_loop().time())
            self.settle()
        except Exception:  # route work must go on (DESIGN principle 7)
            log.exception("error writing out route changes")

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.speaker.handle_timer(asyncio.get_running_loop().time())
        self.settle()

    # --- actions ------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for action in merge_follow_ups(actions):
            if isinstance(action, Broadcast):
                self._broadcast(action)
            elif isinstance(action, FibChanges):
                if self.kernel is not None:
                    for change in action.changes:
                        self.kernel.best_changed(change)
                    if action.program:
                        self.kernel.flush()
            elif isinstance(action, Log):
                fields = dict(action.fields)
                if action.traceback is not None:
                    fields["exception"] = action.traceback
                getattr(log, action.level)(action.event, **fields)
            elif isinstance(action, SetReading):
                if (driver := self.drivers.get(action.peer)) is not None:
                    driver.set_reading(action.reading)
            elif isinstance(action, Dump):
                self._cancel_dump(action.peer)
                if (driver := self.drivers.get(action.peer)) is not None:
                    task = asyncio.get_running_loop().create_task(
                        self._dump(driver, action.chunks)
                    )
                    self._dumps[action.peer] = task
                    task.add_done_callback(functools.partial(self._dump_done, action.peer))
            elif isinstance(action, CancelDump):
                self._cancel_dump(action.peer)
            elif isinstance(action, Close):
                if (driver := self.drivers.get(action.peer)) is not None:
                    driver.close_for(action.notification, action.hold_down)
            elif isinstance(action, FibConverged):
                if self.kernel is not None:
                    self.kernel.converged()
            else:
                raise TypeError(f"unknown speaker action {action!r}")

    def _broadcast(self, action: Broadcast) -> None:
        # The group's bytes go to every member: count their messages once, not per peer.
        counts: dict[int, int] = {}
        drivers = self.drivers
        out = action.out
        for name in action.members:
            driver = drivers.get(name)
            if driver is None:
                continue
            for data in out.for_member(name):
                n = counts.get(id(data))
                if n is None:
                    n = counts[id(data)] = count_messages(data)
                try:
                    driver.send(data, n)
                except LocalSessionError:
                    # Its session just ended: the SessionDown waiting in the inbound queue
                    # takes it out of the group.
                    break

    def _cancel_dump(self, name: str) -> None:
        task = self._dumps.pop(name, None)
        if task is not None:
            task.cancel()

    def _dump_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._dumps.get(name) is task:
            del self._dumps[name]

    @staticmethod
    async def _dump(driver: PeerDriver, chunks: Iterator[tuple[bytes, int]]) -> None:
        # Principle 5: a catch-up yields to the loop every DUMP_BURST bytes (the chunks are
        # shared bytes, so sending one costs a reference, not an encode).
        burst = 0
        for chunk, count in chunks:
            try:
                driver.send(chunk, count)
            except LocalSessionError:
                return  # the session ended; its SessionDown is on its way through the queue
            burst += len(chunk)
            if burst >= DUMP_BURST:
                burst = 0
                await asyncio.sleep(0)
                await driver.drained()
