"""bgpd under systemd's notify protocol: a real bgpd process (file datastore, loopback, no FIB)
with NOTIFY_SOCKET pointed at a datagram socket of the test. It must say READY=1 once it
listens, keep STATUS= current, ping WATCHDOG=1 when asked to, and answer SIGHUP (reload) and
SIGTERM (graceful stop). The unit files are checked with `systemd-analyze verify`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from common.sdnotify import (
    Notifier,
    keep_alive,
    session_summary,
    socket_address,
    watchdog_interval,
)

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docs(nodes: dict[str, str]) -> list[dict[str, object]]:
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": True},
        }
    ]
    for name, address in nodes.items():
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Node",
                "metadata": {"name": name},
                "spec": {"bgp": {"ipv4Address": f"{address}/8"}},
            }
        )
    return docs


class NotifyListener:
    """The service manager's end: an AF_UNIX datagram socket collecting messages."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[list[str]] = []

    def lines(self) -> list[str]:
        return [line for message in self.messages for line in message]

    def wait_for(self, wanted: str, timeout: float = DEADLINE, count: int = 1) -> list[str]:
        """Receive until `count` lines equal (or, ending in '*', start with) `wanted`."""
        deadline = time.monotonic() + timeout

        def matches() -> list[str]:
            if wanted.endswith("*"):
                return [x for x in self.lines() if x.startswith(wanted[:-1])]
            return [x for x in self.lines() if x == wanted]

        while len(matches()) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {count}x {wanted!r} from bgpd; got {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(data.decode().split("\n"))
        return matches()

    def close(self) -> None:
        self.sock.close()


class BgpdProcess:
    def __init__(self, tmp: Path, notify_socket: str, extra_env: dict[str, str]) -> None:
        self.config = tmp / "calico.yaml"
        self.write({"node1": "127.0.0.1", "node2": "127.0.0.2"})
        self.log = (tmp / "common.log").open("wb")
        env = {**os.environ, "NOTIFY_SOCKET": notify_socket, **extra_env}
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "bgpd.cli.bgpd_main",
                "--node", "node1",
                "--datastore", f"file://{self.config}",
                "--control-socket", str(tmp / "bgpd.sock"),
                "--listen-address", "127.0.0.1",
                "--listen-port", str(_free_port()),
                "--no-fib",
            ],
            env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.tmp = tmp

    def write(self, nodes: dict[str, str]) -> None:
        self.config.write_text(yaml.safe_dump_all(_docs(nodes), sort_keys=False))

    def log_text(self) -> str:
        return (self.tmp / "common.log").read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture
def tmp() -> Iterator[Path]:
    # AF_UNIX paths must stay under 108 bytes; pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="pyb-sd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(tmp: Path, extra_env: dict[str, str]) -> tuple[NotifyListener, BgpdProcess]:
    listener = NotifyListener(str(tmp / "notify.sock"))
    return listener, BgpdProcess(tmp, str(tmp / "notify.sock"), extra_env)


def test_ready_status_reload_and_graceful_stop(tmp: Path) -> None:
    listener, bgpd = _start(tmp, {})
    try:
        listener.wait_for("READY=1")
        first = listener.messages[0]
        assert "READY=1" in first
        assert "STATUS=0/1 sessions established" in first
        assert f"MAINPID={bgpd.proc.pid}" in first
        # The control socket is up before READY=1: bgpctl works as soon as systemd says so.
        assert (tmp / "bgpd.sock").exists()
        assert not [x for x in listener.lines() if x == "WATCHDOG=1"]

        # A third node appears; SIGHUP (ExecReload=) reloads and the status follows.
        bgpd.write({"node1": "127.0.0.1", "node2": "127.0.0.2", "node3": "127.0.0.3"})
        bgpd.proc.send_signal(signal.SIGHUP)
        listener.wait_for("RELOADING=1")
        assert listener.wait_for("MONOTONIC_USEC=*")
        listener.wait_for("READY=1", count=2)
        listener.wait_for("STATUS=0/2 sessions established")
        assert bgpd.proc.poll() is None, bgpd.log_text()

        # SIGTERM: STOPPING=1, then a clean exit.
        bgpd.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING=1")
        assert bgpd.stop() == 0, bgpd.log_text()
    finally:
        bgpd.stop()
        listener.close()


def test_watchdog_pings_at_half_the_interval(tmp: Path) -> None:
    # WATCHDOG_USEC=1s: pings every 0.5 s while the loop turns.
    listener, bgpd = _start(tmp, {"WATCHDOG_USEC": "1000000"})
    try:
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1", count=3)
    finally:
        assert bgpd.stop() == 0, bgpd.log_text()
        listener.close()


