"""bgpctl's operator commands: `show protocols [all] [NAME]` (BIRD's layout), `neighbor NAME
reset|refresh`, `reload`, and the probes `check ready` / `check live`; each takes `--json`.

`register()` adds them to bgpctl's `COMMANDS` (as route_cmds does). The formatters are pure
(records and `now` in, text out) and checked against golden files.

Exit statuses, as for every bgpctl command: 0 done, 1 bgpd answered with an error (no such
peer, a session that cannot be refreshed, a reload refused), 2 bad usage, 3 bgpd unreachable
(not running, or no answer within the timeout), 4 permission denied on the control socket.
`check ready` exits 1 while any configured session (but those with local workloads, as
calico-node -bird-ready) is not Established.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, MutableMapping, MutableSequence, Sequence
from datetime import tzinfo
from typing import Any, Protocol, TextIO

from bgpd.cli.client import ControlClient, ResponseError
from bgpd.cli.format import bird_info, bird_since, bird_state
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import (
    CALICO_PEER_TYPES,
    RELOAD_UNCHANGED,
    ProtocolDetail,
    ReloadResult,
    bird_error,
)

# `check ready` when some session is not Established (as calico-node -bird-ready).
NOT_READY = 1
LIVE_TIMEOUT = 5.0

class UsageError(ResponseError):
    """Arguments argparse accepted but the command cannot use."""

    exit_code = 2


class Context(Protocol):
    """What the commands use of bgpctl's Context."""

    socket_path: str
    stdout: TextIO
    clock: Callable[[], float]

    def client(self) -> ControlClient: ...

    def print_json(self, data: Any) -> None: ...


# --- show protocols ------------------------------------------------------------------------

# BIRD 2's `show protocols` line (nest/proto.c proto_cmd_show), its Name column widened to
# the longest name so that Calico's long protocol names keep the columns aligned.
_LINE = "{:<{width}} {:<10} {:<10} {:<6} {:<12}  {}"
_COLUMNS = ("Name", "Proto", "Table", "State", "Since", "Info")


def _table(detail: ProtocolDetail) -> str:
    return "master4" if detail.peer.family == "ipv4" else "master6"


def format_protocols(
    details: Sequence[ProtocolDetail], now: float, *, full: bool = False, tz: tzinfo | None = None
) -> str:
    """BIRD's `show protocols` (one line per session) or `show protocols all` (with detail)."""
    width = max([10, *(len(d.peer.name) for d in details)])
    lines = [_LINE.format(*_COLUMNS, width=width)]
    for d in sorted(details, key=lambda d: d.peer.name):
        p = d.peer
        since = bird_since(p.since, now, tz)
        row = (p.name, "BGP", _table(d), bird_state(p), since, bird_info(p))
        lines.append(_LINE.format(*row, width=width).rstrip())
        if full:
            lines.extend(_detail_lines(d))
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _detail_lines(d: ProtocolDetail) -> list[str]:
    p = d.peer
    established = p.bgp_state == "Established"
    session = "internal" if p.peer_as == p.local_as else "external"
    if p.passive:
        session += " passive"
    out = [
        f"  Description:    {p.type}",
        f"  BGP state:          {p.bgp_state}",
        f"    Neighbor address: {p.address}",
        f"    Neighbor port:    {p.port}",
        f"    Neighbor AS:      {p.peer_as}",
        f"    Local AS:         {p.local_as}",
    ]
    if d.neighbor_id is not None:
        out.append(f"    Neighbor ID:      {d.neighbor_id}")
    out.append(f"    Session:          {session}")
    if d.source_address is not None:
        out.append(f"    Source address:   {d.source_address}")
    out.append(f"    Next hop:         {d.next_hop}")
    if d.allow_local_as:
        out.append(f"    Allow local AS:   {d.allow_local_as}")
    add_path = d.add_path
    if established and d.add_path != "off":
        got = [f"rx {' '.join(d.add_path_rx)}" if d.add_path_rx else "",
               f"tx {' '.join(d.add_path_tx)}" if d.add_path_tx else ""]
        add_path += f" (negotiated: {', '.join(g for g in got if g) or 'none'})"
    out.append(f"    ADD-PATH:         {add_path}")
    if established and d.hold_time is not None:
        out.append(f"    Hold time:        {d.hold_time} (offered {d.configured_hold_time})")
        out.append(f"    Keepalive time:   {d.keepalive_time}")
    else:
        out.append(f"    Hold time:        offered {d.configured_hold_time}")
    if p.info and not established:
        out.append(f"    Last error:       {bird_error(p.info)}")
    out.append(f"    Messages:         {d.messages_received} received, {d.messages_sent} sent")
    out.append(f"    Updates:          {d.updates_received} received, {d.updates_sent} sent")
    out.append(f"  Channel {p.family}")
    out.append(f"    State:          {'UP' if established else 'DOWN'}")
    out.append(f"    Table:          {_table(d)}")
    if d.filters:
        # BGPPeer.filters by name (whether they are applied, `bgpd plan` notes say).
        out.append(f"    BGPFilters:     {' '.join(d.filters)}")
    for i, text in enumerate(d.communities):
        out.append(f"    {'Communities:' if i == 0 else '':<16}{text}")
    out.append(
        f"    Routes:         {p.routes_received} imported, {p.routes_advertised} exported"
    )
    if established:
        out.append(f"    Route refresh:  {'yes' if d.route_refresh else 'no'}")
    return out


