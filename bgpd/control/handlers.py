"""Requests in, responses out: the control protocol without sockets.

The protocol is newline-delimited JSON. A request is an object with a "command" and that
command's fields; the response is `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`
with a one-line error. `handle_line` never raises on bad input, so one bad client costs nothing.

A command that must wait for the daemon (`reload`) returns an awaitable instead of its
result; `complete` awaits it, and the server answers with what it gives.

A response's result may still hold records (`bgpd.status.records`): `encode_response` converts
them with the status codec while it encodes, in slices, so the server can yield to the event loop
between slices of a large route table instead of holding it for the whole dump.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from bgpd.control import bfd, ops
from bgpd.control.api import DaemonView
from bgpd.control.errors import RequestError
from bgpd.status.codec import to_json
from bgpd.status.records import RouteEntry

Response = dict[str, Any]

# Longest request line the server reads; every real request is far below it.
MAX_REQUEST_BYTES = 64 * 1024

# Records per encoded slice of a list result.
SLICE = 500


@dataclass(frozen=True, slots=True)
class _Command:
    run: Callable[[Mapping[str, Any], DaemonView], object]
    fields: frozenset[str]


def _status(request: Mapping[str, Any], view: DaemonView) -> object:
    return view.status()


def _routes(request: Mapping[str, Any], view: DaemonView) -> object:
    prefix = request.get("prefix")
    if prefix is not None:
        prefix = _lookup(canonical_prefix(prefix), request, view)
        if prefix is None:
            return []
    return sorted(view.routes(prefix), key=_route_order)


def _lookup(prefix: str, request: Mapping[str, Any], view: DaemonView) -> str | None:
    """`prefix` itself ("match": "exact", the default), or the most specific Loc-RIB prefix
    covering it ("match": "longest", as BIRD's `show route for`)."""
    match = request.get("match", "exact")
    if match == "exact":
        return prefix
    if match == "longest":
        return view.longest_match(prefix)
    raise RequestError(f'match must be "exact" or "longest", got {match!r}')


def _exported(request: Mapping[str, Any], view: DaemonView) -> object:
    peer = request.get("peer")
    if not isinstance(peer, str) or not peer:
        raise RequestError("peer must be a peer name or address")
    try:
        routes = view.exported(peer)
    except KeyError:
        raise RequestError(f"no such peer {peer!r}") from None
    return sorted(routes, key=lambda r: _net_order(r.prefix))


def _explain(request: Mapping[str, Any], view: DaemonView) -> object:
    prefix = canonical_prefix(request.get("prefix"))
    # No covering route: explain the prefix as given (why nothing is there).
    return view.explain(_lookup(prefix, request, view) or prefix)


def _net_order(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)


def _operator(
    run: Callable[[Mapping[str, Any], ops.OpsView], object],
) -> Callable[[Mapping[str, Any], DaemonView], object]:
    # The daemon is both views; ops.py keeps its own so it need not import this module.
    return lambda request, view: run(request, cast(ops.OpsView, view))


COMMANDS: dict[str, _Command] = {
    "status": _Command(_status, frozenset()),
    "routes": _Command(_routes, frozenset({"prefix", "match"})),
    "exported": _Command(_exported, frozenset({"peer"})),
    "explain": _Command(_explain, frozenset({"prefix", "match"})),
    "protocols": _Command(_operator(ops.protocols), frozenset({"name"})),
    "reset": _Command(_operator(ops.reset), frozenset({"peer"})),
    "refresh": _Command(_operator(ops.refresh), frozenset({"peer"})),
    "reload": _Command(_operator(ops.reload), frozenset()),
    "bfd_sessions": _Command(bfd.bfd_sessions, frozenset({"address"})),
}


def canonical_prefix(value: object) -> str:
    """'10.0.0.0/24' -> itself, '10.0.0.1' -> '10.0.0.1/32', 'FD00::/64' -> 'fd00::/64'."""
    if not isinstance(value, str):
        raise RequestError(f"prefix must be a string, got {type(value).__name__}")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise RequestError(f"invalid prefix {value!r}: {exc}") from None


def _route_order(route: RouteEntry) -> tuple[int, int, int, bool, str]:
    net = ipaddress.ip_network(route.prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen, not route.best, route.from_peer)


def ok(result: object) -> Response:
    return {"ok": True, "result": result}


def error(message: str) -> Response:
    return {"ok": False, "error": " ".join(message.split()) or "error"}


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line -> its JSON object; RequestError says what is wrong with it."""
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestError(f"request longer than {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"invalid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError(f"request must be a JSON object, got {type(request).__name__}")
    return request


def handle_request(request: Mapping[str, Any], view: DaemonView) -> Response:
    """Serve one parsed request. Request faults become error responses; an exception raised by
    the view itself propagates, since it is a daemon bug the caller should log."""
    name = request.get("command")
    if not isinstance(name, str):
        return error('request needs a "command" string')
    command = COMMANDS.get(name)
    if command is None:
        return error(f"unknown command {name!r} (known: {', '.join(sorted(COMMANDS))})")
    extra = sorted(set(request) - command.fields - {"command"})
    if extra:
        return error(f"unexpected field(s) for {name}: {', '.join(extra)}")
    try:
        return ok(command.run(request, view))
    except RequestError as exc:
        return error(str(exc))


async def complete(response: Response) -> Response:
    """`response` with an awaitable result (a command that waits) replaced by its outcome;
    a RequestError it raises becomes the error response."""
    result = response.get("result")
    if not inspect.isawaitable(result):
        return response
    try:
        return ok(await result)
    except RequestError as exc:
        return error(str(exc))


def handle_line(line: bytes, view: DaemonView) -> Response:
    try:
        request = parse_request(line)
    except RequestError as exc:
        return error(str(exc))
    return handle_request(request, view)


def internal_error(exc: BaseException) -> Response:
    return error(f"internal error: {type(exc).__name__}: {exc}")


def _is_record(obj: object) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _default(obj: object) -> object:
    if not _is_record(obj):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return to_json(obj)


def _plain(obj: object) -> object:
    return to_json(obj) if _is_record(obj) else obj


def _dumps(obj: object) -> str:
    return json.dumps(obj, default=_default, ensure_ascii=False)


def encode_response(response: Response, slice_size: int = SLICE) -> Iterator[bytes]:
    """The response as one JSON line, in pieces: a list result is encoded `slice_size` items at
    a time. The pieces joined are exactly one line ending in a newline."""
    result = response.get("result")
    if not response.get("ok") or not isinstance(result, list) or len(result) <= slice_size:
        yield (_dumps(response) + "\n").encode()
        return
    yield b'{"ok": true, "result": ['
    for start in range(0, len(result), slice_size):
        # One dumps per slice keeps the work in the C encoder; drop the slice's brackets.
        chunk = _dumps([_plain(item) for item in result[start : start + slice_size]])[1:-1]
        yield (chunk if start == 0 else ", " + chunk).encode()
    yield b"]}\n"
