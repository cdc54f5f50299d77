"""The control server on a real unix socket, with bgpctl's blocking client on the other end.

The server runs on its own event loop in a background thread, as it does beside the daemon's
sessions; the client is the real one bgpctl uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bgpd.cli.client import ControlClient, DaemonError, DaemonUnreachable
from bgpd.control.errors import ControlError, ControlSocketInUse
from bgpd.control.handlers import MAX_REQUEST_BYTES
from bgpd.control.server import ControlServer
from bgpd.status.records import DaemonStatus, PeerStatus, RouteEntry

T = TypeVar("T")


def make_route(prefix: str) -> RouteEntry:
    return RouteEntry(
        prefix=prefix,
        family="ipv4",
        next_hop="10.0.0.2",
        best=True,
        from_peer="Mesh_10_0_0_2",
        as_path="",
        origin="IGP",
        local_pref=100,
        med=None,
        communities=["64512:1"],
        large_communities=[],
        originator_id=None,
        cluster_list=[],
        reason="ONLY_PATH",
        in_fib=True,
    )


PEER = PeerStatus(
    name="Mesh_10_0_0_2",
    address="10.0.0.2",
    port=179,
    type="node-to-node mesh",
    peer_as=64512,
    local_as=64512,
    bgp_state="Established",
    since=1_700_000_000.0,
    info="",
    routes_received=1,
    routes_advertised=1,
    family="ipv4",
)

STATUS = DaemonStatus("10.0.0.1", 64512, "node-1", "0.1.0", 1_699_999_000.0, [PEER])

# Enough paths that the server writes the answer in several slices.
ROUTES = [make_route(f"10.{i // 256}.{i % 256}.0/24") for i in range(2000)]


class FixedView:
    def __init__(self) -> None:
        self.fail = False

    def status(self) -> DaemonStatus:
        if self.fail:
            raise RuntimeError("view exploded")
        return STATUS

    def routes(self, prefix: str | None = None) -> list[RouteEntry]:
        return [r for r in ROUTES if prefix is None or r.prefix == prefix]


class LoopThread:
    """An event loop running in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def view() -> FixedView:
    return FixedView()


@pytest.fixture
def served(
    loop: LoopThread, view: FixedView, tmp_path: Path
) -> Iterator[tuple[str, ControlServer]]:
    path = str(tmp_path / "run" / "bgpd.sock")
    server = ControlServer(path, view)
    loop.run(server.start())
    yield path, server
    loop.run(server.close())


