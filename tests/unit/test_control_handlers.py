"""The control protocol without sockets: request lines in, response lines out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bgpd.control.errors import RequestError
from bgpd.control.handlers import (
    MAX_REQUEST_BYTES,
    Response,
    canonical_prefix,
    encode_response,
    handle_line,
    handle_request,
    internal_error,
)
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import DaemonStatus, PeerStatus, RouteEntry


def make_route(prefix: str, best: bool = True, from_peer: str = "Mesh_10_0_0_2") -> RouteEntry:
    return RouteEntry(
        prefix=prefix,
        family="ipv6" if ":" in prefix else "ipv4",
        next_hop="10.0.0.2",
        best=best,
        from_peer=from_peer,
        as_path="",
        origin="IGP",
        local_pref=100,
        med=None,
        communities=[],
        large_communities=[],
        originator_id=None,
        cluster_list=[],
        reason=None,
        in_fib=best,
    )


STATUS = DaemonStatus(
    router_id="10.0.0.1",
    asn=64512,
    node="node-1",
    version="0.1.0",
    started=1_700_000_000.0,
    peers=[
        PeerStatus(
            name="Mesh_10_0_0_2",
            address="10.0.0.2",
            port=179,
            type="node-to-node mesh",
            peer_as=64512,
            local_as=64512,
            bgp_state="Active",
            since=1_700_000_100.0,
            info="Socket: Connection refused",
            routes_received=0,
            routes_advertised=0,
            family="ipv4",
        )
    ],
)


class TableView:
    """A daemon with a fixed status and a fixed list of paths, recording route queries."""

    def __init__(self, routes: list[RouteEntry]) -> None:
        self._routes = routes
        self.queries: list[str | None] = []

    def status(self) -> DaemonStatus:
        return STATUS

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        self.queries.append(prefix)
        return [r for r in self._routes if prefix is None or r.prefix == prefix]


ROUTES = [
    make_route("fd00::/64"),
    make_route("10.0.1.0/24", best=False, from_peer="Mesh_10_0_0_3"),
    make_route("10.0.10.0/24"),
    make_route("10.0.1.0/24"),
    make_route("10.0.1.0/25"),
    make_route("9.0.0.0/8"),
]


def wire(response: Response) -> Any:
    """The response as the client receives it."""
    data = b"".join(encode_response(response))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    return json.loads(data)


def test_status() -> None:
    assert wire(handle_line(b'{"command": "status"}\n', TableView([]))) == {
        "ok": True,
        "result": to_json(STATUS),
    }


def test_routes_sorted_by_family_prefix_then_best_first() -> None:
    answer = wire(handle_line(b'{"command": "routes", "prefix": null}', TableView(ROUTES)))
    assert answer["ok"] is True
    got = [(r["prefix"], r["best"]) for r in answer["result"]]
    assert got == [
        ("9.0.0.0/8", True),
        ("10.0.1.0/24", True),
        ("10.0.1.0/24", False),
        ("10.0.1.0/25", True),
        ("10.0.10.0/24", True),
        ("fd00::/64", True),
    ]


def test_routes_prefix_is_canonicalised_before_the_view_sees_it() -> None:
    view = TableView(ROUTES)
    answer = wire(handle_request({"command": "routes", "prefix": " FD00:0::/64 "}, view))
    assert view.queries == ["fd00::/64"]
    assert [r["prefix"] for r in answer["result"]] == ["fd00::/64"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.0.0.0/24", "10.0.0.0/24"), ("10.0.0.7", "10.0.0.7/32"), ("fd00::1", "fd00::1/128")],
)
def test_canonical_prefix(value: str, expected: str) -> None:
    assert canonical_prefix(value) == expected


@pytest.mark.parametrize("value", ["10.0.0.1/24", "10.0.0.0/33", "not-a-prefix", 42, ""])
def test_canonical_prefix_rejects(value: object) -> None:
    with pytest.raises(RequestError, match="prefix"):
        canonical_prefix(value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"", "invalid JSON"),
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"status"', "must be a JSON object, got str"),
        (b"{}", 'needs a "command" string'),
        (b'{"command": 7}', 'needs a "command" string'),
        (b'{"command": "reboot"}', "unknown command 'reboot' (known: "),
        (b'{"command": "status", "verbose": true}', "unexpected field(s) for status: verbose"),
        (b'{"command": "routes", "prefix": "10.0.0.1/8"}', "invalid prefix '10.0.0.1/8'"),
        (b'{"command": "routes", "prefix": ["x"]}', "prefix must be a string, got list"),
        (b" " * (MAX_REQUEST_BYTES + 1), "request longer than"),
    ],
)
def test_bad_requests_get_one_line_errors(line: bytes, message: str) -> None:
    answer = wire(handle_line(line, TableView(ROUTES)))
    assert answer["ok"] is False
    assert message in answer["error"]
    assert "\n" not in answer["error"]


def test_view_failure_propagates_for_the_server_to_log() -> None:
    class BrokenView(TableView):
        def status(self) -> DaemonStatus:
            raise RuntimeError("rib lock\nheld")

    with pytest.raises(RuntimeError):
        handle_line(b'{"command": "status"}', BrokenView([]))
    assert wire(internal_error(RuntimeError("rib lock\nheld"))) == {
        "ok": False,
        "error": "internal error: RuntimeError: rib lock held",
    }


def test_large_list_is_encoded_in_slices_that_join_into_one_line() -> None:
    routes = [make_route(f"10.{i // 256}.{i % 256}.0/24") for i in range(1234)]
    pieces = list(encode_response({"ok": True, "result": routes}, slice_size=100))
    assert len(pieces) == 2 + 13
    data = b"".join(pieces)
    assert data.count(b"\n") == 1
    assert [from_json(RouteEntry, r) for r in json.loads(data)["result"]] == routes


def test_small_and_empty_lists_are_one_piece() -> None:
    assert list(encode_response({"ok": True, "result": []})) == [b'{"ok": true, "result": []}\n']
    assert len(list(encode_response({"ok": True, "result": ROUTES}, slice_size=6))) == 1


def test_unencodable_result_raises() -> None:
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        list(encode_response({"ok": True, "result": object()}))


def test_routes_and_explain_by_longest_match() -> None:
    """`"match": "longest"` looks an address up as BIRD's `show route for` does."""
    class Longest:
        def __init__(self) -> None:
            self.asked: list[str | None] = []

        def longest_match(self, prefix: str) -> str | None:
            return "192.168.2.0/26" if prefix.startswith("192.168.2.") else None

        def routes(self, prefix: str | None = None) -> list[object]:
            self.asked.append(prefix)
            return []

        def explain(self, prefix: str) -> str:
            return prefix

    view = Longest()
    ok = handle_line(
        json.dumps({"command": "routes", "prefix": "192.168.2.5", "match": "longest"}).encode(),
        view,  # type: ignore[arg-type]
    )
    assert ok["ok"] and view.asked == ["192.168.2.0/26"]
    none = handle_line(b'{"command": "routes", "prefix": "10.0.0.1", "match": "longest"}', view)  # type: ignore[arg-type]
    assert none == {"ok": True, "result": []}
    explained = handle_line(
        b'{"command": "explain", "prefix": "192.168.2.5", "match": "longest"}', view  # type: ignore[arg-type]
    )
    assert explained["result"] == "192.168.2.0/26"
    bad = handle_line(b'{"command": "routes", "prefix": "10.0.0.1", "match": "best"}', view)  # type: ignore[arg-type]
    assert not bad["ok"] and "match must be" in bad["error"]
