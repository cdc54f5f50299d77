"""bgpctl's `ipam` commands, calicoctl's (v3.32 calicoctl/commands/ipam) words and layout,
against `--datastore URL`:

    bgpctl ipam show [--ip IP | --show-blocks | --show-borrowed | --show-configuration]
    bgpctl ipam check [--show-all-ips] [--show-problem-ips] [-o FILE]
    bgpctl ipam release --ip IP [--force]
    bgpctl ipam release --from-report FILE... [--force]

The analysis is calico/ipam_usage.py and calico/ipam_check.py (pure), the writes
calico/ipam_release.py's plans applied by calico/ipam_txn.py, each guarded by the revisions
it read: the same code felix's allocator uses. This module reads the store, prints, and
decides nothing about IPAM.

Where bgpctl differs from calicoctl, it is safer: `release --ip` refuses an address a
WorkloadEndpoint or a Node still uses (calicoctl releases it, warning only in its help);
`--force` releases it anyway. Exit statuses: 0 done, 1 refused or failed, 2 bad usage,
3 datastore unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
from collections.abc import Callable, MutableMapping, MutableSequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from bgpd import __version__
from bgpd.cli.tablewriter import render
from calico.errors import DatastoreError, Unavailable
from calico.ipam_check import (
    CheckResult,
    HandleInfo,
    check,
    ip_order,
    merge_reports,
    read_report,
    report_json,
)
from calico.ipam_release import (
    IpamError,
    ReleaseIP,
    ReleaseRefused,
    plan_delete_handle,
    plan_release_ips,
)
from calico.ipam_state import IpamState, load, read_view
from calico.ipam_txn import apply_step, run_steps
from calico.ipam_usage import PoolUsage, address_info, borrowed, utilization
from calico.store.kv import KVStore, open_kv


class Context(Protocol):
    stdout: TextIO
    stderr: TextIO


class CommandError(Exception):
    """A refusal with calicoctl's (or our) one-line message; exit status 1 or 2."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _run(args: argparse.Namespace, ctx: Context, work: Callable[[KVStore], Any]) -> int:
    async def go() -> int:
        kv = open_kv(args.datastore)
        try:
            result: int = await work(kv)
            return result
        finally:
            await kv.close()

    try:
        return asyncio.run(go())
    except CommandError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return exc.code
    except Unavailable as exc:
        print(f"bgpctl: datastore unreachable: {exc}", file=ctx.stderr)
        return 3
    except (DatastoreError, IpamError) as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return 1


