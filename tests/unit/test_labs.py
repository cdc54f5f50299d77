"""The labs/ topologies: each is a valid containerlab file (containerlab's own JSON schema) and
says everything the network-namespace runner needs (roles, bound configuration, addresses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import validators

from labs.harness.needs import require
from labs.run import (
    BIRD_CONF,
    DATASTORE,
    FRR_CONF,
    TopologyError,
    announced,
    calico_docs,
    confirmed_blocks,
    load,
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "reference" / "containerlab" / "clab.schema.json"
TOPOLOGIES = sorted((REPO / "labs").glob("*.clab.yml"))


def _validator() -> Any:
    require(SCHEMA.exists(), f"containerlab's schema not found at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    # Not check_schema(): the schema's IP patterns use \p{..} classes Python's re lacks; they
    # only apply to fields these labs do not set (mgmt addresses).
    return validators.validator_for(schema)(schema)


def test_the_three_labs_exist() -> None:
    assert {p.name for p in TOPOLOGIES} >= {"mesh3.clab.yml", "rr.clab.yml", "frr-tor.clab.yml"}


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.name)
def test_topology_matches_containerlab_schema(path: Path) -> None:
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in _validator().iter_errors(yaml.safe_load(path.read_text()))
    ]
    assert not errors, errors


def test_schema_rejects_what_containerlab_would() -> None:
    validator = _validator()
    good = yaml.safe_load((REPO / "labs" / "frr-tor.clab.yml").read_text())
    bad_kind = json.loads(json.dumps(good))
    bad_kind["topology"]["nodes"]["node1"]["kind"] = "docker"
    unknown = json.loads(json.dumps(good))
    unknown["topology"]["nodes"]["node1"]["addresses"] = ["10.0.2.1/24"]
    assert list(validator.iter_errors(bad_kind))
    assert list(validator.iter_errors(unknown))


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: p.name)
def test_runner_reads_topology(path: Path) -> None:
    topo = load(path)
    assert topo.with_role("bgpd")
    for node in topo.nodes.values():
        for target, host in node.binds.items():
            assert host.is_file(), f"{node.name}: bind for {target}: {host} missing"
        if node.role is not None:
            assert node.exec, f"{node.name}: no exec to give it an address"
    for link in topo.links:
        for name, ifname in (link.a, link.b):
            assert name in topo.nodes and ifname
    for node in topo.with_role("bgpd"):
        assert node.env["NODENAME"] == node.name
        assert node.env["BGPD_DATASTORE"] == f"file://{DATASTORE}"
        names = {d["metadata"]["name"] for d in calico_docs(node) if d["kind"] == "Node"}
        assert node.name in names


def test_expected_routes() -> None:
    mesh = load(REPO / "labs" / "mesh3.clab.yml")
    node1 = mesh.nodes["node1"]
    assert confirmed_blocks(calico_docs(node1)) == {
        "192.168.1.0/26": "node1", "192.168.2.0/26": "node2", "192.168.3.0/26": "node3",
    }
    assert announced(mesh.nodes["tor"]) == {"172.16.0.0/24"}
    assert mesh.nodes["tor"].bound(BIRD_CONF).name == "bird.conf"
    tor = load(REPO / "labs" / "frr-tor.clab.yml")
    assert announced(tor.nodes["tor"]) == {"172.16.0.0/24"}
    assert tor.nodes["tor"].bound(FRR_CONF).name == "frr.conf"


def test_bad_topologies_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.clab.yml"
    path.write_text(
        "name: bad\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n"
        "    - endpoints: [a:eth1, b:eth1]\n"
    )
    with pytest.raises(TopologyError, match="b:eth1"):
        load(path)
    path.write_text(
        "name: bad\ntopology:\n  nodes:\n    a: {kind: linux, labels: {pybgpd.role: gobgp}}\n"
    )
    with pytest.raises(TopologyError, match="gobgp"):
        load(path)
    path.write_text(
        "name: bad\ntopology:\n  nodes:\n    a: {kind: linux, labels: {pybgpd.role: bgpd}}\n"
    )
    with pytest.raises(TopologyError, match="needs a bind"):
        calico_docs(load(path).nodes["a"])
