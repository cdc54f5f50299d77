"""The control API: JSON over a unix socket, served from the daemon, spoken by bgpctl.

`api` holds the `DaemonView` protocol the daemon implements, `handlers` turns a request into a
response without any I/O, and `server` is the asyncio shell around them. The records they
carry are in `bgpd.status.records`, written and read by the generic `bgpd.status.codec`.
"""

from bgpd.control.api import DaemonView
from bgpd.control.errors import ControlError, ControlSocketInUse, RequestError

__all__ = ["ControlError", "ControlSocketInUse", "DaemonView", "RequestError"]
