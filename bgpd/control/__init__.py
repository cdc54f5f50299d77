"""The control API: JSON over a unix socket, served from the daemon, spoken by bgpctl.

`api` holds the records and the `DaemonView` protocol the daemon implements, `handlers` turns a
request into a response without any I/O, and `server` is the asyncio shell around them.
"""

from bgpd.control.api import DaemonStatus, DaemonView, PeerStatus, RouteEntry
from bgpd.control.errors import ControlError, ControlSocketInUse, RequestError

__all__ = [
    "ControlError",
    "ControlSocketInUse",
    "DaemonStatus",
    "DaemonView",
    "PeerStatus",
    "RequestError",
    "RouteEntry",
]
