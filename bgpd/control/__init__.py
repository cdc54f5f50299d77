"""The control API: JSON over a unix socket, served from the daemon, spoken by bgpctl.

`api` holds the `DaemonView` protocol the daemon implements, `handlers` turns a request into a
response without any I/O, and `server` is the asyncio shell around them. The records they
carry are in `bgpd.status.records`, written and read by the generic `bgpd.status.codec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgpd.control.api import DaemonView
    from bgpd.control.errors import ControlError, ControlSocketInUse, RequestError

# Imported on first use (PEP 562): the command line reads the BIRD socket's dialects from
# here without loading the API's records.
_LAZY = {
    "DaemonView": "bgpd.control.api",
    "ControlError": "bgpd.control.errors",
    "ControlSocketInUse": "bgpd.control.errors",
    "RequestError": "bgpd.control.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["ControlError", "ControlSocketInUse", "DaemonView", "RequestError"]
