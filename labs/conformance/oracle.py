"""One scenario step against BIRD 1.6: the golden configuration running in a lab node, fed the
route corpus (BGP routes through real sessions from the injector, kernel routes through
interfaces of the corpus' names, connected subnets), and read back: what BIRD accepted from
each peer (`show route protocol P all`) and what it sent to each (the injector's tables).
`compare()` sets bgpd's answers on the same corpus beside them.

The lab: node `bird` (BIRD 1.6, and bird6, on the scenario's node addresses; an interface per
next-hop subnet and per kernel route interface name, their other ends in node `sink`) and
node `peers` (the injector, on the addresses of every `protocol bgp` of the golden files and
the EXTERNAL peer's).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labs.conformance import birdfilter as bf
from labs.conformance.bird16 import Bird16, BirdRoute
from labs.conformance.judge import (
    Answer,
    Bgpd,
    Case,
    Golden,
    Layout,
    Seen,
)
from labs.conformance.routes import (
    BGP,
    DIRECT,
    EXTERNAL,
    EXTERNAL_AS,
    KERNEL,
    CorpusRoute,
)
from labs.conformance.scenarios import Planned
from labs.harness.lab import Lab
from labs.harness.wait import wait_for

# --- the lab ----------------------------------------------------------------------------------


def _external_protocol(layout: Layout, local_as: int) -> str:
    return (
        f"protocol bgp {EXTERNAL} from bgp_template {{\n"
        f"  neighbor {layout.peers[EXTERNAL]} as {EXTERNAL_AS};\n"
        f"  local as {local_as};\n"
        f"  source address {layout.node};\n"
        "  multihop;\n  import all;\n  export none;\n}\n"
    )


class Run:
    """The lab of one scenario step with BIRD 1.6 in it, fed and converged."""

    def __init__(self, lab: Lab, planned: Planned, fams: list[Case]) -> None:
        self.lab = lab
        self.planned = planned
        self.fams = fams
        self.bird = lab.add_node("bird")
        self.peers = lab.add_node("peers")
        self.sink = lab.add_node("sink")
        self._sink_ifs = 0
        self.state_path = self.peers.workdir / "injector-state.json"
        self.announced: dict[str, int] = {}

    def _iface(self, name: str) -> None:
        """An interface `name` in node bird, up (its other end in node sink)."""
        if name in self._ifnames():
            return
        self._sink_ifs += 1
        self.lab.veth(self.bird, name, self.sink, f"s{self._sink_ifs}")

    def _ifnames(self) -> set[str]:
        out = self.bird.run(["ip", "-j", "link", "show"]).stdout
        return {link["ifname"] for link in json.loads(out)}

    def build(self) -> None:
        bird, peers = self.bird, self.peers
        self.lab.veth(bird, "eth0", peers, "eth0")
        for fam in self.fams:
            lay = fam.layout
            plen = ipaddress.ip_network(lay.node_network).prefixlen
            bird.add_address("eth0", f"{lay.node}/{plen}")
            for addr in lay.peers.values():
                peers.add_address("eth0", f"{addr}/{plen}")
            for ifname, subnet in lay.subnets.items():
                if ifname == "eth0":
                    continue
                self._iface(ifname)
                net = ipaddress.ip_network(subnet)
                bird.add_address(ifname, f"{net.network_address + 1}/{net.prefixlen}")
            batch: list[str] = []
            for r in fam.routes:
                if r.kind == KERNEL:
                    assert r.ifname is not None
                    self._iface(r.ifname)
                    metric = f" metric {r.metric}" if r.metric is not None else ""
                    batch.append(f"route add {r.prefix} dev {r.ifname} "
                                 f"proto static{metric}")
                elif r.kind == DIRECT:
                    assert r.ifname is not None
                    self._iface(r.ifname)
                    net = ipaddress.ip_network(r.prefix)
                    bird.add_address(r.ifname, f"{net.network_address + 1}/{net.prefixlen}")
                    fam.direct_prefixes.add(r.prefix)
            if batch:
                bird.run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
        for fam in self.fams:
            our_as = fam.config.template_as or self.planned.plan.local_as
            fam.bird = Bird16(
                bird, self.planned.golden, fam.version, _external_protocol(fam.layout, our_as)
            )
            fam.bird.start()
        for fam in self.fams:
            assert fam.bird is not None
            wait_for(fam.bird.ready, timeout=20, message=f"BIRD 1.6 v{fam.version} up")
            want = sum(1 for r in fam.routes if r.kind == KERNEL)
            wait_for(
                lambda f=fam, n=want: len(f.bird.routes("protocol kernel1")) >= n,  # type: ignore[union-attr]
                timeout=30,
                message=f"BIRD 1.6 v{fam.version} learning {want} kernel routes",
            )

    def feed(self) -> None:
        neighbors: list[dict[str, Any]] = []
        for fam in self.fams:
            cfg, lay = fam.config, fam.layout
            for protocol, address in sorted(lay.peers.items()):
                if protocol == EXTERNAL:
                    local_as, peer_as = EXTERNAL_AS, cfg.template_as
                else:
                    local_as, peer_as = cfg.peer_as(protocol), cfg.our_as(protocol)
                routes = [
                    {
                        "prefix": r.prefix,
                        "next_hop": lay.next_hops[r.ifname or "eth0"],
                        "local_pref": r.local_pref,
                        "communities": [list(c) for c in r.communities],
                        "large": [list(c) for c in r.large],
                        "as_path": list(r.as_path),
                    }
                    for r in fam.routes
                    if r.kind == BGP and r.peer == protocol
                ]
                key = f"v{fam.version}:{protocol}"
                self.announced[key] = len(routes)
                neighbors.append(
                    {
                        "name": key,
                        "local": address,
                        "peer": lay.node,
                        "local_as": local_as,
                        "peer_as": peer_as,
                        "family": fam.version,
                        "router_id": f"10.255.{fam.version}.{len(neighbors) + 1}",
                        "routes": routes,
                    }
                )
        config = self.peers.workdir / "injector.json"
        config.write_text(json.dumps({"neighbors": neighbors}))
        root = Path(__file__).resolve().parents[2]
        self.peers.popen(
            [sys.executable, "-m", "labs.conformance.injector", str(config), str(self.state_path)],
            log_path=self.peers.workdir / "injector.out",
            env={"PYTHONPATH": str(root)},
            label="peers/injector",
        )

    def state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded

    def converge(self, timeout: float = 120.0) -> None:
        """Every session up, everything announced taken in by BIRD, and what BIRD sends no
        longer changing."""
        def up() -> bool:
            st = self.state()
            return bool(st) and all(st.get(k, {}).get("established") for k in self.announced)

        wait_for(up, timeout=timeout, message=lambda: f"sessions up: {self._summary()}")
        for fam in self.fams:
            bird = fam.bird
            assert bird is not None
            for protocol in sorted(fam.layout.peers):
                want = self.announced[f"v{fam.version}:{protocol}"]
                wait_for(
                    lambda b=bird, p=protocol, n=want: _received(b.protocol_info(p)) >= n,
                    timeout=timeout,
                    message=f"BIRD 1.6 v{fam.version} receiving {want} routes from {protocol}",
                )
        last: list[str] = []

        def settled() -> bool:
            st = self.state()
            now = json.dumps({k: sorted(v.get("routes", {})) for k, v in st.items()})
            done = bool(last) and last[-1] == now and all(v.get("eor") for v in st.values())
            last.append(now)
            return done

        wait_for(settled, timeout=timeout, interval=1.5, message="BIRD 1.6's exports settling")

    def _summary(self) -> str:
        st = self.state()
        return ", ".join(
            f"{k}: {'up' if v.get('established') else v.get('error') or 'down'}"
            for k, v in sorted(st.items())
        )


def _received(info: str) -> int:
    m = re.search(r"Import updates:\s+(\d+)", info)
    return int(m.group(1)) if m else 0


# --- the comparison ---------------------------------------------------------------------------


def bird_seen(route: BirdRoute, ibgp: bool) -> Seen:
    return Seen(
        route.local_pref if ibgp else None, route.communities, route.large, route.as_path
    )


def sent_seen(entry: dict[str, Any], ibgp: bool) -> Seen:
    return Seen(
        entry.get("local_pref") if ibgp else None,
        frozenset((a, b) for a, b in entry.get("communities", [])),
        frozenset((a, b, c) for a, b, c in entry.get("large", [])),
        tuple(entry.get("as_path", [])),
    )


@dataclass(frozen=True, slots=True)
class Mismatch:
    side: str  # "bgpd" or "evaluator": which one BIRD 1.6 disagrees with
    direction: str
    protocol: str
    prefix: str
    route: CorpusRoute | None
    bird: Answer
    other: Answer

    def __str__(self) -> str:
        r = self.route
        what = "" if r is None else f" {r.kind} ({r.role})"
        if r is not None and r.kind == BGP:
            what += f" from {r.peer} via {r.ifname} lp={r.local_pref} c={r.communities}"
            what += f" lc={r.large} path={r.as_path}"
        elif r is not None and r.kind in (KERNEL, DIRECT):
            what += f" dev {r.ifname} metric {r.metric}"
        return (f"{self.side}: {self.direction} {self.protocol} {self.prefix}{what}: "
                f"BIRD 1.6 {self.bird}, {self.side} {self.other}")


@dataclass
class Outcome:
    mismatches: list[Mismatch] = field(default_factory=list)
    # Exported by BIRD 1.6 from its `direct` protocol, which bgpd does not have: (protocol,
    # prefix). Known and reported, not counted as mismatches.
    direct_only: list[tuple[str, str]] = field(default_factory=list)
    compared: int = 0
    accepted: int = 0
    exported: int = 0


def compare(run: Run) -> Outcome:
    out = Outcome()
    state = run.state()
    for fam in run.fams:
        assert fam.bird is not None
        bgpd = Bgpd(run.planned.plan, fam.layout)
        golden = Golden(fam.config, fam.layout)
        for r in fam.routes:
            if r.kind != DIRECT:
                bgpd.add(r)
        bird_direct = {route.prefix for route in fam.bird.routes("protocol direct1")}
        accepted: dict[str, dict[str, BirdRoute]] = {}
        for protocol in sorted(fam.layout.peers):
            accepted[protocol] = {x.prefix: x for x in fam.bird.routes(f"protocol {protocol}")}
        b_imported: dict[str, Any] = {}
        g_imported: dict[str, Any] = {}
        for r in fam.routes:
            if r.kind != BGP:
                continue
            assert r.peer is not None
            ibgp = golden.ibgp(r.peer)
            got = accepted[r.peer].get(r.prefix)
            bird_answer = None if got is None else bird_seen(got, True)
            b_seen, b_route = bgpd.imported(r)
            g_seen, g_state = golden.imported(r)
            del ibgp
            out.compared += 1
            out.accepted += bird_answer is not None
            if b_seen != bird_answer:
                out.mismatches.append(
                    Mismatch("bgpd", "import", r.peer, r.prefix, r, bird_answer, b_seen)
                )
            if g_seen != bird_answer:
                out.mismatches.append(
                    Mismatch("evaluator", "import", r.peer, r.prefix, r, bird_answer, g_seen)
                )
            b_imported[r.prefix] = b_route
            g_imported[r.prefix] = g_state
        by_prefix = {r.prefix: r for r in fam.routes}
        for target in golden.protocols():
            ibgp = golden.ibgp(target)
            sent = state.get(f"v{fam.version}:{target}", {}).get("routes", {})
            bird_out = {p: sent_seen(e, ibgp) for p, e in sent.items()}
            bgpd_out: dict[str, Seen] = {}
            golden_out: dict[str, Seen] = {}
            for r in fam.routes:
                if r.kind == BGP and b_imported.get(r.prefix) is not None:
                    seen = bgpd.exported(target, r, b_imported[r.prefix])
                elif r.kind == BGP:
                    seen = None
                else:
                    seen = bgpd.exported(target, r, None)
                if seen is not None:
                    bgpd_out[r.prefix] = seen
                if r.kind != BGP or g_imported.get(r.prefix) is not None:
                    g = golden.exported(target, r, g_imported.get(r.prefix))
                    if g is not None:
                        golden_out[r.prefix] = g
            out.exported += len(bird_out)
            for prefix in sorted(set(bird_out) | set(bgpd_out) | set(golden_out)):
                bird_answer = bird_out.get(prefix)
                route = by_prefix.get(prefix)
                if bird_answer != bgpd_out.get(prefix):
                    if prefix not in bgpd_out and prefix in bird_direct:
                        out.direct_only.append((target, prefix))
                    else:
                        out.mismatches.append(
                            Mismatch("bgpd", "export", target, prefix, route, bird_answer,
                                     bgpd_out.get(prefix))
                        )
                g = golden_out.get(prefix)
                if bird_answer != g and not (g is None and prefix in bird_direct
                                             and route is None):
                    out.mismatches.append(
                        Mismatch("evaluator", "export", target, prefix, route, bird_answer, g)
                    )
    return out


def direct_expected(config: bf.BirdConfig, ifnames: Iterable[str]) -> set[str]:
    """The interfaces BIRD's direct protocol takes, by the golden interface list."""
    from labs.conformance.judge import _direct_includes

    return {n for n in ifnames if _direct_includes(config.direct_interfaces, n)}