def valid_ip(text: str) -> str:
    """calicoctl's argutils.ValidateIP, as a bgpctl usage error."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CommandError(f"invalid IP address {text!r}", code=2) from None


# --- show -------------------------------------------------------------------------------


def _percent(n: int, total: int) -> str:
    # Go's %.5g and %.f (the percentage rounded half to even, as strconv does).
    return f"{n:.5g} ({100 * n / total:.0f}%)"


def _usage_row(kind: str, cidr: str, in_use: int, capacity: int) -> list[str]:
    return [
        kind,
        cidr,
        f"{capacity:.5g}",
        _percent(in_use, capacity),
        _percent(capacity - in_use, capacity),
    ]


def format_utilization(usage: list[PoolUsage], show_blocks: bool) -> str:
    rows: list[list[str]] = []
    for pool in usage:
        if pool.cidr is not None:
            rows.append(_usage_row("IP Pool", pool.cidr, pool.in_use, pool.capacity))
        if show_blocks:
            rows.extend(_usage_row("Block", b.cidr, b.in_use, b.capacity) for b in pool.blocks)
    return render(("GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"), rows)


def format_borrowed(state: IpamState) -> str:
    found, unclassified = borrowed(c.value for c in state.view.blocks.values())
    rows = [
        [b.address, b.borrowing_node, b.block, b.block_owner, b.type, b.allocated_to] for b in found
    ]
    text = render(("IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"), rows)
    if unclassified:
        text += (
            f"\nNote: found {unclassified} IP allocations without an explicit node association. "
            "Unable to determine if they are borrowed.\n"
        )
    return text


def format_ip(state: IpamState, ip: str) -> str:
    info = address_info(state.view, ip)
    if info is None:
        return f"{ip} is not assigned\n"
    lines = [f"IP {info.ip} is in use", f"Handle ID: {info.handle_id or '<none>'}"]
    for title, attrs in (
        ("Active Owner Attributes", info.active),
        ("Alternate Owner Attributes", info.alternate),
    ):
        if attrs:
            lines.append(f"{title}:")
            lines += [f"  {k}: {attrs[k]}" for k in sorted(attrs)]
        elif title.startswith("Active"):
            lines.append("No Active Owner attributes defined")
    return "\n".join(lines) + "\n"


def _go_value(value: object) -> str:
    """Go's %#v for the config's fields."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def format_configuration(state: IpamState) -> str:
    config = state.view.config
    rows = [
        ["StrictAffinity", _go_value(config.strict_affinity)],
        ["AutoAllocateBlocks", _go_value(config.auto_allocate_blocks)],
        ["MaxBlocksPerHost", _go_value(config.max_blocks_per_host)],
    ]
    persistence = config.extra.get("kubeVirtVMAddressPersistence")
    if persistence is not None:
        rows.append(["KubeVirtVMAddressPersistence", _go_value(persistence)])
    return render(("PROPERTY", "VALUE"), rows)


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--ip", metavar="IP", help="Report whether this specific IP address is in use."
    )
    which.add_argument(
        "--show-blocks",
        action="store_true",
        help="Show detailed information for IP blocks as well as pools.",
    )
    which.add_argument(
        "--show-borrowed",
        action="store_true",
        help='Show detailed information for "borrowed" IP addresses.',
    )
    which.add_argument(
        "--show-configuration", action="store_true", help="Show current Calico IPAM configuration."
    )


def _run_show(args: argparse.Namespace, ctx: Context) -> int:
    try:
        ip = valid_ip(args.ip) if args.ip else None
    except CommandError as exc:
        print(f"bgpctl: {exc}", file=ctx.stderr)
        return exc.code

    async def work(kv: KVStore) -> int:
        state = await load(kv, strict=False)
        for key, error in state.skipped:
            print(f"bgpctl: skipping {key}: {error}", file=ctx.stderr)
        if ip is not None:
            ctx.stdout.write(format_ip(state, ip))
        elif args.show_borrowed:
            ctx.stdout.write(format_borrowed(state))
        elif args.show_configuration:
            ctx.stdout.write(format_configuration(state))
        else:
            blocks = [c.value for c in state.view.blocks.values()]
            ctx.stdout.write(format_utilization(utilization(state.pools, blocks), args.show_blocks))
        return 0

    return _run(args, ctx, work)


# --- check ------------------------------------------------------------------------------

TOP_NODES = 20


