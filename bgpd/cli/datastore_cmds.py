"""bgpctl's datastore commands, in the manner of calicoctl, against `--datastore URL`
(sqlite:///PATH, https://HOST:PORT[,...] or etcd://HOST:PORT[,...]; env BGPD_DATASTORE, else
ETCD_ENDPOINTS; the `--etcd-*` options or calico-node's ETCD_* variables for TLS and auth):

    bgpctl apply -f FILE            create or update every resource in FILE (- for stdin)
    bgpctl delete -f FILE           delete every resource FILE names
    bgpctl get KIND [NAME] [-o ps|yaml|json]
    bgpctl status --all-nodes       every node's reported BGP status

`register()` adds them to bgpctl's `COMMANDS` (bgpctl calls it, so this module never
imports bgpctl, which also runs as `__main__`); `status --all-nodes` wraps the existing
`status` command. A whole file is validated before anything is written, so a typo writes
nothing; so is what it brings in across resources with what is stored (`calico.checks`):
overlapping IP pools are refused as calicoctl refuses them, a duplicate node address or a
block affinity outside every pool is a warning. Exit statuses: 0 done, 1 a resource was
refused or missing, 3 datastore down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableSequence
from dataclasses import replace
from typing import Any, Protocol, TextIO, TypeVar

import yaml

from bgpd.cli.format import bird_info, bird_since, bird_state, calico_address, render_table
from bgpd.status.codec import to_json
from bgpd.status.nodestatus import KIND as NODE_STATUS_KIND
from bgpd.status.nodestatus import NodeStatus, parse
from calico import checks, resources
from calico.datastore_args import add_datastore_arguments, datastore_from_args
from calico.errors import DatastoreError, ResourceError, Unavailable
from calico.file import read_documents
from calico.keys import NAMESPACED, kind_prefix
from calico.model import BlockAffinity, Resource, affinity_name, parse_resource
from calico.snapshot import Snapshot
from calico.store.etcdconfig import DatastoreConfig
from calico.store.kv import KVStore, open_kv

T = TypeVar("T")


class Context(Protocol):
    """What the commands use of bgpctl's Context."""

    stdout: TextIO
    stderr: TextIO

    def print_json(self, data: Any) -> None: ...


DEFAULT_DATASTORE = "sqlite:///var/lib/pybgpd/calico.db"
DATASTORE_ENV = "BGPD_DATASTORE"


def _with_store(datastore: DatastoreConfig, work: Callable[[KVStore], Awaitable[T]]) -> T:
    async def go() -> T:
        kv = open_kv(datastore)
        try:
            return await work(kv)
        finally:
            await kv.close()

    return asyncio.run(go())


def _run(args: argparse.Namespace, ctx: Context, work: Callable[[KVStore], Awaitable[int]]) -> int:
    try:
        datastore = datastore_from_args(args, os.environ, url_env=DATASTORE_ENV,
                                        default=DEFAULT_DATASTORE)
        assert datastore is not None  # there is a default
        return _with_store(datastore, work)
    except Unavailable as exc:
        print(f"bgpctl: datastore unreachable: {exc}", file=ctx.stderr)
        return 3
    except DatastoreError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return 1


def _read_file(path: str) -> list[dict[str, Any]]:
    source = "<stdin>" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise ResourceError(f"cannot read: {exc.strerror or exc}", source=source) from None
    docs: list[dict[str, Any]] = []
    for index, doc in enumerate(read_documents(text, source=source), start=1):
        if doc is None:
            continue
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
            docs.extend(doc["items"] or [])
        elif isinstance(doc, dict):
            docs.append(doc)
        else:
            raise ResourceError("expected a mapping", source=source, index=index)
    return docs


# --- apply / delete -------------------------------------------------------------------------


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, metavar="FILE",
                        help="YAML or JSON file of Calico v3 resources (- for stdin)")


def _run_apply(args: argparse.Namespace, ctx: Context) -> int:
    try:
        docs = _read_file(args.filename)
        for i, doc in enumerate(docs, start=1):
            # Validate all first: nothing is written if any resource is bad.
            try:
                resources._target(doc)
            except ResourceError as exc:
                raise exc.located(source=args.filename, index=i) from None
    except ResourceError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return 1

    async def work(kv: KVStore) -> int:
        # What the file brings in across resources, against what is stored: refused where
        # Calico refuses it (nothing is written), a warning where Calico only accepts it.
        findings = await _introduced(kv, docs)
        for finding in findings:
            print(f"bgpctl: {finding}", file=ctx.stderr)
        if checks.errors(findings):
            return 1
        for doc in docs:
            await resources.apply(kv, doc)
        ctx.stdout.write(f"Successfully applied {len(docs)} resource(s)\n")
        return 0

    return _run(args, ctx, work)


