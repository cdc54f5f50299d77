"""bgpctl end to end: argument parsing, exit statuses and output, against a real control server
on a unix socket serving fixed data."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bgpd.cli import bgpctl
from bgpd.cli.bgpctl import Command, Context, build_parser, main
from bgpd.control.server import ControlServer
from bgpd.status.codec import from_json
from bgpd.status.records import DaemonStatus, PeerStatus, RouteEntry

REPO = Path(__file__).resolve().parents[2]


def make_peer(address: str, state: str, info: str = "", family: str = "ipv4") -> PeerStatus:
    return PeerStatus(
        name=f"Mesh_{address}",
        address=address,
        port=179,
        type="node-to-node mesh",
        peer_as=64512,
        local_as=64512,
        bgp_state=state,
        since=1_700_000_000.0,
        info=info,
        routes_received=2,
        routes_advertised=1,
        family=family,
    )


STATUS = DaemonStatus(
    router_id="10.0.0.1",
    asn=64512,
    node="node-1",
    version="0.1.0",
    started=1_699_999_000.0,
    peers=[
        make_peer("10.0.0.2", "Established"),
        make_peer("10.0.0.3", "Active", "Connection refused"),
        make_peer("fd00::3", "Connect", family="ipv6"),
    ],
)

ROUTE = RouteEntry(
    prefix="10.65.1.0/26",
    family="ipv4",
    next_hop="10.0.0.2",
    best=True,
    from_peer="Mesh_10_0_0_2",
    as_path="",
    origin="IGP",
    local_pref=100,
    med=None,
    communities=[],
    large_communities=[],
    originator_id=None,
    cluster_list=[],
    reason="ONLY_PATH",
    in_fib=True,
)


class FixedView:
    def status(self) -> DaemonStatus:
        return STATUS

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        return [ROUTE] if prefix in (None, ROUTE.prefix) else []


def serve(path: str) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ControlServer(path, FixedView())
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield path
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[str]:
    yield from serve(str(tmp_path / "bgpd.sock"))


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines() if "|" in line]


def test_status_bgpd_banner(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--control-socket", sock, "status", "--bgpd"], capsys)
    assert code == 0
    assert out.startswith("bgpd process is running.\n\nIPv4 BGP status\n+")


def test_status_text(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "status"], capsys)
    assert (code, err) == (0, "")
    # calicoctl's banner, which scripts grep for.
    assert out.startswith("Calico process is running.\n\nIPv4 BGP status\n+")
    rows = table_rows(out)
    # SINCE depends on the local zone and the real clock; the rest is fixed.
    assert [r[:3] + r[4:] for r in rows] == [
        ["PEER ADDRESS", "PEER TYPE", "STATE", "INFO"],
        ["10.0.0.2", "node-to-node mesh", "up", "Established"],
        ["10.0.0.3", "node-to-node mesh", "start", "Active Socket: Connection refused"],
        ["PEER ADDRESS", "PEER TYPE", "STATE", "INFO"],
        ["fd00::3", "node-to-node mesh", "start", "Connect"],
    ]
    assert out.endswith("+\n\n")


def test_status_json(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--control-socket", sock, "status", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert (data["router_id"], data["as"]) == ("10.0.0.1", 64512)
    assert data["peers"][1] == {
        "address": "10.0.0.3",
        "port": 179,
        "family": "ipv4",
        "type": "node-to-node mesh",
        "state": "start",
        "since": "2023-11-14T22:13:20Z",
        "info": "Active Socket: Connection refused",
        "bgp_state": "Active",
        "routes_received": 2,
        "routes_advertised": 1,
    }


def test_routes(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--control-socket", sock, "routes"], capsys)
    assert code == 0
    assert table_rows(out)[1] == [
        "10.65.1.0/26",
        "10.0.0.2",
        "*",
        "Mesh_10_0_0_2",
        "",
        "IGP",
        "100",
    ]

    code, out, _ = run(["--control-socket", sock, "routes", "10.65.1.0/26", "--json"], capsys)
    assert code == 0
    assert [from_json(RouteEntry, r) for r in json.loads(out)] == [ROUTE]

    code, out, _ = run(["--control-socket", sock, "routes", "10.99.0.0/24"], capsys)
    assert (code, out) == (0, "No routes for 10.99.0.0/24.\n")


def test_daemon_error_exits_1(sock: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--control-socket", sock, "routes", "10.65.1.1/26"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("bgpctl: invalid prefix '10.65.1.1/26': ")
    assert err.count("\n") == 1


def test_env_variable_names_the_socket(
    sock: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BGPD_CONTROL_SOCKET", sock)
    assert run(["status", "--json"], capsys)[0] == 0
    # The option wins over the environment.
    missing = str(tmp_path / "elsewhere.sock")
    assert run(["--control-socket", missing, "status"], capsys)[0] == 3


def test_daemon_not_running_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nothing" / "bgpd.sock")
    code, out, err = run(["--control-socket", missing, "status"], capsys)
    assert (code, out) == (3, "")
    assert err == (
        f"bgpctl: cannot reach bgpd at {missing}: No such file or directory (is bgpd running?)\n"
    )

    stale = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)
    dead.close()
    code, _, err = run(["--control-socket", stale, "routes"], capsys)
    assert code == 3
    assert err == f"bgpctl: cannot reach bgpd at {stale}: Connection refused (is bgpd running?)\n"


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["status", "--bogus"], ["routes", "a", "b"], ["--timeout", "0", "status"]],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: bgpctl" in capsys.readouterr().err


def run_as(uid: int, groups: list[int], argv: list[str]) -> tuple[int, str]:
    """Run bgpctl's main in a forked child with dropped privileges; return (status, stderr)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_fd)
            os.setgroups(groups)
            os.setgid(65534)
            os.setuid(uid)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            code = main(argv)
            os.write(write_fd, sys.stderr.getvalue().encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        err = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_socket_mode_admits_the_group_and_refuses_others_with_exit_4() -> None:
    # Under /tmp rather than pytest's private tmp dir, so the other user can reach the socket.
    base = tempfile.mkdtemp(prefix="bgpctl-perm-")
    try:
        os.chmod(base, 0o755)
        for path in serve(os.path.join(base, "bgpd.sock")):
            code, err = run_as(65534, [], ["--control-socket", path, "status"])
            assert code == 4
            assert err == (
                f"bgpctl: cannot reach bgpd at {path}: Permission denied "
                "(run as root or as a member of the socket's group)\n"
            )
            # A member of the socket's group (root's group here) gets in.
            assert run_as(65534, [os.getgid()], ["--control-socket", path, "status"]) == (0, "")
    finally:
        shutil.rmtree(base)


def test_entry_point_runs_as_a_module(sock: str) -> None:
    env = {**os.environ, "BGPD_CONTROL_SOCKET": sock, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "bgpd.cli.bgpctl", "routes", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)[0]["prefix"] == "10.65.1.0/26"


def test_multi_word_commands_slot_into_the_parser() -> None:
    def command(*path: str) -> Command:
        def add(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--json", action="store_true")

        def act(args: argparse.Namespace, ctx: Context) -> int:
            return 0

        return Command(path, "help", add, act)

    commands = [
        *bgpctl.COMMANDS,
        # (show protocols, neighbor, check ready/live are real commands now: ops_cmds.py.)
        command("show", "summary"),
        command("debug", "dump"),
        command("check", "memory"),
    ]
    parser = build_parser(commands)
    args = parser.parse_args(["show", "summary", "--json"])
    assert args._command.path == ("show", "summary") and args.json
    assert parser.parse_args(["check", "memory"])._command.path == ("check", "memory")
    assert parser.parse_args(["check", "ready"])._command.path == ("check", "ready")
    assert parser.parse_args(["status"])._command.path == ("status",)
    with pytest.raises(SystemExit):
        parser.parse_args(["show"])
