"""How much route work to do between yields to the event loop, and how far apart write-outs
go (DESIGN principle 5). Pure: the shell passes in the clock readings (`now`, the loop's
monotonic time; `cpu`, the loop thread's CPU clock) and asks for deadlines.

Slices. Route work runs for at least `slice_min` seconds per slice, or for as much CPU time
as the loop has lately spent on everything else between two slices if that is more, up to
`slice_max`. Route work thus gets about half of a loop that stays busy: with thousands of
sessions a loop iteration's socket writes alone can take 100 ms, and a fixed slice per
iteration would starve the queue (and every write-out would then carry less). "Lately" is a
moving average (1/`smoothing` of each new gap), so one long callback does not lengthen the
next slice and the lag a timer sees with it. CPU time, not wall time: time taken from the
loop while this process was not even running (a busy machine) is not time other callbacks
used.

Write-outs. After a write-out of route changes that made N sends (update-group bytes to a
member), the next waits N x `gap_per_send` seconds (at most `gap_max`), changes meanwhile
joining it: a handful of peers hear of a change at once, while a reflector with thousands
of clients spends at most about a third of its time in send calls (FRR scales its
update-group coalesce time with the peer count for the same reason).
"""

from __future__ import annotations

from dataclasses import dataclass

SLICE_MIN = 0.002
SLICE_MAX = 0.05
SMOOTHING = 8
GAP_PER_SEND = 20e-6
GAP_MAX = 0.25


@dataclass(slots=True)
class Pacer:
    slice_min: float = SLICE_MIN
    slice_max: float = SLICE_MAX
    smoothing: int = SMOOTHING
    gap_per_send: float = GAP_PER_SEND
    gap_max: float = GAP_MAX
    # The moving average of CPU seconds spent elsewhere between two slices, and when the
    # last slice ended (on the CPU clock).
    elsewhere: float = 0.0
    slice_ended: float = 0.0
    last_write: float = float("-inf")
    gap: float = 0.0

    def begin(self, cpu: float) -> None:
        """The queue has work again after being empty: no history of slices yet."""
        self.elsewhere = 0.0
        self.slice_ended = cpu

    def slice_length(self, cpu: float) -> float:
        """Seconds of route work for the slice starting now."""
        self.elsewhere += (cpu - self.slice_ended - self.elsewhere) / self.smoothing
        return min(self.slice_max, max(self.slice_min, self.elsewhere))

    def slice_done(self, cpu: float) -> None:
        self.slice_ended = cpu

    def wrote(self, now: float, sends: int) -> None:
        """A write-out happened at `now` and made `sends` sends."""
        self.last_write = now
        self.gap = min(self.gap_max, sends * self.gap_per_send)

    def write_at(self, now: float) -> float:
        """The earliest time the next write-out may run."""
        return max(now, self.last_write + self.gap)