# The kinds cross-resource checks read (calico.checks).
_CHECKED_KINDS = ("IPPool", "Node", "BlockAffinity")


async def _introduced(kv: KVStore, docs: list[dict[str, Any]]) -> list[checks.Finding]:
    """The findings the store would have after applying `docs` and has not now."""
    stored: list[Resource] = []
    for kind in _CHECKED_KINDS:
        for obj in await resources.get(kv, kind):
            try:
                stored.append(parse_resource(obj))
            except ResourceError:
                continue  # unreadable: every reader skips it too
    before = Snapshot.of(stored)
    applied: list[Resource] = []
    for doc in docs:
        resource = resources._target(doc)[3]
        if isinstance(resource, BlockAffinity):
            # Stored affinities are named by node and block, whatever the file calls them.
            resource = replace(resource, name=affinity_name(resource.node, resource.cidr))
        if getattr(resource, "kind", None) in _CHECKED_KINDS:
            applied.append(resource)
    after = before.with_resources(applied)
    return checks.introduced(checks.check(before), checks.check(after))


def _run_delete(args: argparse.Namespace, ctx: Context) -> int:
    try:
        docs = _read_file(args.filename)
    except ResourceError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return 1

    async def work(kv: KVStore) -> int:
        done, failed = 0, 0
        for doc in docs:
            try:
                await resources.delete(kv, doc)
                done += 1
            except ResourceError as exc:
                failed += 1
                print(f"bgpctl: {exc}", file=ctx.stderr)
        ctx.stdout.write(f"Successfully deleted {done} resource(s)\n")
        return 1 if failed else 0

    return _run(args, ctx, work)


# --- get ------------------------------------------------------------------------------------

_COLUMNS: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...]] = {
    "BGPPeer": (
        ("PEERIP", lambda s: s.get("peerIP") or s.get("peerSelector", "")),
        ("NODE", lambda s: s.get("node") or s.get("nodeSelector") or "(global)"),
        ("ASN", lambda s: s.get("asNumber", "")),
    ),
    "IPPool": (
        ("CIDR", lambda s: s.get("cidr", "")),
        ("SELECTOR", lambda s: s.get("nodeSelector", "all()")),
    ),
    "BGPConfiguration": (
        ("LOGSEVERITY", lambda s: s.get("logSeverityScreen", "")),
        ("MESHENABLED", lambda s: str(s.get("nodeToNodeMeshEnabled", True)).lower()),
        ("ASNUMBER", lambda s: s.get("asNumber", "")),
    ),
    "BlockAffinity": (
        ("NODE", lambda s: s.get("node", "")),
        ("CIDR", lambda s: s.get("cidr", "")),
        ("STATE", lambda s: s.get("state", "")),
    ),
    "IPAMBlock": (
        ("CIDR", lambda s: s.get("cidr", "")),
        ("AFFINITY", lambda s: s.get("affinity") or ""),
    ),
    "IPAMConfiguration": (
        ("STRICTAFFINITY", lambda s: str(s.get("strictAffinity", False)).lower()),
        ("AUTOALLOCATEBLOCKS", lambda s: str(s.get("autoAllocateBlocks", True)).lower()),
    ),
    "Tier": (
        ("ORDER", lambda s: s.get("order", "")),
        ("DEFAULTACTION", lambda s: s.get("defaultAction", "Deny")),
    ),
}

# `-o wide` columns, where calicoctl has more than `-o ps` and we have them too.
_WIDE_COLUMNS: dict[str, tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...]] = {
    "IPAMConfiguration": (
        *_COLUMNS["IPAMConfiguration"],
        ("MAXBLOCKSPERHOST", lambda s: s.get("maxBlocksPerHost", 0)),
    ),
}


def format_ps(kind: str, objs: list[dict[str, Any]], wide: bool = False) -> str:
    """calicoctl's default `-o ps` (or `-o wide`): NAME and a few columns, tab-aligned;
    NAMESPACE first for a namespaced kind."""
    cols = (_WIDE_COLUMNS if wide else _COLUMNS).get(kind, ())
    namespaced = kind in NAMESPACED
    rows = [(*(("NAMESPACE",) if namespaced else ()), "NAME", *(c for c, _ in cols))]
    for o in objs:
        spec = o.get("spec") or {}
        ns = (str(o["metadata"].get("namespace", "")),) if namespaced else ()
        rows.append((*ns, o["metadata"]["name"], *(str(f(spec)) for _, f in cols)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


def _get_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help="e.g. bgppeers, nodes, ippools, bgpconfig")
    parser.add_argument("name", metavar="NAME", nargs="?", help="only this resource")
    parser.add_argument("-o", "--output", choices=("ps", "wide", "yaml", "json"), default="ps")
    parser.add_argument("-n", "--namespace", default="default",
                        help="namespace of a namespaced kind (default: default)")
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="a namespaced kind in every namespace")


