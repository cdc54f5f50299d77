"""Bring a containerlab topology up on network namespaces, where docker is absent.

    sudo python3 -m labs.run labs/mesh3.clab.yml [--keep]

The same file containerlab deploys drives this runner (and the interop tests):
- every node becomes a network namespace; a `kind: bridge` node a namespace holding a bridge;
- every link becomes a veth pair with the interface names of its endpoints;
- each node's `exec` commands run in its namespace (addresses, as containerlab runs them in
  the container);
- the node's `pybgpd.role` label says what runs there, configured from its `binds`:
  `bgpd` reads the Calico resources bound at /etc/pybgpd/calico.yaml as NODENAME (env),
  `bird` the file bound at /etc/bird/bird.conf, `frr` the one at /etc/frr/frr.conf.
Then it waits for convergence: every bgpd's sessions Established, every node's Loc-RIB holding
every confirmed block and every router's announced prefix, other nodes' blocks in each node's
FIB, and each router holding every block. `--keep` leaves the lab up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labs.harness.bgpd_node import Bgpd
from labs.harness.lab import Lab, Node
from labs.harness.peers import BirdPeer, FrrPeer, Peer
from labs.harness.wait import wait_for

ROLE_LABEL = "pybgpd.role"
DATASTORE = "/etc/pybgpd/calico.yaml"
BIRD_CONF = "/etc/bird/bird.conf"
FRR_CONF = "/etc/frr/frr.conf"
ROLES = ("bgpd", "bird", "frr")


class TopologyError(ValueError):
    """A topology this runner cannot bring up."""


@dataclass(frozen=True, slots=True)
class NodeDef:
    name: str
    kind: str
    role: str | None
    env: dict[str, str]
    binds: dict[str, Path]  # container path -> file on this machine
    exec: list[str]

    def bound(self, container_path: str) -> Path:
        try:
            return self.binds[container_path]
        except KeyError:
            raise TopologyError(
                f"node {self.name}: role {self.role} needs a bind to {container_path}"
            ) from None


@dataclass(frozen=True, slots=True)
class LinkDef:
    a: tuple[str, str]  # (node, interface)
    b: tuple[str, str]


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    path: Path
    nodes: dict[str, NodeDef]
    links: list[LinkDef]

    def with_role(self, role: str) -> list[NodeDef]:
        return [n for n in self.nodes.values() if n.role == role]


def _endpoint(text: str, nodes: dict[str, Any]) -> tuple[str, str]:
    node, sep, ifname = str(text).partition(":")
    if not sep or node not in nodes:
        raise TopologyError(f"link endpoint {text!r}: expected NODE:INTERFACE of a known node")
    return node, ifname


def load(path: Path | str) -> Topology:
    """Read a containerlab topology: node kinds, env, binds (relative to the file), exec,
    labels; `kinds` and `defaults` are merged into each node as containerlab merges them."""
    path = Path(path).resolve()
    data = yaml.safe_load(path.read_text())
    topo = data.get("topology") or {}
    raw_nodes: dict[str, Any] = topo.get("nodes") or {}
    kinds: dict[str, Any] = topo.get("kinds") or {}
    defaults: dict[str, Any] = topo.get("defaults") or {}
    nodes: dict[str, NodeDef] = {}
    for name, cfg in raw_nodes.items():
        cfg = cfg or {}
        kind = cfg.get("kind") or defaults.get("kind") or "linux"
        layers = [defaults, kinds.get(kind) or {}, cfg]
        env: dict[str, str] = {}
        labels: dict[str, str] = {}
        binds: dict[str, Path] = {}
        for layer in layers:
            env.update({str(k): str(v) for k, v in (layer.get("env") or {}).items()})
            labels.update({str(k): str(v) for k, v in (layer.get("labels") or {}).items()})
            for bind in layer.get("binds") or []:
                host, _, rest = str(bind).partition(":")
                target = rest.split(":")[0]
                binds[target] = (path.parent / host).resolve()
        role = labels.get(ROLE_LABEL)
        if role is not None and role not in ROLES:
            raise TopologyError(f"node {name}: unknown {ROLE_LABEL} {role!r}")
        nodes[name] = NodeDef(name, kind, role, env, binds, [str(c) for c in cfg.get("exec") or []])
    links = []
    for link in topo.get("links") or []:
        ends = link.get("endpoints") or []
        if len(ends) != 2:
            raise TopologyError(f"link {link!r}: two endpoints expected")
        links.append(LinkDef(_endpoint(ends[0], raw_nodes), _endpoint(ends[1], raw_nodes)))
    return Topology(str(data.get("name", path.stem)), path, nodes, links)


# --- what the routers and nodes should converge to --------------------------------------------


def calico_docs(node: NodeDef) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(node.bound(DATASTORE).read_text()) if d]


def confirmed_blocks(docs: list[dict[str, Any]]) -> dict[str, str]:
    """cidr -> owning node of every confirmed BlockAffinity."""
    return {
        d["spec"]["cidr"]: d["spec"]["node"]
        for d in docs
        if d.get("kind") == "BlockAffinity" and d["spec"].get("state", "confirmed") == "confirmed"
    }


def announced(node: NodeDef) -> set[str]:
    """IPv4 prefixes a BIRD or FRR router announces in its bound configuration."""
    if node.role == "bird":
        pattern = r"^\s*route\s+(\S+)\s+blackhole"
        text = node.bound(BIRD_CONF).read_text()
    elif node.role == "frr":
        pattern = r"^\s*network\s+(\S+)"
        text = node.bound(FRR_CONF).read_text()
    else:
        return set()
    found = {m.group(1) for m in re.finditer(pattern, text, re.MULTILINE)}
    return {p for p in found if ipaddress.ip_network(p).version == 4}


# --- routers configured from their bound files ------------------------------------------------


class BirdFromFile(BirdPeer):
    def __init__(self, node: Node, text: str) -> None:
        self.text = text
        super().__init__(node, "0.0.0.0", 0, name="bird")

    def config(self) -> str:
        return f'log "{self.log_path}" all;\n' + self.text


class FrrFromFile(FrrPeer):
    def __init__(self, node: Node, text: str) -> None:
        self.text = text
        super().__init__(node, "0.0.0.0", 0, name="frr")

    def config(self) -> str:
        return self.text


# --- the lab ----------------------------------------------------------------------------------


@dataclass
class Running:
    topology: Topology
    lab: Lab
    hosts: dict[str, Node] = field(default_factory=dict)
    bgpds: dict[str, Bgpd] = field(default_factory=dict)
    routers: dict[str, Peer] = field(default_factory=dict)
    # More bgpd options per node (e.g. --metrics-listen), beyond what the topology says.
    bgpd_args: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def up(self) -> Running:
        topo = self.topology
        bridges = {n.name for n in topo.nodes.values() if n.kind == "bridge"}
        for node in topo.nodes.values():
            host = self.lab.add_node(node.name)
            self.hosts[node.name] = host
            if node.kind == "bridge":
                host.run(["ip", "link", "add", "br0", "type", "bridge", "stp_state", "0",
                          "forward_delay", "0"])
                host.run(["ip", "link", "set", "br0", "up"])
        for link in topo.links:
            (a, a_if), (b, b_if) = link.a, link.b
            self.lab.veth(self.hosts[a], a_if, self.hosts[b], b_if)
            for name, ifname in link.a, link.b:
                if name in bridges:
                    self.hosts[name].run(["ip", "link", "set", ifname, "master", "br0"])
        for node in topo.nodes.values():
            for command in node.exec:
                self.hosts[node.name].run(shlex.split(command))
        for node in topo.with_role("bird"):
            text = node.bound(BIRD_CONF).read_text()
            self.routers[node.name] = BirdFromFile(self.hosts[node.name], text).start()
        for node in topo.with_role("frr"):
            text = node.bound(FRR_CONF).read_text()
            self.routers[node.name] = FrrFromFile(self.hosts[node.name], text).start()
        for node in topo.with_role("bgpd"):
            name = node.env.get("NODENAME", node.name)
            extra = self.bgpd_args.get(node.name, ())
            bgpd = Bgpd(self.hosts[node.name], name, calico_docs(node), extra_args=extra)
            self.bgpds[node.name] = bgpd.start()
        return self

    def expected_blocks(self) -> dict[str, str]:
        blocks: dict[str, str] = {}
        for node in self.topology.with_role("bgpd"):
            blocks.update(confirmed_blocks(calico_docs(node)))
        return blocks

    def converge(self, timeout: float = 90.0) -> None:
        blocks = self.expected_blocks()
        routed = set(blocks)
        for node in self.topology.nodes.values():
            routed |= announced(node)
        for name, bgpd in self.bgpds.items():
            wait_for(
                lambda b=bgpd: b.bgpctl("check", "ready", check=False).returncode == 0,
                timeout,
                message=lambda b=bgpd, n=name: f"{n}: sessions Established\n"
                + b.bgpctl("check", "ready", check=False).stdout,
            )
        for name, bgpd in self.bgpds.items():
            own = self.topology.nodes[name].env.get("NODENAME", name)
            wait_for(
                lambda b=bgpd: routed <= {r["prefix"] for r in b.routes()},
                timeout,
                message=lambda b=bgpd, n=name: f"{n}: Loc-RIB has {sorted(routed)}; it has "
                f"{sorted({r['prefix'] for r in b.routes()})}",
            )
            others = {cidr for cidr, owner in blocks.items() if owner != own}
            wait_for(
                lambda b=bgpd, o=others: o <= b.kernel_prefixes(4),
                timeout,
                message=f"{name}: FIB has the other nodes' blocks {sorted(others)}",
            )
        for router in self.routers.values():
            router.wait_received(4, sorted(blocks), timeout=timeout)

    def report(self) -> Iterator[str]:
        for name, bgpd in self.bgpds.items():
            yield f"--- {name}: bgpctl status\n" + bgpd.bgpctl("status").stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m labs.run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("topology", type=Path, help="a containerlab file, e.g. labs/mesh3.clab.yml")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to converge")
    parser.add_argument("--keep", action="store_true", help="leave the lab up until Ctrl-C")
    args = parser.parse_args(argv)
    topology = load(args.topology)
    print(f"lab {topology.name}: {len(topology.nodes)} nodes, {len(topology.links)} links",
          flush=True)
    with Lab() as lab:
        running = Running(topology, lab).up()
        print("started; waiting for convergence", flush=True)
        running.converge(args.timeout)
        print("converged", flush=True)
        for text in running.report():
            print(text, flush=True)
        if args.keep:
            for name, bgpd in running.bgpds.items():
                print(f"{name}: ip netns exec {bgpd.node.netns} bgpctl --control-socket "
                      f"{bgpd.socket} status", flush=True)
            print("press Ctrl-C to tear it down", flush=True)
            try:
                while True:
                    subprocess.run(["sleep", "3600"], check=False)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
