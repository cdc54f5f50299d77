"""`bgpd`: the BGP daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys

from bgpd import __version__
from bgpd.control.birdsock.dialect import DIALECTS
from bgpd.daemon import ConfigError, DaemonOptions, plan_of, run_daemon
from bgpd.metrics.driver import parse_listen
from bgpd.plan.errors import PlanError
from bgpd.plan.peering import compute
from bgpd.plan.render import plan_dict, plan_text
from bgpd.session.driver import MAX_BUFFERED
from calico import checks
from calico.datastore_args import add_datastore_arguments, datastore_from_args, without_secrets
from calico.errors import DatastoreConfigError, DatastoreError
from calico.snapshot import Snapshot
from calico.source import open_source
from calico.store.etcdconfig import DatastoreConfig
from common.log import configure_logging

DEFAULT_CONTROL_SOCKET = "/run/pybgpd/bgpd.sock"
DATASTORE_ENV = "BGPD_DATASTORE"
DATASTORE_HELP = (
    "where Calico resources live: file:///PATH.yaml, sqlite:///PATH, etcd over TLS "
    "https://HOST:PORT[,HOST:PORT...] or plaintext etcd://HOST:PORT[,...]; env BGPD_DATASTORE, "
    "else ETCD_ENDPOINTS"
)
GC_THRESHOLDS = (50_000, 20, 100)


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


async def _load_snapshot(datastore: DatastoreConfig | str, node: str) -> Snapshot:
    source = open_source(datastore, node)
    try:
        return await source.load()
    finally:
        await source.close()


def plan_main(argv: list[str]) -> int:
    args = build_plan_parser().parse_args(argv)
    configure_logging("warning")
    if not args.node:
        print("bgpd plan: --node is required (or set NODENAME)", file=sys.stderr)
        return 2
    datastore = _datastore("bgpd plan", args)
    if isinstance(datastore, int):
        return datastore
    try:
        snapshot = asyncio.run(_load_snapshot(datastore, args.node))
        plan = compute(snapshot, args.node, dict(os.environ))
    except (DatastoreError, PlanError) as exc:
        print(f"bgpd plan: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(plan_dict(plan), indent=2))
    else:
        sys.stdout.write(plan_text(plan))
    return 1 if report_findings("bgpd plan", checks.check(snapshot, args.node)) else 0


def report_findings(prog: str, findings: list[checks.Finding]) -> bool:
    """Print cross-resource findings to stderr, one a line; True when one is an error (a
    configuration Calico refuses: the caller exits 1)."""
    for finding in findings:
        print(f"{prog}: {finding}", file=sys.stderr)
    return bool(checks.errors(findings))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        configure_logging(args.log_level or "info")
    except ValueError as exc:
        print(f"bgpd: --log-level: {exc}", file=sys.stderr)
        return 2
    if not args.node:
        print("bgpd: --node is required (or set NODENAME)", file=sys.stderr)
        return 2
    datastore = _datastore("bgpd", args)
    if isinstance(datastore, int):
        return datastore
    if args.max_prefixes is not None and args.max_prefixes < 1:
        print("bgpd: --max-prefixes must be at least 1", file=sys.stderr)
        return 2
    if args.max_prefixes_restart < 0 or args.max_send_buffer < 1:
        print("bgpd: --max-prefixes-restart and --max-send-buffer must be positive",
              file=sys.stderr)
        return 2
    if args.metrics_listen:
        try:
            parse_listen(args.metrics_listen)
        except ValueError as exc:
            print(f"bgpd: --metrics-listen: {exc}", file=sys.stderr)
            return 2
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
            snapshot = asyncio.run(_load_snapshot(options.datastore, options.node))
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
