"""The CNI plugin's I/O: netlink in the host's and the pod's network namespaces, the
sysctls of the host end, the datastore connection, and `main` (the `felix-cni` console
script: CNI_* environment and JSON config on stdin in, one JSON document on stdout).

Links, addresses and the neighbour entry go through pyroute2, which does veth pairs and
moving an end into a namespace (`net_ns_fd`) well: `IPRoute(netns=PATH)` works on any
namespace path the runtime hands over (/var/run/netns/X or /proc/PID/ns/net), so no `ip`
or `nsenter` process is needed. Routes, the pod's and the host's, go through
common.netlink's struct-built batches, as felix programs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from calico.errors import DatastoreConfigError
from calico.store.kv import open_kv
from common.log import configure_logging, get_logger
from common.netlink.driver import KernelRoutes
from common.netlink.route import RT_TABLE_MAIN, RTPROT_BOOT, OpKind, RouteFailure, RouteOp
from felix.cni import plugin
from felix.cni.plugin import (
    GATEWAY_V4,
    GATEWAY_V6,
    HOST_MAC,
    NetnsMissing,
    Observed,
    Plumbed,
    Removed,
    default_via_gateway,
    mark_for,
    owns,
    pod_routes,
)
from felix.cni.request import (
    CURRENT_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    CniError,
    CniRequest,
    CniResult,
    parse_request,
    version_json,
)
from felix.routes import DeviceRoute, device_route

log = get_logger("felix.cni")

NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
NODENAME_FILE = "/var/lib/calico/nodename"

T = TypeVar("T")


def _sysctl(path: str, value: str) -> None:
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(value)


def _is_ipv6(cidr: str) -> bool:
    return ":" in cidr


@contextlib.contextmanager
def _netns(path: str) -> Iterator[IPRoute]:
    if not path or not os.path.exists(path):
        raise NetnsMissing(path)
    with IPRoute(netns=path) as ipr:
        yield ipr


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _get(ipr: IPRoute, ifname: str) -> Any | None:
    """The link named `ifname` (index, alias and all, read in one message), or None. An
    interface may vanish at any moment (its namespace being destroyed takes it), so a
    lookup and a second read could disagree."""
    try:
        (msg,) = ipr.link("get", ifname=ifname)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return msg


TEMP_PREFIX = "tmp"  # the host end's name until it replaces the previous one


def _mark(link: object) -> str:
    """An interface's owner mark: its alias (IFLA_IFALIAS), "" when it has none."""
    return str(link.get("ifalias") or "")  # type: ignore[attr-defined]


def _temp_name(owner: str) -> str:
    return TEMP_PREFIX + owner[:11]


class NetlinkDataplane:
    """The Dataplane of plugin.py. pyroute2's synchronous IPRoute runs its own event loop,
    so each operation runs in a worker thread, off the plugin's loop. A netlink error
    comes out as an OSError with its errno, for the plugin to report."""

    def __init__(self) -> None:
        self.sync = SyncDataplane()

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except NetlinkError as exc:
            raise OSError(exc.code, f"netlink: {exc}") from exc

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
        made = await self._call(
            self.sync.create,
            netns=netns,
            ifname=ifname,
            host_ifname=host_ifname,
            owner=owner,
            addresses=addresses,
            mtu=mtu,
        )
        try:
            # The pod's routes (its link is up), then the host's device routes to it.
            async with KernelRoutes(RTPROT_BOOT, netns=netns) as pod:
                ops = [RouteOp(OpKind.ADD, r) for r in pod_routes(addresses, made.pod_index)]
                _raise_first(await pod.apply(ops), netns)
            async with KernelRoutes(RTPROT_BOOT) as host:
                index = made.host_index
                routes = [device_route(DeviceRoute(a, host_ifname), index) for a in addresses]
                ops = [RouteOp(OpKind.REPLACE, r) for r in routes]
                _raise_first(await host.apply(ops), "the host")
        except BaseException:
            with contextlib.suppress(Exception):
                # Both ends carry this container's mark by now.
                await asyncio.to_thread(
                    self.sync.remove,
                    netns=netns,
                    ifname=ifname,
                    host_ifname=host_ifname,
                    owner=owner,
                    unmarked_host=False,
                )
            raise
        return made.plumbed

    async def remove(
        self, *, netns: str, ifname: str, host_ifname: str, owner: str, unmarked_host: bool
    ) -> Removed:
        return await self._call(
            self.sync.remove,
            netns=netns,
            ifname=ifname,
            host_ifname=host_ifname,
            owner=owner,
            unmarked_host=unmarked_host,
        )

    async def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        seen = await self._call(
            self.sync.observe, netns=netns, ifname=ifname, host_ifname=host_ifname
        )
        if seen is None:
            return None
        async with KernelRoutes(RTPROT_BOOT, netns=netns) as pod:
            routes = [e.route for e in await pod.dump(table=RT_TABLE_MAIN)]
        return replace(seen, default_via_gateway=default_via_gateway(routes))