def test_abstract_namespace_socket() -> None:
    name = f"pybgpd-test-{os.getpid()}"
    listener = NotifyListener(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        assert notifier.notify("READY=1", "STATUS=up")
        assert listener.wait_for("STATUS=up", timeout=5)
        assert listener.messages == [["READY=1", "STATUS=up"]]
        notifier.close()
    finally:
        listener.close()


def test_keep_alive_pings_until_cancelled(tmp: Path) -> None:
    listener = NotifyListener(str(tmp / "notify.sock"))
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp / "notify.sock"), "WATCHDOG_USEC": "100000"})

    async def run() -> None:
        task = asyncio.create_task(keep_alive(notifier))
        # The pings go out from the task while this loop turns; stop once three arrived.
        while len([x for x in listener.lines() if x == "WATCHDOG=1"]) < 3:
            await asyncio.sleep(0.05)
            listener.sock.settimeout(0)
            with contextlib.suppress(BlockingIOError):
                listener.messages.append(listener.sock.recv(4096).decode().split("\n"))
        task.cancel()

    try:
        asyncio.run(asyncio.wait_for(run(), DEADLINE))
        # Without a watchdog it has nothing to do.
        asyncio.run(asyncio.wait_for(keep_alive(Notifier({}, pid=1)), DEADLINE))
    finally:
        notifier.close()
        listener.close()


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier({}, pid=1)
    assert not notifier.enabled
    assert notifier.watchdog is None
    assert notifier.notify("READY=1") is False


def test_a_vanished_manager_is_not_an_error(tmp: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp / "gone.sock")})
    assert notifier.enabled
    assert notifier.notify("READY=1") is False


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abstract", b"\0abstract"),
        ("", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_socket_address(value: str, address: str | bytes | None) -> None:
    assert socket_address(value) == address


def test_watchdog_interval() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "7"}, pid=7) == 0.5
    # Meant for another process (a parent that exec'd us was watched, not we).
    assert watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None


def test_session_summary() -> None:
    assert session_summary(3, 4) == "3/4 sessions established"
    assert session_summary(0, 1) == "0/1 sessions established"
    assert session_summary(0, 0) == "0/0 sessions established"


# --- the unit files ------------------------------------------------------------------------

UNITS = ("bgpd.service", "felix.service")


def _unit(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (sections flattened; units here use no duplicate keys
    across sections that matter)."""
    out: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("name", UNITS)
def test_unit_contract(name: str) -> None:
    unit = _unit(name)
    assert unit["Type"] == ["notify"]
    assert unit["EnvironmentFile"] == ["-/etc/default/pybgpd"]
    assert int(unit["WatchdogSec"][0]) > 0
    assert set(unit["CapabilityBoundingSet"][0].split()) == {
        "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW",
    }
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["StateDirectory"] == ["pybgpd"]
    assert unit["RuntimeDirectory"]


def test_bgpd_unit_reloads_with_sighup() -> None:
    unit = _unit("bgpd.service")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillSignal"] == ["SIGTERM"]


def test_environment_file_names_node_and_datastore() -> None:
    env = dict(
        line.split("=", 1)
        for line in (REPO / "systemd" / "pybgpd.default").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["NODENAME"]
    assert env["BGPD_DATASTORE"].startswith(("file://", "sqlite://", "etcd://"))


def test_rt_protos_names_our_protocol() -> None:
    text = (REPO / "config" / "rt_protos.d" / "pybgpd.conf").read_text()
    entries = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    # The protocol number bgpd programs with (kernel/driver.py) and the interop tests read.
    assert entries == [["201", "pybgpd"]]


def test_systemd_analyze_verify(tmp: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    # verify checks that ExecStart= binaries exist: point the units at launchers of this
    # checkout in place of the installed /usr/local/bin scripts.
    modules = {"bgpd": "bgpd.cli.bgpd_main", "felix": "felix.driver"}
    bindir = tmp / "bin"
    bindir.mkdir()
    for script, module in modules.items():
        launcher = bindir / script
        launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n')
        launcher.chmod(0o755)
    for name in UNITS:
        text = (REPO / "systemd" / name).read_text().replace("/usr/local/bin/", f"{bindir}/")
        (tmp / name).write_text(text)
    result = subprocess.run(
        [tool, "verify", *(str(tmp / n) for n in UNITS)],
        capture_output=True, text=True, timeout=60,
    )
    problems = [
        line for line in (result.stdout + result.stderr).splitlines()
        # A container without a booted systemd has no default.target etc. to resolve.
        if line.strip() and "multi-user.target" not in line and "network-online" not in line
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
