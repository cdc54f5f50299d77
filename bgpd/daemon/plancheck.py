"""A snapshot checked as the daemon would start it, without starting anything: the plan, and
every session's settings and password. `bgpd --check` and `bgpd plan` use it without the
event loop, the sessions' drivers or the speaker; the running daemon (`reconfig`) checks
every new plan with it too.
"""

from __future__ import annotations

import ipaddress

from bgpd.daemon.errors import ConfigError
from bgpd.daemon.options import DaemonOptions
from bgpd.daemon.secrets import SecretError, read_secret
from bgpd.plan.peering import PeeringPlan, PeerSpec, compute
from bgpd.session.settings import PeerSettings
from bgpd.wire.family import Family
from bgpd.wire.messages import ADD_PATH_BOTH
from calico.snapshot import Snapshot
from calico.source import file_path
from calico.store.etcdconfig import DatastoreConfig


def datastore_path(url: str | DatastoreConfig) -> str:
    """The file of a `file:///PATH.yaml` datastore URL."""
    path = file_path(url)
    if path is None:
        raise ConfigError(f"not a file datastore URL {url!r}: use file:///PATH.yaml")
    return path


def load_plan(options: DaemonOptions) -> PeeringPlan:
    """The plan from a file datastore, read synchronously (`bgpd --check`)."""
    # The YAML reader only for a file (it compiles a large pattern as it loads: tens of ms).
    from calico.file import load_file

    return plan_of(load_file(datastore_path(options.datastore)), options)


def plan_of(snapshot: Snapshot, options: DaemonOptions) -> PeeringPlan:
    """The node's plan from a snapshot, checked as the daemon would start it: every
    session's settings and password resolve. Raises ConfigError / PlanError."""
    plan = compute(snapshot, options.node, options.env)
    if plan.node_ipv4 is None and plan.node_ipv6 is None:
        raise ConfigError(
            f"{options.datastore}: Node {options.node!r}: spec.bgp: no ipv4Address or "
            "ipv6Address for this node"
        )
    for spec in plan.sessions:
        # Every session is checked before anything starts: no half-configured daemon.
        password = resolve_password(spec, options.secrets_dir)
        try:
            peer_settings(spec, int(ipaddress.IPv4Address(plan.router_id)), password)
        except ValueError as exc:
            raise ConfigError(f"{options.datastore}: session {spec.name}: {exc}") from None
    return plan


def resolve_password(spec: PeerSpec, secrets_dir: str | None) -> str | None:
    """The TCP MD5 password of a session: its `secretKeyRef` read as the file NAME/KEY under
    `secrets_dir` (the layout of a mounted Kubernetes secret; see secrets.py)."""
    ref = spec.password
    if ref is None:
        return None
    if secrets_dir is None:
        raise ConfigError(
            f"session {spec.name}: password secretKeyRef {ref.name}/{ref.key} needs "
            "--secrets-dir"
        )
    try:
        return read_secret(secrets_dir, ref)
    except SecretError as exc:
        raise ConfigError(f"session {spec.name}: password {exc}") from None


def peer_settings(spec: PeerSpec, router_id: int, password: str | None) -> PeerSettings:
    families = frozenset({Family.of_label(spec.family)})
    # Calico's `add paths on`: receive and send every path, each under its own id.
    add_path = tuple((f, ADD_PATH_BOTH) for f in Family if f in families) if spec.add_path else ()
    return PeerSettings(
        name=spec.name,
        peer_address=spec.peer_address,
        peer_port=spec.peer_port,
        peer_as=spec.peer_as,
        local_as=spec.local_as,
        router_id=router_id,
        local_address=spec.source_address,
        passive=spec.passive,
        hold_time=spec.hold_time,
        keepalive_time=spec.keepalive_time,
        connect_retry_time=float(spec.connect_retry_time),
        ttl_security=spec.multihop if spec.ttl_security else None,
        multihop=None if spec.ttl_security else spec.multihop,
        families=families,
        graceful_restart_time=spec.max_restart_time,
        password=password,
        add_path=add_path,
    )
