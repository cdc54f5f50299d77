"""bgpd's process: thin asyncio shells around the pure rooms.

`app` wires and runs everything (`Daemon`, `run_daemon`), `reconfig` turns plans into
sessions (and checks a snapshot as the daemon would start it: `plan_of`, `load_plan`),
`views` answers the control API, `service` speaks systemd's notify protocol and probes the
event loop's lag. The routing itself is the speaker's (bgpd/speaker).
"""

from bgpd.daemon.app import Daemon, run_daemon
from bgpd.daemon.errors import ConfigError
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.reconfig import load_plan, plan_of

__all__ = ["ConfigError", "Daemon", "DaemonOptions", "load_plan", "plan_of", "run_daemon"]
