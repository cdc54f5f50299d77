"""What bgpd is told on its command line (bgpd/cli/bgpd_main.py builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bgpd.session.sendlimit import MAX_BUFFERED
from calico.store.etcdconfig import DatastoreConfig


@dataclass(slots=True)
class DaemonOptions:
    node: str
    # A URL, or a DatastoreConfig carrying etcd's TLS and auth settings; str() is the URL.
    datastore: str | DatastoreConfig
    control_socket: str
    listen_address: str | None = None
    listen_port: int | None = None
    fib: bool = True
    secrets_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Per-peer limits (issue 9): accepted prefixes (None: unlimited), the Idle time after a
    # Cease 1, and the bytes queued for a peer that does not read before it is reset.
    max_prefixes: int | None = None
    max_prefixes_restart: float = 60.0
    max_send_buffer: int = MAX_BUFFERED
    # Prometheus endpoint, "ADDR:PORT" (None: off).
    metrics_listen: str | None = None
    # BIRD-protocol control sockets (issue 19): IPv4 sessions and routes as BIRD's bird.ctl,
    # IPv6 as bird6.ctl; the same path for both is one socket answering both families.
    bird_socket: str | None = None
    bird6_socket: str | None = None
    bird_dialect: str = "1.6"
    # --log-level / BGPD_LOG_LEVEL; None: BGPConfiguration logSeverityScreen decides.
    log_level: str | None = None

    def bird_sockets(self) -> list[tuple[str, tuple[str, ...]]]:
        """(path, families) of each BIRD socket to serve."""
        if self.bird_socket and self.bird_socket == self.bird6_socket:
            return [(self.bird_socket, ("ipv4", "ipv6"))]
        out: list[tuple[str, tuple[str, ...]]] = []
        if self.bird_socket:
            out.append((self.bird_socket, ("ipv4",)))
        if self.bird6_socket:
            out.append((self.bird6_socket, ("ipv6",)))
        return out
