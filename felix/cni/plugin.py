"""ADD, DEL and CHECK: IPAM, the dataplane and the WorkloadEndpoint, in that order, with
undo. The dataplane (veth pair, addresses, routes in the pod's namespace) sits behind the
small `Dataplane` protocol, implemented with netlink in driver.py; the store is a
calico KVStore. Every failure comes out as a CniError with the spec's code.

What a pod gets is named after the pod (the WEP <node>-k8s-<pod>-<ifname>, the host end
cali<sha1(namespace.pod)>), so each new sandbox of a pod reuses its predecessor's names,
and kubelet's DEL for the old sandbox routinely comes after the new one's ADD. Ownership is
therefore recorded where the names cannot hold it: the WEP's containerID (as Calico does)
and each veth end's alias, set to the container ID. The IPAM handle is per container
(<network>.<containerID>) and is the one thing a DEL always releases."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from calico import keys
from calico.codec import dumps
from calico.errors import (
    AccessDenied,
    Conflict,
    DatastoreConfigError,
    DatastoreError,
    Unavailable,
)
from calico.store.kv import Compare, KeyValue, KVStore, Put
from common.log import get_logger
from common.netlink.route import AF_INET, AF_INET6, KernelRoute, Nexthop
from felix.cni.request import (
    CHECK_FAILED,
    INVALID_CONFIG,
    IO_FAILURE,
    IPAM_FAILURE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    CniRequest,
    CniResult,
    Interface,
    IPConfig,
    prev_addresses,
)
from felix.ipam.allocator import USE_WORKLOAD, AssignRequest, IpamError
from felix.ipam.store import IpamStore
from felix.workload import (
    WorkloadEndpoint,
    endpoint_name,
    go_time_string,
    host_veth_name,
    new_endpoint,
)

log = get_logger("felix.cni")

GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"
HOST_MAC = "ee:ee:ee:ee:ee:ee"

T = TypeVar("T")


def pod_routes(addresses: Sequence[str], ifindex: int) -> list[KernelRoute]:
    """The pod's routes, in the order the kernel needs them: 169.254.1.1 on the link, then
    the default route via it (IPv4); the default route via the link-local gateway (IPv6)."""
    families = {ipaddress.ip_network(a, strict=False).version for a in addresses}
    routes: list[KernelRoute] = []
    if 4 in families:
        gw = ipaddress.IPv4Address(GATEWAY_V4).packed
        routes.append(KernelRoute(AF_INET, gw, 32, (Nexthop(b"", ifindex),)))
        routes.append(KernelRoute(AF_INET, bytes(4), 0, (Nexthop(gw, ifindex),)))
    if 6 in families:
        gw6 = ipaddress.IPv6Address(GATEWAY_V6).packed
        routes.append(KernelRoute(AF_INET6, bytes(16), 0, (Nexthop(gw6, ifindex),)))
    return routes


def default_via_gateway(routes: Iterable[KernelRoute]) -> bool:
    """Whether a default route goes via the link-local gateway (what CHECK wants)."""
    gateways = {ipaddress.ip_address(GATEWAY_V4).packed, ipaddress.ip_address(GATEWAY_V6).packed}
    return any(
        r.dst_len == 0 and any(nh.gateway in gateways for nh in r.nexthops) for r in routes
    )


class NetnsMissing(Exception):
    """The container's network namespace does not exist."""


@dataclass(frozen=True, slots=True)
class Plumbed:
    host_mac: str
    container_mac: str


@dataclass(frozen=True, slots=True)
class Observed:
    """What CHECK finds: the container interface's addresses, MAC and owner mark, whether
    its default route goes via the link-local gateway, and the host end's owner mark (None
    when the host end is missing) and whether it is up."""

    addresses: tuple[str, ...]
    container_mac: str
    default_via_gateway: bool
    host_up: bool
    owner: str = ""
    host_owner: str | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """What a teardown removed, and what it left because another container owns it."""

    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


