"""bgpctl ipam show / check / release and get/apply ipamconfig: the tables against calicoctl's
own published output (the layouts below are copied from `calicoctl ipam show` runs, so the
tablewriter port, the percentages and the %.5g numbers must match them exactly), then the
commands end to end over a SQLite store whose addresses felix's IPAM allocated."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bgpd.cli.bgpctl import main
from bgpd.cli.ipam_cmds import format_configuration, format_utilization
from bgpd.cli.tablewriter import render, wrap_words
from calico import keys
from calico.ipam import HANDLE_PREFIX, Block, Handle, IpamConfig, handle_key
from calico.ipam_check import ClusterInfo
from calico.ipam_state import IpamState
from calico.ipam_usage import utilization
from calico.ipam_view import POOLS_PREFIX, IpamView
from calico.model import IPPool
from calico.store.sqlite import SqliteKV
from felix.ipam.allocator import AssignRequest
from felix.ipam.store import IpamStore


def block(cidr: str, used: int, host: str = "n1") -> Block:
    b = Block.new(cidr, host, 1_700_000_000.0)
    if used:
        b, _ = b.assign(used, f"h-{cidr}", {"node": host})
    return b


def pool(name: str, cidr: str, block_size: int) -> IPPool:
    return IPPool(name=name, cidr=cidr, block_size=block_size)


# --- calicoctl's published tables -----------------------------------------------------


def test_show_one_pool() -> None:
    # 8 addresses in use somewhere in a /16 pool of /26 blocks.
    blocks = [block("10.244.0.0/26", 5), block("10.244.7.64/26", 3)]
    text = format_utilization(
        utilization([pool("default-ipv4-ippool", "10.244.0.0/16", 26)], blocks), False
    )
    assert text == (
        "+----------+---------------+-----------+------------+--------------+\n"
        "| GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |\n"
        "+----------+---------------+-----------+------------+--------------+\n"
        "| IP Pool  | 10.244.0.0/16 |     65536 | 8 (0%)     | 65528 (100%) |\n"
        "+----------+---------------+-----------+------------+--------------+\n"
    )


def test_show_blocks_in_key_order() -> None:
    # Blocks come in the store's key order (".128" before ".64"), as Calico lists them.
    blocks = [block("10.244.0.128/26", 8), block("10.244.0.192/26", 1), block("10.244.0.64/26", 2)]
    text = format_utilization(
        utilization([pool("default-ipv4-ippool", "10.244.0.0/24", 26)], blocks), True
    )
    assert text == (
        "+----------+-----------------+-----------+------------+-----------+\n"
        "| GROUPING |      CIDR       | IPS TOTAL | IPS IN USE | IPS FREE  |\n"
        "+----------+-----------------+-----------+------------+-----------+\n"
        "| IP Pool  | 10.244.0.0/24   |       256 | 11 (4%)    | 245 (96%) |\n"
        "| Block    | 10.244.0.128/26 |        64 | 8 (12%)    | 56 (88%)  |\n"
        "| Block    | 10.244.0.192/26 |        64 | 1 (2%)     | 63 (98%)  |\n"
        "| Block    | 10.244.0.64/26  |        64 | 2 (3%)     | 62 (97%)  |\n"
        "+----------+-----------------+-----------+------------+-----------+\n"
    )


def test_show_blocks_with_an_ipv6_pool() -> None:
    blocks = [
        block("10.244.0.0/28", 1),
        block("10.244.0.16/28", 3),
        block("10.244.0.32/28", 7),
        block("10.244.0.48/28", 1),
    ]
    pools = [
        pool("default-ipv4-ippool", "10.244.0.0/26", 28),
        pool("default-ipv6-ippool", "fd1a:29a5:aa4e::/48", 122),
    ]
    assert format_utilization(utilization(pools, blocks), True) == (
        "+----------+---------------------+------------+------------+-------------------+\n"
        "| GROUPING |        CIDR         | IPS TOTAL  | IPS IN USE |     IPS FREE      |\n"
        "+----------+---------------------+------------+------------+-------------------+\n"
        "| IP Pool  | 10.244.0.0/26       |         64 | 12 (19%)   | 52 (81%)          |\n"
        "| Block    | 10.244.0.0/28       |         16 | 1 (6%)     | 15 (94%)          |\n"
        "| Block    | 10.244.0.16/28      |         16 | 3 (19%)    | 13 (81%)          |\n"
        "| Block    | 10.244.0.32/28      |         16 | 7 (44%)    | 9 (56%)           |\n"
        "| Block    | 10.244.0.48/28      |         16 | 1 (6%)     | 15 (94%)          |\n"
        "| IP Pool  | fd1a:29a5:aa4e::/48 | 1.2089e+24 | 0 (0%)     | 1.2089e+24 (100%) |\n"
        "+----------+---------------------+------------+------------+-------------------+\n"
    )


def _state(config: IpamConfig) -> IpamState:
    return IpamState(IpamView(config=config), (), (), (), ClusterInfo(), False, 0)


def test_show_configuration() -> None:
    assert format_configuration(_state(IpamConfig())) == (
        "+--------------------+-------+\n"
        "|      PROPERTY      | VALUE |\n"
        "+--------------------+-------+\n"
        "| StrictAffinity     | false |\n"
        "| AutoAllocateBlocks | true  |\n"
        "| MaxBlocksPerHost   |     0 |\n"
        "+--------------------+-------+\n"
    )
    extra = IpamConfig(True, True, 4, extra={"kubeVirtVMAddressPersistence": "Enabled"})
    assert '| KubeVirtVMAddressPersistence | "Enabled" |' in format_configuration(_state(extra))


def test_orphaned_blocks_show_only_with_blocks() -> None:
    blocks = [block("10.9.0.0/26", 2), block("fd00::/122", 1)]
    usage = utilization([], blocks)
    assert format_utilization(usage, False).count("\n") == 4  # header only
    text = format_utilization(usage, True)
    assert "| Block    | 10.9.0.0/26 |" in text and "| Block    | fd00::/122  |" in text


# --- the tablewriter port ---------------------------------------------------------------


def test_long_cells_wrap_at_30_with_least_raggedness() -> None:
    assert wrap_words(["aaaa"] * 7, 30) == [["aaaa"] * 6, ["aaaa"]]
    text = render(("NAME", "VALUE"), [["x", " ".join(["aaaa"] * 7)], ["12", "y"]])
    # The column is 30 wide (the limit), though the longest line is 29, as tablewriter has it.
    assert text == (
        "+------+--------------------------------+\n"
        "| NAME |             VALUE              |\n"
        "+------+--------------------------------+\n"
        "| x    | aaaa aaaa aaaa aaaa aaaa aaaa  |\n"
        "|      | aaaa                           |\n"
        "|   12 | y                              |\n"
        "+------+--------------------------------+\n"
    )
    # One word longer than 30 widens its column instead.
    word = "k8s-pod-network.0123456789abcdef0123"
    assert f"| {word} |" in render(("HANDLE",), [[word]])
    assert render(("A_B",), []).splitlines()[1] == "| A B |"


# --- end to end over a SQLite store -----------------------------------------------------

POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "pods"},
    "spec": {"cidr": "10.65.0.0/29", "blockSize": 30},
}


def wep(name: str, ip: str) -> tuple[str, bytes]:
    doc = {
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"node": "node1", "ipNetworks": [f"{ip}/32"]},
    }
    return keys.resource_key("WorkloadEndpoint", name, "default"), json.dumps(doc).encode()


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Pods allocated by felix's IPAM: four on node1 (its block full), one on node2, and a
    fifth node1 pod that borrows from node2's block. All have WorkloadEndpoints but pod3,
    whose address has leaked; plus a leaked handle nothing refers to."""
    path = tmp_path / "calico.db"
    pods: dict[str, str] = {}

    async def seed() -> None:
        kv = SqliteKV(str(path))
        await kv.put(POOLS_PREFIX + "pods", json.dumps(POOL).encode())
        ipam = IpamStore(kv, clock=lambda: 1_700_000_000.0)
        for host, name in [("node1", f"pod{i}") for i in range(4)] + [
            ("node2", "far"),
            ("node1", "pod4"),
        ]:
            attrs = {"node": host, "namespace": "default", "pod": name}
            (ip,) = await ipam.auto_assign(AssignRequest(host, f"k8s.{name}", attrs=attrs))
            pods[name] = ip
            if name != "pod3":
                await kv.put(*wep(name, ip))
        await kv.put(handle_key("k8s.ghost"), Handle({"10.65.0.0/30": 1}).to_json())
        await kv.close()

    asyncio.run(seed())
    return f"sqlite://{path}", pods


