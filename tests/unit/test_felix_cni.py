"""The CNI plugin without a kernel: requests parsed from an env dict and stdin bytes, the
result and error documents, and ADD/DEL/CHECK against the real SQLite store with a recording
dataplane, including failures part-way and their undo."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from calico.errors import DatastoreError, Unavailable
from calico.ipam import handle_key
from calico.store.sqlite import SqliteKV
from felix.cni import plugin
from felix.cni.plugin import NetnsMissing, Observed, Plumbed, Removed, owns
from felix.cni.request import (
    CHECK_FAILED,
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    UNSUPPORTED_FIELD,
    CniError,
    CniRequest,
    parse_request,
)
from felix.ipam.view import POOLS_PREFIX
from felix.workload import PREFIX, WorkloadEndpoint, endpoint_name, host_veth_name

CONF: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "k8s-pod-network",
    "type": "felix-cni",
    "datastore": "sqlite:///tmp/x.db",
    "nodename": "node1",
}
ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "4f3c2b1a9e8d7c6b",
    "CNI_NETNS": "/var/run/netns/pod1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def request(env: dict[str, str] | None = None, **conf: Any) -> CniRequest:
    return parse_request({**ENV, **(env or {})}, json.dumps({**CONF, **conf}).encode())


def error_of(env: dict[str, str], stdin: bytes) -> CniError:
    with pytest.raises(CniError) as info:
        parse_request(env, stdin)
    return info.value


# --- parsing -------------------------------------------------------------------------------


def test_a_good_request() -> None:
    req = request({"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=nginx"})
    assert req.command == "ADD" and req.ifname == "eth0" and req.path == ("/opt/cni/bin",)
    assert req.k8s_namespace == "default" and req.k8s_pod == "nginx"
    assert req.handle_id == "k8s-pod-network.4f3c2b1a9e8d7c6b"
    assert req.conf is not None and req.conf.ipam.assign_ipv4 and not req.conf.ipam.assign_ipv6
    etcd = request(datastore=None, etcd_endpoints="http://10.0.0.1:2379,http://10.0.0.2:2379")
    assert etcd.conf is not None and etcd.conf.datastore.url == "etcd://10.0.0.1:2379,10.0.0.2:2379"


@pytest.mark.parametrize(
    ("env", "conf", "code", "text"),
    [
        ({"CNI_COMMAND": "BOGUS"}, CONF, INVALID_ENVIRONMENT, "CNI_COMMAND"),
        ({"CNI_CONTAINERID": ""}, CONF, INVALID_ENVIRONMENT, "CNI_CONTAINERID"),
        ({"CNI_NETNS": ""}, CONF, INVALID_ENVIRONMENT, "CNI_NETNS"),
        ({"CNI_CONTAINERID": "bad/id"}, CONF, INVALID_ENVIRONMENT, "CNI_CONTAINERID"),
        ({"CNI_IFNAME": "a-name-far-too-long"}, CONF, INVALID_ENVIRONMENT, "CNI_IFNAME"),
        ({"CNI_ARGS": "novalue"}, CONF, INVALID_ENVIRONMENT, "CNI_ARGS"),
        ({}, {**CONF, "cniVersion": "9.9.9"}, INCOMPATIBLE_VERSION, "version"),
        ({"CNI_COMMAND": "CHECK"}, {**CONF, "cniVersion": "0.3.1"}, INCOMPATIBLE_VERSION, "CHECK"),
        ({}, {**CONF, "cniVersion": None}, INVALID_CONFIG, "cniVersion"),
        ({}, {**CONF, "datastore": "file:///x.yaml"}, INVALID_CONFIG, "datastore"),
        ({}, {**CONF, "mtu": 20}, INVALID_CONFIG, "mtu"),
        ({}, {**CONF, "ipam": {"type": "host-local"}}, UNSUPPORTED_FIELD, "calico-ipam"),
        ({}, {**CONF, "ipam": {"ipv4_pools": ["fd00::/64"]}}, INVALID_CONFIG, "IPv4"),
        ({}, {**CONF, "ipam": {"assign_ipv4": "false"}}, INVALID_CONFIG, "neither"),
    ],
)
def test_bad_requests_get_the_spec_codes(
    env: dict[str, str], conf: dict[str, Any], code: int, text: str
) -> None:
    err = error_of({**ENV, **env}, json.dumps(conf).encode())
    assert err.code == code and text in str(err)
    doc = json.loads(err.to_json())
    assert doc["code"] == code and doc["msg"] and doc["cniVersion"] == "1.0.0"


def test_undecodable_config() -> None:
    assert error_of(ENV, b"{not json").code == DECODING_FAILURE


def test_del_needs_no_netns_and_version_needs_nothing() -> None:
    req = request({"CNI_COMMAND": "DEL", "CNI_NETNS": "", "CNI_PATH": ""})
    assert req.command == "DEL" and req.netns == ""
    ver = parse_request({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}')
    assert ver.cni_version == "0.4.0"


def test_names_as_calico_makes_them() -> None:
    # sha1("default.nginx") starts 6a9d1b1d5b6...
    import hashlib

    digest = hashlib.sha1(b"default.nginx").hexdigest()
    assert host_veth_name("abc", "default", "nginx") == "cali" + digest[:11]
    assert host_veth_name("4f3c2b1a9e8d7c6b") == "cali4f3c2b1a9e8"
    assert endpoint_name("node1", "k8s", "nginx-7d9f", "eth0") == "node1-k8s-nginx--7d9f-eth0"


# --- ADD / DEL / CHECK with a recording dataplane ------------------------------------------


@dataclass
class Link:
    owner: str
    addresses: list[str] = field(default_factory=list)
    up: bool = True


@dataclass
class FakeDataplane:
    """Interfaces by (namespace, name), the host's namespace being "", each with its owner
    mark, as driver.SyncDataplane keeps them."""

    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    fail_create: Exception | None = None
    removed: list[str] = field(default_factory=list)
    created: int = 0

    async def create(
        self,
        *,
        netns: str,
        ifname: str,
        host_ifname: str,
        owner: str,
        addresses: Sequence[str],
        mtu: int,
    ) -> Plumbed:
        if self.fail_create is not None:
            raise self.fail_create
        if netns == "/gone":
            raise NetnsMissing(netns)
        pod_end = self.links.get((netns, ifname))
        if pod_end is not None and pod_end.owner != owner:
            raise OSError(17, f"{ifname} already exists in {netns}")
        # The pod's previous host end gives way, taking its pod end with it.
        for key in [k for k, v in self.links.items() if k == ("", host_ifname)]:
            old = self.links.pop(key)
            for other in [k for k, v in self.links.items() if k[0] and v.owner == old.owner]:
                del self.links[other]
        self.links[(netns, ifname)] = Link(owner, list(addresses))
        self.links[("", host_ifname)] = Link(owner)
        self.created += 1
        return Plumbed("ee:ee:ee:ee:ee:ee", "0a:58:00:00:00:01")

    async def remove(
        self, *, netns: str, ifname: str, host_ifname: str, owner: str, unmarked_host: bool
    ) -> Removed:
        self.removed.append(host_ifname)
        gone, kept = [], []
        for key, unmarked in (((netns, ifname), False), (("", host_ifname), unmarked_host)):
            link = self.links.get(key)
            if link is None:
                continue
            if owns(link.owner, owner, unmarked=unmarked):
                del self.links[key]
                gone.append(key[1])
            else:
                kept.append(key[1])
        return Removed(tuple(gone), tuple(kept))

    async def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        if netns == "/gone":
            raise NetnsMissing(netns)
        pod_end = self.links.get((netns, ifname))
        if pod_end is None:
            return None
        host_end = self.links.get(("", host_ifname))
        return Observed(
            tuple(pod_end.addresses),
            "0a:58:00:00:00:01",
            True,
            host_end is not None and host_end.up,
            owner=pod_end.owner,
            host_owner=None if host_end is None else host_end.owner,
        )


POOL = {
    "kind": "IPPool",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "p"},
    "spec": {"cidr": "10.244.0.0/24", "blockSize": 28},
}


class FailingPutKV(SqliteKV):
    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        if key.startswith(PREFIX):
            raise DatastoreError("disk full")
        return await super().put(key, value, lease=lease)


def with_store(tmp_path: Path, body, kv_class=SqliteKV):  # type: ignore[no-untyped-def]
    async def main() -> None:
        kv = kv_class(str(tmp_path / "c.db"))
        await kv.put(POOLS_PREFIX + "p", json.dumps(POOL).encode())
        try:
            await body(kv)
        finally:
            await kv.close()

    asyncio.run(main())


def test_add_check_del(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        req = request()
        result = await plugin.add(req, "node1", kv, dp, now=1714557605.1, uid="u1")
        doc = json.loads(result.to_json())
        (ip,) = doc["ips"]
        assert ip["address"].endswith("/32") and ip["gateway"] == "169.254.1.1"
        assert doc["interfaces"][0]["name"] == "cali4f3c2b1a9e8"
        assert doc["interfaces"][1] == {
            "name": "eth0",
            "mac": "0a:58:00:00:00:01",
            "sandbox": "/var/run/netns/pod1",
        }
        assert doc["routes"] == [{"dst": "0.0.0.0/0"}]
        old = json.loads(result.to_json("0.4.0"))
        assert old["ips"][0]["version"] == "4"
        wep_key = f"{PREFIX}default/node1-cni-4f3c2b1a9e8d7c6b-eth0"
        stored = await kv.get(wep_key)
        assert stored is not None
        wep = WorkloadEndpoint.from_json(stored.value)
        assert wep.ip_networks == (ip["address"],) and wep.interface_name == "cali4f3c2b1a9e8"
        assert wep.node == "node1" and wep.orchestrator == "cni" and wep.uid == "u1"
        assert json.loads(stored.value)["metadata"]["creationTimestamp"] == "2024-05-01T10:00:05Z"
        # CHECK with the prevResult the runtime keeps.
        check = request({"CNI_COMMAND": "CHECK"}, prevResult=doc)
        await plugin.check(check, "node1", kv, dp)
        # A repeated ADD gets the same address.
        again = await plugin.add(req, "node1", kv, dp, now=1714557606.0, uid="u2")
        assert again.ips[0].address == ip["address"]
        # DEL twice: the second finds nothing and is still fine.
        delete = request({"CNI_COMMAND": "DEL"})
        await plugin.delete(delete, "node1", kv, dp)
        assert await kv.get(wep_key) is None
        assert await kv.get(handle_key(req.handle_id)) is None
        await plugin.delete(delete, "node1", kv, dp)
        with pytest.raises(CniError) as info:
            await plugin.check(check, "node1", kv, dp)
        assert info.value.code == CHECK_FAILED

    with_store(tmp_path, body)


def test_check_finds_a_broken_pod(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        doc = json.loads((await plugin.add(request(), "node1", kv, dp, now=1.0, uid="u")).to_json())
        check = request({"CNI_COMMAND": "CHECK"}, prevResult=doc)
        dp.links[("/var/run/netns/pod1", "eth0")].addresses = ["10.9.9.9/32"]
        with pytest.raises(CniError, match="wrong addresses"):
            await plugin.check(check, "node1", kv, dp)
        wrong_prev = {**doc, "ips": [{"address": "10.1.1.1/32"}]}
        with pytest.raises(CniError, match="prevResult"):
            await plugin.check(
                request({"CNI_COMMAND": "CHECK"}, prevResult=wrong_prev), "node1", kv, dp
            )
        with pytest.raises(CniError) as info:
            await plugin.check(
                request({"CNI_COMMAND": "CHECK", "CNI_NETNS": "/gone"}), "node1", kv, dp
            )
        assert info.value.code == UNKNOWN_CONTAINER

    with_store(tmp_path, body)


def test_missing_netns_releases_the_address(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane(fail_create=NetnsMissing("/var/run/netns/pod1"))
        with pytest.raises(CniError) as info:
            await plugin.add(request(), "node1", kv, dp, now=1.0, uid="u")
        assert info.value.code == UNKNOWN_CONTAINER
        assert await kv.get(handle_key(request().handle_id)) is None
        assert dp.removed == []  # nothing was plumbed, nothing to undo

    with_store(tmp_path, body)


def test_failed_endpoint_write_undoes_plumbing_and_ipam(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        with pytest.raises(CniError, match="WorkloadEndpoint"):
            await plugin.add(request(), "node1", kv, dp, now=1.0, uid="u")
        assert dp.removed == ["cali4f3c2b1a9e8"] and dp.links == {}
        assert await kv.get(handle_key(request().handle_id)) is None

    with_store(tmp_path, body, FailingPutKV)


def test_no_pool_is_an_ipam_error(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        await kv.delete(POOLS_PREFIX + "p")
        with pytest.raises(CniError, match="no configured Calico pools") as info:
            await plugin.add(request(), "node1", kv, FakeDataplane(), now=1.0, uid="u")
        assert info.value.code == 100

    with_store(tmp_path, body)


# --- kubelet's call patterns ----------------------------------------------------------------

POD_ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
SANDBOX_A, SANDBOX_B = "aaaa1111aaaa1111", "bbbb2222bbbb2222"
WEB_WEP = f"{PREFIX}default/node1-k8s-web-eth0"
WEB_VETH = host_veth_name("", "default", "web")


def sandbox(command: str, cid: str, netns: str, **conf: Any) -> CniRequest:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns}
    return request({**env, "CNI_ARGS": POD_ARGS}, **conf)


async def stored_wep(kv: SqliteKV, key: str = WEB_WEP) -> WorkloadEndpoint | None:
    item = await kv.get(key)
    return None if item is None else WorkloadEndpoint.from_json(item.value)


def test_owner_marks_decide() -> None:
    assert plugin.owns("abc", "abc") and not plugin.owns("abc", "xyz")
    assert not plugin.owns("abc", "xyz", unmarked=True)  # a mark always wins
    assert not plugin.owns("", "abc") and plugin.owns("", "abc", unmarked=True)
    assert not plugin.owns(None, "abc")
    # An alias holds 254 characters; the spec bounds no container ID.
    long_id = "f" * 300
    assert plugin.mark_for(long_id) == "f" * 254 and plugin.owns("f" * 254, long_id)


def test_a_stale_del_leaves_the_new_sandbox_alone(tmp_path: Path) -> None:
    """ADD sandbox A, ADD sandbox B of the same pod elsewhere, the runtime removes A's
    namespace, then kubelet's late DEL for A: only A's addresses go."""

    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        a = await plugin.add(sandbox("ADD", SANDBOX_A, "/ns/a"), "node1", kv, dp, now=1.0, uid="u")
        b = await plugin.add(sandbox("ADD", SANDBOX_B, "/ns/b"), "node1", kv, dp, now=2.0, uid="u")
        assert a.ips[0].address != b.ips[0].address
        assert dp.links[("", WEB_VETH)].owner == SANDBOX_B
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/gone"), "node1", kv, dp)
        wep = await stored_wep(kv)
        assert wep is not None and wep.container_id == SANDBOX_B
        assert wep.ip_networks == (b.ips[0].address,)
        assert dp.links[("", WEB_VETH)].owner == SANDBOX_B
        assert await kv.get(handle_key(f"k8s-pod-network.{SANDBOX_A}")) is None
        assert await kv.get(handle_key(f"k8s-pod-network.{SANDBOX_B}")) is not None
        await plugin.check(sandbox("CHECK", SANDBOX_B, "/ns/b"), "node1", kv, dp)
        with pytest.raises(CniError, match="another container") as info:
            await plugin.check(sandbox("CHECK", SANDBOX_A, "/ns/a"), "node1", kv, dp)
        assert info.value.code == CHECK_FAILED
        # The same stale DEL naming B's namespace (a confused runtime) takes nothing of B's.
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/b"), "node1", kv, dp)
        await plugin.check(sandbox("CHECK", SANDBOX_B, "/ns/b"), "node1", kv, dp)
        # B's own DEL, after its namespace is gone too.
        await plugin.delete(sandbox("DEL", SANDBOX_B, "/gone"), "node1", kv, dp)
        assert await stored_wep(kv) is None and dp.links == {
            ("/ns/b", "eth0"): dp.links[("/ns/b", "eth0")]
        }
        assert await kv.get(handle_key(f"k8s-pod-network.{SANDBOX_B}")) is None

    with_store(tmp_path, body)


def test_a_repeated_add_returns_the_same_result_untouched(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        req = sandbox("ADD", SANDBOX_A, "/ns/a")
        first = await plugin.add(req, "node1", kv, dp, now=1.0, uid="u1")
        again = await plugin.add(req, "node1", kv, dp, now=5.0, uid="u2")
        assert again.to_json() == first.to_json()
        assert dp.created == 1  # nothing re-plumbed
        wep = await stored_wep(kv)
        assert wep is not None and wep.uid == "u1"
        # Half of it gone (the pod end): the retry rebuilds it, with the same address.
        del dp.links[("/ns/a", "eth0")]
        rebuilt = await plugin.add(req, "node1", kv, dp, now=6.0, uid="u3")
        assert rebuilt.to_json() == first.to_json() and dp.created == 2
        await plugin.check(sandbox("CHECK", SANDBOX_A, "/ns/a"), "node1", kv, dp)

    with_store(tmp_path, body)


def test_del_naming_another_pods_interface_takes_nothing(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        other = request({"CNI_CONTAINERID": "cccc3333", "CNI_NETNS": "/ns/other"})
        await plugin.add(other, "node1", kv, dp, now=1.0, uid="u")
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/other"), "node1", kv, dp)
        assert dp.links[("/ns/other", "eth0")].owner == "cccc3333"
        await plugin.check(
            request(
                {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "cccc3333", "CNI_NETNS": "/ns/other"}
            ),
            "node1",
            kv,
            dp,
        )

    with_store(tmp_path, body)


def test_an_unmarked_host_end_goes_only_when_the_endpoint_is_ours(tmp_path: Path) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        await plugin.add(sandbox("ADD", SANDBOX_A, "/ns/a"), "node1", kv, dp, now=1.0, uid="u")
        dp.links[("", WEB_VETH)].owner = ""  # made before owner marks
        dp.links[("/ns/a", "eth0")].owner = ""
        await plugin.delete(sandbox("DEL", SANDBOX_B, "/ns/a"), "node1", kv, dp)
        assert ("", WEB_VETH) in dp.links  # the WEP names A: not B's to take
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/a"), "node1", kv, dp)
        assert ("", WEB_VETH) not in dp.links  # A's, by its WEP
        assert ("/ns/a", "eth0") in dp.links  # an unmarked pod end is never taken alone
        # With no WEP left, an unmarked host end is nobody's to take.
        dp.links[("", WEB_VETH)] = Link("")
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/a"), "node1", kv, dp)
        assert ("", WEB_VETH) in dp.links

    with_store(tmp_path, body)


@pytest.mark.parametrize(
    "changed",
    [
        {"ipam": {"type": "host-local", "subnet": "10.1.0.0/16"}},
        {"ipam": {"type": "calico-ipam", "ipv4_pools": ["not-a-cidr"]}},
        {"ipam": {"assign_ipv4": "false"}},
        {"mtu": 9},
        {"prevResult": "junk"},
        {"args": {"cni": {"labels": {"app": "web"}}}},
    ],
)
def test_del_after_a_config_change_still_releases(tmp_path: Path, changed: dict[str, Any]) -> None:
    async def body(kv: SqliteKV) -> None:
        dp = FakeDataplane()
        req = sandbox("ADD", SANDBOX_A, "/ns/a")
        await plugin.add(req, "node1", kv, dp, now=1.0, uid="u")
        with pytest.raises(CniError):
            parse_request({**ENV, "CNI_COMMAND": "ADD"}, json.dumps({**CONF, **changed}).encode())
        delete = sandbox("DEL", SANDBOX_A, "/ns/a", **changed)
        assert delete.conf is not None and delete.conf.ignored
        await plugin.delete(delete, "node1", kv, dp)
        assert await kv.get(handle_key(req.handle_id)) is None
        assert await stored_wep(kv) is None and dp.links == {}

    with_store(tmp_path, body)


class UnreadableKV(SqliteKV):
    async def get(self, key: str):  # type: ignore[no-untyped-def]
        if key.startswith(PREFIX) and getattr(self, "down", False):
            raise Unavailable("connection refused")
        return await super().get(key)


def test_del_without_a_datastore_touches_nothing(tmp_path: Path) -> None:
    async def body(kv: UnreadableKV) -> None:
        dp = FakeDataplane()
        await plugin.add(sandbox("ADD", SANDBOX_A, "/ns/a"), "node1", kv, dp, now=1.0, uid="u")
        kv.down = True  # type: ignore[attr-defined]
        with pytest.raises(CniError) as info:
            await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/a"), "node1", kv, dp)
        assert info.value.code == TRY_AGAIN_LATER
        assert len(dp.links) == 2 and dp.removed == []

    with_store(tmp_path, body, UnreadableKV)


class ReplacedMeanwhileKV(SqliteKV):
    """A new sandbox's ADD writes its WEP between the DEL's read and its delete."""

    replacement: bytes = b""

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        if key.startswith(PREFIX) and self.replacement:
            await super().put(key, self.replacement)
            self.replacement = b""
        return await super().delete(key, mod_revision)


def test_del_keeps_an_endpoint_replaced_meanwhile(tmp_path: Path) -> None:
    async def body(kv: ReplacedMeanwhileKV) -> None:
        dp = FakeDataplane()
        await plugin.add(sandbox("ADD", SANDBOX_A, "/ns/a"), "node1", kv, dp, now=1.0, uid="u")
        stored = await stored_wep(kv)
        assert stored is not None
        kv.replacement = dataclasses.replace(stored, container_id=SANDBOX_B).to_json()
        await plugin.delete(sandbox("DEL", SANDBOX_A, "/ns/a"), "node1", kv, dp)
        wep = await stored_wep(kv)
        assert wep is not None and wep.container_id == SANDBOX_B

    with_store(tmp_path, body, ReplacedMeanwhileKV)


# --- labels and profiles (what policy selects on) ------------------------------------------


def test_pod_labels_and_profiles_reach_the_datastore(tmp_path: Path) -> None:
    labels = [{"key": "app", "value": "web"}, {"key": "pcns.env", "value": "sneaky"}]
    k8s = {"CNI_ARGS": "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1"}

    async def body(kv: SqliteKV) -> None:
        req = request(k8s, args={"cni": {"labels": labels}})
        await plugin.add(req, "node1", kv, FakeDataplane(), now=1.0, uid="u")
        stored = await kv.get(f"{PREFIX}shop/node1-k8s-web--1-eth0")
        assert stored is not None
        wep = WorkloadEndpoint.from_json(stored.value)
        assert dict(wep.labels) == {
            "app": "web",
            "pcns.env": "sneaky",  # kept as given; felix ignores pcns. labels of a WEP
            "projectcalico.org/namespace": "shop",
            "projectcalico.org/orchestrator": "k8s",
            "projectcalico.org/serviceaccount": "default",
        }
        assert wep.profiles == ("kns.shop", "ksa.shop.default")
        kns = await kv.get("/calico/resources/v3/projectcalico.org/profiles/kns.shop")
        assert kns is not None
        spec = json.loads(kns.value)["spec"]
        assert spec["labelsToApply"] == {"pcns.projectcalico.org/name": "shop"}
        assert spec["ingress"] == [{"action": "Allow"}] == spec["egress"]
        # A profile someone wrote (with the namespace's labels) is never overwritten.
        mine = {**json.loads(kns.value), "spec": {"labelsToApply": {"pcns.env": "prod"}}}
        await kv.put(kns.key, json.dumps(mine).encode())
        other = request(
            {"CNI_CONTAINERID": "abc123", "CNI_ARGS": "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-2"}
        )
        await plugin.add(other, "node1", kv, FakeDataplane(), now=2.0, uid="u2")
        again = await kv.get(kns.key)
        assert again is not None and json.loads(again.value)["spec"] == mine["spec"]

    with_store(tmp_path, body)


def test_non_kubernetes_workload_gets_calicos_network_profile(tmp_path: Path) -> None:
    mesos = {"network_info": {"labels": {"labels": [
        {"key": "projectcalico.org/namespace", "value": "team"}, {"key": "tier", "value": "db"}]}}}

    async def body(kv: SqliteKV) -> None:
        await plugin.add(request(args={"org.apache.mesos": mesos}), "node1", kv, FakeDataplane(),
                         now=1.0, uid="u")
        stored = await kv.get(f"{PREFIX}team/node1-cni-4f3c2b1a9e8d7c6b-eth0")
        assert stored is not None
        wep = WorkloadEndpoint.from_json(stored.value)
        assert wep.labels["tier"] == "db" and wep.profiles == ("k8s-pod-network",)
        prof = await kv.get("/calico/resources/v3/projectcalico.org/profiles/k8s-pod-network")
        assert prof is not None
        assert json.loads(prof.value)["spec"] == {
            "ingress": [{"action": "Allow", "source": {"selector": "has(k8s-pod-network)"}}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"k8s-pod-network": ""},
        }

    with_store(tmp_path, body)


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        ([], "args must be an object"),
        ({"cni": {"labels": {"a": "b"}}}, "args.cni.labels must be a list of {key, value}"),
        (
            {"cni": {"labels": [{"value": "x"}]}},
            'args labels[0] must be {"key": ..., "value": ...}',
        ),
        ({"cni": {"labels": [{"key": "a", "value": 1}]}}, "args labels[0].value must be a string"),
    ],
)
def test_bad_labels_are_config_errors(args: Any, detail: str) -> None:
    e = error_of(ENV, json.dumps({**CONF, "args": args}).encode())
    assert (e.code, e.details) == (INVALID_CONFIG, detail)