MARK_MAX = 254  # IFLA_IFALIAS takes IFALIASZ - 1 bytes, the terminating NUL included


def mark_for(container_id: str) -> str:
    """The owner mark ADD puts on both veth ends: the container ID (as much as an interface
    alias holds; the spec bounds neither)."""
    return container_id[:MARK_MAX]


def owns(mark: str | None, container_id: str, *, unmarked: bool = False) -> bool:
    """Whether an interface whose owner mark (its IFLA_IFALIAS) is `mark` belongs to the
    container. The mark decides; an unmarked interface (made before marks, or by someone
    else) counts only when `unmarked` says the caller knows otherwise that it is this
    container's."""
    if mark:
        return mark == mark_for(container_id)
    return unmarked


class Dataplane(Protocol):
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
        """The veth pair, both ends marked as `owner`'s, the pod's addresses, routes and
        gateway neighbour, proxy ARP and the /32 route on the host. Replaces an earlier
        host end of the same name (the workload's previous sandbox). Raises NetnsMissing;
        undoes itself on any failure."""
        ...

    async def remove(
        self, *, netns: str, ifname: str, host_ifname: str, owner: str, unmarked_host: bool
    ) -> Removed:
        """Remove the ends of the pair that `owner` owns (see `owns`; `unmarked_host` is
        passed for the host end), whichever are still there."""
        ...

    async def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        """The state of the pair; None when the container interface is missing."""
        ...


def _node_wep(req: CniRequest, node: str) -> tuple[str, str]:
    """The WEP's (namespace, key) for this container interface."""
    if req.k8s_namespace and req.k8s_pod:
        name = endpoint_name(node, "k8s", req.k8s_pod, req.ifname)
        namespace = req.k8s_namespace
    else:
        name = endpoint_name(node, "cni", req.container_id, req.ifname)
        namespace = "default"
    return namespace, keys.resource_key("WorkloadEndpoint", name, namespace)


