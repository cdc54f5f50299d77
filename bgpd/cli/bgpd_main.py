"""`bgpd`: the BGP daemon's command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from bgpd import __version__
from bgpd.control.birdsock.dialect import DIALECTS
from bgpd.session.sendlimit import MAX_BUFFERED
from calico.datastore_args import add_datastore_arguments, datastore_from_args, without_secrets
from calico.errors import DatastoreConfigError
from calico.store.etcdconfig import DatastoreConfig, is_etcd_url

if TYPE_CHECKING:
    from calico.checks import Finding
    from calico.snapshot import Snapshot

# What a command needs is imported when it runs: `bgpd --version` loads no event loop, codec or
# resource model, `bgpd --check` and `bgpd plan` of a file datastore no event loop, and the
# daemon no Prometheus client without --metrics-listen (the modules read here, with their
# imports, were most of a start's CPU and a third of an idle daemon's memory).

DEFAULT_CONTROL_SOCKET = "/run/pybgpd/bgpd.sock"
DATASTORE_ENV = "BGPD_DATASTORE"
DATASTORE_HELP = (
    "where Calico resources live: file:///PATH.yaml, sqlite:///PATH, etcd over TLS "
    "https://HOST:PORT[,HOST:PORT...] or plaintext etcd://HOST:PORT[,...]; env BGPD_DATASTORE, "
    "else ETCD_ENDPOINTS"
)
GC_THRESHOLDS = (50_000, 20, 100)


def _import_asyncio_without_tls() -> None:
    """Import asyncio with the `ssl` module hidden (common/hidden.py).

    asyncio imports `ssl` (and with it OpenSSL's libssl and libcrypto: 4.4 MB resident) for
    TLS transports, which bgpd never asks of it: BGP, BFD, the control socket, the metrics
    endpoint and the sqlite store are plain, and the etcd client does TLS inside gRPC. asyncio
    supports a Python without `ssl` (its TLS calls then fail with a clear error), so a daemon
    whose datastore is not etcd loads it without. (The etcd store imports `ssl` itself, so
    with etcd nothing would be saved and nothing is hidden.)"""
    from common.hidden import hidden

    with hidden("ssl"):
        import asyncio  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bgpd",
        description="BGP speaker for Calico-style node networking. "
        "`bgpd plan --node N --datastore URL [--json]` prints what it would do.",
    )
    p.add_argument("--version", action="version", version=f"pybgpd {__version__}")
    p.add_argument(
        "--node",
        default=os.environ.get("NODENAME") or os.environ.get("BGPD_NODE"),
        help="this node's name (Calico Node resource); env NODENAME",
    )
    add_datastore_arguments(p, help=DATASTORE_HELP)
    p.add_argument(
        "--control-socket",
        default=os.environ.get("BGPD_CONTROL_SOCKET", DEFAULT_CONTROL_SOCKET),
        help=f"unix socket for bgpctl (default {DEFAULT_CONTROL_SOCKET})",
    )
    p.add_argument("--listen-address", help="address to accept BGP on (default: all)")
    p.add_argument("--listen-port", type=int, help="override BGPConfiguration listenPort")
    p.add_argument(
        "--no-fib",
        action="store_true",
        help="program nothing into the kernel (a dedicated route reflector)",
    )
    p.add_argument(
        "--secrets-dir",
        default=os.environ.get("BGPD_SECRETS_DIR"),
        help="directory of secrets: a BGPPeer password secretKeyRef NAME/KEY is the file "
        "DIR/NAME/KEY (a mounted Kubernetes secret)",
    )
    p.add_argument(
        "--max-prefixes",
        type=int,
        metavar="N",
        help="tear a session down (Cease 1) when its peer sends more than N prefixes",
    )
    p.add_argument(
        "--max-prefixes-restart",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="wait this long before such a session may come back (default 60)",
    )
    p.add_argument(
        "--max-send-buffer",
        type=int,
        default=MAX_BUFFERED,
        metavar="BYTES",
        help=f"reset a peer that leaves more than this unread (default {MAX_BUFFERED})",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="ADDR:PORT",
        default=os.environ.get("BGPD_METRICS_LISTEN"),
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (default: off); "
        "env BGPD_METRICS_LISTEN",
    )
    p.add_argument(
        "--bird-socket",
        metavar="PATH",
        default=os.environ.get("BGPD_BIRD_SOCKET"),
        help="also answer BIRD's CLI protocol here for IPv4 (as /var/run/calico/bird.ctl: "
        "birdc, birdcl, calico-node's probes, calicoctl node status); read-only; env "
        "BGPD_BIRD_SOCKET",
    )
    p.add_argument(
        "--bird6-socket",
        metavar="PATH",
        default=os.environ.get("BGPD_BIRD6_SOCKET"),
        help="the same for IPv6 (as bird6.ctl); the same PATH as --bird-socket makes one "
        "socket answer both families; env BGPD_BIRD6_SOCKET",
    )
    p.add_argument(
        "--bird-dialect",
        choices=sorted(DIALECTS),
        default=os.environ.get("BGPD_BIRD_DIALECT", "1.6"),
        help="which BIRD the sockets speak as: 1.6 (calico-node's, whose layout Calico's "
        "parsers expect; the default) or 2",
    )
    p.add_argument(
        "--log-level",
        default=os.environ.get("BGPD_LOG_LEVEL"),
        help="debug, info, warning, error or critical; env BGPD_LOG_LEVEL (default: "
        "BGPConfiguration logSeverityScreen, which is followed as it changes)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="load and validate the configuration, print the plan summary, and exit; "
        "cross-resource mistakes are warnings, or errors (exit 1) where Calico refuses them",
    )
    return p


def build_plan_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bgpd plan",
        description="Print the sessions and export policy this node would run, from the "
        "current resources, without starting anything.",
    )
    p.add_argument(
        "--node",
        default=os.environ.get("NODENAME") or os.environ.get("BGPD_NODE"),
        help="the node's name; env NODENAME",
    )
    add_datastore_arguments(p, help=DATASTORE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def _datastore(prog: str, args: argparse.Namespace) -> DatastoreConfig | int:
    """The datastore the options and environment name, or the exit status after saying why
    there is none."""
    try:
        config = datastore_from_args(args, os.environ, url_env=DATASTORE_ENV)
    except DatastoreConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if config is None:
        print(f"{prog}: --datastore is required (or set {DATASTORE_ENV} or ETCD_ENDPOINTS)",
              file=sys.stderr)
        return 2
    return config


def _load_snapshot(datastore: DatastoreConfig | str, node: str) -> Snapshot:
    """The datastore's current state, once: a file is read as it is, any other store through
    its snapshot source on an event loop of its own."""
    from calico.source import file_path

    path = file_path(datastore)
    if path is not None:
        from calico.file import load_file

        return load_file(path)
    import asyncio

    return asyncio.run(_load_source(datastore, node))


async def _load_source(datastore: DatastoreConfig | str, node: str) -> Snapshot:
    from calico.source import open_source

    source = open_source(datastore, node)
    try:
        return await source.load()
    finally:
        await source.close()


def plan_main(argv: list[str]) -> int:
    args = build_plan_parser().parse_args(argv)
    if not args.node:
        print("bgpd plan: --node is required (or set NODENAME)", file=sys.stderr)
        return 2
    datastore = _datastore("bgpd plan", args)
    if isinstance(datastore, int):
        return datastore
    if not is_etcd_url(str(datastore)):
        _import_asyncio_without_tls()
    from bgpd.plan.errors import PlanError
    from bgpd.plan.peering import compute
    from bgpd.plan.render import plan_dict, plan_text
    from calico import checks
    from calico.errors import DatastoreError
    from common.log import configure_logging

    configure_logging("warning")
    try:
        snapshot = _load_snapshot(datastore, args.node)
        plan = compute(snapshot, args.node, dict(os.environ))
    except (DatastoreError, PlanError) as exc:
        print(f"bgpd plan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        print(json.dumps(plan_dict(plan), indent=2))
    else:
        sys.stdout.write(plan_text(plan))
    return 1 if report_findings("bgpd plan", checks.check(snapshot, args.node)) else 0


def report_findings(prog: str, findings: list[Finding]) -> bool:
    """Print cross-resource findings to stderr, one a line; True when one is an error (a
    configuration Calico refuses: the caller exits 1)."""
    from calico import checks

    for finding in findings:
        print(f"{prog}: {finding}", file=sys.stderr)
    return bool(checks.errors(findings))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:])
    args = build_parser().parse_args(argv)
    if not args.node:
        print("bgpd: --node is required (or set NODENAME)", file=sys.stderr)
        return 2
    datastore = _datastore("bgpd", args)
    if isinstance(datastore, int):
        return datastore
    if not is_etcd_url(str(datastore)):
        _import_asyncio_without_tls()  # before logging: structlog imports asyncio
    from common.log import configure_logging

    try:
        configure_logging(args.log_level or "info")
    except ValueError as exc:
        print(f"bgpd: --log-level: {exc}", file=sys.stderr)
        return 2
    if args.max_prefixes is not None and args.max_prefixes < 1:
        print("bgpd: --max-prefixes must be at least 1", file=sys.stderr)
        return 2
    if args.max_prefixes_restart < 0 or args.max_send_buffer < 1:
        print("bgpd: --max-prefixes-restart and --max-send-buffer must be positive",
              file=sys.stderr)
        return 2
    if args.metrics_listen:
        from bgpd.metrics.driver import parse_listen

        try:
            parse_listen(args.metrics_listen)
        except ValueError as exc:
            print(f"bgpd: --metrics-listen: {exc}", file=sys.stderr)
            return 2
    from bgpd.daemon.errors import ConfigError
    from bgpd.daemon.options import DaemonOptions
    from bgpd.daemon.plancheck import plan_of
    from bgpd.plan.errors import PlanError
    from calico.errors import DatastoreError

    options = DaemonOptions(
        node=args.node,
        datastore=datastore,
        control_socket=args.control_socket,
        listen_address=args.listen_address,
        listen_port=args.listen_port,
        fib=not args.no_fib,
        secrets_dir=args.secrets_dir,
        env=without_secrets(os.environ),
        max_prefixes=args.max_prefixes,
        max_prefixes_restart=args.max_prefixes_restart,
        max_send_buffer=args.max_send_buffer,
        metrics_listen=args.metrics_listen or None,
        bird_socket=args.bird_socket or None,
        bird6_socket=args.bird6_socket or None,
        bird_dialect=args.bird_dialect,
        log_level=args.log_level or None,
    )
    try:
        if args.check:
            from calico import checks

            snapshot = _load_snapshot(options.datastore, options.node)
            plan = plan_of(snapshot, options)
            if report_findings("bgpd", checks.check(snapshot, options.node)):
                return 1
            print(
                f"node {plan.node}: router id {plan.router_id}, AS {plan.local_as}, "
                f"{len(plan.sessions)} sessions, {len(plan.originate)} originated prefixes"
            )
            return 0
        # A reflector makes a few long-lived objects per route (Route, BestChange, Adj-RIB-Out
        # entry); at the default thresholds the collector ran every 700 of them and cost as
        # much as the routing itself (100 peers x 1000 routes). Collect far less often.
        import asyncio
        import gc

        from bgpd.daemon.app import run_daemon

        gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])
        asyncio.run(run_daemon(options))
    except (DatastoreError, ConfigError, PlanError) as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