def _protocols_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "words",
        nargs="*",
        metavar="[all] [NAME]",
        help="`all` for BIRD-like detail; NAME is a protocol name (Mesh_10_0_0_2) or address",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_protocols(args: argparse.Namespace, ctx: Context) -> int:
    words: list[str] = list(args.words)
    full = bool(words) and words[0] == "all"
    if full:
        words = words[1:]
    if len(words) > 1:
        raise UsageError(f"show protocols: one NAME at most, got {' '.join(words)}")
    request: dict[str, Any] = {"name": words[0]} if words else {}
    result = ctx.client().request("protocols", **request)
    try:
        details = [from_json(ProtocolDetail, r) for r in result]
    except (TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable protocol list from bgpd: {exc}") from None
    if args.json:
        ctx.print_json([to_json(d) for d in details])
    else:
        ctx.stdout.write(format_protocols(details, ctx.clock(), full=full))
    return 0


# --- neighbor NAME reset|refresh, reload ------------------------------------------------------


def _neighbor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="peer name (e.g. Mesh_10_0_0_2) or address")
    parser.add_argument(
        "action",
        choices=("reset", "refresh"),
        help="reset: close the session (Cease, Administrative Reset) and let it start again; "
        "refresh: ask the peer to send its routes again (ROUTE-REFRESH), keeping the session",
    )
    _json_flag(parser)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run_neighbor(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "reset":
        result = ctx.client().request("reset", peer=args.name)
        if args.json:
            ctx.print_json({"peer": args.name, "action": "reset", "result": str(result)})
        else:
            ctx.stdout.write(f"{result}\n")
        return 0
    families = ctx.client().request("refresh", peer=args.name)
    if not isinstance(families, list):
        raise ResponseError("unreadable refresh answer from bgpd")
    if args.json:
        ctx.print_json({"peer": args.name, "action": "refresh", "families": families})
    else:
        ctx.stdout.write(f"{args.name}: route refresh requested for {', '.join(families)}\n")
    return 0


def format_reload(result: ReloadResult) -> str:
    """One line, as BIRD's `configure` answers: what the reload did."""
    if result.outcome == RELOAD_UNCHANGED:
        return "bgpd: reloaded, configuration unchanged\n"
    parts = [
        f"{what} {', '.join(names)}"
        for what, names in (
            ("added", result.added), ("removed", result.removed), ("restarted", result.changed)
        )
        if names
    ]
    return "bgpd: reloaded, new configuration applied" + (
        f" (sessions {'; '.join(parts)})\n" if parts else "\n"
    )


def _run_reload(args: argparse.Namespace, ctx: Context) -> int:
    # bgpd answers once the reload is done; a refused one is an error answer (exit 1).
    answer = ctx.client().request("reload")
    try:
        result = from_json(ReloadResult, answer)
    except (TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable reload answer from bgpd: {exc}") from None
    if args.json:
        ctx.print_json({"action": "reload", **to_json(result)})
    else:
        ctx.stdout.write(format_reload(result))
    return 0


# --- probes -----------------------------------------------------------------------------------


def _run_ready(args: argparse.Namespace, ctx: Context) -> int:
    status = ctx.client().status()
    # calico-node -bird-ready counts Mesh_/Global_/Node_ sessions, not local workloads'.
    peers = [p for p in status.peers if p.type in CALICO_PEER_TYPES]
    down = sorted((p for p in peers if p.bgp_state != "Established"), key=lambda p: p.name)
    total = len(peers)
    if args.json:
        ctx.print_json(
            {
                "ready": not down,
                "established": total - len(down),
                "total": total,
                "not_established": [
                    {"name": p.name, "address": p.address, "state": p.bgp_state,
                     "info": bird_info(p)}
                    for p in down
                ],
            }
        )
        return NOT_READY if down else 0
    if not down:
        ctx.stdout.write(f"ready: {total}/{total} sessions established\n")
        return 0
    ctx.stdout.write(f"not ready: {total - len(down)}/{total} sessions established\n")
    for p in down:
        ctx.stdout.write(f"  {p.name} ({p.address}): {bird_info(p)}\n")
    return NOT_READY


def _live_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--within",
        type=float,
        default=LIVE_TIMEOUT,
        metavar="SECONDS",
        help=f"fail unless bgpd answers within this long (default {LIVE_TIMEOUT:g})",
    )
    _json_flag(parser)


def _run_live(args: argparse.Namespace, ctx: Context) -> int:
    if not args.within > 0:
        raise UsageError("check live: --within must be positive")
    with ControlClient(ctx.socket_path, args.within) as client:
        client.request("status")
    if args.json:
        ctx.print_json({"live": True})
    else:
        ctx.stdout.write("live: bgpd answered\n")
    return 0


def register(
    commands: MutableSequence[Any],
    groups: MutableMapping[tuple[str, ...], str],
    command: Callable[..., Any],
) -> None:
    """Add the commands to bgpctl's registry; `command` is bgpctl's Command class."""
    groups.setdefault(("show",), "show daemon state")
    groups.setdefault(("check",), "probes for readiness and liveness (exit status only)")
    commands.append(
        command(
            ("show", "protocols"),
            "sessions in BIRD's `show protocols [all] [NAME]` layout",
            _protocols_arguments,
            _run_protocols,
        )
    )
    commands.append(
        command(
            ("neighbor",),
            "reset or refresh one session: neighbor NAME reset|refresh",
            _neighbor_arguments,
            _run_neighbor,
        )
    )
    commands.append(
        command(
            ("reload",),
            "make bgpd read its datastore again and apply the changes; exits 1 with the "
            "reason when the new configuration is refused (the running one stays)",
            _json_flag,
            _run_reload,
        )
    )
    commands.append(
        command(
            ("check", "ready"),
            "readiness probe: exit 0 when every configured session is Established, "
            f"{NOT_READY} (listing the others) when not, 3 when bgpd does not answer",
            _json_flag,
            _run_ready,
        )
    )
    commands.append(
        command(
            ("check", "live"),
            "liveness probe: exit 0 when bgpd's control socket answers in time, 3 when not",
            _live_arguments,
            _run_live,
        )
    )