def format_check(state: IpamState, result: CheckResult, *, all_ips: bool, problem_ips: bool) -> str:
    """calicoctl's checkIPAM output, line for line (sorted where Go walks a map)."""
    problem_ips = problem_ips or all_ips
    out = ["Checking IPAM for inconsistencies...", "", "Loading all IPAM blocks..."]
    out.append(f"Found {len(result.blocks)} IPAM blocks.")
    allocs = 0
    for cidr, affinity, listed in result.blocks:
        out.append(f" IPAM block {cidr} affinity={affinity}:")
        for a in listed:
            allocs += 1
            if all_ips:
                out.append(f"  {a.ip} allocated; attrs {a.attrs}")
    out += [f"IPAM blocks record {allocs} allocations.", "", "Loading all IPAM pools..."]
    out += [f"  {cidr}" for cidr in result.active_pools]
    out += [f"Found {len(result.active_pools)} active IP pools.", "", "Loading all nodes."]
    if all_ips:
        out += [
            f"  {ip} belongs to {o}"
            for ip, owners in sorted(result.in_use.items(), key=lambda kv: ip_order(kv[0]))
            for o in owners
            if o.startswith("Node(")
        ]
    out += [f"Found {result.node_ips} node tunnel IPs.", ""]
    out.append("Loading all service load balancer IPs.")
    if state.load_balancer_controller:
        out.append(
            "LoadBalancer kubecontroller configured, but bgpctl cannot read Kubernetes "
            "Services: skipping service check"
        )
    else:
        out.append("No configuration for LoadBalancer kubecontroller found, skipping service check")
    out += ["", "Loading all workload endpoints."]
    if all_ips:
        out += [
            f"  {ip} belongs to {o}"
            for ip, owners in sorted(result.in_use.items(), key=lambda kv: ip_order(kv[0]))
            for o in owners
            if o.startswith("Workload(")
        ]
    out += [
        f"Found {result.workload_ips} workload IPs.",
        f"Workloads and nodes are using {len(result.in_use)} IPs.",
        "",
        "Loading all handles",
        f"Looking for top (up to {TOP_NODES}) nodes by allocations...",
    ]
    top = result.top_nodes()
    out += [f"  {n} has {c} allocations" for n, c in top[:TOP_NODES]]
    if top:
        out.append(f"Node with most allocations has {top[0][1]}; median is {top[len(top) // 2][1]}")
    out += ["", "Scanning for IPs that are allocated but not actually in use..."]
    if problem_ips:
        out += [
            f"  {ip} leaked; attrs {a.attrs}"
            for ip in result.leaked_ips
            for a in result.allocations[ip]
        ]
    out.append(
        f"Found {len(result.leaked_ips)} IPs that are allocated in IPAM but not actually in use."
    )
    out.append(
        "Scanning for IPs that are in use by a workload or node but not allocated in IPAM..."
    )
    if problem_ips:
        for ip, owners in sorted(result.in_use.items(), key=lambda kv: ip_order(kv[0])):
            if len(owners) > 1:
                out.append(f"  {ip} has multiple owners.")
            if ip in result.not_in_pools:
                out += [f"  {ip} in use by {o} is not in any active IP pool." for o in owners]
            elif ip in result.not_allocated:
                out += [
                    f"  {ip} in use by {o} and in active IPAM pool but has no IPAM allocation."
                    for o in owners
                ]
    out.append(f"Found {len(result.not_in_pools)} in-use IPs that are not in active IP pools.")
    out.append(
        f"Found {len(result.not_allocated)} in-use IPs that are in active IP pools but have no "
        "corresponding IPAM allocation."
    )
    out += ["", "Scanning for IPAM handles with no matching IPs..."]
    if all_ips:
        out += [f"  {h.id} doesn't have any active IPs." for h in result.leaked_handles]
    out.append(
        f"Found {len(result.leaked_handles)} handles with no matching IPs (and "
        f"{result.good_handles} handles with matches)."
    )
    out.append("Scanning for IPs with missing handle...")
    if problem_ips:
        out += [f"  {h} is in use in a block but doesn't exist." for h in result.missing_handles]
    out.append(
        f"Found {len(result.missing_handles)} handles mentioned in blocks with no matching "
        "handle resource."
    )
    # Beyond calicoctl: claims without blocks, and borrowed addresses (not a problem).
    out.append("Scanning for block affinities with no matching block...")
    if problem_ips:
        out += [
            f"  {cidr} claimed by {host} ({state_}) has no block."
            for host, cidr, state_ in result.affinities_without_blocks
        ]
    out.append(
        f"Found {len(result.affinities_without_blocks)} block affinities with no matching block."
    )
    if problem_ips:
        out += [f"  {a.ip} borrowed by {a.node} from {a.block}" for a in result.borrowed]
    out.append(
        f"Found {len(result.borrowed)} borrowed IPs (allocated by a node the block is not "
        "affine to)."
    )
    out.append(f"Check complete; found {result.problems} problems.")
    return "\n".join(out) + "\n"


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help="Path to output report file.")
    parser.add_argument(
        "--show-all-ips", action="store_true", help="Print all IPs that are checked."
    )
    parser.add_argument(
        "--show-problem-ips",
        action="store_true",
        help="Print all IPs that are leaked or not allocated properly.",
    )


