"""bgpctl's `show bfd sessions [ADDRESS]`: BIRD 2's layout (bgpd/bfd/status.py), or JSON.

Exit statuses as for every bgpctl command: 0 done, 1 bgpd answered with an error ("There is
no BFD protocol running", no session with ADDRESS), 2 bad usage, 3 bgpd unreachable.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

from bgpd.bfd.status import BfdSessionStatus, format_bird_sessions
from bgpd.cli.client import ResponseError
from bgpd.cli.ops_cmds import Context


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", help="only the session with this peer address")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _run(args: argparse.Namespace, ctx: Context) -> int:
    request: dict[str, Any] = {"address": args.address} if args.address else {}
    result = ctx.client().request("bfd_sessions", **request)
    try:
        records = [BfdSessionStatus.from_json(r) for r in result]
    except (KeyError, TypeError, ValueError) as exc:
        raise ResponseError(f"unreadable BFD session list from bgpd: {exc!r}") from None
    if args.json:
        ctx.print_json([r.to_json() for r in records])
    else:
        ctx.stdout.write(format_bird_sessions(records, ctx.clock()))
    return 0


def register(
    commands: MutableSequence[Any],
    groups: MutableMapping[tuple[str, ...], str],
    command: Callable[..., Any],
) -> None:
    groups.setdefault(("show",), "show daemon state")
    groups.setdefault(("show", "bfd"), "BFD (RFC 5880) state")
    commands.append(
        command(
            ("show", "bfd", "sessions"),
            "BFD sessions in BIRD's `show bfd sessions` layout: address, interface, state, "
            "since, transmit interval, detection time",
            _arguments,
            _run,
        )
    )
