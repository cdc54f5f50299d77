"""The file datastore: a YAML file of v3 resources in, a Snapshot or one error line out."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico import BGPFilter, ResourceError, Snapshot, load_file, load_text
from calico.model import BGPPeer, BlockAffinity, IPPool

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
kind: BGPConfiguration
apiVersion: projectcalico.org/v3
metadata:
  name: default
spec:
  communities:
    - name: short
      value: 100:55
---
kind: Node
apiVersion: projectcalico.org/v3
metadata:
  name: node1
  labels:
    route-reflector: yes
spec:
  bgp:
    ipv4Address: 10.0.0.1/24
---
# a comment-only document and an empty one are fine
---
kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata:
  name: rack1-tor
  creationTimestamp: 2024-05-01T10:00:00Z
spec:
  peerIP: 10.0.1.1
  asNumber: 64513
---
kind: BGPFilter
apiVersion: projectcalico.org/v3
metadata:
  name: only-pods
spec:
  exportV4: []
---
kind: BlockAffinity
apiVersion: projectcalico.org/v3
metadata:
  name: node1-192-168-1-0-26
spec:
  node: node1
  cidr: 192.168.1.0/26
  state: ""
---
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ResourceError) as e:
        load_file(path)
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(path + ": ")
    return message[len(path) + 2 :]


def test_load_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    snap = load_file(path)
    assert isinstance(snap, Snapshot)
    assert snap.source == path
    assert len(snap) == 5
    assert snap.bgp_filters["only-pods"] == BGPFilter("only-pods")
    assert snap.bgp_peers["rack1-tor"] == BGPPeer("rack1-tor", peer_ip="10.0.1.1", as_number=64513)
    assert snap.nodes["node1"].labels["route-reflector"] == "true"
    assert snap.block_affinities["node1-192-168-1-0-26"] == BlockAffinity(
        "node1-192-168-1-0-26", "node1", "192.168.1.0/26", "confirmed"
    )
    # Read as Calico's Go YAML does: no base-60 numbers, "100:55" stays a community.
    assert snap.default_config.communities[0].value == "100:55"


def test_load_text_matches_load_file(tmp_path: Path) -> None:
    assert load_text(GOOD).by_kind == load_file(write(tmp_path, GOOD)).by_kind


def test_bad_resource_names_file_resource_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("peerIP: 10.0.1.1", "peerIP: 10.0.0.300")
    assert load_error(tmp_path, text) == (
        "BGPPeer 'rack1-tor': spec.peerIP: '10.0.0.300' is not an IP address"
    )


def test_error_message_uses_the_path_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(GOOD.replace("asNumber: 64513", "asNumber: lots"))
    with pytest.raises(ResourceError) as e:
        load_file("config.yaml")
    assert (
        str(e.value)
        == "config.yaml: BGPPeer 'rack1-tor': spec.asNumber: 'lots' is not an AS number"
    )


def test_document_without_a_name_is_located_by_number(tmp_path: Path) -> None:
    text = GOOD + "kind: IPPool\napiVersion: projectcalico.org/v3\nspec:\n  cidr: 10.0.0.0/8\n"
    assert load_error(tmp_path, text) == "document 7 (IPPool): metadata.name: required"


def test_non_calico_document(tmp_path: Path) -> None:
    text = "kind: Service\napiVersion: v1\nmetadata:\n  name: kube-dns\n"
    assert load_error(tmp_path, text) == (
        "document 1 (Service): apiVersion: must be 'projectcalico.org/v3', found 'v1'"
    )


def test_unknown_kind(tmp_path: Path) -> None:
    text = "kind: BGPPeers\napiVersion: projectcalico.org/v3\nmetadata:\n  name: p\n"
    assert load_error(tmp_path, text) == "BGPPeers 'p': kind: unknown kind"


def test_bad_yaml_gives_line_and_column(tmp_path: Path) -> None:
    text = "kind: Node\napiVersion: projectcalico.org/v3\nmetadata:\n  name: n1\n   bad: [\n"
    message = load_error(tmp_path, text)
    assert message.startswith("line 5, column 7: ")
    text = "kind: Node\nmetadata: {name: n1\n"
    assert load_error(tmp_path, text).startswith("line 3, column 1: ")


def test_tab_indentation(tmp_path: Path) -> None:
    message = load_error(tmp_path, "kind: Node\nmetadata:\n\tname: n1\n")
    assert message.startswith("line 3, column 1: ")
    assert "'\\t'" in message


def test_duplicate_resource(tmp_path: Path) -> None:
    text = GOOD + GOOD.split("---\n")[3]
    assert load_error(tmp_path, text) == "BGPPeer 'rack1-tor': defined twice (documents 4 and 7)"


def test_list_kind_is_refused(tmp_path: Path) -> None:
    text = "kind: List\napiVersion: v1\nitems: []\n"
    assert load_error(tmp_path, text) == (
        "document 1: kind List is not supported; write one resource per document"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ResourceError) as e:
        load_file(path)
    assert str(e.value) == f"{path}: cannot read: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"kind: \xff\xfe\n")
    with pytest.raises(ResourceError) as e:
        load_file(str(path))
    assert str(e.value).startswith(f"{path}: not UTF-8 text")


def test_empty_file(tmp_path: Path) -> None:
    assert len(load_file(write(tmp_path, ""))) == 0


def test_example_config_loads() -> None:
    snap = load_file(str(REPO / "config" / "example-node.yaml"))
    assert sorted(snap.nodes) == ["node1", "node2", "node3"]
    assert [p.cidr for p in snap.ip_pools.values()] == ["192.168.0.0/16"]
    assert isinstance(snap.ip_pools["default-ipv4-ippool"], IPPool)
    assert [a.cidr for a in snap.affinities_of("node2")] == ["192.168.2.0/26"]


def test_unquoted_asdot_gets_a_hint(tmp_path: Path) -> None:
    text = GOOD.replace("asNumber: 64513", "asNumber: 1.10")
    assert load_error(tmp_path, text) == (
        "BGPPeer 'rack1-tor': spec.asNumber: 1.1 is not an AS number "
        "(write asdot in quotes: '1.10')"
    )
    assert (
        load_text(GOOD.replace("asNumber: 64513", "asNumber: '1.10'"))
        .bgp_peers["rack1-tor"]
        .as_number
        == 65546
    )