def _run_check(args: argparse.Namespace, ctx: Context) -> int:
    async def work(kv: KVStore) -> int:
        state = await load(kv, strict=True)
        result = check(state.view, state.pools, state.nodes, state.workloads)
        ctx.stdout.write(
            format_check(
                state, result, all_ips=args.show_all_ips, problem_ips=args.show_problem_ips
            )
        )
        if args.output:
            report = report_json(result, state.cluster, __version__)
            try:
                Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
            except OSError as exc:
                raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        return 0

    return _run(args, ctx, work)


# --- release ----------------------------------------------------------------------------


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ip", metavar="IP", help="IP address to release.")
    parser.add_argument(
        "--from-report",
        metavar="REPORT",
        action="append",
        default=[],
        help="Release all leaked addresses from the report (from `ipam check -o`). With "
        "several, only what every report saw leaked is released.",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="Force release of leaked addresses (from reports: a different bgpctl version, "
        "an unlocked data store); with --ip: release an address still in use.",
    )


async def _steps(kv: KVStore, plan: Callable[[Any], Any], what: str) -> list[Any]:
    """`plan`'s steps applied to the store until the last one applies (calico.ipam_txn)."""
    return await run_steps(
        lambda: read_view(kv), plan, what, apply=lambda s: apply_step(kv, s), pause=kv.pause
    )


async def release_ip(kv: KVStore, ip: str, *, force: bool, out: TextIO) -> None:
    state = await load(kv, strict=True)
    result = check(state.view, state.pools, state.nodes, state.workloads)
    owners = result.in_use.get(ip)
    if owners and not force:
        raise CommandError(
            f"IP address {ip} is in use by {', '.join(owners)}: not releasing it (remove that "
            "first, or release it anyway with --force)"
        )
    freed: list[str] = []

    def plan(view: Any) -> Any:
        step, already = plan_release_ips(view, [ReleaseIP(ip)])
        freed[:] = already
        return step

    await _steps(kv, plan, f"release {ip}")
    if freed:
        raise CommandError(f"IP address {ip} is not assigned")
    out.write(f"Successfully released IP address {ip}\n")


async def release_from_reports(kv: KVStore, files: list[str], *, force: bool, out: TextIO) -> None:
    state = await load(kv, strict=True)
    cluster = state.cluster
    reports = []
    current = False
    for name in files:
        try:
            report = read_report(Path(name).read_text(), name)
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if report.cluster_guid != cluster.guid:
            raise CommandError(
                f"cluster does not match the provided report ({name}): mismatched cluster GUID. "
                "Refusing to release"
            )
        if report.version != __version__:
            if not force:
                raise CommandError(
                    f"the provided report ({name}) was produced using a different version "
                    f"({report.version}) of bgpctl. Refusing to release"
                )
            out.write(
                "WARNING: Report was produced using a different version of bgpctl. "
                "Ignoring due to --force option\n"
            )
        current = current or report.cluster_revision == cluster.revision
        reports.append(report)
    if not current:
        raise CommandError(
            "the provided reports are all stale - at least one should be up-to-date. Please "
            "generate a new report while the data store is locked and try again"
        )
    if not cluster.datastore_locked:
        if not force:
            raise CommandError(
                "data store is not locked. Either lock the data store, or re-run with --force"
            )
        out.write("WARNING: Data store is not locked. Ignoring due to --force option\n")
    ips, handles = merge_reports(reports)
    if ips:
        await _release_leaked(kv, ips, out)
    else:
        out.write("Report didn't contain any leaked IPs to clean up.\n")
    if handles:
        await _delete_handles(kv, handles, out)
    else:
        out.write("Report didn't contain any handles to clean up.\n")
    out.write("You may now unlock the data store.\n")


