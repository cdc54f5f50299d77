"""What a route costs in bgpd's memory: the pure speaker as a route reflector, in-process.

    python3 bench/mem_profile.py [--clients 10] [--prefixes 10000] [--top 25]

Builds the route-reflector configuration of `rr_bench.py` (one reflector, M clients in one
update group, an IP pool over their /32s), brings every session up on a fake clock, feeds
each client's N prefixes as the decoder makes them (the very UPDATE bytes a client sends,
split and decoded), applies them, writes out and reads every member's catch-up. Then it
reports, from `tracemalloc`, the bytes held per route in all and per allocation site, and the
peak during the run (transient objects: queued UPDATEs, the tick's `BestChange`s, the
pending changes of each group). No sockets, no event loop: deterministic byte counts.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import sys
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bgpd.daemon.plancheck import peer_settings
from bgpd.plan.peering import compute
from bgpd.session.events import SessionEstablished, StateChanged, UpdateReceived
from bgpd.session.fsm import State
from bgpd.session.negotiate import build_open, negotiate
from bgpd.speaker.actions import Dump
from bgpd.speaker.speaker import Speaker
from bgpd.wire import decode_message, pack_announcements, split_messages
from bgpd.wire.attributes import PathAttributes
from bgpd.wire.family import Family
from bgpd.wire.messages import Update
from calico.file import load_file

ASN = 64512
V4 = Family.IPV4_UNICAST
PREFIX_BASE = int(ipaddress.IPv4Address("100.64.0.0"))


def config_docs(clients: int) -> list[dict[str, Any]]:
    """rr_bench's reflector configuration: node `rr` reflects for every client."""
    v3 = "projectcalico.org/v3"

    def node(name: str, ip: str, rr: bool) -> dict[str, Any]:
        bgp: dict[str, Any] = {"ipv4Address": f"{ip}/16"}
        meta: dict[str, Any] = {"name": name}
        if rr:
            bgp["routeReflectorClusterID"] = "224.0.0.1"
            meta["labels"] = {"route-reflector": "true"}
        return {"apiVersion": v3, "kind": "Node", "metadata": meta, "spec": {"bgp": bgp}}

    return [
        {"apiVersion": v3, "kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": ASN, "nodeToNodeMeshEnabled": False}},
        node("rr", "10.0.0.1", True),
        *(node(f"client{i}", client_address(i), False) for i in range(clients)),
        {"apiVersion": v3, "kind": "BGPPeer", "metadata": {"name": "rr-clients"},
         "spec": {"nodeSelector": "has(route-reflector)",
                  "peerSelector": "!has(route-reflector)"}},
        {"apiVersion": v3, "kind": "IPPool", "metadata": {"name": "bench"},
         "spec": {"cidr": "100.64.0.0/10"}},
    ]  # fmt: skip


def client_address(i: int) -> str:
    return str(ipaddress.IPv4Address("10.0.0.2") + i)


def client_updates(i: int, prefixes: int, add_path: bool = True) -> list[bytes]:
    """Client `i`'s UPDATE messages, as rr_loadgen builds them; under ADD-PATH (Calico's
    `add paths on`, on every session) each item carries path identifier 1, as BIRD sends."""
    attrs = PathAttributes(
        origin=0,
        as_path=(),
        next_hop=ipaddress.IPv4Address(client_address(i)).packed,
        local_pref=100,
    )
    start = PREFIX_BASE + i * prefixes
    pid = (1).to_bytes(4, "big") if add_path else b""
    items = [pid + bytes([32]) + (start + k).to_bytes(4, "big") for k in range(prefixes)]
    data = b"".join(pack_announcements(V4, attrs, items))
    messages, rest = split_messages(data)
    assert not rest
    return messages


@dataclass
class Reflector:
    speaker: Speaker
    names: list[str]
    now: float = 0.0

    @classmethod
    def make(cls, clients: int, path: Path, add_path: bool = True) -> Reflector:
        """The reflector; `add_path` False: its sessions without ADD-PATH (Calico's template
        has `add paths on`, so with is what a Calico reflector holds)."""
        path.write_text(yaml.safe_dump_all(config_docs(clients), sort_keys=False))
        plan = compute(load_file(str(path)), "rr", {})
        speaker = Speaker(plan)
        for spec in plan.sessions:
            settings = peer_settings(spec, speaker.router_id, None)
            if not add_path:
                settings = replace(settings, add_path=())
            speaker.add_peer(spec, settings)
        speaker.begin(0.0)
        return cls(speaker, [s.name for s in plan.sessions])

    def establish(self) -> None:
        s = self.speaker
        for name in self.names:
            settings = s.peers[name].settings
            local = build_open(settings)
            neg = negotiate(settings, local, local)
            s.receive(StateChanged(name, State.OPEN_CONFIRM, State.ESTABLISHED), self.now)
            s.receive(SessionEstablished(name, local, local, neg.options, neg), self.now)
        self.settle()

    def announce(self, client: int, messages: list[bytes]) -> None:
        s = self.speaker
        name = self.names[client]
        opts = s.peers[name].options
        assert opts is not None
        for data in messages:
            update = decode_message(data, opts)
            assert isinstance(update, Update)
            s.receive(UpdateReceived(name, update), self.now)

    def settle(self) -> None:
        """Apply everything queued, write out, and read every catch-up to its end."""
        s = self.speaker
        while s.has_work():
            s.step(self.now)
        s.slice_done()
        s.write_out(self.now)
        for action in s.take_actions():
            if isinstance(action, Dump):
                for _chunk in action.chunks:
                    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--prefixes", type=int, default=10000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--workdir", default="/tmp")
    args = ap.parse_args()
    routes = args.clients * args.prefixes
    updates = [client_updates(i, args.prefixes) for i in range(args.clients)]
    gc.collect()
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    rr = Reflector.make(args.clients, Path(args.workdir) / "mem_profile.yaml")
    rr.establish()
    for i, messages in enumerate(updates):
        rr.announce(i, messages)
    rr.settle()
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    snap = tracemalloc.take_snapshot()
    tracemalloc.stop()
    print(f"{args.clients} x {args.prefixes} = {routes} routes, one update group")
    diff = snap.compare_to(base, "lineno")
    total = sum(d.size_diff for d in diff)
    print(f"held after the run: {total / 1e6:.2f} MB, {total / routes:.0f} bytes per route")
    print(f"traced peak during the run: {peak / 1e6:.2f} MB ({peak / routes:.0f} B/route)")
    print(f"\n{'bytes/route':>11} {'blocks':>9}  where")
    for d in diff[: args.top]:
        frame = d.traceback[0]
        where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
        print(f"{d.size_diff / routes:11.1f} {d.count_diff:9d}  {where}")
    del held
    return 0


if __name__ == "__main__":
    sys.exit(main())