def _raise_first(failures: Sequence[RouteFailure], where: str) -> None:
    if failures:
        f = failures[0]
        route = f.op.route
        dst = f"{ipaddress.ip_address(route.dst)}/{route.dst_len}"
        text = f.message or os.strerror(f.errno)
        raise OSError(f.errno, f"route {dst} in {where}: {text}")


@dataclass(frozen=True, slots=True)
class _Made:
    """The plumbed veth pair and the interface indexes its routes need."""

    plumbed: Plumbed
    host_index: int
    pod_index: int


class SyncDataplane:
    """Calico's workload plumbing. In the pod: the veth end named CNI_IFNAME with the /32
    (/128), a link route to 169.254.1.1 and the default route via it, and a permanent
    neighbour entry for 169.254.1.1 at the host end's MAC (ee:ee:ee:ee:ee:ee) so the pod
    never has to resolve its gateway. On the host: the `cali*` end up, proxy ARP on it (the
    host answers for any address the pod asks about), and the device route to the pod,
    proto boot as Felix programs it.

    Both ends carry the container ID as their alias (`ip link` shows it), which is how a
    DEL tells this container's interfaces from those of the pod's next sandbox, which get
    the same names. The pair is made with the pod end already in the pod's namespace under
    its final name and the host end under a temporary one; the host end takes its `cali*`
    name only once marked, so no `cali*` interface is ever seen without its owner."""

    def create(
        self,
        *,
        netns: str,
        ifname: str,
        host_ifname: str,
        owner: str,
        addresses: Sequence[str],
        mtu: int,
    ) -> _Made:
        if not netns or not os.path.exists(netns):
            raise NetnsMissing(netns)
        temp = _temp_name(owner)
        with IPRoute() as host:
            # Leftovers of an earlier, interrupted ADD of this container go first.
            old = _index(host, temp)
            if old is not None:
                _delete_link(host, old)
            with _netns(netns) as pod:
                existing = _get(pod, ifname)
                if existing is not None:
                    if not owns(_mark(existing), owner):
                        raise OSError(errno.EEXIST, f"{ifname} already exists in {netns}")
                    _delete_link(pod, existing["index"])
            fd = os.open(netns, os.O_RDONLY)
            try:
                host.link("add", ifname=temp, kind="veth", peer={"ifname": ifname, "net_ns_fd": fd})
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise OSError(errno.EEXIST, f"{ifname} already exists in {netns}") from exc
                raise
            finally:
                os.close(fd)
            h = _index(host, temp)
            if h is None:
                raise OSError(errno.ENODEV, f"{temp} vanished after it was made")
            try:
                return self._plumb(host, netns, ifname, host_ifname, h, owner, addresses, mtu)
            except BaseException:
                with contextlib.suppress(NetlinkError):
                    _delete_link(host, h)  # takes the pod end with it
                raise

    def _plumb(
        self,
        host: IPRoute,
        netns: str,
        ifname: str,
        host_ifname: str,
        h: int,
        owner: str,
        addresses: Sequence[str],
        mtu: int,
    ) -> _Made:
        host.link("set", index=h, address=HOST_MAC, mtu=mtu, ifalias=mark_for(owner))
        with _netns(netns) as pod:
            c = _index(pod, ifname)
            if c is None:
                raise OSError(errno.ENODEV, f"{ifname} did not arrive in {netns}")
            pod.link("set", index=c, mtu=mtu, ifalias=mark_for(owner), state="up")
            v4 = [a for a in addresses if not _is_ipv6(a)]
            v6 = [a for a in addresses if _is_ipv6(a)]
            for cidr in addresses:
                ip, plen = cidr.split("/")
                # No duplicate address detection: IPAM made the address unique, and DAD
                # would hold an IPv6 address back for a second or more.
                flags = IFA_F_NODAD if _is_ipv6(cidr) else 0
                pod.addr("add", index=c, address=ip, prefixlen=int(plen), flags=flags)
            if v4:
                pod.neigh("add", dst=GATEWAY_V4, lladdr=HOST_MAC, ifindex=c, state=NUD_PERMANENT)
            if v6:
                pod.neigh(
                    "add",
                    family=AF_INET6,
                    dst=GATEWAY_V6,
                    lladdr=HOST_MAC,
                    ifindex=c,
                    state=NUD_PERMANENT,
                )
            container_mac = str(pod.get_links(c)[0].get("address"))
        # The pod's previous sandbox (or an interrupted ADD) left a host end by this name:
        # this ADD replaces it, as Calico's DoNetworking does.
        old = _index(host, host_ifname)
        if old is not None:
            _delete_link(host, old)
        host.link("set", index=h, ifname=host_ifname)
        host.link("set", index=h, state="up")
        _sysctl(f"net/ipv4/conf/{host_ifname}/proxy_arp", "1")
        _sysctl(f"net/ipv4/neigh/{host_ifname}/proxy_delay", "0")
        _sysctl(f"net/ipv4/conf/{host_ifname}/forwarding", "1")
        return _Made(Plumbed(HOST_MAC, container_mac), h, c)

    def remove(
        self, *, netns: str, ifname: str, host_ifname: str, owner: str, unmarked_host: bool
    ) -> Removed:
        removed: list[str] = []
        kept: list[str] = []
        if netns and os.path.exists(netns):
            with contextlib.suppress(NetnsMissing), _netns(netns) as pod:
                found = _get(pod, ifname)
                if found is not None:
                    mark = _mark(found)
                    # An unmarked pod end is never taken: the namespace may be another
                    # pod's; this container's unmarked end goes with its host end.
                    if owns(mark, owner):
                        _delete_link(pod, found["index"])
                        removed.append(f"{ifname} in {netns}")
                    else:
                        kept.append(f"{ifname} in {netns} (marked {mark or 'by nobody'})")
        with IPRoute() as host:
            for name, unmarked in ((host_ifname, unmarked_host), (_temp_name(owner), False)):
                found = _get(host, name)
                if found is None:
                    continue
                mark = _mark(found)
                if owns(mark, owner, unmarked=unmarked):
                    # By index: a replacement made meanwhile under the name has another.
                    _delete_link(host, found["index"])
                    removed.append(name)
                elif name == host_ifname:
                    kept.append(f"{name} (marked {mark or 'by nobody'})")
        return Removed(tuple(removed), tuple(kept))

    def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        with _netns(netns) as pod:
            link = _get(pod, ifname)
            if link is None:
                return None
            c = link["index"]
            addresses = tuple(
                f"{a.get('address')}/{a['prefixlen']}"
                for a in pod.get_addr(index=c)
                if a.get("scope", 0) == 0
            )
        with IPRoute() as host:
            host_link = _get(host, host_ifname)
        up = host_link is not None and host_link.get("operstate") in ("UP", "UNKNOWN")
        # The pod's routes are read by the caller (NetlinkDataplane.observe).
        return Observed(
            addresses,
            str(link.get("address")),
            False,
            up,
            owner=_mark(link),
            host_owner=None if host_link is None else _mark(host_link),
        )


