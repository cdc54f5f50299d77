"""`bgpd`: the BGP daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bgpd import __version__
from bgpd.daemon import ConfigError, DaemonOptions, load_plan, run_daemon
from bgpd.datastore.errors import ResourceError
from bgpd.log import configure_logging
from bgpd.plan.errors import PlanError

DEFAULT_CONTROL_SOCKET = "/run/pybgpd/bgpd.sock"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bgpd",
        description="BGP speaker for Calico-style node networking.",
    )
    p.add_argument("--version", action="version", version=f"pybgpd {__version__}")
    p.add_argument(
        "--node",
        default=os.environ.get("NODENAME") or os.environ.get("BGPD_NODE"),
        help="this node's name (Calico Node resource); env NODENAME",
    )
    p.add_argument(
        "--datastore",
        default=os.environ.get("BGPD_DATASTORE"),
        help="where Calico resources live: file:///PATH.yaml; env BGPD_DATASTORE",
    )
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
    p.add_argument("--log-level", default=os.environ.get("BGPD_LOG_LEVEL", "info"))
    p.add_argument(
        "--check",
        action="store_true",
        help="load and validate the configuration, print the plan summary, and exit",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    if not args.node:
        print("bgpd: --node is required (or set NODENAME)", file=sys.stderr)
        return 2
    if not args.datastore:
        print("bgpd: --datastore is required (or set BGPD_DATASTORE)", file=sys.stderr)
        return 2
    options = DaemonOptions(
        node=args.node,
        datastore=args.datastore,
        control_socket=args.control_socket,
        listen_address=args.listen_address,
        listen_port=args.listen_port,
        fib=not args.no_fib,
        secrets_dir=args.secrets_dir,
        env=dict(os.environ),
    )
    try:
        if args.check:
            plan = load_plan(options)
            print(
                f"node {plan.node}: router id {plan.router_id}, AS {plan.local_as}, "
                f"{len(plan.sessions)} sessions, {len(plan.originate)} originated prefixes"
            )
            return 0
        asyncio.run(run_daemon(options))
    except (ResourceError, ConfigError, PlanError) as exc:
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
