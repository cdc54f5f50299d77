"""Poll a condition until it holds or a deadline passes (no bare sleeps in tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline; an AssertionError so pytest reports it."""


def wait_for(
    condition: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Exceptions of the types in `ignore` count as "not yet" (a daemon's control socket that is
    not up, say); the last one is named in the timeout error. `message` may be a callable so the
    error can describe the state at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    last_error: BaseException | None = None
    while True:
        try:
            last = condition()
            last_error = None
        except ignore as exc:
            last, last_error = None, exc
        if last:
            return last
        now = time.monotonic()
        if now >= deadline:
            text = message() if callable(message) else message
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last!r}"
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {text} ({detail})")
        time.sleep(min(interval, deadline - now))


def holds_for(
    condition: Callable[[], object],
    duration: float,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> None:
    """Check that `condition` stays truthy for `duration` seconds (to show something does NOT
    happen: a route is not learned, a session stays up); raise at the first falsy result."""
    deadline = time.monotonic() + duration
    while True:
        value = condition()
        if not value:
            text = message() if callable(message) else message
            raise WaitTimeout(f"{text} stopped holding (value: {value!r})")
        now = time.monotonic()
        if now >= deadline:
            return
        time.sleep(min(interval, deadline - now))
