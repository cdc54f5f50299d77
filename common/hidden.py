"""Importing a library without an optional module it would load but we never use.

Some libraries import a module at their own import time for a feature they treat as
optional (asyncio's `ssl` for TLS transports, structlog's `colorama` for Windows consoles)
and work without it. `hidden(...)` makes those names unimportable while such a library is
imported, then importable again: whoever needs the module later imports it as usual.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def hidden(*names: str) -> Iterator[None]:
    """`import NAME` raises ImportError inside the block, for each NAME not imported yet."""
    hide = [n for n in names if n not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in hide:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
