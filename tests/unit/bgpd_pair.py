"""Two real bgpd processes in a mesh on loopback (127.0.0.1 and 127.0.0.2, same port, no FIB,
no root needed), for tests that drive them as an operator would."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]

NODES = {"node1": "127.0.0.1", "node2": "127.0.0.2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docs(port: int, blocks: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": True, "listenPort": port},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pool"},
            "spec": {"cidr": "192.168.0.0/16"},
        },
    ]
    for name, address in NODES.items():
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Node",
                "metadata": {"name": name},
                "spec": {"bgp": {"ipv4Address": f"{address}/8"}},
            }
        )
    for name, cidr in blocks.items():
        docs.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BlockAffinity",
                "metadata": {"name": f"{name}-block"},
                "spec": {"node": name, "cidr": cidr, "state": "confirmed"},
            }
        )
    return docs


class Pair:
    def __init__(self, tmp: Path, extra: dict[str, list[str]] | None = None) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.config = tmp / "calico.yaml"
        self.write({"node1": "192.168.1.0/26", "node2": "192.168.2.0/26"})
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, address in NODES.items():
            log = (tmp / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable, "-m", "bgpd.cli.bgpd_main",
                    "--node", name,
                    "--datastore", f"file://{self.config}",
                    "--control-socket", self.socket(name),
                    "--listen-address", address,
                    "--no-fib",
                    *(extra or {}).get(name, []),
                ],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )
            log.close()

    def write(self, blocks: dict[str, str]) -> None:
        self.config.write_text(yaml.safe_dump_all(_docs(self.port, blocks), sort_keys=False))

    def socket(self, name: str) -> str:
        return str(self.tmp / f"{name}.sock")

    def bgpctl(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        for proc in self.procs.values():
            assert proc.poll() is None, self.logs()
        return subprocess.run(
            [sys.executable, "-m", "bgpd.cli.bgpctl", "--control-socket", self.socket(name),
             *args],
            capture_output=True, text=True, timeout=30, cwd=REPO,
        )

    def protocol(self, name: str) -> dict[str, Any]:
        result = self.bgpctl(name, "show", "protocols", "--json")
        assert result.returncode == 0, result.stderr
        (only,) = json.loads(result.stdout)
        return only  # type: ignore[no-any-return]

    def logs(self) -> str:
        return "\n".join(
            f"--- {n}\n" + (self.tmp / f"{n}.log").read_text(errors="replace")[-3000:]
            for n in NODES
        )

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
