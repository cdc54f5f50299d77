"""ADD, DEL and CHECK: IPAM, the dataplane and the WorkloadEndpoint, in that order, with
undo. The dataplane (veth pair, addresses, routes in the pod's namespace) sits behind the
small `Dataplane` protocol, implemented with netlink in driver.py; the store is a
calico KVStore. Every failure comes out as a CniError with the spec's code."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from calico import keys
from calico.errors import AccessDenied, DatastoreConfigError, DatastoreError, Unavailable
from calico.store.kv import KVStore
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
    """What CHECK finds: the container interface's addresses and MAC, whether its default
    route goes via the link-local gateway, and whether the host end is up."""

    addresses: tuple[str, ...]
    container_mac: str
    default_via_gateway: bool
    host_up: bool


class Dataplane(Protocol):
    async def create(
        self, *, netns: str, ifname: str, host_ifname: str, addresses: Sequence[str], mtu: int
    ) -> Plumbed:
        """The veth pair, the pod's addresses, routes and gateway neighbour, proxy ARP and
        the /32 route on the host. Raises NetnsMissing; undoes itself on any failure."""
        ...

    async def remove(self, *, netns: str, ifname: str, host_ifname: str) -> bool:
        """Remove the pair (whichever end is still there); False if nothing was there."""
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


def _host_prefix(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


async def add(
    req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane, *, now: float, uid: str
) -> CniResult:
    conf = req.conf
    assert conf is not None
    ipam = IpamStore(kv)
    handle = req.handle_id
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    attrs = {"node": node, "timestamp": go_time_string(now)}
    if req.k8s_namespace and req.k8s_pod:
        attrs.update(namespace=req.k8s_namespace, pod=req.k8s_pod)
    assigned_here = False
    plumbed: Plumbed | None = None
    try:
        # A repeated ADD (the runtime retrying) gets the addresses it already holds.
        addresses = await _datastore("IPAM lookup", lambda: ipam.addresses_of(handle))
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
                addresses=networks,
                mtu=conf.mtu,
            )
        except NetnsMissing as exc:
            raise CniError(UNKNOWN_CONTAINER, "no such network namespace", req.netns) from exc
        except OSError as exc:
            raise CniError(IO_FAILURE, "cannot set up the interfaces", str(exc)) from exc
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
        )
        await _datastore("writing the WorkloadEndpoint", lambda: kv.put(wep.key, wep.to_json()))
    except BaseException:
        # Undo in reverse; a failure while undoing must not hide the first one.
        if plumbed is not None:
            try:
                await dataplane.remove(netns=req.netns, ifname=req.ifname, host_ifname=host_ifname)
            except Exception as exc:  # pragma: no cover - logged, the first error wins
                log.warning("cni.undo_failed", step="dataplane", error=str(exc))
        if assigned_here:
            try:
                await ipam.release_by_handle(handle)
            except Exception as exc:  # pragma: no cover
                log.warning("cni.undo_failed", step="ipam", handle=handle, error=str(exc))
        raise
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


async def delete(req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane) -> None:
    """Idempotent: whatever is already gone is fine (the namespace too)."""
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    try:
        await dataplane.remove(netns=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    except OSError as exc:
        raise CniError(IO_FAILURE, "cannot remove the interfaces", str(exc)) from exc
    _ns, key = _node_wep(req, node)
    await _datastore("deleting the WorkloadEndpoint", lambda: kv.delete(key))
    ipam = IpamStore(kv)
    released = await _datastore("IPAM release", lambda: ipam.release_by_handle(req.handle_id))
    log.info("cni.deleted", container=req.container_id, released=released)


async def check(req: CniRequest, node: str, kv: KVStore, dataplane: Dataplane) -> None:
    conf = req.conf
    assert conf is not None
    host_ifname = host_veth_name(req.container_id, req.k8s_namespace, req.k8s_pod)
    _ns, key = _node_wep(req, node)
    item = await _datastore("reading the WorkloadEndpoint", lambda: kv.get(key))
    if item is None:
        raise CniError(CHECK_FAILED, "no WorkloadEndpoint for this container", key)
    wep = WorkloadEndpoint.from_json(item.value)
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
    if sorted(seen.addresses) != expected:
        raise CniError(
            CHECK_FAILED, f"{req.ifname} has the wrong addresses", f"{seen.addresses} vs {expected}"
        )
    if not seen.default_via_gateway:
        raise CniError(CHECK_FAILED, f"no default route via {GATEWAY_V4} in {req.netns}")
    if not seen.host_up:
        raise CniError(CHECK_FAILED, f"host interface {host_ifname} is missing or down")
