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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

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
    default_via_gateway,
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


class NetlinkDataplane:
    """The Dataplane of plugin.py. pyroute2's synchronous IPRoute runs its own event loop,
    so each operation runs in a worker thread, off the plugin's loop."""

    def __init__(self) -> None:
        self.sync = SyncDataplane()

    async def create(
        self, *, netns: str, ifname: str, host_ifname: str, addresses: Sequence[str], mtu: int
    ) -> Plumbed:
        made = await asyncio.to_thread(
            self.sync.create,
            netns=netns,
            ifname=ifname,
            host_ifname=host_ifname,
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
                await asyncio.to_thread(
                    self.sync.remove, netns=netns, ifname=ifname, host_ifname=host_ifname
                )
            raise
        return made.plumbed

    async def remove(self, *, netns: str, ifname: str, host_ifname: str) -> bool:
        return await asyncio.to_thread(
            self.sync.remove, netns=netns, ifname=ifname, host_ifname=host_ifname
        )

    async def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        seen = await asyncio.to_thread(
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
    proto boot as Felix programs it."""

    def create(
        self, *, netns: str, ifname: str, host_ifname: str, addresses: Sequence[str], mtu: int
    ) -> _Made:
        if not netns or not os.path.exists(netns):
            raise NetnsMissing(netns)
        peer = "tmp" + host_ifname[len("cali") :]
        with IPRoute() as host:
            # A leftover from an earlier, interrupted ADD of this container goes first.
            old = _index(host, host_ifname)
            if old is not None:
                host.link("del", index=old)
            host.link("add", ifname=host_ifname, kind="veth", peer=peer)
            try:
                return self._plumb(host, netns, ifname, host_ifname, peer, addresses, mtu)
            except BaseException:
                with contextlib.suppress(NetlinkError):
                    index = _index(host, host_ifname)
                    if index is not None:
                        host.link("del", index=index)  # takes the pod end with it
                raise

    def _plumb(
        self,
        host: IPRoute,
        netns: str,
        ifname: str,
        host_ifname: str,
        peer: str,
        addresses: Sequence[str],
        mtu: int,
    ) -> _Made:
        h = _index(host, host_ifname)
        p = _index(host, peer)
        assert h is not None and p is not None
        host.link("set", index=h, address=HOST_MAC, mtu=mtu)
        host.link("set", index=p, mtu=mtu)
        fd = os.open(netns, os.O_RDONLY)
        try:
            host.link("set", index=p, net_ns_fd=fd)
        finally:
            os.close(fd)
        with _netns(netns) as pod:
            c = _index(pod, peer)
            if c is None:
                raise OSError(errno.ENODEV, f"{peer} did not arrive in {netns}")
            if _index(pod, ifname) is not None:
                raise OSError(errno.EEXIST, f"{ifname} already exists in {netns}")
            pod.link("set", index=c, ifname=ifname, state="up")
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
        host.link("set", index=h, state="up")
        _sysctl(f"net/ipv4/conf/{host_ifname}/proxy_arp", "1")
        _sysctl(f"net/ipv4/neigh/{host_ifname}/proxy_delay", "0")
        _sysctl(f"net/ipv4/conf/{host_ifname}/forwarding", "1")
        return _Made(Plumbed(HOST_MAC, container_mac), h, c)

    def remove(self, *, netns: str, ifname: str, host_ifname: str) -> bool:
        found = False
        if netns and os.path.exists(netns):
            with contextlib.suppress(NetnsMissing), _netns(netns) as pod:
                index = _index(pod, ifname)
                if index is not None:
                    _delete_link(pod, index)
                    found = True
        with IPRoute() as host:
            index = _index(host, host_ifname)
            if index is not None:
                _delete_link(host, index)
                found = True
        return found

    def observe(self, *, netns: str, ifname: str, host_ifname: str) -> Observed | None:
        with _netns(netns) as pod:
            c = _index(pod, ifname)
            if c is None:
                return None
            link = pod.get_links(c)[0]
            addresses = tuple(
                f"{a.get('address')}/{a['prefixlen']}"
                for a in pod.get_addr(index=c)
                if a.get("scope", 0) == 0
            )
        with IPRoute() as host:
            h = _index(host, host_ifname)
            up = h is not None and host.get_links(h)[0].get("operstate") in ("UP", "UNKNOWN")
        # The pod's routes are read by the caller (NetlinkDataplane.observe).
        return Observed(addresses, str(link.get("address")), False, up)


def _delete_link(ipr: IPRoute, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:  # the other end's deletion took it already
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
