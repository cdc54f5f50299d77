"""bgpctl's route commands: `show route [PREFIX | for ADDR] [protocol NAME] [export PEER]
[primary] [all]` (BIRD's words: `for` finds the most specific prefix covering ADDR, `export`
shows a peer's Adj-RIB-Out) and `explain PREFIX`.

`register()` adds them to bgpctl's `COMMANDS` (bgpctl calls it, so this module never imports
bgpctl, which also runs as `python -m bgpd.cli.bgpctl`, i.e. as `__main__`). The formatters
are pure (records in, text out) and checked against golden files.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Callable, MutableMapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from bgpd.cli.client import ControlClient, ResponseError
from bgpd.cli.format import format_routes, render_table, routes_json
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import Explanation, ExportedRoute, RouteEntry


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


class UsageError(ResponseError):
    """Words argparse accepted but `show route` cannot use."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """`show route`'s words, parsed."""

    prefix: str | None = None
    longest: bool = False
    protocol: str | None = None
    export: str | None = None
    primary: bool = False
    full: bool = False


# BIRD's names for bgpd's own route sources (the BIRD socket lists them as protocols).
_SOURCES = {"static1": "local", "static2": "local", "kernel1": "kernel", "kernel2": "kernel"}


def parse_route_words(words: Sequence[str]) -> RouteQuery:
    prefix: str | None = None
    longest = primary = full = False
    protocol = export = None
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word in ("for", "protocol", "export"):
            if not rest:
                raise UsageError(f"show route: {word} needs an argument")
            value = rest.pop(0)
            if word == "for":
                if prefix is not None:
                    raise UsageError("show route: only one prefix expected")
                prefix, longest = _network(value), True
            elif word == "protocol":
                protocol = value
            else:
                export = value
        elif word == "primary":
            primary = True
        elif word == "all":
            full = True
        else:
            if prefix is not None:
                raise UsageError("show route: only one prefix expected")
            prefix = _network(word)
    return RouteQuery(prefix, longest, protocol, export, primary, full)


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise UsageError(f"show route: not a prefix or address: {text!r}") from None


def format_route_details(routes: Sequence[RouteEntry]) -> str:
    """`show route ... all`: each path with every attribute, BIRD's `all` in bgpctl's words."""
    if not routes:
        return "No routes found.\n"
    lines: list[str] = []
    for r in routes:
        marks = ("  *best" if r.best else "") + ("  (stale)" if r.stale else "")
        via = r.next_hop + (f" dev {r.interface}" if r.interface else "")
        lines.append(f"{r.prefix} via {via} from {r.from_peer}{marks}")
        lines.append(f"    origin: {r.origin}, as-path: {r.as_path or '-'}")
        if r.local_pref is not None or r.med is not None:
            lines.append(f"    local-pref: {_dash(r.local_pref)}, med: {_dash(r.med)}")
        if r.communities or r.large_communities:
            lines.append("    communities: " + " ".join([*r.communities, *r.large_communities]))
        if r.originator_id is not None or r.cluster_list:
            lines.append(
                f"    originator-id: {r.originator_id or '-'}, cluster-list: "
                f"{' '.join(r.cluster_list) or '-'}"
            )
        if r.reason is not None:
            lines.append(f"    best by: {r.reason}")
        if r.in_fib is not None:
            lines.append(f"    in FIB: {'yes' if r.in_fib else 'no'}")
    return "\n".join(lines) + "\n"


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _route_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "words",
        nargs="*",
        metavar="[PREFIX | for ADDR] [protocol NAME] [export PEER] [primary] [all]",
        help="as BIRD's show route: PREFIX exactly, `for ADDR` the most specific prefix "
        "covering ADDR; `protocol NAME` only that peer's paths (static1/kernel1 for the "
        "node's own and kernel-learned ones); `export PEER` what PEER is sent",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_route(args: argparse.Namespace, ctx: Context) -> int:
    q = parse_route_words(args.words)
    if q.export is not None:
        return _run_export(q, args.json, ctx)
    client = ctx.client()
    routes = client.routes(q.prefix, longest=q.longest)
    if q.protocol is not None:
        source = _SOURCES.get(q.protocol, q.protocol)
        routes = [r for r in routes if r.from_peer == source]
    if q.primary:
        routes = [r for r in routes if r.best]
    if args.json:
        ctx.print_json(routes_json(routes))
    elif q.full:
        ctx.stdout.write(format_route_details(routes))
    else:
        ctx.stdout.write(format_routes(routes, q.prefix))
    return 0


def _run_export(q: RouteQuery, as_json: bool, ctx: Context) -> int:
    assert q.export is not None
    result = ctx.client().request("exported", peer=q.export)
    try:
        routes = [from_json(ExportedRoute, r) for r in result]
    except (TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable export list from bgpd: {exc}") from None
    if q.prefix is not None:
        routes = _select_prefix(routes, q.prefix, q.longest)
    if as_json:
        ctx.print_json([to_json(r) for r in routes])
    else:
        ctx.stdout.write(format_exported(q.export, routes))
    return 0


def _select_prefix(
    routes: list[ExportedRoute], prefix: str, longest: bool
) -> list[ExportedRoute]:
    if not longest:
        return [r for r in routes if r.prefix == prefix]
    want = ipaddress.ip_network(prefix)
    covering = [
        (ipaddress.ip_network(r.prefix).prefixlen, r)
        for r in routes
        if ipaddress.ip_network(r.prefix).version == want.version
        and want.subnet_of(ipaddress.ip_network(r.prefix))  # type: ignore[arg-type]
    ]
    if not covering:
        return []
    best = max(plen for plen, _ in covering)
    return [r for plen, r in covering if plen == best]


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prefix",
        help="e.g. 192.168.1.0/26; an address explains the most specific prefix covering it",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_explain(args: argparse.Namespace, ctx: Context) -> int:
    fields: dict[str, Any] = {"prefix": args.prefix}
    if "/" not in args.prefix:
        fields["match"] = "longest"
    result = ctx.client().request("explain", **fields)
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
    commands.append(
        command(
            ("show", "route"),
            "routes as BIRD's show route: [PREFIX | for ADDR] [protocol NAME] "
            "[export PEER] [primary] [all]",
            _route_arguments,
            _run_route,
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
