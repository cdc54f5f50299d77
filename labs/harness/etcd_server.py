"""A real etcd (Debian's etcd-server) on loopback for the datastore tests: free ports, a temp
data dir, stop and start again on the same ports and data (an outage), clusters of members.
A member may serve its clients over TLS (`ServerTLS`: its certificate, and with
`client_cert_auth` a CA its clients' certificates must be signed by), and `enable_auth` turns
on etcd's user/password authentication through `etcdctl` (Debian's etcd-client)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lab import stop_process
from .wait import wait_for

ETCD = shutil.which("etcd")
MISSING = "etcd not installed (Debian package etcd-server; scripts/setup.sh installs it)"
ETCDCTL = shutil.which("etcdctl")
MISSING_ETCDCTL = "etcdctl not installed (Debian package etcd-client; scripts/setup.sh installs it)"


@dataclass(frozen=True)
class ServerTLS:
    """TLS on a member's client URL: its certificate and key, the CA that signed it (for the
    health probe and etcdctl), and with `client_cert_auth` the client certificate the probe
    and etcdctl present (etcd then trusts `ca` for clients: --trusted-ca-file)."""

    ca: Path
    cert: Path
    key: Path
    client_cert_auth: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdMember:
    """One etcd process. `cluster` lists every member's (name, peer URL) for a multi-member
    cluster; alone it is a 1-node cluster."""

    def __init__(
        self,
        workdir: Path,
        name: str = "m0",
        *,
        host: str = "127.0.0.1",
        node: Any = None,
        tls: ServerTLS | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`node` (a lab Node) runs etcd in its namespace, listening on `host` there; `tls`
        serves clients over https; `extra_args` go to etcd as they are."""
        self.name = name
        self.tls = tls
        self.extra_args = extra_args
        # Set by enable_auth: the root credentials etcdctl then needs.
        self.root_password: str | None = None
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
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

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
            *self._tls_argv(),
            *self.extra_args,
        ]

    def _tls_argv(self) -> list[str]:
        if self.tls is None:
            return []
        argv = ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key)]
        if self.tls.client_cert_auth:
            argv += ["--client-cert-auth", "--trusted-ca-file", str(self.tls.ca)]
        return argv

    def _client_files(self) -> tuple[str | None, str | None, str | None]:
        """(CA, client certificate, client key) a client of this member uses."""
        if self.tls is None:
            return None, None, None
        cert = str(self.tls.client_cert) if self.tls.client_cert else None
        key = str(self.tls.client_key) if self.tls.client_key else None
        return str(self.tls.ca), cert, key

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
        ca, cert, key = self._client_files()
        if self.node is not None:
            probe = (
                "import ssl,urllib.request,sys\n"
                f"ca, cert, key = {ca!r}, {cert!r}, {key!r}\n"
                "ctx = ssl.create_default_context(cafile=ca) if ca else None\n"
                "if ctx and cert: ctx.load_cert_chain(cert, key)\n"
                f"r = urllib.request.urlopen('{self.client_url}/health', timeout=2, context=ctx)\n"
                "sys.stdout.write(r.read().decode())\n"
            )
            r = self.node.run([sys.executable, "-c", probe], check=False)
            return r.returncode == 0 and '"health":"true"' in r.stdout.replace(" ", "")
        context = None
        if ca is not None:
            context = ssl.create_default_context(cafile=ca)
            if cert is not None:
                context.load_cert_chain(cert, key)
        try:
            with urllib.request.urlopen(
                self.client_url + "/health", timeout=2, context=context
            ) as r:
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

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """etcdctl against this member, with its TLS files and (once auth is on) as root."""
        assert ETCDCTL is not None, MISSING_ETCDCTL
        ca, cert, key = self._client_files()
        argv = [ETCDCTL, "--endpoints", self.client_url, "--dial-timeout", "5s"]
        if ca:
            argv += ["--cacert", ca]
        if cert and key:
            argv += ["--cert", cert, "--key", key]
        if self.root_password is not None:
            argv += ["--user", f"root:{self.root_password}"]
        argv += list(args)
        if self.node is not None:
            r = self.node.run(argv, check=False)
        else:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                               env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
        if check and r.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)}: {r.stderr}")
        return r

    def enable_auth(self, root_password: str, users: dict[str, tuple[str, str]]) -> None:
        """etcd's auth on: root (with the root role) and `users`, name -> (password,
        permission on /calico/: read, write or readwrite), each with a role of its name."""
        self.etcdctl("user", "add", f"root:{root_password}")
        self.etcdctl("user", "grant-role", "root", "root")
        for name, (password, permission) in users.items():
            self.etcdctl("user", "add", f"{name}:{password}")
            self.etcdctl("role", "add", name)
            self.etcdctl("role", "grant-permission", name, "--prefix=true", permission,
                         "/calico/")
            self.etcdctl("user", "grant-role", name, name)
        self.etcdctl("auth", "enable")
        self.root_password = root_password

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cluster(workdir: Path, size: int, *, tls: ServerTLS | None = None) -> list[EtcdMember]:
    """`size` members that know each other; started together (a quorum must form). `tls`
    applies to every member's client URL (their peer URLs stay plaintext on loopback)."""
    members = [EtcdMember(workdir, f"m{i}", tls=tls) for i in range(size)]
    for m in members:
        m.cluster = members
    for m in members:
        m.start(wait=False)
    for m in members:
        m.wait_healthy()
    return members
