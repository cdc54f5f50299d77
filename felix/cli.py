"""The `felix` command: the daemon, and the policy commands beside it.

    felix --node NAME --datastore URL                       run the daemon (felix/driver.py)
    felix policy show [ENDPOINT] --datastore URL [--node N] [--json]
        this node's endpoints: the policies that select them, tier by tier, in Calico's
        order, with the kernel's counters (run it in the node's network namespace)
    felix policy explain SRC DST [PROTO/PORT] --datastore URL [--json]
        what the policy model does to one packet (SRC and DST: an address, a WEP name,
        namespace/pod, pod name or interface; PROTO/PORT: tcp/6379, udp/53, icmp/8/0,
        icmpv6, a protocol number; default: a ping) and which policy and rule decide

The policy commands read the datastore once and build the same model the daemon keeps.
Exit statuses: 0 done (explain: whatever the verdict), 1 a bad argument or endpoint, 3 the
datastore unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence

from calico import keys
from calico.datastore_args import add_datastore_arguments, datastore_from_args
from calico.errors import DatastoreConfigError, DatastoreError, Unavailable
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import open_kv
from felix.dataplane.nft_compile import compile_ruleset
from felix.dataplane.nft_driver import Nft, NftError, counters, nft_available
from felix.policy.evaluate import explain, find_endpoint, parse_packet
from felix.policy.feed import index_from_items
from felix.policy.index import PolicyIndex
from felix.report import (
    endpoint_report,
    explanation_json,
    format_explanation,
    format_report,
    sum_counters,
)
from felix.status import endpoint_status_key, endpoint_status_prefix


async def _load(url: DatastoreConfig, node: str) -> tuple[PolicyIndex, dict[str, str], list[str]]:
    async with open_kv(url) as kv:
        listing = await kv.list(keys.RESOURCES)
        statuses = await kv.list(endpoint_status_prefix(node))
    index, errors = index_from_items(node, [(i.key, i.value) for i in listing.items])
    status: dict[str, str] = {}
    for item in statuses.items:
        try:
            status[item.key] = str(json.loads(item.value).get("status"))
        except (ValueError, AttributeError):
            continue
    return index, status, errors


def _show(args: argparse.Namespace) -> int:
    index, statuses, errors = asyncio.run(_load(args.datastore, args.node))
    for e in errors:
        print(f"felix: skipped: {e}", file=sys.stderr)
    rows: list[tuple[str, str, int, int]] = []
    if nft_available():
        try:
            listing = asyncio.run(Nft().list_table())
            rows = [(c.chain, c.comment, c.packets, c.bytes) for c in counters(listing)]
        except NftError as exc:
            print(f"felix: no counters: {exc}", file=sys.stderr)
    else:
        print("felix: nft not found: no counters", file=sys.stderr)
    counted = sum_counters(rows)
    endpoints = index.local_endpoints()
    if args.endpoint:
        try:
            ep = find_endpoint(index, args.endpoint)
        except ValueError as exc:
            print(f"felix: {exc}", file=sys.stderr)
            return 1
        if ep is None or ep.node != args.node:
            print(f"felix: no endpoint {args.endpoint!r} on node {args.node}", file=sys.stderr)
            return 1
        endpoints = [ep]
    ruleset = compile_ruleset(index)
    reports = [
        endpoint_report(
            index,
            ep,
            counted,
            ruleset,
            statuses.get(
                endpoint_status_key(args.node, ep.orchestrator, ep.workload_id, ep.endpoint_id)
            ),
        )
        for ep in endpoints
    ]
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        if not reports:
            print(f"No workload endpoints on node {args.node}.")
        sys.stdout.write("\n".join(format_report(r) for r in reports))
    return 0


def _explain(args: argparse.Namespace) -> int:
    index, _statuses, errors = asyncio.run(_load(args.datastore, args.node))
    for e in errors:
        print(f"felix: skipped: {e}", file=sys.stderr)
    addresses = []
    for text in (args.src, args.dst):
        try:
            ep = find_endpoint(index, text)
        except ValueError as exc:
            print(f"felix: {exc}", file=sys.stderr)
            return 1
        if ep is not None and ep.addresses:
            addresses.append(ep.addresses[0])
            continue
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        except OSError:
            print(f"felix: {text!r} is neither an endpoint nor an address", file=sys.stderr)
            return 1
        addresses.append(text)
    try:
        packet = parse_packet(addresses[0], addresses[1], args.packet)
    except ValueError as exc:
        print(f"felix: {exc}", file=sys.stderr)
        return 1
    result = explain(index, packet)
    if args.json:
        print(json.dumps(explanation_json(result), indent=2))
    else:
        sys.stdout.write(format_explanation(result))
    return 0


def policy_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="felix policy", description="felix's policy model")
    add_datastore_arguments(
        parser,
        help="sqlite:///PATH, https://HOST:PORT[,...] (etcd over TLS) or etcd://HOST:PORT[,...]; "
        "env ETCD_ENDPOINTS",
    )
    parser.add_argument("--node", default=os.environ.get("NODENAME") or socket.gethostname())
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="this node's endpoints, their policies and counters")
    show.add_argument("endpoint", nargs="?", help="only this endpoint")
    show.add_argument("--json", action="store_true")
    ex = sub.add_parser("explain", help="what policy does to one packet, and why")
    ex.add_argument("src")
    ex.add_argument("dst")
    ex.add_argument("packet", nargs="?", metavar="PROTO/PORT")
    ex.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        datastore = datastore_from_args(args, os.environ)
    except DatastoreConfigError as exc:
        print(f"felix: {exc}", file=sys.stderr)
        return 2
    if datastore is None:
        parser.error("--datastore (or ETCD_ENDPOINTS) is required")
    args.datastore = datastore
    try:
        return _show(args) if args.command == "show" else _explain(args)
    except Unavailable as exc:
        print(f"felix: datastore unreachable: {exc}", file=sys.stderr)
        return 3
    except DatastoreError as exc:
        print(f"felix: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "policy":
        return policy_main(args[1:])
    from felix import driver

    return driver.main(args)


if __name__ == "__main__":
    sys.exit(main())