def bgpctl(url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--datastore", url, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_and_check_over_the_store(
    store: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, pods = store
    code, out, _ = bgpctl(url, "ipam", "show", "--show-blocks", capsys=capsys)
    assert code == 0
    assert "| IP Pool  | 10.65.0.0/29 |         8 | 6 (75%)    | 2 (25%)  |" in out
    assert "| Block    | 10.65.0.0/30 |         4 | 4 (100%)   | 0 (0%)   |" in out
    assert "| Block    | 10.65.0.4/30 |         4 | 2 (50%)    | 2 (50%)  |" in out

    code, out, _ = bgpctl(url, "ipam", "show", "--show-borrowed", capsys=capsys)
    assert code == 0
    (row,) = [line for line in out.splitlines() if pods["pod4"] in line]
    assert [c.strip() for c in row.strip("|").split("|")] == [
        pods["pod4"],
        "node1",
        "10.65.0.4/30",
        "node2",
        "pod",
        "default/pod4",
    ]

    code, out, _ = bgpctl(url, "ipam", "show", "--ip", pods["pod1"], capsys=capsys)
    assert out.splitlines()[:3] == [
        f"IP {pods['pod1']} is in use",
        "Handle ID: k8s.pod1",
        "Active Owner Attributes:",
    ]
    code, out, _ = bgpctl(url, "ipam", "show", "--ip", "10.65.0.7", capsys=capsys)
    assert out == "10.65.0.7 is not assigned\n"

    code, out, _ = bgpctl(url, "ipam", "check", "--show-problem-ips", capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    assert "Found 2 IPAM blocks." in lines and "IPAM blocks record 6 allocations." in lines
    assert (
        f"  {pods['pod3']} leaked; attrs Main:k8s.pod3 Extra:namespace=default,node=node1,pod=pod3"
        in lines
    )
    assert "Found 1 IPs that are allocated in IPAM but not actually in use." in lines
    assert "Found 1 handles with no matching IPs (and 6 handles with matches)." in lines
    assert "Found 1 borrowed IPs (allocated by a node the block is not affine to)." in lines
    assert lines[-1] == "Check complete; found 2 problems."
    assert "  node1 has 5 allocations" in lines and "  node2 has 1 allocations" in lines


def test_release_refuses_an_address_in_use(
    store: tuple[str, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, pods = store
    code, out, err = bgpctl(url, "ipam", "release", "--ip", pods["pod1"], capsys=capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"bgpctl: IP address {pods['pod1']} is in use by Workload(default/pod1): not releasing "
        "it (remove that first, or release it anyway with --force)\n"
    )
    code, out, _ = bgpctl(url, "ipam", "show", "--ip", pods["pod1"], capsys=capsys)
    assert out.startswith(f"IP {pods['pod1']} is in use")
    # The leaked one goes, and its handle with it.
    code, out, err = bgpctl(url, "ipam", "release", "--ip", pods["pod3"], capsys=capsys)
    assert (code, out, err) == (0, f"Successfully released IP address {pods['pod3']}\n", "")
    code, out, err = bgpctl(url, "ipam", "release", "--ip", pods["pod3"], capsys=capsys)
    assert (code, err) == (1, f"bgpctl: IP address {pods['pod3']} is not assigned\n")
    code, _, err = bgpctl(url, "ipam", "release", "--ip", "nope", capsys=capsys)
    assert (code, err) == (2, "bgpctl: invalid IP address 'nope'\n")
    code, out, _ = bgpctl(url, "ipam", "release", "--ip", pods["pod1"], "--force", capsys=capsys)
    assert code == 0 and "Successfully released" in out

    async def handles() -> list[str]:
        kv = SqliteKV(url.removeprefix("sqlite://"))
        listing = await kv.list(HANDLE_PREFIX)
        await kv.close()
        return [i.key.removeprefix(HANDLE_PREFIX) for i in listing.items]

    assert "k8s.pod3" not in asyncio.run(handles())


def test_release_from_a_report(
    store: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pods = store
    report = tmp_path / "report.json"
    code, _, _ = bgpctl(url, "ipam", "check", "-o", str(report), capsys=capsys)
    doc: dict[str, Any] = json.loads(report.read_text())
    assert code == 0 and doc["leakedHandles"] == [
        {"ID": "k8s.ghost", "UID": None, "Revision": doc["leakedHandles"][0]["Revision"]}
    ]
    assert doc["allocations"][pods["pod3"]][0]["inUse"] is False
    assert doc["allocations"][pods["pod1"]][0]["owners"] == ["Workload(default/pod1)"]
    code, out, err = bgpctl(url, "ipam", "release", "--from-report", str(report), capsys=capsys)
    assert (code, err) == (
        1,
        "bgpctl: data store is not locked. Either lock the data store, or re-run with --force\n",
    )
    code, out, err = bgpctl(
        url, "ipam", "release", "--from-report", str(report), "--force", capsys=capsys
    )
    assert (code, err) == (0, "")
    assert out == (
        "WARNING: Data store is not locked. Ignoring due to --force option\n"
        "Releasing 1 old IPs...\n"
        "Released 1 IPs successfully\n"
        "Deleting 1 handles...\n"
        "Key: '.' = Deleted OK; 'x' = skip, handle missing/changed.\n"
        ".\n"
        "Released 1 handles; 0 skipped; 0 errors.\n"
        "You may now unlock the data store.\n"
    )
    code, out, _ = bgpctl(url, "ipam", "check", capsys=capsys)
    assert out.splitlines()[-1] == "Check complete; found 0 problems."
    # Run again: the address was cleaned up already, the handle is gone.
    code, out, _ = bgpctl(
        url, "ipam", "release", "--from-report", str(report), "--force", capsys=capsys
    )
    assert "Released 0 IPs successfully" in out
    assert "1 addresses marked as leaked in the report had already been cleaned up." in out
    assert "x\nReleased 0 handles; 1 skipped; 0 errors." in out


def test_ipamconfig_get_and_apply(
    store: tuple[str, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = store
    code, out, _ = bgpctl(url, "get", "ipamconfig", capsys=capsys)
    assert out == "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS\ndefault   false            true\n"
    good = tmp_path / "ipam.yaml"
    good.write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\nmetadata: {name: default}\n"
        "spec: {strictAffinity: true, maxBlocksPerHost: 4}\n"
    )
    code, out, _ = bgpctl(url, "apply", "-f", str(good), capsys=capsys)
    assert (code, out) == (0, "Successfully applied 1 resource(s)\n")
    code, out, _ = bgpctl(url, "get", "ipamconfigs", "-o", "wide", capsys=capsys)
    assert out.splitlines()[1].split() == ["default", "true", "true", "4"]
    code, out, _ = bgpctl(url, "ipam", "show", "--show-configuration", capsys=capsys)
    assert "| StrictAffinity     | true  |" in out and "| MaxBlocksPerHost   |     4 |" in out

    # felix allocates by it: with strict affinity, node1 may not borrow any more.
    async def assign() -> str:
        kv = SqliteKV(url.removeprefix("sqlite://"))
        try:
            (ip,) = await IpamStore(kv).auto_assign(AssignRequest("node1", "k8s.more"))
            return ip
        except Exception as exc:
            return str(exc)
        finally:
            await kv.close()

    assert "strict affinity" in asyncio.run(assign())
    for spec, message in [
        ("{strictAffinity: false, maxBlocksPerHost: 4}", "maxBlocksPerHost needs strict_affinity"),
        ("{strictAffinity: false, autoAllocateBlocks: false}", "cannot be off without"),
        ("{strictAfinity: true}", "spec.strictAfinity: unknown field"),
        ("{maxBlocksPerHost: -1}", "expected a whole number 0..1000000"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            good.read_text().replace("{strictAffinity: true, maxBlocksPerHost: 4}", spec)
        )
        code, out, err = bgpctl(url, "apply", "-f", str(bad), capsys=capsys)
        assert code == 1 and message in err, err
    bad.write_text(good.read_text().replace("name: default", "name: other"))
    code, _, err = bgpctl(url, "apply", "-f", str(bad), capsys=capsys)
    assert 'name other than "default"' in err
    code, out, _ = bgpctl(url, "get", "ipamconfig", "-o", "wide", capsys=capsys)
    assert out.splitlines()[1].split() == ["default", "true", "true", "4"]  # unchanged
