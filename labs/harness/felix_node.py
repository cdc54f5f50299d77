"""felix and its CNI plugin in a lab node: the daemon as a background process in the node's
namespace, and the plugin run exactly as a container runtime runs it (CNI_* environment, the
network configuration on stdin, the pod's namespace path), from the node's namespace."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

from .lab import Lab, Node, stop_process
from .wait import wait_for

NETWORK = "k8s-pod-network"


def conf(datastore: str, node: str, **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "felix-cni",
        "datastore": datastore,
        "nodename": node,
        "ipam": {"type": "calico-ipam"},
        **extra,
    }


def container_id(pod: str) -> str:
    return hashlib.sha256(pod.encode()).hexdigest()[:24]


@dataclass
class Pod:
    """A pod: its own network namespace (a lab node), plumbed by felix-cni on `host`."""

    name: str
    netns: Node
    host: str
    address: str = ""
    result: dict[str, Any] | None = None

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns.netns}"


def run_cni(
    node: Node,
    command: str,
    stdin: dict[str, Any] | str,
    *,
    netns: str,
    container: str,
    ifname: str = "eth0",
    args: str = "",
    extra_env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None, str]:
    """(exit status, stdout JSON or None, stderr)."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": args,
        "FELIX_CNI_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), sys.executable, "-m", "felix.cni.driver"]
    text = stdin if isinstance(stdin, str) else json.dumps(stdin)
    proc = node.run(argv, check=False, input=text, timeout=120)
    out = proc.stdout.strip()
    return proc.returncode, (json.loads(out) if out else None), proc.stderr


class Felix:
    def __init__(
        self,
        node: Node,
        name: str,
        datastore: str | None,
        *,
        resync: float = 2.0,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`datastore` None leaves it to the environment (`env`: ETCD_ENDPOINTS, ...)."""
        self.node = node
        self.name = name
        self.datastore = datastore
        self.resync = resync
        self.extra_args = extra_args
        self.env = env
        self.log_path = node.workdir / "felix.log"
        self.proc = None

    def start(self) -> Felix:
        argv = [
            sys.executable,
            "-m",
            "felix.driver",
            "--node",
            self.name,
            *(("--datastore", self.datastore) if self.datastore else ()),
            *self.extra_args,
            "--resync",
            str(self.resync),
            "--status-interval",
            "1",
            "--log-level",
            "debug",
        ]
        self.proc = self.node.popen(argv, log_path=self.log_path, env=self.env,
                                    label=f"felix {self.name}")
        wait_for(
            lambda: self._alive() and "felix.started" in self.log_path.read_text(errors="replace"),
            30,
            message=f"felix {self.name} started",
        )
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"felix {self.name} exited with {self.proc.returncode}")
        return True

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code


def add_pod(lab: Lab, host: Node, host_name: str, datastore: str, name: str) -> Pod:
    """ADD through felix-cni (as a Kubernetes pod default/<name>); the pod's address."""
    pod = Pod(name, lab.add_node(name), host_name)
    code, doc, err = run_cni(
        host,
        "ADD",
        conf(datastore, host_name),
        netns=pod.netns_path,
        container=container_id(name),
        args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}",
    )
    assert code == 0 and doc is not None, f"ADD {name} on {host_name}: {doc} {err}"
    pod.result = doc
    pod.address = doc["ips"][0]["address"].split("/")[0]
    return pod


def del_pod(host: Node, datastore: str, pod: Pod) -> None:
    code, doc, err = run_cni(
        host,
        "DEL",
        conf(datastore, pod.host),
        netns=pod.netns_path,
        container=container_id(pod.name),
        args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod.name}",
    )
    assert code == 0, f"DEL {pod.name}: {doc} {err}"
