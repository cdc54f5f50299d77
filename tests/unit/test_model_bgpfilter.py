"""BGPFilter in the Calico model: every field Calico's v3 API has, read and validated with one
error naming the field, written back by the codec so it reads the same; kept in snapshots and
watched in the datastore."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico import ResourceError, keys, parse_resource
from calico.codec import decode, encode, to_v3
from calico.model import BGPFilter, FilterOperation, FilterRule
from calico.resources import kind_of
from calico.snapshot import Snapshot
from calico.watch import watched_prefixes


def read(spec: dict[str, Any]) -> Any:
    return parse_resource(
        {
            "kind": "BGPFilter",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "f"},
            "spec": spec,
        }
    )


FULL = {
    "exportV4": [
        {"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In",
         "prefixLength": {"min": 16, "max": 24}, "source": "RemotePeers",
         "interface": "eth*", "peerType": "eBGP", "communities": {"values": ["65000:1"]},
         "asPathPrefix": [65000, "1.10"], "priority": 512,
         "operations": [{"addCommunity": {"value": "65000:2:3"}},
                        {"prependASPath": {"prefix": [65001, 65002]}},
                        {"setPriority": {"value": 100}}]},
        {"action": "Reject"},
    ],
    "importV6": [{"action": "Reject", "cidr": "fd00::/8", "matchOperator": "NotEqual"}],
}


def test_every_field_reads() -> None:
    f = read(FULL)
    assert isinstance(f, BGPFilter)
    first, last = f.export_v4
    assert first == FilterRule(
        action="Accept",
        cidr="10.0.0.0/8",
        match_operator="In",
        prefix_length=(16, 24),
        source="RemotePeers",
        interface="eth*",
        peer_type="eBGP",
        community="65000:1",
        as_path_prefix=(65000, 65546),
        priority=512,
        operations=(
            FilterOperation(add_community="65000:2:3"),
            FilterOperation(prepend_as_path=(65001, 65002)),
            FilterOperation(set_priority=100),
        ),
    )
    assert last == FilterRule("Reject")
    assert f.import_v6 == (FilterRule("Reject", "fd00::/8", "NotEqual"),)
    assert f.rules("export", 4) == f.export_v4 and f.rules("import", 4) == ()


def test_a_bare_address_is_a_full_length_cidr() -> None:
    f = read({"exportV4": [{"action": "Accept", "cidr": "10.1.2.3", "matchOperator": "Equal"}]})
    assert f.export_v4[0].cidr == "10.1.2.3/32"


def test_the_codec_writes_what_reads_back_the_same() -> None:
    f = read(FULL)
    key, value = encode(f)
    assert key == "/calico/resources/v3/projectcalico.org/bgpfilters/f"
    assert decode(key, value) == f
    assert parse_resource(json.loads(json.dumps(to_v3(f)))) == f


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"exportV4": [{}]}, "spec.exportV4[0].action: required"),
        ({"exportV4": [{"action": "Drop"}]}, "spec.exportV4[0].action: 'Drop' is not one of"),
        ({"importV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]},
         "spec.importV4[0].matchOperator: cidr and matchOperator must both be set or both be"),
        ({"importV4": [{"action": "Accept", "matchOperator": "In"}]},
         "spec.importV4[0].cidr: cidr and matchOperator must both be set"),
        ({"exportV4": [{"action": "Accept", "cidr": "fd00::/8", "matchOperator": "In"}]},
         "spec.exportV4[0].cidr: 'fd00::/8' is not an IPv4 CIDR"),
        ({"exportV6": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"}]},
         "spec.exportV6[0].cidr: '10.0.0.0/8' is not an IPv6 CIDR"),
        ({"exportV4": [{"action": "Accept", "cidr": "10.0.0.1/8", "matchOperator": "In"}]},
         "spec.exportV4[0].cidr: '10.0.0.1/8' has host bits set (use 10.0.0.0/8)"),
        ({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "Inside"}]},
         "spec.exportV4[0].matchOperator: 'Inside' is not one of"),
        ({"exportV4": [{"action": "Accept", "prefixLength": {"min": 9}}]},
         "spec.exportV4[0].prefixLength: cidr is required when prefixLength is set"),
        ({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In",
                        "prefixLength": {"max": 33}}]},
         "spec.exportV4[0].prefixLength.max: 33 is out of range 0..32"),
        ({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/16", "matchOperator": "In",
                        "prefixLength": {"max": 8}}]},
         "spec.exportV4[0].prefixLength: no prefix length fits 10.0.0.0/16 between 16 and 8"),
        ({"exportV4": [{"action": "Accept", "source": "Kernel"}]},
         "spec.exportV4[0].source: 'Kernel' is not one of 'RemotePeers'"),
        ({"exportV4": [{"action": "Accept", "interface": "eth 0"}]},
         "spec.exportV4[0].interface: 'eth 0' is not an interface name or glob"),
        ({"exportV4": [{"action": "Accept", "interface": "a-very-long-interface"}]},
         "spec.exportV4[0].interface: 'a-very-long-interface' is not an interface name"),
        ({"exportV4": [{"action": "Accept", "peerType": "ibgp"}]},
         "spec.exportV4[0].peerType: 'ibgp' is not one of 'eBGP', 'iBGP'"),
        ({"exportV4": [{"action": "Accept", "communities": {"values": []}}]},
         "spec.exportV4[0].communities.values: needs exactly one value, found 0"),
        ({"exportV4": [{"action": "Accept", "communities": {"values": ["70000:1"]}}]},
         "spec.exportV4[0].communities.values[0]: '70000:1': a standard community has 16-bit"),
        ({"exportV4": [{"action": "Accept", "communities": {"values": ["1:2:3:4"]}}]},
         "spec.exportV4[0].communities.values[0]: '1:2:3:4' is not a community"),
        ({"exportV4": [{"action": "Accept", "asPathPrefix": ["x"]}]},
         "spec.exportV4[0].asPathPrefix[0]: 'x' is not an AS number"),
        ({"exportV4": [{"action": "Accept", "priority": 0}]},
         "spec.exportV4[0].priority: 0 is out of range 1..2147483646"),
        ({"exportV4": [{"action": "Reject", "operations": [{"setPriority": {"value": 5}}]}]},
         "spec.exportV4[0].operations: operations may only be used with action Accept"),
        ({"exportV4": [{"action": "Accept", "operations": [{}]}]},
         "spec.exportV4[0].operations[0]: exactly one of addCommunity, prependASPath, "
         "setPriority must be set, found none"),
        ({"exportV4": [{"action": "Accept", "operations": [
            {"setPriority": {"value": 5}, "addCommunity": {"value": "1:2"}}]}]},
         "found addCommunity, setPriority"),
        ({"exportV4": [{"action": "Accept", "operations": [{"prependASPath": {"prefix": []}}]}]},
         "spec.exportV4[0].operations[0].prependASPath.prefix: needs 1 to 10 AS numbers"),
        ({"exportV4": [{"action": "Accept", "operations": [{"addCommunity": {}}]}]},
         "spec.exportV4[0].operations[0].addCommunity.value: required"),
        ({"exportV4": "all"}, "spec.exportV4: expected a list, found 'all'"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ResourceError) as e:
        read(spec)
    text = str(e.value)
    assert text.startswith("BGPFilter 'f': ") and message in text, text
    assert "\n" not in text


def test_snapshots_hold_filters_and_the_datastore_is_watched_for_them() -> None:
    f = read({"exportV4": [{"action": "Reject"}]})
    snap = Snapshot.of([f])
    assert snap.bgp_filters == {"f": f}
    assert snap.without("BGPFilter", "f").bgp_filters == {}
    assert keys.kind_prefix("BGPFilter") in watched_prefixes("node1")
    assert kind_of("bgpfilter") == kind_of("bgpfilters") == kind_of("filter") == "BGPFilter"


def test_bgpctl_applies_and_gets_a_filter(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """calicoctl's apply / get over the embedded store: what goes in reads back the same."""
    import yaml

    from bgpd.cli.bgpctl import main

    url = f"sqlite://{tmp_path}/calico.db"
    path = tmp_path / "filter.yaml"
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "BGPFilter",
           "metadata": {"name": "f"}, "spec": FULL}
    path.write_text(yaml.safe_dump(doc))
    assert main(["--datastore", url, "apply", "-f", str(path)]) == 0
    capsys.readouterr()
    assert main(["--datastore", url, "get", "bgpfilter", "f", "-o", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert parse_resource(got) == read(FULL)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "spec": {"exportV4": [{"action": "Drop"}]}}))
    assert main(["--datastore", url, "apply", "-f", str(bad)]) == 1
    assert "spec.exportV4[0].action: 'Drop' is not one of" in capsys.readouterr().err