def _delete_link(ipr: IPRoute, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # the other end's deletion (or a DEL beside) took it
            raise


def node_name(request: CniRequest, env: Mapping[str, str]) -> str:
    """The Calico node: the config's nodename, $NODENAME, /var/lib/calico/nodename, or
    the hostname, as Calico's plugin looks for it."""
    if request.conf and request.conf.nodename:
        return request.conf.nodename
    if env.get("NODENAME"):
        return env["NODENAME"]
    with contextlib.suppress(OSError):
        with open(NODENAME_FILE) as f:
            name = f.read().strip()
        if name:
            return name
    return socket.gethostname()


async def run(request: CniRequest, env: Mapping[str, str]) -> CniResult | None:
    assert request.conf is not None
    node = node_name(request, env)
    dataplane = NetlinkDataplane()
    try:
        kv = open_kv(request.conf.datastore)
    except DatastoreConfigError as exc:  # a TLS or password file missing or wrong
        raise CniError(INVALID_CONFIG, "invalid network configuration", str(exc)) from exc
    except Exception as exc:
        raise CniError(IO_FAILURE, "cannot open the datastore", str(exc)) from exc
    async with kv:
        if request.command == "ADD":
            return await plugin.add(
                request, node, kv, dataplane, now=time.time(), uid=str(uuid.uuid4())
            )
        if request.command == "DEL":
            await plugin.delete(request, node, kv, dataplane)
        else:
            await plugin.check(request, node, kv, dataplane)
    return None


def respond(env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """(exit status, stdout document) for one invocation."""
    version = CURRENT_VERSION
    try:
        request = parse_request(env, stdin)
        version = request.cni_version
        if request.command == "VERSION":
            return 0, version_json(version)
        result = asyncio.run(run(request, env))
        return 0, result.to_json(version) if result is not None else ""
    except CniError as exc:
        log.error("cni.failed", code=exc.code, msg=exc.msg, details=exc.details)
        return 1, exc.to_json(version)
    except Exception as exc:
        log.exception("cni.internal_error")
        return 1, CniError(IO_FAILURE, "internal error", f"{type(exc).__name__}: {exc}").to_json(
            version
        )


def main() -> int:
    configure_logging(os.environ.get("FELIX_CNI_LOG_LEVEL", "info"))
    # pyroute2 logs every netlink message at debug; the plugin's own debug is enough.
    logging.getLogger("pyroute2").setLevel(max(logging.INFO, logging.getLogger().level))
    status, out = respond(os.environ, sys.stdin.buffer.read())
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