async def _release_leaked(kv: KVStore, releases: list[ReleaseIP], out: TextIO) -> None:
    out.write(f"Releasing {len(releases)} old IPs...\n")
    already = 0
    refused: list[str] = []
    for rel in releases:
        # One at a time, each guarded by the handle and sequence number the report saw: an
        # address given out again since the report is refused, the others still go.
        freed: list[str] = []

        def plan(view: Any, rel: ReleaseIP = rel, freed: list[str] = freed) -> Any:
            step, free = plan_release_ips(view, [rel])
            freed[:] = free
            return step

        try:
            await _steps(kv, plan, f"release {rel.ip}")
        except ReleaseRefused as exc:
            refused.append(str(exc))
            continue
        already += len(freed)
    if refused:
        out.write(
            f"An error occurred while releasing some IPs: {'; '.join(refused)}.  "
            "Problems are often caused by an out-of-date IPAM report.  "
            "Try regenerating the IPAM report and retry.\n"
        )
    else:
        out.write(f"Released {len(releases) - already} IPs successfully\n")
    if already:
        out.write(
            f"{already} addresses marked as leaked in the report had already been cleaned up.\n"
        )


async def _delete_handles(kv: KVStore, handles: list[HandleInfo], out: TextIO) -> None:
    out.write(f"Deleting {len(handles)} handles...\n")
    out.write("Key: '.' = Deleted OK; 'x' = skip, handle missing/changed.\n")
    released = skipped = errors = 0
    for info in handles:
        try:
            revision = int(info.revision)
        except ValueError:
            skipped += 1
            out.write("x")
            continue

        def plan(view: Any, info: HandleInfo = info, revision: int = revision) -> Any:
            return plan_delete_handle(view, info.id, revision)

        try:
            steps = await _steps(kv, plan, f"delete {info.id}")
        except ReleaseRefused:
            steps = []
        except (IpamError, DatastoreError) as exc:
            errors += 1
            out.write(f"\nDeleting handle {info.id} failed: {exc}.\n")
            continue
        if steps:
            released += 1
            out.write(".")
        else:
            skipped += 1
            out.write("x")
    out.write("\n")
    out.write(f"Released {released} handles; {skipped} skipped; {errors} errors.\n")


def _run_release(args: argparse.Namespace, ctx: Context) -> int:
    if not args.ip and not args.from_report:
        print("bgpctl: ipam release: give --ip IP or --from-report FILE", file=ctx.stderr)
        return 2
    ip = None
    if args.ip:
        try:
            ip = valid_ip(args.ip)
        except CommandError as exc:
            print(f"bgpctl: {exc}", file=ctx.stderr)
            return exc.code

    async def work(kv: KVStore) -> int:
        if args.from_report:
            await release_from_reports(kv, args.from_report, force=args.force, out=ctx.stdout)
            return 0
        assert ip is not None
        await release_ip(kv, ip, force=args.force, out=ctx.stdout)
        return 0

    return _run(args, ctx, work)


def register(
    commands: MutableSequence[Any],
    groups: MutableMapping[tuple[str, ...], str],
    command: Callable[..., Any],
) -> None:
    groups.setdefault(("ipam",), "IP address management, as calicoctl ipam (against --datastore)")
    commands.append(
        command(
            ("ipam", "show"),
            "overall IP usage, one address (--ip), borrowed addresses or the IPAM configuration",
            _show_arguments,
            _run_show,
        )
    )
    commands.append(
        command(
            ("ipam", "check"),
            "check IPAM against the Nodes and WorkloadEndpoints using addresses: "
            "leaked addresses and handles, claims without blocks",
            _check_arguments,
            _run_check,
        )
    )
    commands.append(
        command(
            ("ipam", "release"),
            "release an address (--ip) or what a check report found leaked",
            _release_arguments,
            _run_release,
        )
    )
