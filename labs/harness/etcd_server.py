"""A real etcd (Debian's etcd-server) on loopback for the datastore tests: free ports, a temp
data dir, stop and start again on the same ports and data (an outage), clusters of members."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from .lab import stop_process
from .wait import wait_for

ETCD = shutil.which("etcd")
MISSING = "etcd not installed (Debian package etcd-server; scripts/setup.sh installs it)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdMember:
    """One etcd process. `cluster` lists every member's (name, peer URL) for a multi-member
    cluster; alone it is a 1-node cluster."""

    def __init__(
        self, workdir: Path, name: str = "m0", *, host: str = "127.0.0.1", node: Any = None
    ) -> None:
        """`node` (a lab Node) runs etcd in its namespace, listening on `host` there."""
        self.name = name
        self.host = host
        self.node = node
        self.dir = workdir / f"etcd-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.cluster: list[EtcdMember] = [self]
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "etcd.log"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    def argv(self) -> list[str]:
        assert ETCD is not None, MISSING
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.cluster)
        return [
            ETCD,
            "--name", self.name,
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", "pybgpd-test",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]

    def start(self, *, wait: bool = True) -> EtcdMember:
        if self.node is not None:
            self.proc = self.node.popen(self.argv(), log_path=self.log_path,
                                        label=f"etcd {self.name}")
            if wait:
                self.wait_healthy()
            return self
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            self.argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"etcd {self.name} exited:\n{self.log_tail()}")
        if self.node is not None:
            probe = ("import urllib.request,sys;"
                     f"sys.stdout.write(urllib.request.urlopen('{self.client_url}/health',"
                     "timeout=2).read().decode())")
            r = self.node.run([sys.executable, "-c", probe], check=False)
            return r.returncode == 0 and '"health":"true"' in r.stdout.replace(" ", "")
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=2) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30) -> None:
        wait_for(self.healthy, timeout, message=lambda: f"etcd {self.name} healthy\n"
                 + self.log_tail())

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cluster(workdir: Path, size: int) -> list[EtcdMember]:
    """`size` members that know each other; started together (a quorum must form)."""
    members = [EtcdMember(workdir, f"m{i}") for i in range(size)]
    for m in members:
        m.cluster = members
    for m in members:
        m.start(wait=False)
    for m in members:
        m.wait_healthy()
    return members
