"""GoBGP as a lab peer, and the parser of `gobgp global rib -j`."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any

from ..lab import LabError
from .base import (
    CONNECT_RETRY,
    Peer,
    Route,
    canonical_prefix,
    family_of,
    int_or_none,
    normalise_state,
)


class GobgpPeer(Peer):
    """GoBGP 3.10: `gobgpd -f gobgpd.toml -t toml --api-hosts unix://DIR/api.sock -p
    --pprof-disable`, queried with `gobgp --target unix://DIR/api.sock ... -j`.

    GoBGP's configuration has no static routes: they are added with `gobgp global rib add`
    once the API answers (GoBGP replaces the 0.0.0.0 / :: next hop with its session address).
    """

    kind = "gobgp"
    log_name = "gocommon.log"
    programs = ("gobgpd", "gobgp")

    def _setup(self) -> None:
        self.config_path = self.workdir / "gobgpd.toml"
        self.target = f"unix://{self.rundir / 'api.sock'}"

    def config(self) -> str:
        out = [
            "[global.config]",
            f"  as = {self.local_as}",
            f'  router-id = "{self.router_id}"',
        ]
        for n in self.effective_neighbors():
            out += [
                "",
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{n.address}"',
                f"    peer-as = {n.remote_as}",
            ]
            if n.password:
                out.append(f'    auth-password = "{n.password}"')
            out += [
                "  [neighbors.timers.config]",
                f"    connect-retry = {CONNECT_RETRY}",
                "    idle-hold-time-after-reset = 1",
            ]
            if n.hold_time is not None:
                out.append(f"    hold-time = {n.hold_time}")
                out.append(f"    keepalive-interval = {max(1, n.hold_time // 3)}")
            out.append("  [neighbors.transport.config]")
            out.append(f"    passive-mode = {str(bool(n.passive)).lower()}")
            if n.port != 179:
                out.append(f"    remote-port = {n.port}")
            if n.local_address:
                out.append(f'    local-address = "{n.local_address}"')
            if n.multihop:
                out += [
                    "  [neighbors.ebgp-multihop.config]",
                    "    enabled = true",
                    f"    multihop-ttl = {n.multihop}",
                ]
            if n.rr_client:
                out += [
                    "  [neighbors.route-reflector.config]",
                    "    route-reflector-client = true",
                    f'    route-reflector-cluster-id = "{self.router_id}"',
                ]
            if n.graceful_restart:
                out += [
                    "  [neighbors.graceful-restart.config]",
                    "    enabled = true",
                    "    restart-time = 120",
                ]
            for family in n.afs:
                out += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "ipv{family}-unicast"',
                ]
                if n.graceful_restart:
                    out += [
                        "    [neighbors.afi-safis.mp-graceful-restart.config]",
                        "      enabled = true",
                    ]
            if n.af_extra:
                raise LabError(f"{self}: af_extra is for BIRD and FRR only")
            if n.extra:
                out.append(n.extra)
        if self.extra:
            out.append(self.extra)
        return "\n".join(out) + "\n"

    def _start(self) -> None:
        self.config_path.write_text(self.config())
        (self.rundir / "api.sock").unlink(missing_ok=True)
        self.popen(
            [
                "gobgpd", "-f", str(self.config_path), "-t", "toml",
                "--api-hosts", self.target, "-p", "--pprof-disable",
            ],
            "gocommon.log",
        )  # fmt: skip

    def gobgp(self, *args: str) -> str:
        return self.node.run(["gobgp", "--target", self.target, *args]).stdout

    def gobgp_json(self, *args: str) -> Any:
        out = self.gobgp(*args, "-j").strip()
        return json.loads(out) if out else None

    def _ready(self) -> bool:
        self._check_alive()
        data = self.gobgp_json("global")
        return isinstance(data, dict) and data.get("asn") == self.local_as

    def _after_start(self) -> None:
        for family in (4, 6):
            for prefix in sorted(self.routes[family]):
                self._announce(prefix)

    def _announce(self, prefix: str) -> None:
        self.gobgp("global", "rib", "add", "-a", f"ipv{family_of(prefix)}", prefix)

    def _withdraw(self, prefix: str) -> None:
        self.gobgp("global", "rib", "del", "-a", f"ipv{family_of(prefix)}", prefix)

    def session_state(self, neighbor: str | None = None) -> str:
        address = self.neighbor(neighbor).address
        data = self.gobgp_json("neighbor", address)
        assert isinstance(data, dict)
        state = data.get("state", {}).get("session_state", "unknown")
        if isinstance(state, int):  # the gRPC enum: 1 idle ... 6 established
            names = {1: "Idle", 2: "Connect", 3: "Active", 4: "OpenSent", 5: "OpenConfirm"}
            return names.get(state, "Established" if state == 6 else f"Unknown({state})")
        return normalise_state(str(state))

    def received_routes(
        self, family: int = 4, neighbor: str | None = None
    ) -> dict[str, list[Route]]:
        data = self.gobgp_json("global", "rib", "-a", f"ipv{family}")
        want = ipaddress.ip_address(neighbor) if neighbor else None
        result: dict[str, list[Route]] = {}
        for prefix, paths in (data or {}).items():
            for path in paths:
                route = _gobgp_route(prefix, path)
                if route.neighbor is None:
                    continue
                if want is not None and ipaddress.ip_address(route.neighbor) != want:
                    continue
                result.setdefault(route.prefix, []).append(route)
        return result


def _gobgp_route(prefix: str, path: Mapping[str, Any]) -> Route:
    source = path.get("neighbor-ip") or path.get("source-id")
    neighbor = None if source in (None, "", "<nil>", "0.0.0.0", "::") else str(source)
    values: dict[int, Mapping[str, Any]] = {}
    for attr in path.get("attrs", []):
        values[int(attr["type"])] = attr
    next_hop = values.get(3, {}).get("nexthop") or values.get(14, {}).get("nexthop")
    as_path: list[int] = []
    for segment in values.get(2, {}).get("as_paths", []):
        as_path += [int(x) for x in segment.get("asns", [])]
    communities = frozenset(
        f"{c >> 16}:{c & 0xFFFF}" for c in values.get(8, {}).get("communities", [])
    )
    large = frozenset(
        f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}"
        for c in values.get(32, {}).get("values", [])
    )
    origin = values.get(1, {}).get("value")
    return Route(
        prefix=canonical_prefix(prefix),
        neighbor=neighbor,
        next_hop=str(next_hop) if next_hop else None,
        as_path=tuple(as_path),
        local_pref=int_or_none(values.get(5, {}).get("value")),
        med=int_or_none(values.get(4, {}).get("metric")),
        origin={0: "IGP", 1: "EGP", 2: "INCOMPLETE"}.get(origin)
        if isinstance(origin, int)
        else None,
        communities=communities,
        large_communities=large,
        originator_id=str(values[9]["value"]) if 9 in values else None,
        cluster_list=tuple(str(c) for c in values.get(10, {}).get("value", [])),
        best=bool(path.get("best")),
        raw=dict(path),
    )
