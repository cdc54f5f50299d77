"""bgpd itself run inside a lab node: writes its Calico resource file, starts the daemon in the
node's namespace, and asks it questions through bgpctl (the unix socket works across
namespaces, so bgpctl runs from the test's own namespace)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .lab import Node, stop_process
from .wait import wait_for

RTPROT_PYBGPD = "201"


def resources(
    *,
    node: str,
    ipv4: str | None,
    ipv6: str | None = None,
    asn: int = 64512,
    mesh: bool = True,
    other_nodes: dict[str, tuple[str | None, str | None]] | None = None,
    peers: list[dict[str, Any]] | None = None,
    pools: list[str] = ("192.168.0.0/16", "fd10::/48"),  # type: ignore[assignment]
    blocks: list[str] = (),  # type: ignore[assignment]
    listen_port: int | None = None,
) -> list[dict[str, Any]]:
    """Calico v3 resources for one node (plus the other nodes of a mesh) as dicts."""
    spec: dict[str, Any] = {"asNumber": asn, "nodeToNodeMeshEnabled": mesh}
    if listen_port:
        spec["listenPort"] = listen_port
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": spec,
        }
    ]
    nodes = {node: (ipv4, ipv6), **(other_nodes or {})}
    for name, (v4, v6) in nodes.items():
        bgp: dict[str, Any] = {}
        if v4:
            bgp["ipv4Address"] = v4
        if v6:
            bgp["ipv6Address"] = v6
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Node",
                "metadata": {"name": name},
                "spec": {"bgp": bgp},
            }
        )
    for i, peer in enumerate(peers or []):
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": f"peer-{i}"},
                "spec": peer,
            }
        )
    for i, cidr in enumerate(pools):
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": f"pool-{i}"},
                "spec": {"cidr": cidr},
            }
        )
    for i, cidr in enumerate(blocks):
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BlockAffinity",
                "metadata": {"name": f"{node}-block-{i}"},
                "spec": {"node": node, "cidr": cidr, "state": "confirmed"},
            }
        )
    return docs


def bgpctl_apply(node: Node, url: str, tmp: Path, docs: list[dict[str, Any]]) -> None:
    """`bgpctl apply` from `node`, where the datastore is reachable."""
    f = tmp / "cluster.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    argv = [sys.executable, "-m", "bgpd.cli.bgpctl", "--datastore", url, "apply", "-f", str(f)]
    r = node.run(argv, check=False)
    assert r.returncode == 0, r.stderr


class Bgpd:
    """One bgpd process in a lab node."""

    def __init__(
        self,
        node: Node,
        name: str,
        docs: list[dict[str, Any]],
        *,
        extra_args: tuple[str, ...] = (),
        secrets: dict[str, dict[str, str]] | None = None,
        datastore: str | None = None,
        env: dict[str, str] | None = None,
        log_level: str | None = "debug",
    ) -> None:
        """`datastore` (sqlite://, etcd:// or https://) replaces the resource file: `docs`
        are then left for the test to write there (e.g. with `bgpctl apply`). `env` is added
        to the daemon's environment (calico-node's ETCD_* variables, say). `log_level` None
        gives no --log-level: BGPConfiguration logSeverityScreen decides."""
        self.log_level = log_level
        self.node = node
        self.env = env
        self.datastore = datastore
        self.name = name
        self.dir = node.workdir / "bgpd"
        self.dir.mkdir(parents=True, exist_ok=True)
        # A unix socket path must stay under 108 bytes; pytest's tmp paths may not.
        short = Path(tempfile.mkdtemp(prefix="pyb-ctl-"))
        node.lab.defer(lambda: shutil.rmtree(short, ignore_errors=True))
        self.config = self.dir / "calico.yaml"
        self.config.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.socket = short / "bgpd.sock"
        self.log_path = self.dir / "common.log"
        self.extra_args = extra_args
        self.secrets_dir: Path | None = None
        if secrets:
            self.secrets_dir = self.dir / "secrets"
            for secret, keys in secrets.items():
                (self.secrets_dir / secret).mkdir(parents=True, exist_ok=True)
                for key, value in keys.items():
                    (self.secrets_dir / secret / key).write_text(value)
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        # Without a datastore, the resource file; unless the environment names one.
        from_env = "ETCD_ENDPOINTS" in (self.env or {})
        datastore = self.datastore or (None if from_env else f"file://{self.config}")
        argv = [
            sys.executable,
            "-m",
            "bgpd.cli.bgpd_main",
            "--node",
            self.name,
            *(("--datastore", datastore) if datastore else ()),
            "--control-socket",
            str(self.socket),
            *(("--log-level", self.log_level) if self.log_level else ()),
            *self.extra_args,
        ]
        if self.secrets_dir is not None:
            argv += ["--secrets-dir", str(self.secrets_dir)]
        return argv

    def start(self) -> Bgpd:
        self.proc = self.node.popen(self.argv(), log_path=self.log_path, env=self.env,
                                    label=f"bgpd {self.name}")
        wait_for(
            lambda: self._alive() and self.socket.exists(),
            20,
            message=f"bgpd {self.name} control socket",
        )
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"bgpd {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )
        return True

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def bgpctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "bgpd.cli.bgpctl", "--control-socket", str(self.socket)]
        return subprocess.run(
            [*argv, *args], capture_output=True, text=True, check=check, timeout=30
        )

    def status(self) -> dict[str, Any]:
        self._alive()
        return json.loads(self.bgpctl("status", "--json").stdout)  # type: ignore[no-any-return]

    def peer_state(self, address: str) -> str | None:
        for peer in self.status()["peers"]:
            if peer["address"] == address:
                return str(peer["bgp_state"])
        return None

    def wait_established(self, *addresses: str, timeout: float = 30) -> None:
        for address in addresses:
            wait_for(
                lambda a=address: self.peer_state(a) == "Established",
                timeout,
                message=f"bgpd {self.name} session with {address} Established",
            )

    def routes(self) -> list[dict[str, Any]]:
        self._alive()
        return json.loads(self.bgpctl("routes", "--json").stdout)  # type: ignore[no-any-return]

    def kernel_prefixes(self, family: int) -> set[str]:
        return self.node.route_prefixes(family, proto=RTPROT_PYBGPD)

    def kernel_routes(self, family: int) -> dict[str, dict[str, Any]]:
        return {
            r["dst"] if "/" in r["dst"] else f"{r['dst']}/{32 if family == 4 else 128}": r
            for r in self.node.routes(family, proto=RTPROT_PYBGPD)
        }
