"""felix's kernel shell over rtnetlink (common.netlink): reads links, addresses, routes and
neighbour entries with dumps, and sends what the pure modules decide in batches (one
sendmsg per ~64 KB): the workload routes (felix/routes.py) and the cluster routes, tunnel
devices and VTEP entries (cluster.py, kernel.py)."""

from __future__ import annotations

import errno
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from calico.snapshot import Snapshot
from common.netlink.driver import KernelRoutes
from common.netlink.link import Link
from common.netlink.route import (
    AF_BRIDGE,
    AF_INET,
    RT_TABLE_MAIN,
    RTPROT_BOOT,
    KernelRoute,
    OpKind,
)
from felix.dataplane.cluster import VXLAN_DEVICE, plan
from felix.dataplane.kernel import (
    Request,
    device_requests,
    neighbour_requests,
    parent_devices,
    route_ops,
)
from felix.routes import DeviceRoute, RouteChange, observed_routes
from felix.routes import route_ops as workload_ops

# Rounds of device changes per pass: delete a misconfigured device, make it, configure it.
_DEVICE_ROUNDS = 4


@dataclass(slots=True)
class ClusterOutcome:
    """One cluster pass: what was done, what the kernel refused, what had to wait."""

    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


class Kernel:
    def __init__(self, netns: str | None = None) -> None:
        self.routes = KernelRoutes(RTPROT_BOOT, netns=netns)

    async def open(self) -> None:
        await self.routes.open()

    def close(self) -> None:
        self.routes.close()

    # --- workload routes ----------------------------------------------------------------

    async def read(self) -> tuple[list[DeviceRoute], dict[str, int]]:
        """felix's workload routes, and every interface's index by name."""
        links = await self.routes.links()
        names = dict(links)
        entries = await self.routes.dump(RTPROT_BOOT, RT_TABLE_MAIN)
        routes = observed_routes(((e.protocol, e.route) for e in entries), names)
        return routes, {name: index for index, name in links}

    async def link_states(self) -> dict[str, bool]:
        """Each interface's name and whether it is operationally up (oper state up or
        unknown, as `ip link` shows it), for the endpoints' status."""
        return {link.name: link.running for link in await self.routes.link_list()}

    async def apply(self, changes: Sequence[RouteChange], links: Mapping[str, int]) -> list[str]:
        """Apply the changes in one batch; the errors (one line each, per route), which the
        next pass retries."""
        placed, unplaced = workload_ops(changes, links)
        errors = [f"{c}: interface {c.route.ifname} is gone" for c in unplaced]
        failed = await self.routes.apply([op for _, op in placed])
        change_of = {id(op): change for change, op in placed}
        for failure in failed:
            if failure.op.kind is OpKind.DELETE and failure.errno == errno.ESRCH:
                continue  # already gone
            text = failure.message or os.strerror(failure.errno)
            errors.append(f"{change_of[id(failure.op)]}: {text}")
        return errors

    # --- cluster routes, tunnel devices, VTEPs ------------------------------------------

    async def program_cluster(self, snapshot: Snapshot, node: str) -> ClusterOutcome:
        """One pass over what Calico's Felix programs for the cluster (cluster.py)."""
        out = ClusterOutcome()
        me = snapshot.nodes.get(node)
        links = await self.routes.link_list()
        addresses = await self.routes.addresses()
        ips = [me.ipv4, me.ipv6] if me is not None else []
        want = plan(snapshot, node, parent_devices(addresses, links, ips))
        out.waiting += want.problems
        for _ in range(_DEVICE_ROUNDS):
            requests = device_requests(want, links, addresses)
            if not requests:
                break
            refused = await self._execute(requests, out)
            links = await self.routes.link_list()
            addresses = await self.routes.addresses()
            if refused or not any(r.relinks for r in requests):
                break
        entries = await self.routes.dump(table=RT_TABLE_MAIN)
        ops, waiting = route_ops(want.routes, links, entries)
        out.waiting += waiting
        for failure in await self.routes.apply(ops):
            if failure.op.kind is OpKind.DELETE and failure.errno == errno.ESRCH:
                continue
            route = failure.op.route
            text = failure.message or os.strerror(failure.errno)
            out.errors.append(f"{failure.op.kind.value} route {_prefix(route)}: {text}")
        out.done += [f"{op.kind.value} route {_prefix(op.route)}" for op in ops]
        vx = _by_name(links, VXLAN_DEVICE)
        if vx is not None and want.vxlan is not None:
            seen = await self.routes.neighbours(AF_INET, vx.index)
            seen += await self.routes.neighbours(AF_BRIDGE, vx.index)
            await self._execute(neighbour_requests(want.vteps, vx.index, seen), out)
        return out

    async def _execute(self, requests: Sequence[Request], out: ClusterOutcome) -> bool:
        """Send the requests; True when the kernel refused any."""
        if not requests:
            return False
        failed = await self.routes.execute([r.encode for r in requests])
        refused = {index for index, _err, _msg in failed}
        for index, err, message in failed:
            out.errors.append(f"{requests[index].what}: {message or os.strerror(err)}")
        out.done += [r.what for i, r in enumerate(requests) if i not in refused]
        return bool(failed)


def _by_name(links: Sequence[Link], name: str) -> Link | None:
    return next((link for link in links if link.name == name), None)


def _prefix(route: KernelRoute) -> str:
    return f"{ipaddress.ip_address(route.dst)}/{route.dst_len}"
