"""bgpctl's operator commands: `show protocols [all] [NAME]`, `neighbor NAME reset|refresh`,
`reload`, `check ready|live`. The handlers against a fake view; the text against golden files
(fixed records, fixed clock, UTC); the CLI end to end against a real control server.

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the diff.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from bgpd.cli.bgpctl import main
from bgpd.cli.ops_cmds import format_protocols, format_reload
from bgpd.control.handlers import complete, handle_request
from bgpd.control.server import ControlServer
from bgpd.status.codec import from_json, to_json
from bgpd.status.records import (
    RELOAD_APPLIED,
    RELOAD_REFUSED,
    RELOAD_UNCHANGED,
    DaemonStatus,
    PeerStatus,
    ProtocolDetail,
    ReloadResult,
    RouteEntry,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
NOW = 1_700_000_600.0


def peer(
    name: str, address: str, state: str, *, info: str = "", peer_as: int = 64512,
    family: str = "ipv4", passive: bool = False, type_: str = "node-to-node mesh",
) -> PeerStatus:
    return PeerStatus(
        name=name, address=address, port=179, type=type_, peer_as=peer_as, local_as=64512,
        bgp_state=state, since=1_700_000_000.0, info=info,
        routes_received=3 if state == "Established" else 0,
        routes_advertised=2 if state == "Established" else 0,
        family=family, passive=passive,
    )


def detail(
    p: PeerStatus, *, neighbor_id: str | None = None, source: str | None = None, **more: Any
) -> ProtocolDetail:
    up = p.bgp_state == "Established"
    return ProtocolDetail(
        peer=p,
        neighbor_id=neighbor_id,
        hold_time=90 if up else None,
        keepalive_time=30 if up else None,
        configured_hold_time=240,
        families=[p.family] if up else [],
        route_refresh=up,
        source_address=source,
        messages_received=41 if up else 0,
        messages_sent=40 if up else 2,
        updates_received=5 if up else 0,
        updates_sent=4 if up else 0,
        **more,
    )


DETAILS = [
    detail(peer("Mesh_10_0_0_2", "10.0.0.2", "Established"), neighbor_id="10.0.0.2"),
    detail(peer("Mesh_10_0_0_3", "10.0.0.3", "Active", info="Connection refused")),
    detail(peer("Mesh_10_0_0_4", "10.0.0.4", "Idle", passive=True)),
    detail(
        peer("Global_10_0_0_254", "10.0.0.254", "Established", peer_as=65000, type_="global"),
        neighbor_id="10.0.0.254", source="10.0.0.1", next_hop="keep", allow_local_as=1,
        add_path="rx/tx", add_path_rx=["ipv4"], filters=["only-pods"],
        communities=["192.168.0.0/16: 65000:100 65000:1:2"],
    ),
    detail(peer("Mesh_fd00__2", "fd00::2", "OpenSent", family="ipv6")),
]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"


def test_show_protocols_golden() -> None:
    check_golden("protocols.txt", format_protocols(DETAILS, NOW, tz=UTC))


def test_show_protocols_all_golden() -> None:
    check_golden("protocols_all.txt", format_protocols(DETAILS, NOW, full=True, tz=UTC))


def test_show_protocols_empty() -> None:
    assert format_protocols([], NOW, tz=UTC) == (
        "Name       Proto      Table      State  Since         Info\n"
    )


def test_protocol_detail_json_round_trip() -> None:
    for d in DETAILS:
        assert from_json(ProtocolDetail, json.loads(json.dumps(to_json(d)))) == d


# --- handlers, against a fake view ------------------------------------------------------------


class FakeView:
    def __init__(self, details: Sequence[ProtocolDetail] = DETAILS) -> None:
        self.details = list(details)
        self.resets: list[str] = []
        self.refreshes: list[str] = []
        self.reloads = 0
        # What the next reload answers with.
        self.reload_result = ReloadResult(RELOAD_UNCHANGED)

    def _find(self, name: str) -> ProtocolDetail:
        for d in self.details:
            if name in (d.peer.name, d.peer.address):
                return d
        raise KeyError(name)

    def status(self) -> DaemonStatus:
        return DaemonStatus("10.0.0.1", 64512, "node1", "0.1.0", 1_699_999_000.0,
                            [d.peer for d in self.details])

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        return []

    def protocols(self) -> list[ProtocolDetail]:
        return self.details

    def reset_peer(self, name: str) -> str:
        d = self._find(name)
        self.resets.append(d.peer.name)
        return f"{d.peer.name}: session reset"

    def refresh_peer(self, name: str) -> list[str]:
        d = self._find(name)
        if d.peer.bgp_state != "Established":
            raise ValueError(f"session is {d.peer.bgp_state}, not Established")
        self.refreshes.append(d.peer.name)
        return [d.peer.family]

    async def reload(self) -> ReloadResult:
        await asyncio.sleep(0)  # a reload awaits the datastore and the sessions
        self.reloads += 1
        return self.reload_result

    def exported(self, peer: str) -> list[object]:
        self._find(peer)
        return []

    def explain(self, prefix: str) -> object:
        raise AssertionError(f"explain {prefix!r}: only reached with a valid prefix")


def test_protocols_handler_filters_by_name_or_address() -> None:
    view = FakeView()
    assert handle_request({"command": "protocols"}, view)["result"] == DETAILS
    assert handle_request({"command": "protocols", "name": "10.0.0.3"}, view)["result"] == [
        DETAILS[1]
    ]
    assert handle_request({"command": "protocols", "name": "Mesh_fd00__2"}, view)["result"] == [
        DETAILS[4]
    ]
    assert handle_request({"command": "protocols", "name": "nope"}, view) == {
        "ok": False, "error": "no such protocol 'nope'",
    }
    assert handle_request({"command": "protocols", "name": 3}, view)["ok"] is False


def test_reset_and_refresh_handlers() -> None:
    view = FakeView()
    assert handle_request({"command": "reset", "peer": "10.0.0.2"}, view) == {
        "ok": True, "result": "Mesh_10_0_0_2: session reset",
    }
    assert view.resets == ["Mesh_10_0_0_2"]
    assert handle_request({"command": "refresh", "peer": "Mesh_10_0_0_2"}, view) == {
        "ok": True, "result": ["ipv4"],
    }
    assert handle_request({"command": "refresh", "peer": "Mesh_10_0_0_3"}, view) == {
        "ok": False, "error": "Mesh_10_0_0_3: session is Active, not Established",
    }
    assert handle_request({"command": "reset", "peer": "ghost"}, view) == {
        "ok": False, "error": "no such peer 'ghost'",
    }
    assert handle_request({"command": "refresh"}, view)["ok"] is False
    assert handle_request({"command": "reset", "peer": "x", "now": 1}, view)["ok"] is False


def test_reload_handler_answers_with_the_outcome() -> None:
    view = FakeView()

    def reload() -> object:
        return asyncio.run(complete(handle_request({"command": "reload"}, view)))

    assert reload() == {"ok": True, "result": ReloadResult(RELOAD_UNCHANGED)}
    applied = ReloadResult(RELOAD_APPLIED, added=("Global_10_0_0_9",))
    view.reload_result = applied
    assert reload() == {"ok": True, "result": applied}
    view.reload_result = ReloadResult(RELOAD_REFUSED, error="calico.yaml: line 3: bad")
    assert reload() == {
        "ok": False,
        "error": "reload refused, keeping the running configuration: calico.yaml: line 3: bad",
    }
    assert view.reloads == 3
    # A command that answers at once passes through unchanged.
    status = handle_request({"command": "protocols"}, view)
    assert asyncio.run(complete(status)) is status


def test_reload_result_record() -> None:
    with pytest.raises(ValueError):
        ReloadResult("maybe")
    r = ReloadResult(RELOAD_APPLIED, added=("a",), removed=("b", "c"), changed=("d",))
    assert from_json(ReloadResult, json.loads(json.dumps(to_json(r)))) == r
    assert format_reload(r) == (
        "bgpd: reloaded, new configuration applied (sessions added a; removed b, c; "
        "restarted d)\n"
    )
    assert format_reload(ReloadResult(RELOAD_APPLIED)) == (
        "bgpd: reloaded, new configuration applied\n"
    )


# --- the CLI end to end -----------------------------------------------------------------------


def serve(path: str, view: FakeView) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(path, view)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
def sock(tmp_path: Path, view: FakeView) -> Iterator[str]:
    yield from serve(str(tmp_path / "bgpd.sock"), view)


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _without_since(text: str) -> list[list[str]]:
    # Since is in the local zone and needs the real clock: compare the other columns.
    rows = []
    for line in text.splitlines():
        cells = line.split()
        rows.append(cells[:4] + cells[5:] if len(cells) > 4 and cells[1] == "BGP" else cells)
    return rows


def test_cli_show_protocols(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "show", "protocols"], capsys)
    assert (code, err) == (0, "")
    assert _without_since(out) == _without_since(format_protocols(DETAILS, NOW, tz=UTC))

    code, out, _ = run(["--control-socket", sock, "show", "protocols", "all", "10.0.0.2"], capsys)
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["Mesh_10_0_0_2", "BGP", "master4", "up"]
    assert "    Hold time:        90 (offered 240)" in out.splitlines()
    assert "Mesh_10_0_0_3" not in out

    code, out, _ = run(["--control-socket", sock, "show", "protocols", "--json"], capsys)
    assert code == 0
    assert [from_json(ProtocolDetail, d) for d in json.loads(out)] == DETAILS


def test_cli_show_protocols_errors(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "show", "protocols", "ghost"], capsys)
    assert (code, out, err) == (1, "", "bgpctl: no such protocol 'ghost'\n")
    code, out, err = run(["--control-socket", sock, "show", "protocols", "all", "a", "b"], capsys)
    assert (code, out) == (2, "")
    assert err == "bgpctl: show protocols: one NAME at most, got a b\n"


def test_cli_neighbor_reset_and_refresh(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["--control-socket", sock, "neighbor", "10.0.0.2", "reset"], capsys) == (
        0, "Mesh_10_0_0_2: session reset\n", "",
    )
    assert view.resets == ["Mesh_10_0_0_2"]
    assert run(["--control-socket", sock, "neighbor", "Mesh_10_0_0_2", "refresh"], capsys) == (
        0, "Mesh_10_0_0_2: route refresh requested for ipv4\n", "",
    )
    assert run(["--control-socket", sock, "neighbor", "ghost", "reset"], capsys) == (
        1, "", "bgpctl: no such peer 'ghost'\n",
    )
    assert run(["--control-socket", sock, "neighbor", "10.0.0.3", "refresh"], capsys) == (
        1, "", "bgpctl: 10.0.0.3: session is Active, not Established\n",
    )


def test_cli_neighbor_bad_action_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["neighbor", "10.0.0.2", "restart"])
    assert exc.value.code == 2
    assert "invalid choice: 'restart'" in capsys.readouterr().err


def test_cli_reload(sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--control-socket", sock, "reload"], capsys) == (
        0, "bgpd: reloaded, configuration unchanged\n", "",
    )
    view.reload_result = ReloadResult(RELOAD_REFUSED, error="calico.yaml: line 3: bad")
    assert run(["--control-socket", sock, "reload"], capsys) == (
        1, "",
        "bgpctl: reload refused, keeping the running configuration: calico.yaml: line 3: bad\n",
    )
    assert view.reloads == 2


def test_cli_check_ready(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in serve(str(tmp_path / "a.sock"), FakeView()):
        capsys.readouterr()  # the server's log line
        code, out, err = run(["--control-socket", path, "check", "ready"], capsys)
        assert (code, err) == (1, "")
        assert out == (
            "not ready: 2/5 sessions established\n"
            "  Mesh_10_0_0_3 (10.0.0.3): Active Socket: Connection refused\n"
            "  Mesh_10_0_0_4 (10.0.0.4): Passive\n"
            "  Mesh_fd00__2 (fd00::2): OpenSent\n"
        )
    up = [d for d in DETAILS if d.peer.bgp_state == "Established"]
    for path in serve(str(tmp_path / "b.sock"), FakeView(up)):
        capsys.readouterr()
        assert run(["--control-socket", path, "check", "ready"], capsys) == (
            0, "ready: 2/2 sessions established\n", "",
        )
    # No configured sessions: nothing to wait for (as calico-node -bird-ready).
    for path in serve(str(tmp_path / "c.sock"), FakeView([])):
        capsys.readouterr()
        assert run(["--control-socket", path, "check", "ready"], capsys)[0] == 0
    missing = str(tmp_path / "none.sock")
    assert run(["--control-socket", missing, "check", "ready"], capsys)[0] == 3


def test_cli_check_live(sock: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--control-socket", sock, "check", "live"], capsys) == (
        0, "live: bgpd answered\n", "",
    )
    code, out, err = run(["--control-socket", str(tmp_path / "no.sock"), "check", "live"], capsys)
    assert (code, out) == (3, "")
    assert "is bgpd running?" in err
    # A process that accepts but never answers (a wedged daemon) fails within --within.
    wedged = str(tmp_path / "wedged.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(wedged)
    listener.listen(1)
    try:
        code, _, err = run(
            ["--control-socket", wedged, "check", "live", "--within", "0.3"], capsys
        )
        assert code == 3
        assert "timed out" in err
    finally:
        listener.close()
    code, _, err = run(["--control-socket", sock, "check", "live", "--within", "0"], capsys)
    assert code == 2


def test_cli_json_neighbor_reload(
    sock: str, view: FakeView, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["--control-socket", sock, "neighbor", "10.0.0.2", "reset", "--json"],
                         capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "peer": "10.0.0.2", "action": "reset", "result": "Mesh_10_0_0_2: session reset",
    }
    code, out, err = run(
        ["--control-socket", sock, "neighbor", "Mesh_10_0_0_2", "refresh", "--json"], capsys
    )
    assert (code, err) == (0, "")
    assert json.loads(out) == {"peer": "Mesh_10_0_0_2", "action": "refresh", "families": ["ipv4"]}
    assert (view.resets, view.refreshes) == (["Mesh_10_0_0_2"], ["Mesh_10_0_0_2"])
    view.reload_result = ReloadResult(RELOAD_APPLIED, removed=("Global_10_0_0_9",))
    code, out, err = run(["--control-socket", sock, "reload", "--json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "action": "reload", "outcome": "applied", "error": None, "added": [],
        "removed": ["Global_10_0_0_9"], "changed": [],
    }
    assert view.reloads == 1


def test_cli_json_probes(sock: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "check", "ready", "--json"], capsys)
    assert (code, err) == (1, "")
    assert json.loads(out) == {
        "ready": False,
        "established": 2,
        "total": 5,
        "not_established": [
            {"name": "Mesh_10_0_0_3", "address": "10.0.0.3", "state": "Active",
             "info": "Active Socket: Connection refused"},
            {"name": "Mesh_10_0_0_4", "address": "10.0.0.4", "state": "Idle",
             "info": "Passive"},
            {"name": "Mesh_fd00__2", "address": "fd00::2", "state": "OpenSent",
             "info": "OpenSent"},
        ],
    }
    up = [d for d in DETAILS if d.peer.bgp_state == "Established"]
    for path in serve(str(tmp_path / "up.sock"), FakeView(up)):
        capsys.readouterr()
        code, out, err = run(["--control-socket", path, "check", "ready", "--json"], capsys)
        assert (code, err) == (0, "")
        assert json.loads(out) == {
            "ready": True, "established": 2, "total": 2, "not_established": [],
        }
    capsys.readouterr()  # the server's closing log line
    assert run(["--control-socket", sock, "check", "live", "--json"], capsys) == (
        0, '{\n  "live": true\n}\n', "",
    )


# --- errors: the same exit status and one stderr line with or without --json; nothing on
# stdout, so a script parsing the JSON never sees half an answer.

JSON_OR_TEXT = pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])

EVERY_COMMAND = [
    ["status"],
    ["routes"],
    ["routes", "10.0.0.0/8"],
    ["show", "protocols"],
    ["show", "route", "export", "Mesh_10_0_0_2"],
    ["explain", "10.0.0.0/8"],
    ["neighbor", "Mesh_10_0_0_2", "reset"],
    ["neighbor", "Mesh_10_0_0_2", "refresh"],
    ["reload"],
    ["check", "ready"],
    ["check", "live"],
]


@JSON_OR_TEXT
@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_cli_daemon_down(
    argv: list[str], as_json: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "bgpd.sock")
    flags = ["--json"] if as_json else []
    assert run(["--control-socket", missing, *argv, *flags], capsys) == (
        3,
        "",
        f"bgpctl: cannot reach bgpd at {missing}: No such file or directory (is bgpd running?)\n",
    )


@JSON_OR_TEXT
@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["neighbor", "ghost", "reset"], "no such peer 'ghost'"),
        (["neighbor", "ghost", "refresh"], "no such peer 'ghost'"),
        (["show", "route", "export", "ghost"], "no such peer 'ghost'"),
        (["show", "protocols", "ghost"], "no such protocol 'ghost'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_cli_bad_peer(
    argv: list[str], error: str, as_json: bool, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--json"] if as_json else []
    assert run(["--control-socket", sock, *argv, *flags], capsys) == (1, "", f"bgpctl: {error}\n")


@JSON_OR_TEXT
@pytest.mark.parametrize(
    "argv",
    [["routes", "10.65.1.1/26"], ["explain", "300.1.1.1"], ["explain", "nonsense"],
     ["routes", "fd00::1/200"]],
    ids=" ".join,
)
def test_cli_bad_prefix(
    argv: list[str], as_json: bool, sock: str, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--json"] if as_json else []
    code, out, err = run(["--control-socket", sock, *argv, *flags], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"bgpctl: invalid prefix '{argv[-1]}': "), err
    assert err.count("\n") == 1