def raw_exchange(path: str, payload: bytes, shut_write: bool = False) -> list[bytes]:
    """Send raw bytes, read every response line until the server closes or goes quiet."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(payload)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.splitlines(keepends=True)


def test_socket_file_mode_parent_and_removal(
    loop: LoopThread, view: FixedView, tmp_path: Path
) -> None:
    path = tmp_path / "a" / "b" / "bgpd.sock"
    server = ControlServer(str(path), view)
    loop.run(server.start())
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    loop.run(server.close())
    assert not path.exists()
    assert path.parent.is_dir()


def test_status_and_routes_over_the_socket(served: tuple[str, ControlServer]) -> None:
    path, _ = served
    with ControlClient(path) as client:
        assert client.status() == STATUS
        # Several requests on one connection, answered in order.
        assert client.routes() == ROUTES
        assert client.routes("10.0.3.0/24") == [make_route("10.0.3.0/24")]
        assert client.routes("10.0.3.0") == []
        with pytest.raises(DaemonError, match=re.escape("invalid prefix '10.0.3.1/24'")):
            client.routes("10.0.3.1/24")
        with pytest.raises(DaemonError, match="unknown command 'reboot'"):
            client.request("reboot")
        assert client.status() == STATUS


def test_many_clients_at_once(served: tuple[str, ControlServer]) -> None:
    path, _ = served

    def session(n: int) -> list[RouteEntry]:
        with ControlClient(path) as client:
            for _ in range(3):
                assert client.status() == STATUS
            return client.routes(f"10.0.{n}.0/24")

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(session, range(64)))
    assert answers == [[make_route(f"10.0.{n}.0/24")] for n in range(64)]


def test_bad_input_never_takes_the_server_down(
    served: tuple[str, ControlServer], view: FixedView
) -> None:
    path, _ = served
    lines = raw_exchange(
        path,
        b'garbage\n\n[1]\n{"command": "routes", "prefix": 5}\n{"command": "status"}',
        shut_write=True,
    )
    answers = [json.loads(line) for line in lines]
    assert [a["ok"] for a in answers] == [False, False, False, True]
    assert answers[3]["result"]["router_id"] == "10.0.0.1"

    # A line over the limit gets one error, then the connection is dropped.
    lines = raw_exchange(path, b"x" * (MAX_REQUEST_BYTES * 2) + b'\n{"command": "status"}\n')
    assert len(lines) == 1
    assert "request longer than" in json.loads(lines[0])["error"]

    # A failing view is an internal error for that request only.
    view.fail = True
    with ControlClient(path) as client, pytest.raises(DaemonError, match="view exploded"):
        client.status()
    view.fail = False

    # A client that disconnects without reading its answer.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(b'{"command": "routes"}\n')

    with ControlClient(path) as client:
        assert client.status() == STATUS


def test_stale_socket_file_is_replaced(loop: LoopThread, view: FixedView, tmp_path: Path) -> None:
    path = str(tmp_path / "bgpd.sock")
    # A socket file left by a daemon that died: bound, never listening, closed.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    with ControlClient(path) as client, pytest.raises(DaemonUnreachable, match="refused"):
        client.status()
    server = ControlServer(path, view)
    loop.run(server.start())
    try:
        with ControlClient(path) as client:
            assert client.status() == STATUS
    finally:
        loop.run(server.close())


def test_live_daemon_on_the_path_is_not_replaced(
    served: tuple[str, ControlServer], loop: LoopThread, view: FixedView
) -> None:
    path, _ = served
    inode = os.stat(path).st_ino
    second = ControlServer(path, view)
    with pytest.raises(ControlSocketInUse, match="another daemon is listening"):
        loop.run(second.start())
    assert os.stat(path).st_ino == inode
    with ControlClient(path) as client:
        assert client.status() == STATUS


def test_other_files_are_not_replaced(loop: LoopThread, view: FixedView, tmp_path: Path) -> None:
    path = tmp_path / "bgpd.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        loop.run(ControlServer(str(path), view).start())
    assert path.read_text() == "precious"


def test_close_leaves_a_successors_socket_alone(
    loop: LoopThread, view: FixedView, tmp_path: Path
) -> None:
    path = str(tmp_path / "bgpd.sock")
    server = ControlServer(path, view)
    loop.run(server.start())
    # Someone removed our file and a new daemon bound the path.
    os.unlink(path)
    successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    successor.bind(path)
    try:
        loop.run(server.close())
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        successor.close()


def test_close_drops_idle_clients(loop: LoopThread, view: FixedView, tmp_path: Path) -> None:
    path = str(tmp_path / "bgpd.sock")
    server = ControlServer(path, view)
    loop.run(server.start())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.settimeout(10)
        idle.connect(path)
        # One answered request proves the server is serving this connection.
        idle.sendall(b'{"command": "status"}\n')
        assert json.loads(idle.makefile("rb").readline())["ok"] is True
        loop.run(server.close())
        assert idle.recv(1) == b""
    assert not os.path.exists(path)


# A client that takes another user's identity once its imports are done (this machine's
# interpreter may live where only root can read), then asks for the status: exit 0 when
# answered, 4 when the socket refuses it (bgpctl's status for "permission denied").
_CLIENT_AS = """
import os, sys
from bgpd.cli.client import ControlClient, ControlPermissionDenied
uid, gid, groups, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.setgroups([int(g) for g in groups.split(",") if g])
os.setgid(gid)
os.setuid(uid)
try:
    with ControlClient(path) as client:
        client.status()
except ControlPermissionDenied:
    sys.exit(4)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as other users and groups")
def test_the_socket_is_for_the_daemons_group(loop: LoopThread, view: FixedView) -> None:
    """bgpd.service runs bgpd with Group= (pybgpd unless overridden), and the socket is made
    in the daemon's group, mode 0660, inside the 0750 runtime directory systemd makes for
    User=/Group=: so bgpctl works for that group's members and no one else."""
    group, daemon, member, outsider = 64101, 64102, 64103, 64104
    top = Path(tempfile.mkdtemp(prefix="pyb-grp-"))
    try:
        top.chmod(0o755)
        run = top / "pybgpd"
        run.mkdir(mode=0o750)
        os.chown(run, daemon, group)  # RuntimeDirectory=pybgpd, RuntimeDirectoryMode=0750
        path = str(run / "bgpd.sock")
        server = ControlServer(path, view)
        # The daemon's identity while it binds; glibc applies set*id to every thread, the
        # server loop's too.
        os.setegid(group)
        try:
            loop.run(server.start())
        finally:
            os.setegid(0)
        st = os.stat(path)
        assert st.st_gid == group and stat.S_IMODE(st.st_mode) == 0o660

        def client(uid: int, groups: str) -> int:
            argv = [sys.executable, "-c", _CLIENT_AS, str(uid), str(uid), groups, path]
            return subprocess.run(argv, capture_output=True, timeout=60).returncode

        assert client(member, str(group)) == 0
        assert client(outsider, "") == 4
        loop.run(server.close())
    finally:
        shutil.rmtree(top, ignore_errors=True)
