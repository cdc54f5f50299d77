"""bgpctl: ask a running bgpd about its sessions and routes.

Commands are declared in `COMMANDS`, each with its word path (("status",), later
("show", "protocols") or ("neighbor", "reset")), its arguments and a `run(args, ctx)` returning
the exit status; `build_parser` turns the paths into nested subcommands. Exit statuses: 0 done,
1 bgpd answered with an error, 2 bad usage, 3 bgpd unreachable, 4 permission denied.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from bgpd import __version__
from bgpd.cli import bfd_cmds, datastore_cmds, ipam_cmds, ops_cmds, route_cmds
from bgpd.cli.abbrev import AbbreviationError, expand
from bgpd.cli.client import (
    DEFAULT_SOCKET,
    DEFAULT_TIMEOUT,
    SOCKET_ENV,
    ClientError,
    ControlClient,
)
from bgpd.cli.format import (
    BGPD_HEADER,
    HEADER,
    format_routes,
    format_status,
    routes_json,
    status_json,
)

PROG = "bgpctl"


@dataclass
class Context:
    """What a command may use: the daemon connection, the output streams and the clock."""

    socket_path: str
    timeout: float
    stdout: TextIO
    stderr: TextIO
    clock: Callable[[], float] = time.time
    _client: ControlClient | None = field(default=None, repr=False)

    def client(self) -> ControlClient:
        if self._client is None:
            self._client = ControlClient(self.socket_path, self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def print_json(self, data: Any) -> None:
        json.dump(data, self.stdout, indent=2, ensure_ascii=False)
        self.stdout.write("\n")


@dataclass(frozen=True, slots=True)
class Command:
    path: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Context], int]


# Help for the intermediate words of multi-word commands, e.g. ("show",).
GROUPS: dict[tuple[str, ...], str] = {}


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _json_flag(parser)
    parser.add_argument(
        "--bgpd",
        action="store_true",
        help=f'open with "{BGPD_HEADER}" instead of calicoctl\'s "{HEADER}"',
    )


def _run_status(args: argparse.Namespace, ctx: Context) -> int:
    status = ctx.client().status()
    if args.json:
        ctx.print_json(status_json(status))
    else:
        header = BGPD_HEADER if args.bgpd else HEADER
        ctx.stdout.write(format_status(status, now=ctx.clock(), header=header))
    return 0


def _routes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prefix",
        nargs="?",
        help="only this prefix, e.g. 10.0.0.0/24; an address finds the most specific "
        "prefix covering it (as BIRD's show route for)",
    )
    _json_flag(parser)


def _run_routes(args: argparse.Namespace, ctx: Context) -> int:
    longest = args.prefix is not None and "/" not in args.prefix
    routes = ctx.client().routes(args.prefix, longest=longest)
    if args.json:
        ctx.print_json(routes_json(routes))
    else:
        ctx.stdout.write(format_routes(routes, args.prefix))
    return 0


COMMANDS: list[Command] = [
    Command(
        ("status",),
        "peer sessions, as calicoctl node status shows them",
        _status_arguments,
        _run_status,
    ),
    Command(
        ("routes",),
        "paths in the routing table, best and candidates",
        _routes_arguments,
        _run_routes,
    ),
]

# Words a command takes after its path that abbreviate as BIRD's command words do.
KEYWORDS: dict[tuple[str, ...], tuple[str, ...]] = {("show", "protocols"): ("all",)}

route_cmds.register(COMMANDS, GROUPS, Command)
ops_cmds.register(COMMANDS, GROUPS, Command)
bfd_cmds.register(COMMANDS, GROUPS, Command)
ipam_cmds.register(COMMANDS, GROUPS, Command)
datastore_cmds.register(COMMANDS, Command)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Query and control a running bgpd.")
    parser.add_argument(
        "--control-socket",
        metavar="PATH",
        default=os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET,
        help=f"bgpd's control socket (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"give up on bgpd after this long (default: {DEFAULT_TIMEOUT:g})",
    )
    datastore_cmds.add_datastore_option(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    # One subparsers action per word level, created on demand as command paths are added.
    levels: dict[tuple[str, ...], argparse._SubParsersAction[argparse.ArgumentParser]] = {}

    def subparsers_of(prefix: tuple[str, ...], owner: argparse.ArgumentParser) -> Any:
        if prefix not in levels:
            dest = "_".join(("command", *prefix))
            levels[prefix] = owner.add_subparsers(dest=dest, metavar="COMMAND", required=True)
        return levels[prefix]

    owners: dict[tuple[str, ...], argparse.ArgumentParser] = {(): parser}
    for command in commands:
        for depth in range(1, len(command.path)):
            prefix = command.path[:depth]
            if prefix not in owners:
                parent = subparsers_of(prefix[:-1], owners[prefix[:-1]])
                group_help = GROUPS.get(prefix, "")
                owners[prefix] = parent.add_parser(
                    prefix[-1], help=group_help, description=group_help
                )
        prefix = command.path[:-1]
        leaf = subparsers_of(prefix, owners[prefix]).add_parser(
            command.path[-1], help=command.help, description=command.help
        )
        command.add_arguments(leaf)
        leaf.set_defaults(_command=command)
    return parser


# Options before the command words that take a value (skipped when expanding words).
_VALUE_OPTIONS = ("--control-socket", "--timeout", "--datastore")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = expand(argv, [c.path for c in COMMANDS], _VALUE_OPTIONS, KEYWORDS)
    except AbbreviationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    ctx = Context(args.control_socket, args.timeout, sys.stdout, sys.stderr)
    command: Command = args._command
    try:
        return command.run(args, ctx)
    except ClientError as exc:
        print(f"{PROG}: {exc}", file=ctx.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`bgpctl routes | head`); say nothing more to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
