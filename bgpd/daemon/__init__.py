"""bgpd's process: thin asyncio shells around the pure rooms.

`app` wires and runs everything (`Daemon`, `run_daemon`), `reconfig` turns plans into
sessions, `plancheck` checks a snapshot as the daemon would start it (`plan_of`,
`load_plan`), `views` answers the control API, `service` speaks systemd's notify protocol
and probes the event loop's lag. The routing itself is the speaker's (bgpd/speaker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgpd.daemon.app import Daemon, run_daemon
    from bgpd.daemon.errors import ConfigError
    from bgpd.daemon.options import DaemonOptions
    from bgpd.daemon.plancheck import load_plan, plan_of

# Imported on first use (PEP 562): `bgpd --check` needs the options and the plan check, not
# the event loop and every driver that `app` brings.
_LAZY = {
    "Daemon": "bgpd.daemon.app",
    "run_daemon": "bgpd.daemon.app",
    "ConfigError": "bgpd.daemon.errors",
    "DaemonOptions": "bgpd.daemon.options",
    "load_plan": "bgpd.daemon.plancheck",
    "plan_of": "bgpd.daemon.plancheck",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["ConfigError", "Daemon", "DaemonOptions", "load_plan", "plan_of", "run_daemon"]
