"""bgpctl's route-policy commands: `show route export PEER` and `explain PREFIX`.

`register()` adds them to bgpctl's `COMMANDS` (bgpctl calls it, so this module never imports
bgpctl, which also runs as `python -m bgpd.cli.bgpctl`, i.e. as `__main__`). The formatters
are pure (records in, text out) and checked against golden files.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, MutableMapping, MutableSequence, Sequence
from typing import Any, Protocol, TextIO

from bgpd.cli.client import ControlClient, ResponseError
from bgpd.cli.format import render_table
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import Explanation, ExportedRoute


class Context(Protocol):
    """What the commands use of bgpctl's Context."""

    stdout: TextIO

    def client(self) -> ControlClient: ...

    def print_json(self, data: Any) -> None: ...


EXPORT_COLUMNS = ("PREFIX", "NEXT HOP", "AS PATH", "ORIGIN", "LOCAL PREF", "MED", "COMMUNITIES")


def format_exported(peer: str, routes: Sequence[ExportedRoute]) -> str:
    if not routes:
        return f"No routes exported to {peer}.\n"
    rows = [
        (
            r.prefix,
            r.next_hop,
            r.as_path or "-",
            r.origin,
            "-" if r.local_pref is None else str(r.local_pref),
            "-" if r.med is None else str(r.med),
            " ".join([*r.communities, *r.large_communities]) or "-",
        )
        for r in routes
    ]
    return f"Routes exported to {peer}: {len(routes)}\n" + render_table(EXPORT_COLUMNS, rows)


def format_explanation(e: Explanation) -> str:
    lines = [f"{e.prefix} ({e.family})"]
    if e.in_loc_rib:
        lines.append("  Loc-RIB: present")
    elif e.candidates:
        lines.append("  Loc-RIB: absent (no accepted path)")
    else:
        lines.append("  Loc-RIB: absent (no path received or originated)")
    for c in e.candidates:
        mark = "*" if c.best else ("!" if not c.accepted else " ")
        extra = " (stale)" if c.stale else ""
        as_path = c.as_path or "-"
        lp = "" if c.local_pref is None else f" local-pref {c.local_pref}"
        lines.append(
            f"   {mark} from {c.from_peer} via {c.next_hop} as-path {as_path}{lp}: "
            f"{c.verdict}{extra}"
        )
    fib = "unknown" if e.in_fib is None else "yes" if e.in_fib else "no"
    lines.append(f"  FIB: {fib}: {e.fib_reason}")
    if e.exports:
        lines.append("  Export:")
        width = max(len(x.peer) for x in e.exports)
        for x in e.exports:
            verdict = "yes" if x.exported else "no "
            lines.append(f"    {x.peer.ljust(width)}  {verdict}  {x.reason}")
    else:
        lines.append("  Export: no peers configured")
    return "\n".join(lines) + "\n"


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("peer", help="peer name (e.g. Mesh_10_0_0_2) or address")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_export(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.client().request("exported", peer=args.peer)
    try:
        routes = [from_json(ExportedRoute, r) for r in result]
    except (TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable export list from bgpd: {exc}") from None
    if args.json:
        ctx.print_json([to_json(r) for r in routes])
    else:
        ctx.stdout.write(format_exported(args.peer, routes))
    return 0


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", help="e.g. 192.168.1.0/26 (an address means /32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_explain(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.client().request("explain", prefix=args.prefix)
    try:
        explanation = from_json(Explanation, result)
    except (TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable explanation from bgpd: {exc}") from None
    if args.json:
        ctx.print_json(to_json(explanation))
    else:
        ctx.stdout.write(format_explanation(explanation))
    return 0


def register(
    commands: MutableSequence[Any],
    groups: MutableMapping[tuple[str, ...], str],
    command: Callable[..., Any],
) -> None:
    """Add the commands to bgpctl's registry; `command` is bgpctl's Command class."""
    groups.setdefault(("show",), "show daemon state")
    groups.setdefault(("show", "route"), "routes as exported")
    commands.append(
        command(
            ("show", "route", "export"),
            "routes advertised to a peer (its Adj-RIB-Out)",
            _export_arguments,
            _run_export,
        )
    )
    commands.append(
        command(
            ("explain",),
            "why a prefix is or is not in the RIB, the FIB and each peer's export",
            _explain_arguments,
            _run_explain,
        )
    )