async def _datastore(what: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except IpamError as exc:
        raise CniError(IPAM_FAILURE, f"{what} failed", str(exc)) from exc
    except Unavailable as exc:
        raise CniError(TRY_AGAIN_LATER, "the datastore is unavailable", str(exc)) from exc
    except AccessDenied as exc:
        raise CniError(IO_FAILURE, "the datastore refused access", str(exc)) from exc
    except DatastoreConfigError as exc:
        raise CniError(INVALID_CONFIG, "invalid network configuration", str(exc)) from exc
    except DatastoreError as exc:
        raise CniError(IO_FAILURE, f"{what} failed", str(exc)) from exc


async def _endpoint(kv: KVStore, key: str) -> tuple[KeyValue | None, WorkloadEndpoint | None]:
    """The stored WEP at `key` and its reading (None when unreadable)."""
    item = await _datastore("reading the WorkloadEndpoint", lambda: kv.get(key))
    if item is None:
        return None, None
    try:
        return item, WorkloadEndpoint.from_json(item.value)
    except ValueError as exc:
        log.warning("cni.endpoint_unreadable", key=key, error=str(exc))
        return item, None


def _host_prefix(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _result(
    req: CniRequest, host_ifname: str, plumbed: Plumbed, networks: Sequence[str]
) -> CniResult:
    ips = tuple(IPConfig(n, 1, GATEWAY_V6 if ":" in n else GATEWAY_V4) for n in networks)
    routes = tuple(
        "::/0" if version == 6 else "0.0.0.0/0"
        for version in sorted({ipaddress.ip_network(n).version for n in networks})
    )
    return CniResult(
        interfaces=(
            Interface(host_ifname, plumbed.host_mac),
            Interface(req.ifname, plumbed.container_mac, req.netns),
        ),
        ips=ips,
        routes=routes,
    )


def _intact(seen: Observed | None, expected: Sequence[str], container_id: str) -> bool:
    """Whether the pair is complete, this container's, and carries the expected addresses."""
    return (
        seen is not None
        and seen.owner == mark_for(container_id)
        and seen.host_owner == mark_for(container_id)
        and seen.host_up
        and seen.default_via_gateway
        and sorted(seen.addresses) == sorted(expected)
    )


async def _repeated_add(
    req: CniRequest,
    kv: KVStore,
    dataplane: Dataplane,
    key: str,
    host_ifname: str,
    addresses: Sequence[str],
) -> CniResult | None:
    """The result of an earlier ADD of this very container when everything it made is
    still in place (the runtime retrying an ADD whose answer it lost); None otherwise."""
    if not addresses:
        return None
    _item, wep = await _endpoint(kv, key)
    networks = sorted(_host_prefix(a) for a in addresses)
    if wep is None or wep.container_id != req.container_id or sorted(wep.ip_networks) != networks:
        return None
    try:
        seen = await dataplane.observe(netns=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    except (NetnsMissing, OSError):
        return None
    if seen is None or not _intact(seen, networks, req.container_id):
        return None
    return _result(req, host_ifname, Plumbed(HOST_MAC, seen.container_mac), list(wep.ip_networks))


async def add(
    req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane, *, now: float, uid: str
) -> CniResult:
    """Idempotent for one container: a repeated ADD returns the first one's result without
    touching the dataplane when everything is in place, and rebuilds it with the same
    addresses when not. An ADD for a new sandbox of the same pod replaces the old one's
    host interface and WorkloadEndpoint; the old sandbox's addresses stay until its DEL."""
    conf = req.conf
    assert conf is not None
    ipam = IpamStore(kv)
    handle = req.handle_id
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    _ns, key = _node_wep(req, node)
    attrs = {"node": node, "timestamp": go_time_string(now)}
    if req.k8s_namespace and req.k8s_pod:
        attrs.update(namespace=req.k8s_namespace, pod=req.k8s_pod)
    # A repeated ADD (the runtime retrying) gets the addresses it already holds.
    addresses = await _datastore("IPAM lookup", lambda: ipam.addresses_of(handle))
    again = await _repeated_add(req, kv, dataplane, key, host_ifname, addresses)
    if again is not None:
        log.info("cni.add_repeated", container=req.container_id, interface=host_ifname)
        return again
    assigned_here = False
    plumbed: Plumbed | None = None
    try:
        if not addresses:
            for version, wanted, pools in (
                (4, conf.ipam.assign_ipv4, conf.ipam.ipv4_pools),
                (6, conf.ipam.assign_ipv6, conf.ipam.ipv6_pools),
            ):
                if not wanted:
                    continue
                request = AssignRequest(node, handle, 1, version, USE_WORKLOAD, attrs, pools)
                assigned_here = True
                addresses += await _datastore(
                    f"IPv{version} assignment", functools.partial(ipam.auto_assign, request)
                )
        networks = [_host_prefix(a) for a in addresses]
        try:
            plumbed = await dataplane.create(
                netns=req.netns,
                ifname=req.ifname,
                host_ifname=host_ifname,
                owner=req.container_id,
                addresses=networks,
                mtu=conf.mtu,
            )
        except NetnsMissing as exc:
            raise CniError(UNKNOWN_CONTAINER, "no such network namespace", req.netns) from exc
        except OSError as exc:
            raise CniError(IO_FAILURE, "cannot set up the interfaces", str(exc)) from exc
        labels = dict(conf.labels)
        await _datastore("creating profiles", lambda: ensure_profiles(kv, req, labels))
        wep = new_endpoint(
            node=node,
            container_id=req.container_id,
            endpoint=req.ifname,
            interface_name=host_ifname,
            ip_networks=networks,
            mac=plumbed.container_mac,
            network=conf.name,
            k8s_namespace=req.k8s_namespace,
            k8s_pod=req.k8s_pod,
            uid=uid,
            now=now,
            labels=labels,
        )
        await _datastore("writing the WorkloadEndpoint", lambda: kv.put(wep.key, wep.to_json()))
    except BaseException:
        # Undo in reverse; a failure while undoing must not hide the first one.
        if plumbed is not None:
            try:
                await dataplane.remove(
                    netns=req.netns,
                    ifname=req.ifname,
                    host_ifname=host_ifname,
                    owner=req.container_id,
                    unmarked_host=False,
                )
            except Exception as exc:  # pragma: no cover - logged, the first error wins
                log.warning("cni.undo_failed", step="dataplane", error=str(exc))
        if assigned_here:
            try:
                await ipam.release_by_handle(handle)
            except Exception as exc:  # pragma: no cover
                log.warning("cni.undo_failed", step="ipam", handle=handle, error=str(exc))
        raise
    return _result(req, host_ifname, plumbed, networks)


DELETE_ATTEMPTS = 5  # Calico's CmdDelK8s retries a WEP delete that lost a race 5 times


async def _delete_endpoint(kv: KVStore, key: str, container_id: str) -> bool | None:
    """Delete the WEP at `key` if it is this container's, by compare-and-swap so that a
    replacement written meanwhile survives. True: deleted; False: another container's,
    left; None: none there (or unreadable, left)."""
    for _ in range(DELETE_ATTEMPTS):
        item, wep = await _endpoint(kv, key)
        if item is None or wep is None:
            return None
        if wep.container_id and wep.container_id != container_id:
            log.info("cni.endpoint_kept", key=key, owner=wep.container_id)
            return False
        try:
            await kv.delete(key, item.mod_revision)
            return True
        except Conflict:
            continue
        except Unavailable as exc:
            raise CniError(TRY_AGAIN_LATER, "the datastore is unavailable", str(exc)) from exc
        except DatastoreError as exc:
            raise CniError(IO_FAILURE, "deleting the WorkloadEndpoint failed", str(exc)) from exc
    raise CniError(TRY_AGAIN_LATER, "the WorkloadEndpoint kept changing during DEL", key)


def profile_docs(req: CniRequest, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The profiles a new endpoint names, as whoever owns them in Calico writes them when
    they are missing: for a pod, `kns.<namespace>` (allow all; the namespace's name as a
    `pcns.` label, as kube-controllers writes it for a namespace) and
    `ksa.<namespace>.default`; otherwise the network's profile (Calico's CNI plugin:
    ingress only from endpoints of the same network, egress allowed)."""
    assert req.conf is not None
    allow = [{"action": "Allow"}]
    if req.k8s_namespace and req.k8s_pod:
        ns = req.k8s_namespace
        specs = {
            f"kns.{ns}": {
                "ingress": allow,
                "egress": allow,
                "labelsToApply": {"pcns.projectcalico.org/name": ns},
            },
            f"ksa.{ns}.default": {"labelsToApply": {"pcsa.projectcalico.org/name": "default"}},
        }
    else:
        net = req.conf.name
        specs = {
            net: {
                "ingress": [{"action": "Allow", "source": {"selector": f"has({net})"}}],
                "egress": allow,
                "labelsToApply": {net: ""},
            }
        }
    return [
        {"kind": "Profile", "apiVersion": "projectcalico.org/v3",
         "metadata": {"name": name}, "spec": spec}
        for name, spec in specs.items()
    ]


async def ensure_profiles(kv: KVStore, req: CniRequest, labels: dict[str, str]) -> None:
    """Create the endpoint's profiles where missing (never change or delete one: they are
    shared, and a user or controller may have written them with more labels)."""
    for doc in profile_docs(req, labels):
        key = keys.resource_key("Profile", doc["metadata"]["name"])
        await kv.txn([Compare(key, 0)], [Put(key, dumps(doc))])


async def delete(req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane) -> None:
    """Tear down what this container owns, and nothing else: the WorkloadEndpoint and the
    interfaces are named after the pod, so a late DEL for an old sandbox names the new
    sandbox's too; the WEP's containerID and the interfaces' owner marks tell them apart.
    The IPAM handle is the container's own, so it is always released. Idempotent:
    whatever is already gone (the namespace too) is fine. A datastore that cannot be read
    fails the DEL (code 11) rather than guess who owns what."""
    conf = req.conf
    assert conf is not None
    for problem in conf.ignored:
        log.warning("cni.config_ignored", container=req.container_id, problem=problem)
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    _ns, key = _node_wep(req, node)
    _item, wep = await _endpoint(kv, key)
    wep_ours = wep is not None and wep.container_id in ("", req.container_id)
    try:
        removed = await dataplane.remove(
            netns=req.netns,
            ifname=req.ifname,
            host_ifname=host_ifname,
            owner=req.container_id,
            unmarked_host=wep_ours,
        )
    except OSError as exc:
        raise CniError(IO_FAILURE, "cannot remove the interfaces", str(exc)) from exc
    deleted = await _delete_endpoint(kv, key, req.container_id)
    ipam = IpamStore(kv)
    released = await _datastore("IPAM release", lambda: ipam.release_by_handle(req.handle_id))
    log.info(
        "cni.deleted",
        container=req.container_id,
        released=released,
        removed=list(removed.removed),
        kept=list(removed.kept),
        endpoint={True: "deleted", False: "kept (another container's)", None: "none"}[deleted],
    )


async def check(req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane) -> None:
    conf = req.conf
    assert conf is not None
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    _ns, key = _node_wep(req, node)
    item, wep = await _endpoint(kv, key)
    if item is None:
        raise CniError(CHECK_FAILED, "no WorkloadEndpoint for this container", key)
    if wep is None:
        raise CniError(CHECK_FAILED, "the WorkloadEndpoint cannot be read", key)
    if wep.container_id != req.container_id:
        raise CniError(
            CHECK_FAILED,
            "the WorkloadEndpoint belongs to another container",
            f"{key}: {wep.container_id}",
        )
    ipam = IpamStore(kv)
    held = await _datastore("IPAM lookup", lambda: ipam.addresses_of(req.handle_id))
    expected = sorted(_host_prefix(a) for a in held)
    if sorted(wep.ip_networks) != expected:
        raise CniError(
            CHECK_FAILED,
            "the WorkloadEndpoint does not match IPAM",
            f"{wep.ip_networks} vs {expected}",
        )
    prev = prev_addresses(conf.prev_result)
    if prev and sorted(str(ipaddress.ip_interface(p).ip) for p in prev) != sorted(held):
        raise CniError(CHECK_FAILED, "prevResult does not match IPAM", f"{prev} vs {held}")
    try:
        seen = await dataplane.observe(netns=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    except NetnsMissing as exc:
        raise CniError(UNKNOWN_CONTAINER, "no such network namespace", req.netns) from exc
    if seen is None:
        raise CniError(CHECK_FAILED, f"interface {req.ifname} is missing in {req.netns}")
    if seen.owner != mark_for(req.container_id):
        raise CniError(
            CHECK_FAILED,
            f"{req.ifname} in {req.netns} is not this container's",
            f"marked {seen.owner or 'by nobody'}",
        )
    if sorted(seen.addresses) != expected:
        raise CniError(
            CHECK_FAILED, f"{req.ifname} has the wrong addresses", f"{seen.addresses} vs {expected}"
        )
    if not seen.default_via_gateway:
        raise CniError(CHECK_FAILED, f"no default route via {GATEWAY_V4} in {req.netns}")
    if seen.host_owner is None or not seen.host_up:
        raise CniError(CHECK_FAILED, f"host interface {host_ifname} is missing or down")
    if seen.host_owner != mark_for(req.container_id):
        raise CniError(
            CHECK_FAILED,
            f"host interface {host_ifname} is not this container's",
            f"marked {seen.host_owner or 'by nobody'}",
        )