def _run_get(args: argparse.Namespace, ctx: Context) -> int:
    try:
        kind = resources.kind_of(args.kind)
    except DatastoreError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return 2

    if args.output == "wide" and kind not in _WIDE_COLUMNS:
        print(f"bgpctl: -o wide is not supported for {kind} (use ps, yaml or json)",
              file=ctx.stderr)
        return 2

    async def work(kv: KVStore) -> int:
        namespace = None if args.all_namespaces else args.namespace
        objs = await resources.get(kv, kind, args.name, namespace)
        if args.output in ("ps", "wide"):
            ctx.stdout.write(format_ps(kind, objs, wide=args.output == "wide"))
            return 0
        data: Any = objs[0] if args.name else {
            "apiVersion": "projectcalico.org/v3",
            "kind": f"{kind}List",
            "items": objs,
        }
        if args.output == "json":
            ctx.print_json(data)
        else:
            ctx.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
        return 0

    return _run(args, ctx, work)


# --- status --all-nodes ---------------------------------------------------------------------


async def node_statuses(kv: KVStore) -> list[NodeStatus]:
    listing = await kv.list(kind_prefix(NODE_STATUS_KIND))
    out: list[NodeStatus] = []
    for item in listing.items:
        try:
            out.append(parse(json.loads(item.value)))
        except (KeyError, ValueError, TypeError, AttributeError):
            continue  # someone else's CalicoNodeStatus, not a report of ours
    return out


def format_all_nodes(statuses: list[NodeStatus], now: float) -> str:
    if not statuses:
        return "No node has reported its BGP status.\n"
    headers = ("NODE", "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO", "RECEIVED",
               "ADVERTISED")
    rows: list[tuple[str, ...]] = []
    lines: list[str] = []
    for ns in sorted(statuses, key=lambda n: n.node):
        s = ns.status
        age = "?" if ns.last_updated is None else f"{max(0, round(now - ns.last_updated))}s ago"
        lines.append(
            f"{s.node}: router ID {s.router_id}, AS {s.asn}, {len(s.peers)} peer(s), "
            f"reported {age}"
        )
        for p in sorted(s.peers, key=lambda p: (p.family, p.address)):
            rows.append(
                (s.node, calico_address(p), p.type, bird_state(p), bird_since(p.since, now),
                 bird_info(p), str(p.routes_received), str(p.routes_advertised))
            )
    table = render_table(headers, rows) if rows else "No peers.\n"
    return "\n".join(lines) + "\n\n" + table


def _run_all_nodes(args: argparse.Namespace, ctx: Context) -> int:
    async def work(kv: KVStore) -> int:
        statuses = await node_statuses(kv)
        if getattr(args, "json", False):
            ctx.print_json([
                {"node": n.node, "last_updated": n.last_updated, **to_json(n.status)}
                for n in statuses
            ])
        else:
            ctx.stdout.write(format_all_nodes(statuses, time.time()))
        return 0

    return _run(args, ctx, work)


def _wrap_status(commands: MutableSequence[Any], command: Callable[..., Any]) -> None:
    """Give the existing `status` command `--all-nodes` (read from the datastore)."""
    index = next((i for i, c in enumerate(commands) if c.path == ("status",)), None)
    if index is None:
        return
    existing = commands[index]
    add_arguments, run = existing.add_arguments, existing.run

    def add(parser: argparse.ArgumentParser) -> None:
        add_arguments(parser)
        parser.add_argument("--all-nodes", action="store_true",
                            help="every node's status as reported in --datastore")

    def dispatch(args: argparse.Namespace, ctx: Context) -> int:
        if args.all_nodes:
            return _run_all_nodes(args, ctx)
        return int(run(args, ctx))

    commands[index] = command(existing.path, existing.help, add, dispatch)


def add_datastore_option(parser: argparse.ArgumentParser) -> None:
    """bgpctl's global `--datastore URL` (env BGPD_DATASTORE, else ETCD_ENDPOINTS) and the
    etcd TLS and auth options."""
    add_datastore_arguments(
        parser,
        help="sqlite:///PATH, https://HOST:PORT[,...] (etcd over TLS) or etcd://HOST:PORT[,...] "
        f"(default: ${DATASTORE_ENV}, else $ETCD_ENDPOINTS, else {DEFAULT_DATASTORE})",
    )


def register(commands: MutableSequence[Any], command: Callable[..., Any]) -> None:
    """Add the commands to bgpctl's registry; `command` is bgpctl's Command class."""
    _wrap_status(commands, command)
    commands.append(command(("apply",), "create or update Calico resources from a file",
                            _file_arguments, _run_apply))
    commands.append(command(("delete",), "delete the Calico resources a file names",
                            _file_arguments, _run_delete))
    commands.append(command(("get",), "show Calico resources in the datastore",
                            _get_arguments, _run_get))
